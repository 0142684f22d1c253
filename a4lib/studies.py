"""The report's studies beyond the assignment: which runs each one makes, with which budget, and
the numbers read back from their run directories.

``plan`` lists the work (benchmarks and ``a4lib train`` command lines, grouped so that runs that
are compared in seconds run at the same time); ``report/build.py`` carries it out and writes it as
``beyond.json``, which ``notebooks/beyond.ipynb`` reads. The other functions are the small
measurements the report shows: losses per character, the time of each held-out evaluation, the
share of a passage's words that occur in the corpus, ...

Every loss here is in nats. A run's smooth loss is summed over the seq_length characters of an
update (and averaged over the B streams); its held-out loss (``val_loss``) is already a mean per
character.
"""
from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: the report's sections beyond the assignment, in order: key -> heading
SECTIONS = {
    "batches": "Mini-batches: characters per second",
    "heldout": "Held-out evaluation",
    "lstm": "LSTM against the vanilla RNN",
    "sampling": "Sampling: temperature and top-p",
    "optimizers": "Optimizers: AdaGrad, RMSProp, Adam",
    "tweets": "Tweets",
}
BATCH_SIZES = (1, 8, 32, 128)
#: the tweet corpus used when none is given, relative to the repository root (used when it exists)
DEFAULT_TWEETS = Path("..") / "shared" / "data" / "condensed_2018.json"
TEMPERATURES = (0.5, 0.8, 1.2)
TOP_PS = (0.5, 0.8, 0.95)
SAMPLING_LENGTH = 300
CHUNK_LENGTH = 1000
VAL_FRACTION = 0.1
#: the runs' settings beyond the corpus and the budget (the handout's RNN; a good small LSTM)
RNN_ARGS = ("--model", "rnn", "--m", "100", "--eta", "0.1", "--optimizer", "adagrad", "--seq-length", "25",
            "--batch-size", "1")
LSTM_ARGS = ("--model", "lstm", "--m", "128", "--eta", "0.003", "--optimizer", "adam", "--seq-length", "50",
             "--batch-size", "16")
#: the optimizers compared, with their eta (RMSProp's and Adam's picked by a short pilot, see the report)
OPTIMIZERS = (("adagrad", 0.1), ("rmsprop", 0.001), ("adam", 0.002))


@dataclass(frozen=True)
class Budget:
    """How much each study trains; ``QUICK`` for the quick report, ``FULL`` for the real one."""

    bench_chars: int  # characters each benchmark of the training step processes
    bench_reference_updates: int
    heldout_updates: int
    heldout_val_every: int
    race_seconds: float  # LSTM against RNN: the wall-clock budget of each
    race_rnn_val_every: int
    race_lstm_val_every: int
    optimizer_updates: int
    optimizer_val_every: int
    tweet_updates: int
    tweet_sample_every: int


FULL = Budget(bench_chars=100_000, bench_reference_updates=400, heldout_updates=60_000, heldout_val_every=2_000,
              race_seconds=300.0, race_rnn_val_every=10_000, race_lstm_val_every=250,
              optimizer_updates=200_000, optimizer_val_every=10_000, tweet_updates=100_000, tweet_sample_every=10_000)
QUICK = Budget(bench_chars=10_000, bench_reference_updates=40, heldout_updates=3_000, heldout_val_every=500,
               race_seconds=4.0, race_rnn_val_every=2_000, race_lstm_val_every=30,
               optimizer_updates=2_000, optimizer_val_every=500, tweet_updates=1_500, tweet_sample_every=500)


