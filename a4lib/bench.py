"""``a4lib bench``: characters per second of the real training step against ``reference.py`` (the
handout's one-hot loop, float64, one stream), timed in the same process on the same corpus.

The step is ``Trainer.train_step`` (model, clipping and optimizer) plus the walk's advance, with
the settings given (model, m, seq_length, B, dtype, backend, optimizer). ``--scaling`` makes the
table of characters/s and GFLOP/s over m in {50, 100, 200, 400} and B in {1, 8, 32, 128} in both
types, with the fraction of the machine's matrix-product peak, measured here with one large
product per type (``peak_gflops``). The machine may be shared: ``--repeat N`` times everything N
times and keeps the best (the scaling table: best of 3 by default).

GFLOP/s count the matrix products only (a multiply-add is 2 FLOP), per character: each layer's
recurrence 6 G m^2 (forward W h, backward W^T dL/da and dW; W has G m rows: RNN G = 1, GRU 3,
LSTM 4), each layer above the first as much again for its input product U h (forward, dL/dh
below, dU), and the output layer 6 K m (V h, V^T dL/do, dV). U x_t of the first layer is a column
gather: no FLOP. ``--models`` times every cell with 1 and 2 layers at the settings given.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from .config import Config
from .config import add_arguments as add_config_arguments
from .train import Trainer

SCALING_M = (50, 100, 200, 400)
SCALING_B = (1, 8, 32, 128)
SCALING_SECONDS = 0.25  # timed per figure and repeat in the scaling table


class BenchError(ValueError):
    """Bad bench arguments."""


#: the training settings a benchmark takes (their flags, defaults and checks come from Config)
SETTINGS = ("corpus", "model", "layers", "m", "seq_length", "batch_size", "dtype", "optimizer", "backend",
            "blas_threads")


def add_arguments(b: argparse.ArgumentParser) -> None:
    add_config_arguments(b, only=SETTINGS)  # reference.py is always float64, B = 1
    b.add_argument("--updates", type=int, default=2000, help="updates timed (default: 2000)")
    b.add_argument("--reference-updates", type=int, help="updates of reference.py timed (default: --updates / 4)")
    b.add_argument("--repeat", type=int, help="time each figure this many times, keep the best "
                                              "(default: 1; 3 with --scaling)")
    b.add_argument("--scaling", action="store_true",
                   help="the table over m in {50, 100, 200, 400} x B in {1, 8, 32, 128} x both types "
                        "(--m, --batch-size, --dtype, --updates are then ignored)")
    b.add_argument("--models", action="store_true",
                   help="the table of every cell (rnn, gru, lstm) with 1 and 2 layers at the given m, B and dtype")
    b.add_argument("--scaling-seconds", type=float, default=SCALING_SECONDS,
                   help="with --scaling: seconds timed per figure and repeat")
    b.add_argument("--json", action="store_true", help="print one JSON line")


def flop_per_char(model: str, m: int, K: int, layers: int = 1) -> int:
    """FLOP of the matrix products of one training step per character (see the module docstring)."""
    from .model import CELLS

    return 6 * CELLS[model].gates * m * m * (2 * layers - 1) + 6 * K * m


def peak_gflops(dtype: str, n: int = 1536, repeat: int = 3) -> float:
    """GFLOP/s of an n x n matrix product in ``dtype``, the best of ``repeat`` with numpy's BLAS and,
    where the compiled backend runs, SciPy's (the one compiled code calls): the machine's
    matrix-product peak as the bench sees it."""
    from .model import kernels

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    c = np.empty((n, n), dtype)
    products = [lambda: np.dot(a, b, out=c)]
    if kernels.available():
        from scipy.linalg import blas

        gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
        at, bt = np.asfortranarray(a), np.asfortranarray(b)
        products.append(lambda: gemm(1.0, at, bt))
    best = math.inf
    for product in products:
        product()  # warm-up
        best = min([best] + [_seconds(product) for _ in range(repeat)])
    return 2 * n ** 3 / best / 1e9


def _seconds(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def _trainer(corpus_spec, corpus, model, m, seq_length, batch_size, dtype, backend, optimizer,
             layers: int = 1) -> Trainer:
    from .model import kernels

    cfg = Config(corpus=corpus_spec, model=model, m=m, seq_length=seq_length, batch_size=batch_size, n_updates=1,
                 sample_every=0, backend=backend, dtype=dtype, optimizer=optimizer, layers=layers,
                 blas_threads=kernels.blas_threads() or 1)  # as ``command`` set them (--blas-threads)
    cfg.validate()
    return Trainer(cfg, Path("unused"), corpus=corpus)  # run() is never called: nothing is written


def _step_rate(trainer: Trainer, updates: int | None, repeat: int,
               seconds: float = SCALING_SECONDS) -> tuple[float, int]:
    """Best updates/s of ``repeat`` timings of ``updates`` steps (None: as many as fill
    ``seconds``), after a warm-up (and the JIT, where compiled); and the updates timed."""
    def steps(n: int) -> None:
        for _ in range(n):
            trainer.train_step()
            trainer._advance()

    steps(10)
    if updates is None:
        updates = max(5, int(seconds / max(_seconds(lambda: steps(5)) / 5, 1e-7)))
    return max(updates / _seconds(lambda: steps(updates)) for _ in range(repeat)), updates


def _reference_rate(ids: np.ndarray, K: int, m: int, seq_length: int, updates: int, repeat: int) -> float:
    """Best updates/s of reference.py's AdaGrad step (float64, one stream) walking ``ids``."""
    from .model import Network, reference

    params = Network("rnn", K, m).init_params(np.random.default_rng(0))
    mem = {k: np.zeros_like(v) for k, v in params.items()}
    state = {"h": np.zeros(m), "e": 0}

    def steps() -> None:
        h, e = state["h"], state["e"]
        for _ in range(updates):
            if e + seq_length + 1 > len(ids):
                e, h = 0, np.zeros(m)
            _, h = reference.adagrad_step(params, mem, ids[e:e + seq_length], ids[e + 1:e + seq_length + 1], h)
            e += seq_length
        state["h"], state["e"] = h, e

    return max(updates / _seconds(steps) for _ in range(repeat))


