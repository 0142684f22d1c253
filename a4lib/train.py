"""Training: the handout's walk over the text, smooth loss, samples, best parameters, resume.

The handout's loop (order "sequential", batch_size 1): e = 0, h = 0; each update trains on
X = book[e : e + seq_length], Y = book[e + 1 : e + seq_length + 1], carries h, and moves e on by
seq_length; when fewer than seq_length + 1 characters remain, a new epoch starts with e = 0 and
h = 0. smooth_loss starts at the first loss and then follows 0.999 smooth_loss + 0.001 loss.

The same walk serves the other orders. An epoch is a plan: groups of B segments walked in
lockstep, h reset to zero at the start of each group.
- sequential: the training text cut into B contiguous parts (B = 1: the whole text); full
  sequences only, as the handout;
- chunks: the text cut into chunks of chunk_length, shuffled each epoch; short tails kept;
- a tweet corpus: one segment per tweet (EOT, text, EOT), in order or shuffled with chunks.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .corpus import BUILTIN, Corpus, load_corpus
from .config import BUDGET, Config, ConfigError
from .model import make_network
from .optim import flatten, make_optimizer
from .rundir import RUN_FORMAT, Verdict
from .sample import generate, synthesize

#: a run has diverged when its smooth loss passes this multiple of its first value (as char-rnn)
DIVERGENCE = 3.0


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must see: the run diverged (exit code 1)."""


class ResumeError(ValueError):
    """A run cannot be resumed as asked (other settings, another text, a diverged run): bad input."""


# --- the data: training and held-out segments, and the epoch plan -------------------------------

