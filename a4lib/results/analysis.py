"""What the runs measured, as numbers: the notebooks turn them into sentences, tables and figures.

Nothing here words or formats a result. Each function reads a run (``a4lib.rundir.Run``), its
history or a check's results and returns numbers or a small dataclass: a run's smooth-loss
summary, the verdict of the gradient check, a held-out run's best and gap, which of several
runs won and by how much, the share of a passage's words that occur in the corpus, ...

Every loss is in nats. A run's smooth loss is summed over the seq_length characters of an
update (and averaged over the B streams); its held-out loss (``val_loss``) is already a mean per
character.
"""
from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --- losses and seconds -------------------------------------------------------------------------

def per_char(loss, seq_length: int):
    """A loss summed over the seq_length characters of an update, per character."""
    if seq_length < 1:
        raise ValueError(f"seq_length must be >= 1, got {seq_length}")
    return np.asarray(loss, dtype=np.float64) / seq_length if np.ndim(loss) else float(loss) / seq_length


def bits(nats):
    """A loss in nats per character as bits per character (None stays None)."""
    if nats is None:
        return None
    return np.asarray(nats, dtype=np.float64) / math.log(2) if np.ndim(nats) else float(nats) / math.log(2)


def seconds_at(history: Mapping, updates) -> np.ndarray:
    """Training seconds when each of ``updates`` had been done (0 for update 0).

    ``history["seconds"][u - 1]`` is the time after update u; a held-out evaluation made after
    update u is counted in the time of update u + 1 (it is in every later entry).
    """
    seconds = np.asarray(history["seconds"], dtype=np.float64)
    u = np.asarray(updates, dtype=np.int64)
    if np.any(u < 0) or np.any(u > len(seconds)):
        raise ValueError(f"updates must be within 0..{len(seconds)}")
    return np.concatenate([[0.0], seconds])[u]


@dataclass
class HeldOut:
    """A run's held-out losses (nats per character) by update and by training second."""

    updates: np.ndarray
    seconds: np.ndarray
    loss: np.ndarray

    @property
    def best(self) -> float | None:
        return float(self.loss.min()) if len(self.loss) else None

    @property
    def best_index(self) -> int | None:
        return int(np.argmin(self.loss)) if len(self.loss) else None

    @property
    def final(self) -> float | None:
        return float(self.loss[-1]) if len(self.loss) else None

    def first_below(self, level: float) -> float | None:
        """The training second of the first evaluation below ``level`` (None: never)."""
        below = np.flatnonzero(self.loss < level)
        return float(self.seconds[below[0]]) if len(below) else None


def held_out(history: Mapping) -> HeldOut:
    """The held-out losses of a history (``val_update``, ``val_loss``), with their seconds."""
    u = np.asarray(history.get("val_update", []), dtype=np.int64)
    loss = np.asarray(history.get("val_loss", []), dtype=np.float64)
    return HeldOut(updates=u, seconds=seconds_at(history, u) if len(u) else np.zeros(0), loss=loss)


def evaluation_share(history: Mapping) -> float | None:
    """About what share of a run's training seconds went into its held-out evaluations.

    An evaluation made after update u shows as a longer step u + 1 (``seconds[u] - seconds[u - 1]``);
    its time is that step's excess over the median step. The evaluation after the last update is
    not in the history. None without evaluations inside the history.
    """
    seconds = np.asarray(history.get("seconds", []), dtype=np.float64)
    u = np.asarray(history.get("val_update", []), dtype=np.int64)
    u = u[(u >= 1) & (u < len(seconds))]
    if len(u) == 0 or seconds[-1] <= 0:
        return None
    steps = np.diff(np.concatenate([[0.0], seconds]))
    excess = np.clip(steps[u] - float(np.median(steps)), 0.0, None)  # steps[u] is the step of update u + 1
    return float(excess.sum() / seconds[-1])


def chars_seen(config: Mapping, updates: int) -> int:
    """Training characters processed (predicted) by ``updates`` updates of a run (at most
    seq_length per stream and update: chunk and tweet tails are shorter)."""
    return int(updates) * int(config.get("seq_length", 25)) * int(config.get("batch_size", 1))