def bench(corpus_spec: str | None, m: int, seq_length: int, batch_size: int, updates: int,
          reference_updates: int, backend: str = "auto", dtype: str = "float64", model: str = "rnn",
          optimizer: str = "adagrad", repeat: int = 1, layers: int = 1, peak: float | None = None) -> dict:
    """Updates/s and characters/s of the real training step and of reference.py (at the same m and
    seq_length), same corpus; the best of ``repeat`` timings each; GFLOP/s and their fraction of
    ``peak`` (default: measured by ``peak_gflops`` in ``dtype``)."""
    trainer = _trainer(corpus_spec, None, model, m, seq_length, batch_size, dtype, backend, optimizer, layers)
    fast, _ = _step_rate(trainer, updates, repeat)
    K = trainer.corpus.K
    ref = _reference_rate(trainer.ids, K, m, seq_length, reference_updates, repeat)
    chars = fast * seq_length * batch_size
    gflops = chars * flop_per_char(model, m, K, layers) / 1e9
    peak = peak_gflops(dtype, repeat=repeat) if peak is None else peak
    return {
        "corpus": trainer.corpus.name, "K": K, "model": model, "layers": layers, "m": m, "seq_length": seq_length,
        "batch_size": batch_size, "dtype": dtype, "optimizer": optimizer, "backend": trainer.backend,
        "updates": updates, "reference_updates": reference_updates, "repeat": repeat,
        "updates_per_s": round(fast, 1), "reference_updates_per_s": round(ref, 1),
        "chars_per_s": round(chars), "reference_chars_per_s": round(ref * seq_length),
        "speedup": round(fast * batch_size / ref, 2),
        "gflop_per_s": round(gflops, 2), "peak_gflop_per_s": round(peak, 1), "peak_fraction": round(gflops / peak, 4),
        "path": path_description(trainer.backend),
    }