def split(corpus: Corpus, val_fraction: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Where training ends, and the (start, end) segments of the held-out part.

    Plain text: the final val_fraction of the characters is held out, one segment. Tweets: the
    final val_fraction of the tweets, one segment each (a segment spans EOT ... EOT).
    A ConfigError when val_fraction > 0 holds out fewer than 2 characters (nothing to predict).
    """
    n = len(corpus.ids)
    if val_fraction == 0:
        return n, np.zeros(0, np.int64), np.zeros(0, np.int64)
    if corpus.is_tweets:
        ends = np.append(corpus.starts[1:] + 1, n)
        n_val = int(round(val_fraction * len(corpus.starts)))
        first = len(corpus.starts) - n_val
        n_train = int(corpus.starts[first]) + 1 if n_val else n
    else:
        n_train = n - int(val_fraction * n)
    if n - n_train < 2:
        raise ConfigError(f"val_fraction = {val_fraction:g} holds out {n - n_train} of the {n:,} characters, fewer "
                          f"than the 2 a held-out loss needs: raise it, or set it to 0")
    if corpus.is_tweets:
        return n_train, corpus.starts[first:], ends[first:]
    return n_train, np.array([n_train]), np.array([n])


def segments(corpus: Corpus, cfg: Config, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The training segments' starts and ends (before any shuffling)."""
    if corpus.is_tweets:
        starts = corpus.starts[corpus.starts < n_train - 1]
        ends = np.minimum(np.append(corpus.starts[1:] + 1, len(corpus.ids)), n_train)[: len(starts)]
        return starts, ends
    if cfg.order == "chunks":
        starts = np.arange(0, n_train - 1, cfg.chunk_length)
        return starts, np.minimum(starts + cfg.chunk_length, n_train)
    part = n_train // cfg.batch_size
    if part < cfg.seq_length + 1:
        raise ValueError(f"batch_size {cfg.batch_size} is too large: each stream needs at least seq_length + 1 "
                         f"= {cfg.seq_length + 1} of the {n_train:,} training characters")
    starts = np.arange(cfg.batch_size) * part
    return starts, starts + part


def make_plan(starts: np.ndarray, ends: np.ndarray, cfg: Config, rng: np.random.Generator) -> np.ndarray:
    """One epoch: an int array (G, B, 2) of (start, end) for each group of B segments walked together."""
    seg = np.stack([starts, ends], axis=1)
    B = cfg.batch_size
    if cfg.order == "chunks":
        seg = seg[rng.permutation(len(seg))]
    if B > 1 and cfg.order == "chunks":
        seg = seg[seg[:, 1] - seg[:, 0] == cfg.chunk_length]  # equal lengths in lockstep
        seg = seg[: len(seg) // B * B]
    if len(seg) == 0:
        raise ValueError("the training text is too short for this batch size and chunk length")
    return seg.reshape(-1, B, 2)


def updates_per_epoch(corpus: Corpus, cfg: Config) -> int:
    """How many updates one epoch of ``cfg`` on ``corpus`` makes (the split, the streams, the
    order and the tweets taken into account)."""
    n_train, _, _ = split(corpus, cfg.val_fraction)
    starts, ends = segments(corpus, cfg, n_train)
    plan = make_plan(starts, ends, cfg, np.random.default_rng(cfg.seed))
    return plan_updates(plan, cfg.seq_length, cfg.order == "chunks" or corpus.is_tweets)


def plan_updates(plan: np.ndarray, seq_length: int, keep_tail: bool) -> int:
    """How many updates the epoch ``plan`` (``make_plan``'s) makes: its groups walked in steps of
    seq_length (a short tail a step of its own when ``keep_tail``)."""
    return int(sum(steps_in(int(n), seq_length, keep_tail) for n in plan[:, 0, 1] - plan[:, 0, 0]))


def steps_in(length: int, seq_length: int, keep_tail: bool) -> int:
    """How many updates a segment of ``length`` characters gives."""
    return (length - 1) // seq_length if not keep_tail else math.ceil((length - 1) / seq_length)


HELD_OUT_STREAMS = 32  # plain held-out text is evaluated as up to this many contiguous streams ...
HELD_OUT_MIN_CHARS = 2000  # ... of at least this many characters each
EVAL_MAX_STREAMS = 64  # streams per call of the model in evaluate


def held_out_streams(n_chars: int) -> int:
    """How many contiguous streams ``Trainer.validate_now`` cuts a held-out text of n_chars into."""
    return max(1, min(HELD_OUT_STREAMS, n_chars // HELD_OUT_MIN_CHARS))


def evaluate(model, params: dict, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray,
             piece: int | None = None, state0: np.ndarray | None = None, streams: int = 1,
             stop: Callable[[], bool] | None = None) -> float | None:
    """Mean loss per predicted character (nats) over the segments (start, end); None when ``stop()``
    (asked before each call of the model) turns true; a ValueError when they hold nothing to predict.

    Each segment is cut into ``streams`` contiguous parts of equal length (fewer when it has fewer
    characters to predict); every part starts from the state ``state0`` (default h = 0) and
    carries its state through it; the few characters the division leaves over are predicted last,
    carrying on from the segment's last part. Parts of equal length (of all segments: tweets of
    one length) run together as one batch of streams, up to EVAL_MAX_STREAMS at a time, ``piece``
    steps per call (default: about 4096 characters a call, at most 1000 steps). The result is that
    of evaluating each part alone, to rounding; streams = 1: each segment is one stream.
    """
    parts: list[tuple[int, int]] = []  # (first position, characters to predict) of every part
    tails: dict[int, tuple[int, int]] = {}  # part -> (position, characters) left over after it
    for start, end in zip(starts, ends):
        n = int(end) - 1 - int(start)
        if n < 1:
            continue
        S = min(streams, n)
        parts += [(int(start) + s * (n // S), n // S) for s in range(S)]
        if n % S:
            tails[len(parts) - 1] = (int(start) + S * (n // S), n % S)
    by_length: dict[int, list[int]] = {}
    for i, (_, n) in enumerate(parts):
        by_length.setdefault(n, []).append(i)
    groups = [(L, same[k:k + EVAL_MAX_STREAMS]) for L, same in by_length.items()
              for k in range(0, len(same), EVAL_MAX_STREAMS)]
    total, count = 0.0, 0
    for L, group in groups:
        B = len(group)
        begins = np.array([parts[i][0] for i in group])
        state = model.zero_state(params, B) if state0 is None else np.tile(state0, (B, 1))
        steps = piece or min(1000, max(1, 4096 // B))
        for a in range(0, L, steps):
            if stop is not None and stop():
                return None
            pos = begins[None, :] + np.arange(a, min(a + steps, L))[:, None]
            loss, state = model.loss_and_state(params, ids[pos], ids[pos + 1], state)
            total += loss * B
            count += pos.size
        for j, i in enumerate(group):
            if i in tails:
                a, n = tails[i]
                loss, _ = model.loss_and_state(params, ids[a:a + n, None], ids[a + 1:a + n + 1, None], state[j:j + 1])
                total += loss
                count += n
    if not count:
        raise ValueError("the segments hold no character to predict (each needs at least 2 characters)")
    return total / count


# --- memory ------------------------------------------------------------------------------------

def available_memory() -> int | None:
    """Bytes this process may still allocate: the system's available memory, or the cgroup's limit
    less its use when lower; None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def n_parameters(cfg: Config, K: int) -> int:
    """How many parameters the network of ``cfg`` over K characters has, from the shapes
    ``Network.init_params`` gives them (G: the cell's gates, 1 rnn, 3 gru, 4 lstm): per layer U
    (G m x K, above the first G m x m), W (G m x m) and b (G m); then V (K x m) and c (K)."""
    net = make_network(cfg, K, backend="numpy")  # its shapes only: nothing is allocated
    Gm, m = net.G * net.m, net.m
    return sum(Gm * ((K if layer == 1 else m) + m + 1) for layer in range(1, net.layers + 1)) + K * m + K


def check_memory(cfg: Config, K: int) -> None:
    """A ConfigError, before anything is allocated, when the run cannot fit in memory: a lower
    bound of what it needs (the trainer keeps at least four vectors of ``n_parameters``:
    parameters, gradient, best parameters, optimizer state) against ``available_memory``."""
    free = available_memory()
    n_params = n_parameters(cfg, K)
    need = 4 * n_params * np.dtype(cfg.dtype).itemsize
    if free is not None and need > free:
        raise ConfigError(f"m = {cfg.m:,} needs at least {need / 2**30:,.1f} GiB ({n_params:,} parameters), "
                          f"more than the {free / 2**30:,.1f} GiB free: choose a smaller --m")


# --- the trainer -----------------------------------------------------------------------------

def _tell(call, *args) -> None:
    """Output (a sample, a held-out loss, the progress bar) to a terminal or pipe that may be gone (a
    hang-up, a closed pipe): the run goes on and saves all the same."""
    try:
        call(*args)
    except OSError:
        pass


class _Interrupt:
    """Turns Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed terminal or ssh session) into a flag the
    loop checks between updates and that sampling and held-out evaluation check as they go; a
    second signal while the run saves is recorded too, so it never interrupts the save."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass
        return self

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """A run: its corpus, model, parameters, optimizer and walk state, and its directory."""

    _interrupt: _Interrupt | None = None  # while run() runs: the stop requests
    _shown_sample: int | None = None  # a resumed run: the update of the sample its last part showed
    _smooth: float  # the smooth loss of the update being made (``_measured``)
    verdict: Verdict | None = None  # a resumed run: what rundir.verdict said of it

    def __init__(self, cfg: Config, out: Path, corpus: Corpus | None = None) -> None:
        cfg.validate()
        self.cfg, self.out = cfg, Path(out)
        self.corpus = corpus if corpus is not None else load_corpus(cfg.corpus, cfg.seq_length)
        if self.corpus.is_tweets and cfg.batch_size > 1:
            raise ValueError("batch_size > 1 is not supported for tweet corpora (tweets differ in length)")
        check_memory(cfg, self.corpus.K)
        self.model = make_network(cfg, self.corpus.K)
        self.backend = self.model.backend
        if self.backend == "numba":
            from .model import kernels
            kernels.set_blas_threads(cfg.blas_threads)  # the process's pool: the last run started sets it
        self.ids = self.corpus.ids
        self.n_train, self.val_starts, self.val_ends = split(self.corpus, cfg.val_fraction)
        if self.n_train < cfg.seq_length + 1:
            raise ValueError(f"only {self.n_train} training characters, fewer than seq_length + 1")
        self.seg_starts, self.seg_ends = segments(self.corpus, cfg, self.n_train)
        self.keep_tail = cfg.order == "chunks" or self.corpus.is_tweets
        self.opt = make_optimizer(cfg.optimizer, cfg.eta, fused=self.backend == "numba")
        self.rng = np.random.default_rng(cfg.seed)
        params = self.model.init_params(self.rng, cfg.sig, cfg.init, cfg.init_range)
        self.w, self.params = flatten(params, dtype=self.cfg.dtype)
        self.dw, self.grads = flatten(params, dtype=self.cfg.dtype)
        self.opt_state = self.opt.init_state(self.w)
        self.best_w = self.w.copy()
        self.best_state = self.model.zero_state(self.params)  # stream 0's state at the best update
        self.last_state = self.best_state.copy()  # stream 0's state after the last update (an LSTM's c too)
        self.best_loss, self.best_update = math.inf, 0
        self.updates = self.epoch = self.group = self.offset = 0
        self.plan = make_plan(self.seg_starts, self.seg_ends, cfg, self.rng)
        self.state = self.model.zero_state(self.params, cfg.batch_size)
        self.smooth_loss: float | None = None
        self.seconds = 0.0
        self.loss_hist: list[float] = []
        self.smooth_hist: list[float] = []
        self.time_hist: list[float] = []
        self.epoch_starts: list[int] = [0]
        self.val_hist: list[tuple[int, float]] = []
        self.samples: list[dict] = []
        self.diverged = False

    # walk ------------------------------------------------------------------------------------
    def updates_per_epoch(self) -> int:
        """The updates of the current epoch (``plan_updates`` of its plan)."""
        return plan_updates(self.plan, self.cfg.seq_length, self.keep_tail)

    def total_updates(self) -> int:
        if self.cfg.n_updates is not None:
            return self.cfg.n_updates
        return self.cfg.n_epochs * self.updates_per_epoch()

    def _batch(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y of shape (T, B) at the current group and offset."""
        group = self.plan[self.group]
        length = int(group[0, 1] - group[0, 0])
        T = min(self.cfg.seq_length, length - 1 - self.offset)
        pos = group[:, 0][None, :] + self.offset + np.arange(T)[:, None]
        return self.ids[pos], self.ids[pos + 1]

    def _advance(self) -> None:
        """Move the pointer on by seq_length; a new group resets h, a new epoch makes a new plan."""
        L = self.cfg.seq_length
        self.offset += L
        length = int(self.plan[self.group, 0, 1] - self.plan[self.group, 0, 0])
        if steps_in(length, L, self.keep_tail) > self.offset // L:
            return
        self.offset = 0
        self.group += 1
        self.state = self.model.zero_state(self.params, self.cfg.batch_size)
        if self.group == len(self.plan):
            self.group = 0
            self.epoch += 1
            self.opt.eta = self.cfg.eta_after(self.epoch)
            self.epoch_starts.append(self.updates)
            self.plan = make_plan(self.seg_starts, self.seg_ends, self.cfg, self.rng)

    def done(self) -> bool:
        if self.cfg.max_seconds is not None and self.seconds >= self.cfg.max_seconds:
            return True
        if self.cfg.n_updates is not None:
            return self.updates >= self.cfg.n_updates
        return self.epoch >= self.cfg.n_epochs

    # one update ------------------------------------------------------------------------------
    def train_step(self) -> float:
        """Loss, gradients, clipping and the optimizer update on one batch; h carried."""
        x, y = self._batch()
        h0 = self.state[0] if self.cfg.batch_size == 1 else self.state
        loss, _, h_last = self.model.loss_and_grads(self.params, x[:, 0] if x.shape[1] == 1 else x,
                                                    y[:, 0] if y.shape[1] == 1 else y, h0, self.grads, self.rng)
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at update {self.updates + 1}: the run diverged (try a "
                                f"smaller eta); its best parameters are saved as its last in {self.out}")
        self._measured(loss, h_last)  # before the step: the parameters this loss was measured with
        self.opt.step(self.w, self.dw, self.opt_state, self.cfg.clip)
        self.state = h_last.reshape(self.state.shape)
        self.last_state = self.state[0]  # kept when _advance resets the state for a new epoch or chunk
        return loss

    def _stopping(self) -> bool:
        """True once a stop (Ctrl-C, SIGTERM, SIGHUP) is requested while run() runs."""
        return self._interrupt is not None and self._interrupt.requested

    def sample_now(self) -> dict | None:
        """A sample from stream 0's current state with the current input character; for tweets,
        a new tweet (h = 0, input EOT) up to its end-of-tweet character. None when a stop is
        requested meanwhile: the rng is left as before, so a resumed run draws the same sample."""
        rng_state = self.rng.bit_generator.state
        if self.corpus.is_tweets:
            text = generate(self.model, self.params, self.corpus, self.cfg.sample_length, self.rng)
        else:
            x0 = int(self.ids[self.plan[self.group, 0, 0] + self.offset])
            ids = synthesize(self.model, self.params, self.state[0], x0, self.cfg.sample_length, self.rng,
                             cancelled=self._stopping)
            text = self.corpus.decode(ids)
        if self._stopping():
            self.rng.bit_generator.state = rng_state
            return None
        return {"update": self.updates, "smooth_loss": self.smooth_loss, "text": text}

    def validate_now(self) -> float | None:
        """The held-out loss per character. Plain text: cut into ``held_out_streams`` contiguous
        streams evaluated together, each from stream 0's state after the last update and carried
        through its part (a model trained with h carried through the text may predict badly from
        h = 0, a state it rarely trained from); tweets: h = 0 per tweet, tweets of one length
        together. None when a stop is requested meanwhile; a TrainingError when it is not finite (the
        parameters have diverged: no overflow warning is shown, the run says so)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if self.corpus.is_tweets:
                val = evaluate(self.model, self.params, self.ids, self.val_starts, self.val_ends, stop=self._stopping)
            else:
                n_chars = int(np.sum(self.val_ends - self.val_starts))
                val = evaluate(self.model, self.params, self.ids, self.val_starts, self.val_ends,
                               state0=self.last_state, streams=held_out_streams(n_chars), stop=self._stopping)
        if val is not None and not math.isfinite(val):
            raise TrainingError(f"the held-out loss became {val} at update {self.updates:,}: the run diverged (try a "
                                f"smaller eta); its best parameters are saved as its last in {self.out}")
        return val

    # the record: what a run keeps, the same however often it was stopped and resumed ----------
    @property
    def has_val(self) -> bool:
        return len(self.val_starts) > 0

    def _measured(self, loss: float, h_last: np.ndarray) -> None:
        """The loss of the update being made, before its step: the smooth loss it records, and
        (without held-out text) the parameters it was measured with (those of ``self.updates``
        updates) and the state they end the batch in as the best, when the smooth loss is the
        lowest yet."""
        self._smooth = loss if self.smooth_loss is None else 0.999 * self.smooth_loss + 0.001 * loss
        if not self.has_val and self._smooth < self.best_loss:
            self.best_loss, self.best_update = self._smooth, self.updates
            np.copyto(self.best_w, self.w)
            np.copyto(self.best_state, np.reshape(h_last, self.state.shape)[0])

    def _sample_due(self) -> bool:
        """A sample is due at this update (every sample_every, from update 0) and not yet drawn."""
        every = self.cfg.sample_every
        return bool(every) and self.updates % every == 0 and (not self.samples or
                                                             self.samples[-1]["update"] != self.updates)

    def _evaluation_due(self) -> bool:
        """A held-out evaluation is due at this update (every val_every) and not yet made."""
        every = self.cfg.val_every
        return self.has_val and self.updates > 0 and self.updates % every == 0 and \
            (not self.val_hist or self.val_hist[-1][0] != self.updates)

    def _record_validation(self, on_validate) -> float | None:
        """Evaluate the held-out text and record it (the best when lowest); None when stopped."""
        val = self.validate_now()
        if val is None:
            return None
        self.val_hist.append((self.updates, val))
        if on_validate:
            _tell(on_validate, self.updates, val)
        if val < self.best_loss:
            self._record_best(val)
        return val

    def _record_best(self, loss: float) -> None:
        self.best_loss, self.best_update = loss, self.updates
        np.copyto(self.best_w, self.w)
        np.copyto(self.best_state, self.last_state)

    def _show(self, sample: dict, on_sample) -> None:
        if on_sample and sample["update"] != self._shown_sample:
            _tell(on_sample, sample)

    def _end(self, on_sample, on_validate) -> None:
        """Off the record, where the run ends (a resumed or extended run drops them, see resume):
        the sample of the state it ends in, its held-out loss and, while no scheduled evaluation
        has chosen one, its last parameters as its best. Each is skipped when a stop is requested."""
        if self.cfg.sample_every and (not self.samples or self.samples[-1]["update"] != self.updates):
            rng_state = self.rng.bit_generator.state  # a resumed run must draw what this one would have
            sample = self.sample_now()
            self.rng.bit_generator.state = rng_state
            if sample is not None:
                self.samples.append({**sample, "final": True})
                self._show(sample, on_sample)
        if self.has_val and (not self.val_hist or self.val_hist[-1][0] != self.updates):
            val = self.validate_now()
            if val is not None:
                self.val_hist.append((self.updates, val))
                if on_validate:
                    _tell(on_validate, self.updates, val)
                if self.best_loss == math.inf:
                    self._record_best(val)

    # the loop --------------------------------------------------------------------------------
    def run(self, progress: bool = True, on_sample=None, on_validate=None) -> dict:
        """Train until done, or until Ctrl-C, SIGTERM or SIGHUP (then it saves and says
        "interrupted"); write the run directory; return the summary. A diverging run (the loss not
        finite, or the smooth loss above DIVERGENCE times its first value) saves its best
        parameters as its last and raises TrainingError.

        What a run records does not depend on where it was stopped and resumed: samples every
        sample_every updates, held-out evaluations every val_every updates (the best parameters
        those of the lowest held-out loss among them; without held-out text those the lowest smooth
        loss was measured with), and off the record where it ends (``_end``)."""
        from tqdm import tqdm

        from .rundir import write_provenance

        self.write_config()
        write_provenance(self.out)
        t0 = time.perf_counter() - self.seconds
        with _Interrupt() as interrupt:  # also over the final save: a second Ctrl-C cannot break it
            self._interrupt = interrupt
            try:
                self.write_summary("running")  # until the run ends: a killed run never looks finished
                bar = tqdm(total=self.total_updates(), initial=self.updates, disable=not progress,
                           file=sys.stderr, unit="upd", mininterval=1.0, dynamic_ncols=True)
                try:
                    self._walk(bar, t0, on_sample, on_validate)
                except TrainingError as err:  # a loss or held-out loss not finite, or the smooth loss risen
                    self._diverged(str(err), time.perf_counter() - t0, bar)
                status = "interrupted" if interrupt.requested else "finished"
                self.seconds = time.perf_counter() - t0
                self.save()
                signal_name = signal.Signals(interrupt.signum).name if interrupt.requested else None
                return self.write_summary(status, signal_name)
            finally:
                self._interrupt = None

    def _walk(self, bar, t0: float, on_sample, on_validate) -> None:
        """The updates (with their samples, evaluations and checkpoints) until done or a stop is
        requested, then what ``_end`` records; a TrainingError when the run diverges."""
        next_save = 0.0
        if self._evaluation_due():  # one a stop cut short
            self._record_validation(on_validate)
        while not self.done() and not self._stopping():
            if self._sample_due():
                sample = self.sample_now()
                if sample is None:
                    break
                self.samples.append(sample)
                self._show(sample, on_sample)
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging step: said below
                loss = self.train_step()
            start = self.smooth_hist[0] if self.smooth_hist else loss
            if self._smooth > DIVERGENCE * start:
                raise TrainingError(f"the smooth loss rose to {self._smooth:.4g} at update {self.updates + 1}, "
                                    f"more than {DIVERGENCE:g} times its first value {start:.4g}: the run "
                                    f"diverged (try a smaller eta); its best parameters are saved as its last "
                                    f"in {self.out}")
            self.updates += 1
            self.smooth_loss = self._smooth
            self.seconds = time.perf_counter() - t0
            self.loss_hist.append(loss)
            self.smooth_hist.append(self.smooth_loss)
            self.time_hist.append(self.seconds)
            self._advance()
            if self._evaluation_due():
                self._record_validation(on_validate)
            if self.updates % self.cfg.checkpoint_every == 0 and self.seconds >= next_save:
                spent = time.perf_counter()
                self.save()
                self.write_summary("running")  # where the checkpoint stands, for `a4lib runs`
                spent = time.perf_counter() - spent
                # a long history makes each save slower: keep saving under ~10 % of the time
                next_save = self.seconds + 9 * spent
            _tell(bar.update, 1)
            if self.updates % 200 == 0:
                _tell(bar.set_postfix, {"smooth_loss": f"{self.smooth_loss:.3f}"}, False)
        _tell(bar.close)
        if not self._stopping():
            self._end(on_sample, on_validate)

    def _diverged(self, message: str, seconds: float, bar) -> None:
        """Keep the best parameters (and their state) as the last, save, say "diverged", raise."""
        _tell(bar.close)
        self.seconds = seconds
        self.diverged = True
        np.copyto(self.w, self.best_w)
        self.state[...] = 0.0
        self.last_state = self.best_state.copy()
        for v in self.opt_state.values():
            v[~np.isfinite(v)] = 0.0
        self.save()
        self.write_summary("diverged")
        raise TrainingError(message) from None

    # files -----------------------------------------------------------------------------------
    def write_config(self) -> None:
        ckpt.write_json(self.out / "config.json", {
            **self.cfg.to_dict(),
            "corpus": self.corpus.name,
            "corpus_sha256": self.corpus.sha256,
            "K": self.corpus.K,
            "backend_used": self.backend,
            "format": RUN_FORMAT,
        })

    def _corpus_path(self) -> str | None:
        """The corpus file's absolute path (a resume from another folder finds it there)."""
        spec = self.cfg.corpus
        return str(Path(spec).resolve()) if spec is not None and spec != BUILTIN else None

    def history_arrays(self) -> dict[str, np.ndarray]:
        val = np.array(self.val_hist, dtype=np.float64).reshape(-1, 2)
        return {
            "loss": np.array(self.loss_hist),
            "smooth_loss": np.array(self.smooth_hist),
            "seconds": np.array(self.time_hist),
            "epoch_starts": np.array(self.epoch_starts, dtype=np.int64),
            "val_update": val[:, 0].astype(np.int64),
            "val_loss": val[:, 1],
        }

    def save(self) -> None:
        """checkpoint.npz (all a resume needs), history.npz and samples.json."""
        history = self.history_arrays()
        arrays = {"w": self.w, "best_w": self.best_w, "state": self.state, "best_state": self.best_state,
                  "last_state": self.last_state, "plan": self.plan,
                  **{f"opt_{k}": v for k, v in self.opt_state.items()}, **history}
        meta = {
            "format": RUN_FORMAT,
            "config": self.cfg.to_dict(),
            "corpus": {"name": self.corpus.name, "sha256": self.corpus.sha256, "chars": self.corpus.chars,
                       "is_tweets": self.corpus.is_tweets, "path": self._corpus_path()},
            "param_shapes": {k: list(v.shape) for k, v in self.params.items()},
            "updates": self.updates, "epoch": self.epoch, "group": self.group, "offset": self.offset,
            "smooth_loss": self.smooth_loss, "best_loss": self.best_loss if self.best_loss < math.inf else None,
            "best_update": self.best_update, "seconds": self.seconds,
            "rng": self.rng.bit_generator.state, "samples": self.samples, "diverged": self.diverged,
        }
        ckpt.save_arrays(self.out / ckpt.CHECKPOINT, arrays, meta)
        ckpt.save_arrays(self.out / "history.npz", history)
        ckpt.write_json(self.out / "samples.json", self.samples)

    def write_summary(self, status: str, signal_name: str | None = None) -> dict:
        """summary.json: status (running, finished, interrupted, diverged), where the run stands, its losses.

        best_update is the number of updates the best parameters have had: with held-out text,
        those of the update where the lowest held-out loss was measured; without, those the lowest
        smooth loss was measured with (its update is best_update + 1; 0: the initial parameters)."""
        epochs_done = self.epoch + (self.updates - self.epoch_starts[-1]) / max(1, self.updates_per_epoch())
        summary = {
            "status": status,
            "signal": signal_name,
            "format": RUN_FORMAT,
            "model": self.cfg.model,
            "backend": self.backend,
            "updates": self.updates,
            "epochs": round(epochs_done, 4),
            "best_smooth_loss": min(self.smooth_hist, default=None),
            "best_val_loss": self.best_loss if self.val_hist and self.best_loss < math.inf else None,
            "best_update": self.best_update,
            "final_smooth_loss": self.smooth_loss,
            "final_val_loss": self.val_hist[-1][1] if self.val_hist else None,
            "seconds": round(self.seconds, 3),
            "updates_per_s": round(self.updates / self.seconds, 1) if self.seconds else None,
            "chars_per_update": self.cfg.seq_length * self.cfg.batch_size,
            "n_train_chars": self.n_train,
            "corpus": {**self.corpus.stats(self.cfg.seq_length)},
        }
        ckpt.write_json(self.out / "summary.json", summary)
        return summary

    @classmethod
    def resume(cls, out: Path, cfg: Config | None = None) -> "Trainer":
        """The trainer exactly as its last checkpoint left it, as ``rundir.verdict`` allows.

        ``cfg`` (default: the run's own; ``resume_config`` makes it from what is given anew) may
        differ from the run's settings only in where to stop (n_updates, n_epochs, max_seconds) and
        in the corpus path, which must hold the same text (same sha256). A ResumeError (one line) for
        any other verdict than resume, extend or done (a finished run: ``verdict`` says so); a
        CheckpointError for a checkpoint that does not hold a whole run.
        """
        from .rundir import RunDirError, checkpoint_texts, run_text, verdict

        path = Path(out) / ckpt.CHECKPOINT
        if not path.is_file():
            raise ResumeError(f"{out}: no run to resume (no {ckpt.CHECKPOINT})")
        meta = ckpt.check_meta(ckpt.load_meta(path), path)
        own = Config.from_dict(meta["config"])
        cfg = own if cfg is None else cfg
        try:
            corpus = run_text(out, meta["corpus"].get("sha256"), checkpoint_texts(meta),
                              cfg.corpus if cfg.corpus != own.corpus else None)
        except RunDirError as err:
            raise ResumeError(str(err)) from None
        said = verdict(out, cfg, corpus, check_lock=False)
        if said.kind == "conflict" or said.kind == "done" and said.status == "diverged":
            raise ResumeError(said.reason)
        if said.kind == "new":
            raise ResumeError(f"{out}: no run to resume ({said.reason})")
        given = {"corpus": cfg.corpus if cfg.corpus is not None else own.corpus, **{k: getattr(cfg, k) for k in BUDGET}}
        self = cls(_resumed(own, given), out, corpus)
        self.verdict = said
        arrays, meta = ckpt.load_arrays(path)
        try:
            self._restore(arrays, meta)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise ckpt.CheckpointError(f"{path}: the checkpoint does not hold a whole run ({type(err).__name__}: "
                                       f"{str(err)[:120]})") from None
        return self

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """The state of a checkpoint (its metadata checked by ``check_meta``), each array checked
        against the run it belongs to (ValueError naming what does not fit). What a run keeps off
        the record where it ended (a final sample, a held-out evaluation off its schedule, a best
        chosen without one) is dropped: the resumed run makes them again where its schedule says."""
        def exactly(key: str, like: np.ndarray) -> np.ndarray:
            a = arrays[key]
            if a.shape != like.shape or a.dtype.kind != like.dtype.kind:
                raise ValueError(f"{key} is {a.dtype} {a.shape}, not {like.dtype} {like.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{key} is not finite")
            return a

        def vector(key: str, kind: str, n: int | None = None) -> list:
            a = arrays[key]
            if a.ndim != 1 or a.dtype.kind not in kind or (n is not None and len(a) != n):
                raise ValueError(f"{key} is {a.dtype} {a.shape}, not a vector of {n if n is not None else ''} numbers")
            return a.tolist()

        if meta["corpus"]["chars"] != self.corpus.chars:
            raise ValueError(f"its vocabulary ({len(meta['corpus']['chars'])} characters) is not its text's "
                             f"({self.corpus.K})")
        if meta["param_shapes"] != {k: list(v.shape) for k, v in self.params.items()}:
            raise ValueError("its parameter shapes are not those of its network")
        self.w[...] = exactly("w", self.w)
        self.best_w[...] = exactly("best_w", self.w)
        self.best_state[...] = exactly("best_state", self.best_state)
        self.last_state = exactly("last_state", self.best_state).copy()
        for k in self.opt_state:
            self.opt_state[k][...] = exactly(f"opt_{k}", self.opt_state[k])
        self.state = exactly("state", self.state).copy()
        plan = arrays["plan"]
        B = self.cfg.batch_size
        if plan.ndim != 3 or plan.shape[1:] != (B, 2) or plan.dtype.kind not in "iu" or len(plan) == 0 or \
                (plan[..., 0] < 0).any() or (plan[..., 1] > self.n_train).any() or \
                (plan[..., 1] - plan[..., 0] < 2).any():
            raise ValueError(f"plan ({plan.dtype} {plan.shape}) is not an epoch of this text's segments")
        self.plan = plan.astype(np.int64)
        for k in ("updates", "epoch", "group", "offset", "best_update"):
            setattr(self, k, meta[k])
        if self.group >= len(self.plan):
            raise ValueError(f"group {self.group} is past the plan's {len(self.plan)} groups")
        length = int(self.plan[self.group, 0, 1] - self.plan[self.group, 0, 0])
        if self.offset % self.cfg.seq_length or steps_in(length, self.cfg.seq_length, self.keep_tail) <= \
                self.offset // self.cfg.seq_length:
            raise ValueError(f"offset {self.offset} is not a position in its segment of {length} characters")
        self.loss_hist = vector("loss", "f", self.updates)
        self.smooth_hist = vector("smooth_loss", "f", self.updates)
        self.time_hist = vector("seconds", "f", self.updates)
        self.epoch_starts = [int(u) for u in vector("epoch_starts", "iu")]
        if len(self.epoch_starts) != self.epoch + 1:
            raise ValueError(f"epoch_starts has {len(self.epoch_starts)} entries for epoch {self.epoch}")
        val_updates = vector("val_update", "iu")
        val = list(zip(val_updates, vector("val_loss", "f", len(val_updates))))
        self.val_hist = [(u, v) for u, v in val if u % self.cfg.val_every == 0]  # off-schedule: off the record
        final = [s for s in meta["samples"] if s.get("final")]
        self.samples = [s for s in meta["samples"] if not s.get("final")]  # drawn off the record
        self._shown_sample = final[-1]["update"] if final else None  # shown already: not again
        self.smooth_loss, self.seconds = meta["smooth_loss"], meta["seconds"]
        self.best_loss = math.inf if meta["best_loss"] is None else meta["best_loss"]
        if self.has_val and self.best_update not in {u for u, _ in self.val_hist}:
            self.best_loss = math.inf  # a best chosen where the run ended, without a scheduled evaluation
        self.rng.bit_generator.state = meta["rng"]
        self.opt.eta = self.cfg.eta_after(self.epoch)


def resume_config(out: str | Path, changes: dict | None = None) -> Config:
    """The settings the run in ``out`` resumes with: its own, with ``changes`` (the settings given
    anew: a4lib train --resume's flags, a notebook's) as ``_resumed`` combines them. A ResumeError
    when ``out`` holds no checkpoint, a CheckpointError for one that is not a run's."""
    path = Path(out) / ckpt.CHECKPOINT
    if not path.is_file():
        raise ResumeError(f"{out}: no run to resume (no {ckpt.CHECKPOINT})")
    return _resumed(Config.from_dict(ckpt.check_meta(ckpt.load_meta(path), path)["config"]), changes or {})


def _resumed(own: Config, changes: dict) -> Config:
    """The run's settings ``own`` with ``changes``: a new target (n_updates or n_epochs) replaces the
    old target, and the old time budget too unless max_seconds is given with it. Whether what
    changes may change is ``rundir.verdict``'s to say (the budget and the corpus path only)."""
    changes = dict(changes)
    if ("n_updates" in changes or "n_epochs" in changes) and "max_seconds" not in changes:
        changes["max_seconds"] = None
    if "n_epochs" in changes:
        changes.setdefault("n_updates", None)
    return own.replace(**changes)


def train(cfg: Config, out: Path, resume: bool = False, progress: bool = True,
          on_sample=None, on_validate=None) -> dict:
    """Train a new run into directory ``out``, or with ``resume`` continue the run there to the
    budget of ``cfg`` (see ``Trainer.resume``); the summary dict. What may be done with ``out`` is
    ``rundir.verdict``'s: a new run only where it says "new"; a run it says is done is left as it
    is (its summary returned).

    The directory is locked while the run trains: a second training into it is refused.
    """
    from .rundir import RunDirError, RunLock, clean_temporaries, read_summary, verdict

    out = Path(out)
    if str(out).strip() in ("", "."):
        raise RunDirError("name a run directory of its own (not the working directory)")
    if resume and not (out / ckpt.CHECKPOINT).is_file():
        raise ResumeError(f"{out}: no run to resume (no {ckpt.CHECKPOINT})")
    trainer = None if resume else Trainer(cfg.validate(), out)  # bad settings: nothing is created
    with RunLock(out):
        clean_temporaries(out)
        if resume:
            trainer = Trainer.resume(out, cfg)
            if trainer.verdict.kind == "done":
                return read_summary(out)
        else:
            said = verdict(out, cfg, trainer.corpus, check_lock=False)
            if said.kind != "new":
                raise RunDirError(f"{out} already holds a run ({said.reason}): resume it, or choose another run "
                                  f"directory")
        return trainer.run(progress=progress, on_sample=on_sample, on_validate=on_validate)