# --- one training run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SmoothLoss:
    """A run's smooth loss (summed over seq_length characters): first, lowest, final."""

    updates: int
    epochs: float
    first: float | None
    best: float | None
    best_update: int | None  # the update of the best parameters (by held-out loss when there is one)
    lowest_update: int | None  # the update of the lowest smooth loss
    final: float | None
    seq_length: int
    chance: float  # seq_length · ln K: the loss of guessing every character uniformly
    early_fall: float | None  # the share of the fall from the first to the lowest smooth loss made in the
    #                           first EARLY share of the updates
    epoch_means: tuple[float, ...]  # the mean smooth loss of each epoch (a last one under 10 % of an epoch left out)

    @property
    def best_per_char(self) -> float | None:
        return None if self.best is None else self.best / self.seq_length

    @property
    def epochs_fall(self) -> bool:
        """Each epoch's mean smooth loss is below the one before (False with fewer than two)."""
        return len(self.epoch_means) > 1 and all(b < a for a, b in zip(self.epoch_means, self.epoch_means[1:]))


EARLY = 0.1  # the first tenth of a run's updates


def smooth_loss(run) -> SmoothLoss:
    """The smooth-loss summary of a run (``a4lib.rundir.Run``)."""
    s, smooth = run.summary, np.asarray(run.history.get("smooth_loss", []), dtype=np.float64)
    updates = int(s.get("updates", len(smooth)))
    early = None
    if len(smooth) > 1 and smooth[0] > smooth.min():
        early = float((smooth[0] - smooth[: max(1, int(EARLY * len(smooth)))].min()) / (smooth[0] - smooth.min()))
    bounds = [b for b in run.epoch_starts if 0 <= b < len(smooth)] + [len(smooth)]
    per_epoch = max((b - a for a, b in zip(bounds, bounds[1:])), default=0)
    means = tuple(float(smooth[a:b].mean()) for a, b in zip(bounds, bounds[1:]) if b - a >= max(1, 0.1 * per_epoch))
    return SmoothLoss(
        updates=updates, epochs=float(s.get("epochs") or 0.0),
        first=float(smooth[0]) if len(smooth) else None,
        best=float(smooth.min()) if len(smooth) else None,
        best_update=s.get("best_update"),
        lowest_update=int(np.argmin(smooth)) + 1 if len(smooth) else None,
        final=float(smooth[-1]) if len(smooth) else None,
        seq_length=int(run.config.get("seq_length", 25)),
        chance=int(run.config.get("seq_length", 25)) * math.log(max(1, int(run.corpus.get("K", 1)))),
        early_fall=early, epoch_means=means)


def corpus_source(run) -> str | None:
    """Where a run's corpus can be read again, from any folder: the absolute path its checkpoint
    recorded, else its config's corpus (the built-in text, or None for the default)."""
    from ..checkpoint import CHECKPOINT, load_meta

    meta = load_meta(run.path / CHECKPOINT) if (run.path / CHECKPOINT).is_file() else {}
    return meta.get("corpus", {}).get("path") or run.config.get("corpus")


def updates_per_epoch(run) -> int:
    """How many updates one epoch of a run makes (``a4lib.train.updates_per_epoch`` on its corpus)."""
    from ..config import Config
    from ..corpus import load_corpus
    from ..train import updates_per_epoch as per_epoch

    cfg = Config.from_dict(run.config)
    return per_epoch(load_corpus(corpus_source(run), cfg.seq_length), cfg)


def chosen_samples(samples: Sequence[Mapping], until: int | None = None, every: int | None = None) -> list[Mapping]:
    """The samples up to update ``until`` whose update is a multiple of ``every`` (None: all)."""
    return [s for s in samples if (until is None or s["update"] <= until) and (every is None or s["update"] % every == 0)]


def pick_stages(samples: Sequence[Mapping], n: int = 3) -> list[Mapping]:
    """``n`` samples spread over a run: the first, the last, and those nearest to evenly spaced
    updates in between (each sample once)."""
    if len(samples) <= n:
        return list(samples)
    ordered = sorted(samples, key=lambda s: s["update"])
    first, last = ordered[0]["update"], ordered[-1]["update"]
    chosen: list[Mapping] = []
    for k in range(n):
        target = first + (last - first) * k / (n - 1)
        chosen.append(min((s for s in ordered if s not in chosen), key=lambda s: abs(s["update"] - target)))
    return sorted(chosen, key=lambda s: s["update"])