def blas_threads() -> str:
    """How many threads BLAS may use: numpy's as the environment sets it (a4lib sets 1 unless told
    otherwise), and compiled code's where a4lib sets it (--blas-threads)."""
    import os

    from .model import kernels

    n = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "1"
    numpy_threads = "one BLAS thread" if n == "1" else f"{n} BLAS threads"
    compiled = kernels.blas_threads()
    if compiled is None or str(compiled) == n:
        return numpy_threads
    return f"{numpy_threads} (numpy's), {compiled} (compiled code's)"


def path_description(backend: str) -> str:
    """Which code ran the model, in one line."""
    if backend == "numba":
        from .model import kernels

        return (f"compiled (numba) recurrences, BLAS products (from compiled code SciPy's BLAS: {kernels.BLAS}; "
                f"numpy's elsewhere)")
    return "numpy recurrences, numpy's BLAS products (numba or SciPy not installed, or --backend numpy)"


def models_table(corpus_spec: str | None, m: int, seq_length: int, batch_size: int, updates: int, backend: str,
                 dtype: str, optimizer: str, repeat: int = 1, layer_counts=(1, 2), progress=None) -> list[dict]:
    """``bench`` for every cell with each number of layers at one m, B and dtype (one peak measured)."""
    from .model import MODEL_NAMES

    peak = peak_gflops(dtype, repeat=max(repeat, 2))
    rows = []
    for model in MODEL_NAMES:
        for layers in layer_counts:
            rows.append(bench(corpus_spec, m, seq_length, batch_size, updates, max(1, updates // 10), backend, dtype,
                              model, optimizer, repeat, layers, peak))
            if progress:
                progress(rows[-1])
    return rows


def scaling(corpus_spec: str | None, seq_length: int = 25, backend: str = "auto", model: str = "rnn",
            optimizer: str = "adagrad", layers: int = 1, repeat: int = 3, ms=SCALING_M, batch_sizes=SCALING_B,
            dtypes=("float64", "float32"), reference_updates: int = 100, progress=None,
            seconds: float = SCALING_SECONDS) -> dict:
    """The scaling table: per (dtype, m, B) characters/s, GFLOP/s and the fraction of the peak of
    ``peak_gflops`` in that type; per m the reference's characters/s and the speed-up over it."""
    from .corpus import load_corpus

    corpus = load_corpus(corpus_spec, seq_length)
    peaks = {dt: round(peak_gflops(dt, repeat=repeat), 1) for dt in dtypes}
    refs = {m: _reference_rate(corpus.ids, corpus.K, m, seq_length, reference_updates, repeat) * seq_length
            for m in ms}
    rows = []
    for dt in dtypes:
        for m in ms:
            for B in batch_sizes:
                trainer = _trainer(corpus_spec, corpus, model, m, seq_length, B, dt, backend, optimizer, layers)
                rate, updates = _step_rate(trainer, None, repeat, seconds)
                chars = rate * seq_length * B
                gflops = chars * flop_per_char(model, m, corpus.K, layers) / 1e9
                rows.append({"dtype": dt, "m": m, "batch_size": B, "updates": updates, "chars_per_s": round(chars),
                             "gflop_per_s": round(gflops, 2), "peak_fraction": round(gflops / peaks[dt], 4),
                             "speedup": round(chars / refs[m], 2)})
                if progress:
                    progress(rows[-1])
    return {"corpus": corpus.name, "K": corpus.K, "model": model, "layers": layers, "seq_length": seq_length,
            "optimizer": optimizer,
            "backend": trainer.backend, "repeat": repeat, "peak_gflop_per_s": peaks,
            "reference_chars_per_s": {str(m): round(r) for m, r in refs.items()}, "rows": rows}


def scaling_table(result: dict) -> str:
    """The scaling result as text: one block per type, m down, B across."""
    rows = result["rows"]
    Bs = sorted({r["batch_size"] for r in rows})
    lines = [f"corpus {result['corpus']} (K={result['K']}), {result['model']} x {result.get('layers', 1)} layers, "
             f"seq_length={result['seq_length']}, "
             f"{result['optimizer']}, backend {result['backend']}, {blas_threads()}, best of {result['repeat']}; "
             f"kchars/s | GFLOP/s | % of peak | speed-up over reference.py (float64, B = 1)"]
    for dt, peak in result["peak_gflop_per_s"].items():
        lines.append(f"{dt}: peak {peak:.1f} GFLOP/s (one {1536}x{1536} product)")
        lines.append("     m " + "".join(f"{'B = ' + str(B):>30}" for B in Bs))
        for m in sorted({r["m"] for r in rows}):
            cells = {r["batch_size"]: r for r in rows if r["dtype"] == dt and r["m"] == m}
            lines.append(f"{m:6d} " + "".join(
                f"  {c['chars_per_s'] / 1e3:7.0f} {c['gflop_per_s']:6.1f} {100 * c['peak_fraction']:4.0f}% "
                f"{c['speedup']:6.1f}x" if (c := cells.get(B)) else f"{'':>30}" for B in Bs))
    return "\n".join(lines)


def command(a) -> int:
    c = Config.from_namespace(a)
    from .model import kernels

    if c.blas_threads > 1 and not kernels.set_blas_threads(c.blas_threads):
        raise BenchError("--blas-threads sets the threads of scipy-openblas32's BLAS, which compiled code does not "
                         "call here (not installed, or SciPy's linear algebra loaded first); use OPENBLAS_NUM_THREADS")
    repeat = a.repeat if a.repeat is not None else (3 if a.scaling else 1)
    ref_updates = a.reference_updates if a.reference_updates is not None else max(1, a.updates // 4)
    if min(a.updates, ref_updates, repeat) < 1 or not a.scaling_seconds > 0:
        raise BenchError("--updates, --reference-updates and --repeat must be >= 1, --scaling-seconds > 0")
    if a.scaling:
        r = scaling(c.corpus, c.seq_length, c.backend, c.model, c.optimizer, c.layers, repeat,
                    reference_updates=a.reference_updates or 100, seconds=a.scaling_seconds)
        print(json.dumps(r) if a.json else scaling_table(r))
        return 0
    if a.models:
        rows = models_table(c.corpus, c.m, c.seq_length, c.batch_size, a.updates, c.backend, c.dtype, c.optimizer,
                            repeat)
        if a.json:
            print(json.dumps(rows))
            return 0
        r = rows[0]
        print(f"corpus {r['corpus']} (K={r['K']}), m={r['m']}, seq_length={r['seq_length']}, B={r['batch_size']}, "
              f"{r['dtype']}, {r['optimizer']}, peak {r['peak_gflop_per_s']:.1f} GFLOP/s\n{r['path']}\n"
              f"{'model':>6} {'layers':>6} {'kchars/s':>9} {'GFLOP/s':>8} {'of peak':>8} {'x reference':>12}")
        for r in rows:
            print(f"{r['model']:>6} {r['layers']:>6} {r['chars_per_s'] / 1e3:9.1f} {r['gflop_per_s']:8.1f} "
                  f"{100 * r['peak_fraction']:7.0f}% {r['speedup']:11.1f}x")
        return 0
    r = bench(c.corpus, c.m, c.seq_length, c.batch_size, a.updates, ref_updates, c.backend, c.dtype, c.model,
              c.optimizer, repeat, c.layers)
    if a.json:
        print(json.dumps(r))
    else:
        best = f", best of {repeat}" if repeat > 1 else ""
        print(f"corpus {r['corpus']} (K={r['K']}), {r['model']} x {r['layers']} layers, m={r['m']}, "
              f"seq_length={r['seq_length']}, B={r['batch_size']}, {r['dtype']}, {r['optimizer']}, {blas_threads()}{best}\n"
              f"  path: {r['path']}\n"
              f"  a4lib step     {r['updates_per_s']:10.1f} updates/s {r['chars_per_s']:12d} chars/s "
              f"{r['gflop_per_s']:8.1f} GFLOP/s ({100 * r['peak_fraction']:.0f}% of the {r['peak_gflop_per_s']:.0f} "
              f"GFLOP/s peak)\n"
              f"  reference.py   {r['reference_updates_per_s']:10.1f} updates/s {r['reference_chars_per_s']:12d} chars/s"
              f"   (float64, B = 1, m={r['m']}, seq_length={r['seq_length']})\n"
              f"  speed-up (chars/s) {r['speedup']:.2f}x")
    return 0
