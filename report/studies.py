"""The report's studies beyond the assignment, as the build plans them: which runs each study
makes (each a ``Config``), with which budget, and which run at the same time.

``plan`` lists the work: the benchmarks of the mini-batch study (``a4lib bench`` arguments) and
the training runs of the others (``StudyRun``, a ``Config`` each). ``report/build.py`` trains them
on a4lib's sweep engine and writes the plan as ``beyond.json`` (``to_json``), which
``notebooks/beyond.ipynb`` reads. Assumptions of this build, not of the library: the budgets, and
the tweets next door in ``../shared/data``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from a4lib.config import Config

#: the report's sections beyond the assignment, in order: key -> heading (as in beyond.ipynb)
SECTIONS = {
    "batches": "Mini-batches: characters per second",
    "heldout": "Held-out evaluation",
    "lstm": "LSTM against the vanilla RNN",
    "sampling": "Sampling: temperature and top-p",
    "optimizers": "Optimizers: AdaGrad, RMSProp, Adam",
    "tweets": "Tweets",
}
BATCH_SIZES = (1, 8, 32, 128)
#: the tweet corpus used when none is given, relative to the project folder (used when it exists)
DEFAULT_TWEETS = Path("..") / "shared" / "data" / "condensed_2018.json"
TEMPERATURES = (0.5, 0.8, 1.2)
TOP_PS = (0.5, 0.8, 0.95)
SAMPLING_LENGTH = 300
CHUNK_LENGTH = 1000
VAL_FRACTION = 0.1
#: the handout's RNN, and a small LSTM that trains well per second
RNN = Config(model="rnn", m=100, eta=0.1, optimizer="adagrad", seq_length=25, batch_size=1)
LSTM = Config(model="lstm", m=128, eta=0.003, optimizer="adam", seq_length=50, batch_size=16)
#: the optimizers compared and their eta: RMSProp's and Adam's steps do not shrink, so a smaller one
OPTIMIZERS = (("adagrad", 0.1), ("rmsprop", 0.001), ("adam", 0.002))
OPTIMIZER_LABELS = {"adagrad": "AdaGrad", "rmsprop": "RMSProp", "adam": "Adam"}


@dataclass(frozen=True)
class Budget:
    """How much each study trains; ``QUICK`` for the quick report, ``FULL`` for the real one."""

    bench_chars: int  # characters each benchmark of the training step processes
    bench_reference_updates: int
    scaling_seconds: float  # the scaling table (m x B x type): seconds timed per figure
    heldout_updates: int
    heldout_val_every: int
    race_seconds: float  # LSTM against RNN: the wall-clock budget of each (see FULL)
    race_rnn_val_every: int
    race_lstm_val_every: int
    optimizer_updates: int
    optimizer_val_every: int
    tweet_updates: int
    tweet_sample_every: int


#: The race: on tinyshakespeare (1.1 M characters) in float32 the LSTM's held-out loss passes the RNN's
#: at about 10 s (2.07 against 2.11 nats) and by 60 s leads by 0.29 (1.75 against 2.04); from 60 to 120 s
#: each gains only 0.05, so 60 s shows the crossing and the gap.
FULL = Budget(bench_chars=100_000, bench_reference_updates=400, scaling_seconds=0.25, heldout_updates=60_000, heldout_val_every=2_000,
              race_seconds=60.0, race_rnn_val_every=10_000, race_lstm_val_every=250,
              optimizer_updates=200_000, optimizer_val_every=10_000, tweet_updates=100_000, tweet_sample_every=10_000)
QUICK = Budget(bench_chars=10_000, bench_reference_updates=40, scaling_seconds=0.02, heldout_updates=3_000, heldout_val_every=500,
               race_seconds=4.0, race_rnn_val_every=2_000, race_lstm_val_every=30,
               optimizer_updates=2_000, optimizer_val_every=500, tweet_updates=1_500, tweet_sample_every=500)


@dataclass(frozen=True)
class StudyRun:
    """One training run of a study: ``a4lib train --out dir CONFIG``. The ``timed`` runs are
    compared in seconds: they start together and have the machine to themselves."""

    name: str
    label: str
    dir: Path
    config: Config
    study: str
    timed: bool = False

    def argv(self) -> list[str]:
        """The arguments after ``a4lib`` (or ``python -m a4lib``)."""
        return ["train", "--out", str(self.dir), *self.config.to_argv()]


# --- the plan ------------------------------------------------------------------------------------

def bench_updates(chars: int, seq_length: int, batch_size: int) -> int:
    """Updates of B streams of seq_length characters that process about ``chars`` characters (>= 5)."""
    return max(5, round(chars / (seq_length * batch_size)))


def chunk_length_for(n_train: int, batch_size: int, seq_length: int, default: int = CHUNK_LENGTH) -> int:
    """The chunk length for ``order="chunks"``: ``default``, shorter when the training text holds
    fewer than four groups of ``batch_size`` chunks of it (never below seq_length + 1)."""
    if n_train // default >= 4 * batch_size:
        return default
    return max(seq_length + 1, min(default, n_train // (4 * batch_size)))


def n_train_chars(n_chars: int, val_fraction: float = VAL_FRACTION) -> int:
    """The training characters of a plain text with ``val_fraction`` held out (as a4lib.train.split)."""
    return n_chars - int(val_fraction * n_chars)


def plan(sections: Sequence[str], corpus: str, n_chars: int, runs_dir: str | Path, budget: Budget,
         tweets: str | None = None, seed: int = 0) -> dict:
    """The studies of ``sections``: for each, its runs (``StudyRun``) or benchmarks.

    corpus: the corpus of every study but the tweets (``n_chars`` characters, plain text);
    tweets: the tweet corpus, or None (the tweet section then says how to give one).
    """
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s): {', '.join(sorted(unknown))}")
    runs_dir = Path(runs_dir)
    n_train = n_train_chars(n_chars)
    out: dict = {"budget": asdict(budget), "corpus": corpus, "tweets": tweets, "seed": seed,
                 "val_fraction": VAL_FRACTION, "sections": [s for s in SECTIONS if s in sections]}
    # float32 where the handout's exact arithmetic is not the point (the main run keeps float64)
    common = dict(corpus=corpus, seed=seed, val_fraction=VAL_FRACTION, sample_every=0, dtype="float32")

    def run(name, label, study, config, timed=False):
        return StudyRun(name=name, label=label, dir=runs_dir / name, config=config, study=study, timed=timed)

    if "batches" in sections:
        benches = []
        for B in BATCH_SIZES:
            if n_chars // B < RNN.seq_length + 1:
                continue
            updates = bench_updates(budget.bench_chars, RNN.seq_length, B)
            benches.append({"batch_size": B, "args": [
                "bench", "--json", "--corpus", corpus, "--m", str(RNN.m), "--seq-length", str(RNN.seq_length),
                "--batch-size", str(B), "--updates", str(updates),
                "--reference-updates", str(budget.bench_reference_updates)]})
        out["batches"] = {"benches": benches, "chars": budget.bench_chars, "scaling_args": [
            "bench", "--json", "--scaling", "--corpus", corpus, "--repeat", "1",
            "--scaling-seconds", f"{budget.scaling_seconds:g}", "--reference-updates", str(budget.bench_reference_updates)]}
    if "heldout" in sections:
        chunk = chunk_length_for(n_train, 1, RNN.seq_length)
        base = RNN.replace(**common, n_updates=budget.heldout_updates, val_every=budget.heldout_val_every)
        out["heldout"] = {"runs": [
            run("heldout-sequential", "sequential (the handout's walk)", "heldout", base.replace(order="sequential")),
            run("heldout-chunks", f"chunks of {chunk:,} (shuffled, h reset)", "heldout",
                base.replace(order="chunks", chunk_length=chunk)),
        ]}
    if "lstm" in sections:
        race = dict(common, max_seconds=budget.race_seconds, n_updates=10_000_000, order="chunks")
        out["lstm"] = {"seconds": budget.race_seconds, "runs": [
            run("race-lstm", f"LSTM (m {LSTM.m}, B {LSTM.batch_size}, Adam)", "lstm",
                LSTM.replace(**race, val_every=budget.race_lstm_val_every,
                             chunk_length=chunk_length_for(n_train, LSTM.batch_size, LSTM.seq_length)), timed=True),
            run("race-rnn", f"RNN (m {RNN.m}, B {RNN.batch_size}, AdaGrad)", "lstm",
                RNN.replace(**race, val_every=budget.race_rnn_val_every,
                            chunk_length=chunk_length_for(n_train, RNN.batch_size, RNN.seq_length)), timed=True),
        ]}
    if "optimizers" in sections:
        chunk = chunk_length_for(n_train, 1, RNN.seq_length)
        out["optimizers"] = {"updates": budget.optimizer_updates, "runs": [
            run(f"optimizer-{name}", f"{OPTIMIZER_LABELS[name]}, eta {eta:g}", "optimizers",
                RNN.replace(**common, optimizer=name, eta=eta, n_updates=budget.optimizer_updates,
                            val_every=budget.optimizer_val_every, order="chunks", chunk_length=chunk))
            for name, eta in OPTIMIZERS]}
    if "sampling" in sections:
        out["sampling"] = {"temperatures": list(TEMPERATURES), "top_ps": list(TOP_PS), "length": SAMPLING_LENGTH,
                           "seed": seed}
    if "tweets" in sections:
        runs = []
        if tweets is not None:
            runs.append(run("tweets", "the tweet run (RNN, m 100, AdaGrad)", "tweets",
                            RNN.replace(corpus=tweets, seed=seed, dtype="float32", n_updates=budget.tweet_updates,
                                        sample_every=budget.tweet_sample_every, sample_length=280)))
        out["tweets"] = {"runs": runs}
    return out


def all_runs(the_plan: dict) -> list[StudyRun]:
    """Every training run of a plan, in the order of the sections."""
    return [r for key in SECTIONS for r in (the_plan.get(key) or {}).get("runs", [])]


def to_json(the_plan: dict) -> dict:
    """The plan as JSON data for the notebook: each run with its directory and its settings
    (``Config.to_dict``)."""
    def run(r: StudyRun) -> dict:
        return {"name": r.name, "label": r.label, "dir": str(r.dir), "config": r.config.to_dict(),
                "study": r.study, "timed": r.timed}

    out = {}
    for key, value in the_plan.items():
        if isinstance(value, dict) and "runs" in value:
            value = {**value, "runs": [run(r) for r in value["runs"]]}
        out[key] = value
    return out