@dataclass(frozen=True)
class Setting:
    """One training setting of a run: its value, its default and what it means (from Config)."""

    name: str
    value: object
    default: object
    help: str

    @property
    def changed(self) -> bool:
        return self.value != self.default


def settings(config: Mapping) -> list[Setting]:
    """Every Config setting of a run's config.json, in Config's order (the corpus left out: it
    is named with the data)."""
    from ..config import FIELDS, defaults

    default = defaults()
    return [Setting(name, config.get(name), default[name], f.metadata["help"]) for name, f in FIELDS.items()
            if name != "corpus" and name in config]


# --- the gradient check -------------------------------------------------------------------------

@dataclass(frozen=True)
class GradcheckSummary:
    """What the gradient check (``a4lib gradcheck --json``) was run with and found."""

    ok: bool
    worst: float  # the largest relative error over every array and every m
    tol: float
    h: float
    seq_length: int
    corpus: str
    K: int
    model: str
    ms: tuple[int, ...]
    sigs: tuple[float, ...]
    floors: tuple[float, ...]
    seconds: tuple[float, ...]


def gradcheck_summary(results: Sequence[Mapping]) -> GradcheckSummary | None:
    """The summary of the check results (one per m); None without results."""
    if not results:
        return None
    r0 = results[0]
    return GradcheckSummary(
        ok=all(r["ok"] for r in results),
        worst=max(row["max_rel"] for r in results for row in r["table"].values()),
        tol=r0["tol"], h=r0["h"], seq_length=r0["seq_length"], corpus=r0["corpus"], K=r0["K"],
        model=r0.get("model", "rnn"), ms=tuple(r["m"] for r in results), sigs=tuple(r["sig"] for r in results),
        floors=tuple(r.get("floor", 1e-8) for r in results), seconds=tuple(r["seconds"] for r in results))


def gradcheck_rows(result: Mapping) -> list[tuple[str, float, float, float]]:
    """One check's rows: parameter, max and mean relative error, max absolute error."""
    return [(name, row["max_rel"], row["mean_rel"], row["max_abs"]) for name, row in result["table"].items()]


# --- comparing runs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Ranking:
    """Labels ordered by a value, lowest first (a loss: the first is the winner)."""

    order: tuple[tuple[str, float], ...]

    @property
    def winner(self) -> str:
        return self.order[0][0]

    @property
    def best(self) -> float:
        return self.order[0][1]

    @property
    def runner_up(self) -> float | None:
        return self.order[1][1] if len(self.order) > 1 else None

    @property
    def margin(self) -> float | None:
        """How much lower the winner is than the second."""
        return None if self.runner_up is None else self.runner_up - self.best

    @property
    def margin_share(self) -> float | None:
        """The margin as a share of the second's value."""
        return None if self.margin is None or not self.runner_up else self.margin / self.runner_up


def rank(values: Mapping[str, float | None]) -> Ranking:
    """The labels with a value, lowest first (ties keep the given order)."""
    have = [(label, float(v)) for label, v in values.items() if v is not None]
    if not have:
        raise ValueError("nothing to rank: every value is missing")
    return Ranking(tuple(sorted(have, key=lambda lv: lv[1])))


@dataclass(frozen=True)
class RunRanking:
    """Runs ordered by their loss, best first (runs without a loss last): the one rule by which the
    report, its build and a sweep choose the best run."""

    by: str  # "held-out", "smooth per character" or "smooth"
    order: tuple[tuple[Hashable, float | None], ...]

    @property
    def best(self) -> Hashable:
        return self.order[0][0]


def rank_runs(summaries: Mapping[Hashable, Mapping], seq_lengths: Mapping[Hashable, int] | None = None) -> RunRanking:
    """Runs (key -> summary.json) ranked by their best held-out loss when every run with a loss has
    one, else by their best smooth loss, per character when their seq_lengths differ."""
    if not summaries:
        raise ValueError("no runs to rank")
    with_loss = [k for k, s in summaries.items() if s.get("best_smooth_loss") is not None]
    lengths = seq_lengths or {}
    if with_loss and all(summaries[k].get("best_val_loss") is not None for k in with_loss):
        by, value = "held-out", (lambda k: summaries[k].get("best_val_loss"))
    elif len({lengths.get(k) for k in summaries}) > 1:
        by = "smooth per character"
        value = (lambda k: None if summaries[k].get("best_smooth_loss") is None
                 else summaries[k]["best_smooth_loss"] / lengths[k])
    else:
        by, value = "smooth", (lambda k: summaries[k].get("best_smooth_loss"))
    valued = [(k, None if value(k) is None or not math.isfinite(value(k)) else float(value(k))) for k in summaries]
    return RunRanking(by, tuple(sorted(valued, key=lambda kv: (kv[1] is None, kv[1] or 0.0))))