@dataclass
class RunSpec:
    """One training run of a study: ``a4lib train --out dir ARGS --quiet``.

    Runs with the same ``group`` are started together (at most two: the machine has two cores),
    so that the runs of a group share the machine alike.
    """

    name: str
    label: str
    dir: str
    args: list[str]
    group: int
    study: str
    corpus: str
    settings: dict = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The arguments after ``python -m a4lib``."""
        return ["train", "--out", self.dir, *self.args, "--quiet"]

    def command(self, root: str | Path | None = None) -> str:
        """The command line, with paths under ``root`` written relative to it."""
        def short(word: str) -> str:
            if root is not None and word.startswith(str(root).rstrip("/") + "/"):
                return word[len(str(root).rstrip("/")) + 1:]
            return word
        return shlex.join(["a4lib", *(short(w) for w in self.argv())])


# --- the plan --------------------------------------------------------------------------------

def bench_updates(chars: int, seq_length: int, batch_size: int) -> int:
    """Updates of B streams of seq_length characters that process about ``chars`` characters (>= 5)."""
    return max(5, round(chars / (seq_length * batch_size)))


def chunk_length_for(n_train: int, batch_size: int, seq_length: int, default: int = CHUNK_LENGTH) -> int:
    """The chunk length for ``--order chunks``: ``default``, shorter when the training text holds
    fewer than four groups of ``batch_size`` chunks of it (never below seq_length + 1)."""
    if n_train // default >= 4 * batch_size:
        return default
    return max(seq_length + 1, min(default, n_train // (4 * batch_size)))


def n_train_chars(n_chars: int, val_fraction: float = VAL_FRACTION) -> int:
    """The training characters of a plain text with ``val_fraction`` held out (as a4lib.train.split)."""
    return n_chars - int(val_fraction * n_chars)


def plan(sections: Sequence[str], corpus: str, n_chars: int, runs_dir: str | Path, budget: Budget,
         tweets: str | None = None, seed: int = 0) -> dict:
    """The studies of ``sections`` as data: for each, its runs (``RunSpec`` as dicts) or benchmarks.

    corpus: the corpus of every study but the tweets (``n_chars`` characters, plain text);
    tweets: the tweet corpus, or None (the tweet section then says how to give one).
    """
    runs_dir = Path(runs_dir)
    n_train = n_train_chars(n_chars)
    out: dict = {"budget": asdict(budget), "corpus": corpus, "tweets": tweets, "seed": seed,
                 "val_fraction": VAL_FRACTION, "sections": [s for s in SECTIONS if s in sections]}
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s): {', '.join(sorted(unknown))}")
    common = ["--corpus", corpus, "--seed", str(seed), "--val-fraction", str(VAL_FRACTION)]

    def spec(name, label, study, group, args, settings=None, corpus_=corpus):
        return asdict(RunSpec(name=name, label=label, dir=str(runs_dir / name), args=[str(a) for a in args],
                              group=group, study=study, corpus=corpus_, settings=settings or {}))

    if "batches" in sections:
        out["batches"] = {"benches": [
            {"batch_size": B, "m": 100, "seq_length": 25, "updates": bench_updates(budget.bench_chars, 25, B),
             "reference_updates": budget.bench_reference_updates,
             "args": ["bench", "--json", "--corpus", corpus, "--m", "100", "--seq-length", "25", "--batch-size",
                      str(B), "--updates", str(bench_updates(budget.bench_chars, 25, B)),
                      "--reference-updates", str(budget.bench_reference_updates)]}
            for B in BATCH_SIZES if n_chars // B >= 26]}
    if "heldout" in sections:
        chunk = chunk_length_for(n_train, 1, 25)
        base = [*common, *RNN_ARGS, "--updates", budget.heldout_updates, "--val-every", budget.heldout_val_every,
                "--sample-every", 0]
        out["heldout"] = {"runs": [
            spec("heldout-sequential", "sequential (the handout's walk)", "heldout", 1, [*base, "--order", "sequential"]),
            spec("heldout-chunks", f"chunks of {chunk:,} (shuffled, h reset)", "heldout", 1,
                 [*base, "--order", "chunks", "--chunk-length", chunk]),
        ]}
    if "lstm" in sections:
        lstm_chunk = chunk_length_for(n_train, 16, 50)
        rnn_chunk = chunk_length_for(n_train, 1, 25)
        seconds = budget.race_seconds
        limit = ["--max-seconds", f"{seconds:g}", "--updates", 10_000_000, "--sample-every", 0]
        out["lstm"] = {"seconds": seconds, "runs": [
            spec("race-lstm", "LSTM (m 128, B 16, Adam)", "lstm", 2,
                 [*common, *LSTM_ARGS, *limit, "--val-every", budget.race_lstm_val_every, "--order", "chunks",
                  "--chunk-length", lstm_chunk]),
            spec("race-rnn", "RNN (m 100, B 1, AdaGrad)", "lstm", 2,
                 [*common, *RNN_ARGS, *limit, "--val-every", budget.race_rnn_val_every, "--order", "chunks",
                  "--chunk-length", rnn_chunk]),
        ]}
    if "optimizers" in sections:
        chunk = chunk_length_for(n_train, 1, 25)
        runs = []
        for k, (name, eta) in enumerate(OPTIMIZERS):
            args = [*common, "--model", "rnn", "--m", 100, "--eta", eta, "--optimizer", name, "--seq-length", 25,
                    "--batch-size", 1, "--updates", budget.optimizer_updates, "--val-every", budget.optimizer_val_every,
                    "--order", "chunks", "--chunk-length", chunk, "--sample-every", 0]
            runs.append(spec(f"optimizer-{name}", f"{_OPT_NAMES[name]}, eta {eta:g}", "optimizers", 3 + k // 2, args,
                             {"optimizer": name, "eta": eta}))
        out["optimizers"] = {"runs": runs, "updates": budget.optimizer_updates}
    if "sampling" in sections:
        out["sampling"] = {"temperatures": list(TEMPERATURES), "top_ps": list(TOP_PS), "length": SAMPLING_LENGTH,
                           "seed": seed}
    if "tweets" in sections:
        if tweets is None:
            out["tweets"] = {"runs": []}
        else:
            # with the optimizer study: next to Adam (group 4), so that each optimizer shares the machine
            group = 4 if "optimizers" in sections else 5
            args = ["--corpus", tweets, "--seed", seed, *RNN_ARGS, "--updates", budget.tweet_updates,
                    "--sample-every", budget.tweet_sample_every, "--sample-length", 280]
            out["tweets"] = {"runs": [spec("tweets", "the tweet run (RNN, m 100, AdaGrad)", "tweets", group, args,
                                           corpus_=tweets)]}
    return out


_OPT_NAMES = {"adagrad": "AdaGrad", "rmsprop": "RMSProp", "adam": "Adam"}


def all_runs(the_plan: Mapping) -> list[dict]:
    """Every training run of a plan, in the order of their groups."""
    runs = [r for key in SECTIONS for r in (the_plan.get(key) or {}).get("runs", [])]
    return sorted(runs, key=lambda r: r["group"])


def groups(the_plan: Mapping) -> list[list[dict]]:
    """The runs of a plan by group: each group's runs are started together."""
    out: dict[int, list[dict]] = {}
    for r in all_runs(the_plan):
        out.setdefault(r["group"], []).append(r)
    return [out[g] for g in sorted(out)]


