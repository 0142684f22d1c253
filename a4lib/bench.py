"""``a4lib bench``: characters per second of the real training step against ``reference.py`` (the
handout's one-hot loop), timed in the same process on the same corpus."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .config import BACKENDS, Config
from .train import Trainer


class BenchError(ValueError):
    """Bad bench arguments."""


def add_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("--corpus", help="the text (default: as for train)")
    b.add_argument("--m", type=int, default=100, help="hidden units (default: 100)")
    b.add_argument("--seq-length", type=int, default=25, help="characters per sequence (default: 25)")
    b.add_argument("--batch-size", type=int, default=1, help="parallel streams B (default: 1)")
    b.add_argument("--updates", type=int, default=2000, help="updates timed (default: 2000)")
    b.add_argument("--reference-updates", type=int, help="updates of reference.py timed (default: --updates / 4)")
    b.add_argument("--backend", default="auto", choices=BACKENDS, help="(default: auto)")
    b.add_argument("--json", action="store_true", help="print one JSON line")

def bench(corpus_spec: str | None, m: int, seq_length: int, batch_size: int, updates: int,
          reference_updates: int, backend: str = "auto") -> dict:
    """Updates/s and characters/s of the real training step and of reference.py, same corpus."""
    from . import reference

    cfg = Config(corpus=corpus_spec, m=m, seq_length=seq_length, batch_size=batch_size, n_updates=updates,
                 sample_every=0, backend=backend)
    cfg.validate()
    trainer = Trainer(cfg, Path("unused"))  # run() is never called: nothing is written
    for _ in range(10):  # warm-up (and JIT, where compiled)
        trainer.train_step()
        trainer._advance()
    start = time.perf_counter()
    for _ in range(updates):
        trainer.train_step()
        trainer._advance()
    fast = updates / (time.perf_counter() - start)

    ids = trainer.ids
    params = {k: v.copy() for k, v in trainer.params.items()}
    mem = {k: np.zeros_like(v) for k, v in params.items()}
    h, e = np.zeros(m), 0
    start = time.perf_counter()
    for _ in range(reference_updates):
        if e + seq_length + 1 > len(ids):
            e, h = 0, np.zeros(m)
        _, h = reference.adagrad_step(params, mem, ids[e:e + seq_length], ids[e + 1:e + seq_length + 1], h)
        e += seq_length
    ref = reference_updates / (time.perf_counter() - start)
    return {
        "corpus": trainer.corpus.name, "K": trainer.corpus.K, "m": m, "seq_length": seq_length,
        "batch_size": batch_size, "backend": trainer.backend, "updates": updates, "reference_updates": reference_updates,
        "updates_per_s": round(fast, 1), "reference_updates_per_s": round(ref, 1),
        "chars_per_s": round(fast * seq_length * batch_size), "reference_chars_per_s": round(ref * seq_length),
        "speedup": round(fast * batch_size / ref, 2),
    }


def command(a) -> int:
    ref_updates = a.reference_updates if a.reference_updates is not None else max(1, a.updates // 4)
    if min(a.m, a.seq_length, a.batch_size, a.updates, ref_updates) < 1:
        raise BenchError("--m, --seq-length, --batch-size, --updates and --reference-updates must be >= 1")
    r = bench(a.corpus, a.m, a.seq_length, a.batch_size, a.updates, ref_updates, a.backend)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"corpus {r['corpus']} (K={r['K']}), m={r['m']}, seq_length={r['seq_length']}, "
              f"B={r['batch_size']}, backend {r['backend']}, float64, one thread\n"
              f"  a4lib step     {r['updates_per_s']:10.1f} updates/s {r['chars_per_s']:12d} chars/s\n"
              f"  reference.py   {r['reference_updates_per_s']:10.1f} updates/s {r['reference_chars_per_s']:12d} chars/s\n"
              f"  speed-up (chars/s) {r['speedup']:.2f}x")
    return 0