@dataclass(frozen=True)
class SeedSpread:
    """The same settings trained from several initial seeds: each seed's best smooth loss and the
    spread over seeds (the run of ``best_seed`` is the report's main run)."""

    seeds: tuple[int, ...]
    best_losses: tuple[float, ...]
    best_updates: tuple[int, ...]
    final_losses: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.best_losses))

    @property
    def best(self) -> float:
        return min(self.best_losses)

    @property
    def worst(self) -> float:
        return max(self.best_losses)

    @property
    def spread(self) -> float:
        """Worst minus best."""
        return self.worst - self.best

    best_seed: int  # the seed of the best run (``rank_runs``): the report's main run


def seed_spread(summaries: Mapping[int, Mapping]) -> SeedSpread:
    """The spread of the best smooth loss over seeds, from each seed's summary.json."""
    if not summaries:
        raise ValueError("no runs: the spread over seeds needs at least one")
    seeds = sorted(summaries)
    return SeedSpread(seeds=tuple(seeds),
                      best_losses=tuple(float(summaries[s]["best_smooth_loss"]) for s in seeds),
                      best_updates=tuple(int(summaries[s]["best_update"]) for s in seeds),
                      final_losses=tuple(float(summaries[s]["final_smooth_loss"]) for s in seeds),
                      best_seed=int(rank_runs({s: summaries[s] for s in seeds}).best))


def main_run(seeds: Mapping[int, str | Path]) -> Path:
    """The run directory of the best of several seeds (seed -> run directory): the report's main run."""
    from ..rundir import read_json_or

    dirs = {int(k): Path(d) for k, d in seeds.items()}
    return dirs[seed_spread({k: read_json_or(d / "summary.json") for k, d in dirs.items()}).best_seed]


@dataclass(frozen=True)
class HeldOutRun:
    """A run with held-out evaluations: its training and held-out losses per character."""

    updates: int
    seconds: float
    chars: int
    train: float  # the final smooth loss per character
    best: float | None
    best_update: int | None
    best_seconds: float | None
    final: float | None
    peak: float | None  # the highest held-out loss
    peak_update: int | None
    settled_update: int | None  # the first evaluation within 10 % of the final held-out loss
    eval_share: float | None  # the share of the seconds spent in held-out evaluations

    @property
    def gap(self) -> float | None:
        """The final held-out loss minus the final training loss (per character)."""
        return None if self.final is None else self.final - self.train

    @property
    def peak_ratio(self) -> float | None:
        """The highest held-out loss over the best."""
        return None if self.best is None or self.peak is None else self.peak / self.best

    @property
    def risen(self) -> bool:
        """True when the final held-out loss is more than 0.5 % above the best."""
        return self.final is not None and self.best is not None and self.final > self.best * 1.005


def heldout_run(run) -> HeldOutRun:
    """The held-out summary of a run (``a4lib.rundir.Run``)."""
    s, c = run.summary, run.config
    val = held_out(run.history)
    # the best is the trainer's (summary.json): its scheduled evaluations only, not the one a run ends with
    at = np.flatnonzero(val.updates == s.get("best_update"))
    i = int(at[0]) if len(at) and s.get("best_val_loss") is not None else val.best_index
    peak = int(np.argmax(val.loss)) if len(val.loss) else None
    settled = None
    if len(val.loss):
        within = np.flatnonzero(val.loss < 1.1 * val.final)
        settled = int(val.updates[within[0]]) if len(within) else None
    return HeldOutRun(
        updates=int(s["updates"]), seconds=float(s.get("seconds") or 0.0), chars=chars_seen(c, s["updates"]),
        train=float(per_char(s["final_smooth_loss"], c["seq_length"])),
        best=float(val.loss[i]) if i is not None else None, best_update=int(val.updates[i]) if i is not None else None,
        best_seconds=float(val.seconds[i]) if i is not None else None, final=val.final,
        peak=float(val.loss[peak]) if peak is not None else None,
        peak_update=int(val.updates[peak]) if peak is not None else None,
        settled_update=settled, eval_share=evaluation_share(run.history))