# --- what the runs measured ----------------------------------------------------------------

def per_char(loss, seq_length: int):
    """A loss summed over the seq_length characters of an update, per character."""
    if seq_length < 1:
        raise ValueError(f"seq_length must be >= 1, got {seq_length}")
    return np.asarray(loss, dtype=np.float64) / seq_length if np.ndim(loss) else float(loss) / seq_length


def bits(nats):
    """A loss in nats per character as bits per character."""
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
    padded = np.concatenate([[0.0], seconds])
    return padded[u]


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
    typical = float(np.median(steps))
    excess = np.clip(steps[u] - typical, 0.0, None)  # steps[u] is the step of update u + 1
    return float(excess.sum() / seconds[-1])


def chars_seen(config: Mapping, updates: int) -> int:
    """Training characters processed (predicted) by ``updates`` updates of a run (at most
    seq_length per stream and update: chunk and tweet tails are shorter)."""
    return int(updates) * int(config.get("seq_length", 25)) * int(config.get("batch_size", 1))


# --- sampling: what changes in a passage ---------------------------------------------------

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
    if not ws:
        return None
    return sum(w in known for w in ws) / len(ws)


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
        best = min((s for s in ordered if s not in chosen), key=lambda s: abs(s["update"] - target))
        chosen.append(best)
    return sorted(chosen, key=lambda s: s["update"])