# --- networks against the n-gram ---------------------------------------------------------------

@dataclass(frozen=True)
class NGramOrders:
    """An n-gram run's held-out loss (nats per character) for each order 1 .. N."""

    losses: tuple[float, ...]

    @property
    def best_order(self) -> int:
        return int(np.argmin(self.losses)) + 1

    @property
    def best(self) -> float:
        return min(self.losses)


def ngram_orders(summary: Mapping) -> NGramOrders:
    """The held-out losses by order of an ``a4lib ngram`` run (its summary.json)."""
    return NGramOrders(tuple(float(v) for v in summary["val_loss_by_order"]))


@dataclass(frozen=True)
class AgainstBaseline:
    """Runs' best held-out losses against a baseline's: which are below it, and by how much."""

    baseline: float
    best: Mapping[Hashable, float | None]  # each run's best held-out loss

    @property
    def beat(self) -> list[Hashable]:
        """The runs below the baseline, best first."""
        return sorted((k for k, v in self.best.items() if v is not None and v < self.baseline), key=self.best.get)

    @property
    def lost(self) -> list[Hashable]:
        """The runs at or above the baseline (or without a loss), best first."""
        return sorted((k for k in self.best if k not in self.beat), key=lambda k: (self.best[k] is None, self.best[k] or 0))

    def gap(self, key: Hashable) -> float | None:
        """A run's best held-out loss minus the baseline (negative: below it)."""
        v = self.best[key]
        return None if v is None else v - self.baseline


def against(baseline: float, runs: Mapping[Hashable, HeldOutRun]) -> AgainstBaseline:
    """The runs (key -> ``heldout_run``) against a baseline loss (an n-gram's best order)."""
    return AgainstBaseline(float(baseline), {k: r.best for k, r in runs.items()})


# --- the mini-batch benchmarks ------------------------------------------------------------------

@dataclass(frozen=True)
class BatchSpeed:
    """Characters per second of the training step with B streams, and its speed-up over reference.py
    (one row of ``a4lib bench --scaling``)."""

    B: int
    chars_per_s: float
    speedup: float


@dataclass(frozen=True)
class BatchSpeeds:
    """The training step at one m and type for several batch sizes B, from one measurement."""

    m: int
    dtype: str
    rows: tuple[BatchSpeed, ...]  # in the order of B
    reference_chars_per_s: float  # reference.py (float64, B = 1) at the same m

    @property
    def gain(self) -> float:
        """Characters/s of the largest B over those of the smallest."""
        return self.rows[-1].chars_per_s / self.rows[0].chars_per_s

    @property
    def fastest(self) -> BatchSpeed:
        return max(self.rows, key=lambda r: r.chars_per_s)


def batch_speeds(scaling: Mapping, m: int, dtype: str = "float64") -> BatchSpeeds | None:
    """The rows of an ``a4lib bench --scaling`` result at ``m`` in ``dtype``, by B; None without them."""
    rows = sorted((r for r in scaling.get("rows", []) if r["m"] == m and r["dtype"] == dtype),
                  key=lambda r: r["batch_size"])
    if not rows:
        return None
    return BatchSpeeds(m=m, dtype=dtype, rows=tuple(BatchSpeed(r["batch_size"], r["chars_per_s"], r["speedup"])
                                                    for r in rows),
                       reference_chars_per_s=scaling["reference_chars_per_s"][str(m)])


@dataclass(frozen=True)
class ScalingPoint:
    """One (m, B) of ``a4lib bench --scaling`` in both types."""

    m: int
    B: int
    chars64: float
    chars32: float
    peak64: float  # share of the float64 matrix-product peak
    peak32: float

    @property
    def float32_gain(self) -> float:
        return self.chars32 / self.chars64


def scaling_grid(result: Mapping) -> tuple[list[int], list[int]]:
    """The network sizes m and the batch sizes B an ``a4lib bench --scaling`` result covers."""
    rows = result.get("rows", [])
    return sorted({r["m"] for r in rows}), sorted({r["batch_size"] for r in rows})


def scaling_point(result: Mapping, m: int, B: int) -> ScalingPoint | None:
    """The scaling table's figures at (m, B) in float64 and float32; None when either is missing."""
    cells = {r["dtype"]: r for r in result.get("rows", []) if r["m"] == m and r["batch_size"] == B}
    if not {"float64", "float32"} <= cells.keys():
        return None
    f64, f32 = cells["float64"], cells["float32"]
    return ScalingPoint(m=m, B=B, chars64=f64["chars_per_s"], chars32=f32["chars_per_s"],
                        peak64=f64["peak_fraction"], peak32=f32["peak_fraction"])


# --- passages -----------------------------------------------------------------------------------

@dataclass
class Passage:
    """Text synthesised from a run's parameters, and where it came from."""

    text: str
    update: int
    loss: float | None
    heldout: bool  # loss is the held-out loss per character (else the smooth loss)
    which: str
    length: int
    temperature: float
    top_p: float
    prime: str
    seed: int


def passage(run_dir: str | Path, length: int = 1000, seed: int = 0, temperature: float = 1.0,
            top_p: float = 1.0, prime: str | None = None, which: str = "best") -> Passage:
    """Text synthesised from a run's best (or last) parameters, from the hidden state the run had
    there, with their update and loss; primed with ``prime`` (None: ``sample.primer``'s)."""
    from ..checkpoint import load_params, load_state
    from ..corpus import Corpus
    from ..model import make_network
    from ..sample import generate, primer

    params, meta = load_params(run_dir, which)
    vocab = Corpus.from_vocabulary(meta["corpus"]["chars"], meta["corpus"]["name"], meta["corpus"].get("is_tweets"))
    prime = primer(vocab, prime)
    text = generate(make_network(meta["config"], vocab.K, backend="numpy"), params, vocab, length, np.random.default_rng(seed),
                    temperature, top_p, prime, load_state(run_dir, which))
    if which == "best":
        update, loss, heldout = meta.get("best_update"), meta.get("best_loss"), meta["config"].get("val_fraction", 0) > 0
    else:
        update, loss, heldout = meta.get("updates"), meta.get("smooth_loss"), False
    return Passage(text=text, update=update, loss=loss, heldout=heldout, which=which, length=length,
                   temperature=temperature, top_p=top_p, prime=prime, seed=seed)


# --- what changes in a passage ------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def words(text: str, min_letters: int = 2) -> list[str]:
    """The words of a text: runs of letters (an inner apostrophe kept) of at least
    ``min_letters`` letters, lower case. Single letters are left out by default: nearly every
    one occurs in any corpus, so they say nothing about whether a text is made of real words."""
    return [w.lower() for w in _WORD.findall(text) if sum(ch.isalpha() for ch in w) >= min_letters]


def vocabulary_of(text: str) -> set[str]:
    """The distinct words of a text (as ``words``)."""
    return set(words(text))


def word_share(text: str, known: set[str]) -> float | None:
    """The share (0..1) of a text's words that are in ``known``; None for a text with no word."""
    ws = words(text)
    return sum(w in known for w in ws) / len(ws) if ws else None


def distinct_chars(text: str) -> int:
    """The number of different characters in a text."""
    return len(set(text))


def trend(values: Sequence[float | None], tolerance: float = 0.0) -> int:
    """+1 when the values rise from each to the next (by more than ``tolerance``), -1 when they
    fall, 0 otherwise (flat, mixed, or a missing value)."""
    if any(v is None for v in values) or len(values) < 2:
        return 0
    steps = np.diff(np.asarray(values, dtype=np.float64))
    if np.all(steps > tolerance):
        return 1
    if np.all(steps < -tolerance):
        return -1
    return 0


@dataclass
class SampledPassage:
    """One passage of the sampling study and what was measured in it."""

    kind: str  # "temperature" or "top_p": the setting that varies
    value: float
    passage: Passage
    n_words: int
    word_share: float | None
    distinct_chars: int
    invented: list[str]  # its words that are not in the corpus, sorted

    @property
    def temperature(self) -> float:
        return self.passage.temperature

    @property
    def top_p(self) -> float:
        return self.passage.top_p


@dataclass
class SamplingStudy:
    """Passages at several temperatures (top-p 1) and several top-p (temperature 1), same seed."""

    rows: list[SampledPassage]
    n_known: int  # distinct words of the corpus
    length: int
    seed: int

    def of(self, kind: str) -> list[SampledPassage]:
        return [r for r in self.rows if r.kind == kind]

    def trends(self, kind: str) -> tuple[int, int]:
        """The trends (+1 rises, -1 falls, 0 neither) of distinct characters and of the share of
        corpus words along the values of ``kind``."""
        rows = self.of(kind)
        return trend([r.distinct_chars for r in rows]), trend([r.word_share for r in rows])


def corpus_words(corpus: str | None) -> set[str]:
    """The distinct words (``words``) of a corpus (a path, ``builtin:python-docs``, None: the default)."""
    from ..corpus import load_corpus

    return vocabulary_of(load_corpus(corpus).text)


def sample_word_shares(samples: Sequence[Mapping], known: set[str]) -> list[float | None]:
    """The share of corpus words (``word_share``) in each of a run's samples."""
    return [word_share(s["text"], known) for s in samples]


def sampling_study(run_dir: str | Path, corpus: str | None, temperatures: Sequence[float], top_ps: Sequence[float],
                   length: int, seed: int = 0) -> SamplingStudy:
    """Passages from a run's best parameters at each temperature (top-p 1) and each top-p
    (temperature 1), all with ``seed``, each measured against the words of ``corpus``."""
    known = corpus_words(corpus)
    rows = []
    for kind, values in (("temperature", temperatures), ("top_p", top_ps)):
        for v in values:
            t, p = (v, 1.0) if kind == "temperature" else (1.0, v)
            psg = passage(run_dir, length, seed, t, p)
            ws = words(psg.text)
            rows.append(SampledPassage(kind=kind, value=v, passage=psg, n_words=len(ws),
                                       word_share=word_share(psg.text, known), distinct_chars=distinct_chars(psg.text),
                                       invented=sorted({w for w in ws if w not in known})))
    return SamplingStudy(rows=rows, n_known=len(known), length=length, seed=seed)


# --- a sweep's runs: ranked, as a table, as CSV -----------------------------------------------------

#: the columns of sweep.csv after the name and the grid's settings
SWEEP_CSV_COLUMNS = ("status", "updates", "best_smooth_loss", "final_smooth_loss", "best_val_loss", "seconds")


def _sweep_per_char(entries: Sequence[Mapping]) -> bool:
    """True when the runs' sequence lengths differ: their smooth losses (sums over a sequence)
    compare only per character."""
    return len({e["overrides"].get("seq_length") for e in entries}) > 1


def sweep_ranking(entries: Sequence[Mapping]) -> tuple[str, list[tuple[Mapping, float | None]]]:
    """What a sweep's runs (the entries of sweep.json) are ranked by, and (entry, value) best first
    (runs without a value last): the best held-out loss when every run has one, else the best
    smooth loss (per character when the sequence lengths differ)."""
    with_loss = [e for e in entries if e["summary"].get("best_smooth_loss") is not None]
    if with_loss and all(e["summary"].get("best_val_loss") is not None for e in with_loss):
        what, key = "best held-out loss per character", (lambda e: e["summary"].get("best_val_loss"))
    elif _sweep_per_char(entries):
        what = "best smooth loss per character"
        key = (lambda e: None if e["summary"].get("best_smooth_loss") is None else
               e["summary"]["best_smooth_loss"] / e["overrides"]["seq_length"])
    else:
        what, key = "best smooth loss", (lambda e: e["summary"].get("best_smooth_loss"))
    valued = [(e, key(e)) for e in entries]
    return what, sorted(valued, key=lambda ev: (ev[1] is None or not math.isfinite(ev[1]), ev[1] or 0.0))


def sweep_rows(entries: Sequence[Mapping]) -> tuple[str, list[str], list[list]]:
    """What a sweep's runs are ranked by, the header and one row per run, best first: rank (None
    when the run has no loss yet), name, status, updates, best and final smooth loss, best
    held-out loss, seconds (None where the summary has no value)."""
    what, ranked = sweep_ranking(entries)
    header = ["rank", "name", "status", "updates", "best smooth", "final smooth", "best held-out", "seconds"]
    rows = [[i if value is not None else None, e["name"], e["summary"].get("status"),
             *(e["summary"].get(k) for k in ("updates", "best_smooth_loss", "final_smooth_loss", "best_val_loss",
                                              "seconds"))]
            for i, (e, value) in enumerate(ranked, start=1)]
    return what, header, rows


def sweep_messages(entries: Sequence[Mapping]) -> list[str]:
    """``name: message`` for each run of a sweep that diverged or could not train."""
    return [f"{e['name']}: {e['summary']['error']}" for e in entries if e["summary"].get("error")]


def _sweep_text(x, digits: int) -> str:
    return "-" if x is None else f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}" \
        if isinstance(x, int) else str(x)


def sweep_table(entries: Sequence[Mapping]) -> str:
    """A sweep's runs ranked (``sweep_rows``) as plain text, then ``sweep_messages``."""
    what, header, rows = sweep_rows(entries)
    cells = [header] + [[_sweep_text(v, 1 if c == 7 else 3) for c, v in enumerate(row)] for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if c in (1, 2) else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths)))
             for r in cells]
    return "\n".join([f"ranked by {what}", *(line.rstrip() for line in lines), *sweep_messages(entries)])


def sweep_csv(entries: Sequence[Mapping]) -> str:
    """A sweep's entries as CSV: name, the grid's settings, then SWEEP_CSV_COLUMNS of each summary."""
    import csv
    import io

    def cell(value) -> str:
        return "" if value is None else repr(value) if isinstance(value, float) else str(value)

    settings = list(dict.fromkeys(k for e in entries for k in e["overrides"]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *settings, *SWEEP_CSV_COLUMNS])
    for e in entries:
        writer.writerow([e["name"], *(cell(e["overrides"].get(k)) for k in settings),
                         *(cell(e["summary"].get(k)) for k in SWEEP_CSV_COLUMNS)])
    return buf.getvalue()


def sweep_curves(entries: Sequence[Mapping], out: str | Path) -> tuple[dict[str, dict], bool]:
    """The smooth-loss curves of the sweep's runs in ``out`` that have a history, best first (name
    -> {"smooth_loss": ...}), and whether they are per character (the sequence lengths differ)."""
    _, ranked = sweep_ranking(entries)
    per_char = _sweep_per_char(entries)
    curves = {}
    for e, _ in ranked:
        path = Path(out) / e["name"] / "history.npz"
        if not path.is_file():
            continue
        with np.load(path, allow_pickle=False) as z:
            smooth = z["smooth_loss"]
        if len(smooth):
            curves[e["name"]] = {"smooth_loss": smooth / e["overrides"]["seq_length"] if per_char else smooth}
    return curves, per_char


# --- the headline run (make best) ---------------------------------------------------------------

@dataclass(frozen=True)
class Headline:
    """The headline run (``make best``) and the n-gram fitted on its split."""

    run: HeldOutRun
    config: Mapping
    ngram: NGramOrders

    @property
    def ngram_loss(self) -> float:
        """The held-out loss of the n-gram's highest order, the one ``make best`` sets beside it."""
        return self.ngram.losses[-1]

    @property
    def gap(self) -> float:
        """The network's best held-out loss minus the n-gram's (negative: the network is better)."""
        return self.run.best - self.ngram_loss


def headline(run_dir: str | Path, ngram_dir: str | Path, corpus_sha256: str | None) -> Headline | None:
    """The headline run in ``run_dir`` and its n-gram in ``ngram_dir`` when both are finished and
    were trained on the text with ``corpus_sha256``; else None (a report on another text says nothing
    of it)."""
    from ..rundir import load_run, read_json_or, status

    run_dir, ngram_dir = Path(run_dir), Path(ngram_dir)
    if not (run_dir / "summary.json").is_file() or not (ngram_dir / "summary.json").is_file():
        return None
    if status(run_dir) != "finished":
        return None
    run = load_run(run_dir)
    counts = read_json_or(ngram_dir / "summary.json")
    if run.config.get("corpus_sha256") != corpus_sha256 or not isinstance(counts, Mapping) \
            or "val_loss_by_order" not in counts:
        return None
    result = heldout_run(run)
    return None if result.best is None else Headline(run=result, config=run.config, ngram=ngram_orders(counts))
