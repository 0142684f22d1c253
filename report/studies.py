"""The report's studies beyond the assignment: which runs each study makes (a ``Config`` each), with
which budget, and which of them run at the same time.

``plan`` returns a ``Plan``: the sections asked for, the benchmark of the mini-batch study (its
``a4lib bench --scaling`` arguments) and the training runs of the others (``StudyRun``). The build
(``report.build``) trains the runs on a4lib's sweep engine and keeps the plan in its manifest
(``report.manifest``) as ``Plan.to_json``; the beyond notebook reads it back with
``Plan.from_json``: one structure, written and read by this module. Assumptions of this report,
not of the library: the budgets, the settings compared, the share held out.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from a4lib.config import Config

#: the report's sections beyond the assignment, in order: key -> heading (as in beyond.ipynb)
SECTIONS = {
    "batches": "Mini-batches: characters per second",
    "heldout": "Held-out evaluation",
    "models": "Models: RNN, GRU and LSTM against an n-gram",
    "sampling": "Sampling: temperature and top-p",
    "optimizers": "Optimizers: AdaGrad, RMSProp, Adam",
    "tweets": "Tweets",
}
#: the studies with training runs
VAL_FRACTION = 0.1  # the held-out share of every study but the tweets
#: the handout's RNN
RNN = Config(model="rnn", m=100, eta=0.1, optimizer="adagrad", seq_length=25, batch_size=1)
#: the model study: every network has these settings (settings that train an LSTM well per second, and
#: char-rnn's uniform initialisation: from the handout's N(0, 0.01^2) a 2-layer RNN stays at the unigram
#: loss, 3.36 nats on tinyshakespeare after 20 s, against 1.81 from U(-0.08, 0.08)) and one of these
#: cells and layer counts; the n-gram counts up to this order
NETWORK = Config(m=128, eta=0.003, optimizer="adam", seq_length=50, batch_size=16, init="uniform")
NETWORKS = (("rnn", 1), ("rnn", 2), ("gru", 1), ("gru", 2), ("lstm", 1), ("lstm", 2))
CELL_LABELS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
NGRAM_ORDER = 8
#: the optimizers compared and their eta: RMSProp's and Adam's steps do not shrink, so a smaller one
OPTIMIZERS = (("adagrad", 0.1), ("rmsprop", 0.001), ("adam", 0.002))
OPTIMIZER_LABELS = {"adagrad": "AdaGrad", "rmsprop": "RMSProp", "adam": "Adam"}
TWEET_SAMPLE_LENGTH = 280


@dataclass(frozen=True)
class Sampling:
    """The sampling study: passages at each temperature (top-p 1) and each top-p (temperature 1)."""

    temperatures: tuple[float, ...] = (0.5, 0.8, 1.2)
    top_ps: tuple[float, ...] = (0.5, 0.8, 0.95)
    length: int = 300


@dataclass(frozen=True)
class Budget:
    """How much each study trains; ``QUICK`` for the quick report, ``FULL`` for the real one."""

    bench_reference_updates: int  # reference.py's updates timed per m in the scaling table
    scaling_seconds: float  # the scaling table (m x B x type): seconds timed per figure
    heldout_updates: int
    heldout_val_every: int
    model_seconds: float  # the model study: the wall-clock budget of each network (see FULL)
    model_val_every: int
    optimizer_updates: int
    optimizer_val_every: int
    tweet_updates: int
    tweet_sample_every: int


#: The model study: six networks of 30 s each, two at a time on two cores; with the optimizers' 120,000
#: updates they keep the full build on a text of the course text's length within 5 minutes. An evaluation of the held-out tenth costs about a third
#: of training on as many characters, whatever the network, so one val_every gives every network the
#: same share of evaluation time (about 10 % at 400 updates of 800 characters).
FULL = Budget(bench_reference_updates=400, scaling_seconds=0.25, heldout_updates=60_000, heldout_val_every=2_000,
              model_seconds=30.0, model_val_every=400,
              optimizer_updates=120_000, optimizer_val_every=10_000, tweet_updates=100_000, tweet_sample_every=10_000)
QUICK = Budget(bench_reference_updates=40, scaling_seconds=0.02, heldout_updates=3_000, heldout_val_every=500,
               model_seconds=2.0, model_val_every=20,
               optimizer_updates=2_000, optimizer_val_every=500, tweet_updates=1_500, tweet_sample_every=500)


@dataclass(frozen=True)
class StudyRun:
    """One training run of a study: ``a4lib train --out dir CONFIG``. The ``timed`` runs are
    compared in seconds: they start together and have the machine to themselves."""

    study: str
    name: str
    label: str
    dir: Path
    config: Config
    timed: bool = False

    def argv(self) -> list[str]:
        """The arguments after ``a4lib`` (or ``python -m a4lib``)."""
        return ["train", "--out", str(self.dir), *self.config.to_argv()]

    def to_json(self) -> dict:
        return {"study": self.study, "name": self.name, "label": self.label, "dir": str(self.dir),
                "config": self.config.to_dict(), "timed": self.timed}

    @classmethod
    def from_json(cls, d: dict) -> "StudyRun":
        return cls(study=d["study"], name=d["name"], label=d["label"], dir=Path(d["dir"]),
                   config=Config.from_dict(d["config"]), timed=bool(d["timed"]))


@dataclass(frozen=True)
class NGramRun:
    """The count baseline of the model study: ``a4lib ngram --out dir``, every order up to ``order``."""

    dir: Path
    corpus: str
    order: int
    val_fraction: float

    def argv(self) -> list[str]:
        return ["ngram", "--corpus", self.corpus, "--order", str(self.order), "--val-fraction", f"{self.val_fraction:g}",
                "--out", str(self.dir)]


@dataclass(frozen=True)
class Plan:
    """The studies of one build: the sections, the corpus they train on, the scaling benchmark's
    arguments (None without the mini-batch section) and every training run."""

    sections: tuple[str, ...]
    corpus: str
    tweets: str | None
    seed: int
    budget: Budget
    val_fraction: float = VAL_FRACTION
    scaling_args: tuple[str, ...] | None = None
    sampling: Sampling | None = None
    ngram: NGramRun | None = None
    runs: tuple[StudyRun, ...] = field(default_factory=tuple)

    def runs_of(self, study: str) -> tuple[StudyRun, ...]:
        """The runs of one study, in the plan's order."""
        return tuple(r for r in self.runs if r.study == study)

    def to_json(self) -> dict:
        """The plan as JSON data (read back by ``from_json``)."""
        return {"sections": list(self.sections), "corpus": self.corpus, "tweets": self.tweets, "seed": self.seed,
                "budget": asdict(self.budget), "val_fraction": self.val_fraction,
                "scaling_args": None if self.scaling_args is None else list(self.scaling_args),
                "sampling": None if self.sampling is None else asdict(self.sampling),
                "ngram": None if self.ngram is None else {**asdict(self.ngram), "dir": str(self.ngram.dir)},
                "runs": [r.to_json() for r in self.runs]}

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        sampling = d["sampling"]
        return cls(sections=tuple(d["sections"]), corpus=d["corpus"], tweets=d["tweets"], seed=d["seed"],
                   budget=Budget(**d["budget"]), val_fraction=d["val_fraction"],
                   scaling_args=None if d["scaling_args"] is None else tuple(d["scaling_args"]),
                   sampling=None if sampling is None else Sampling(**{f.name: tuple(sampling[f.name])
                                                                      if f.name != "length" else sampling[f.name]
                                                                      for f in fields(Sampling)}),
                   ngram=None if d["ngram"] is None else NGramRun(**{**d["ngram"], "dir": Path(d["ngram"]["dir"])}),
                   runs=tuple(StudyRun.from_json(r) for r in d["runs"]))


# --- the plan ------------------------------------------------------------------------------------

def chunk_length_for(n_train: int, batch_size: int, seq_length: int, default: int = Config.chunk_length) -> int:
    """The chunk length for ``order="chunks"``: Config's default, shorter when the training text
    holds fewer than four groups of ``batch_size`` chunks of it (never below seq_length + 1)."""
    if n_train // default >= 4 * batch_size:
        return default
    return max(seq_length + 1, min(default, n_train // (4 * batch_size)))


def plan(sections: Iterable[str], corpus: str, n_train: int, runs_dir: str | Path, budget: Budget,
         tweets: str | None = None, seed: int = 0) -> Plan:
    """The studies of ``sections``.

    corpus: the plain text every study but the tweets trains on, with ``n_train`` training
    characters once ``VAL_FRACTION`` is held out (``a4lib.train.split``); tweets: the tweet corpus
    (the tweet section needs one: without it, it is left out).
    """
    sections = list(sections)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s): {', '.join(sorted(unknown))}")
    if tweets is None:
        sections = [s for s in sections if s != "tweets"]
    runs_dir = Path(runs_dir)
    # float32 where the handout's exact arithmetic is not the point (the main run keeps float64)
    common = dict(corpus=corpus, seed=seed, val_fraction=VAL_FRACTION, sample_every=0, dtype="float32")
    runs: list[StudyRun] = []

    def add(study, name, label, config, timed=False):
        runs.append(StudyRun(study=study, name=name, label=label, dir=runs_dir / name, config=config, timed=timed))

    if "heldout" in sections:
        chunk = chunk_length_for(n_train, 1, RNN.seq_length)
        base = RNN.replace(**common, n_updates=budget.heldout_updates, val_every=budget.heldout_val_every)
        add("heldout", "heldout-sequential", "sequential (the handout's walk)", base.replace(order="sequential"))
        add("heldout", "heldout-chunks", f"chunks of {chunk:,} (shuffled, h reset)",
            base.replace(order="chunks", chunk_length=chunk))
    ngram = None
    if "models" in sections:
        ngram = NGramRun(dir=runs_dir / "ngram", corpus=corpus, order=NGRAM_ORDER, val_fraction=VAL_FRACTION)
        timed = dict(common, max_seconds=budget.model_seconds, n_updates=10_000_000, order="chunks",
                     val_every=budget.model_val_every,
                     chunk_length=chunk_length_for(n_train, NETWORK.batch_size, NETWORK.seq_length))
        for model, layers in NETWORKS:
            add("models", f"model-{model}-{layers}", f"{CELL_LABELS[model]}, {layers} layer{'s' * (layers > 1)}",
                NETWORK.replace(**timed, model=model, layers=layers), timed=True)
    if "optimizers" in sections:
        chunk = chunk_length_for(n_train, 1, RNN.seq_length)
        for name, eta in OPTIMIZERS:
            add("optimizers", f"optimizer-{name}", f"{OPTIMIZER_LABELS[name]}, eta {eta:g}",
                RNN.replace(**common, optimizer=name, eta=eta, n_updates=budget.optimizer_updates,
                            val_every=budget.optimizer_val_every, order="chunks", chunk_length=chunk))
    if "tweets" in sections:
        add("tweets", "tweets", "the tweet run (RNN, m 100, AdaGrad)",
            RNN.replace(corpus=tweets, seed=seed, dtype="float32", n_updates=budget.tweet_updates,
                        sample_every=budget.tweet_sample_every, sample_length=TWEET_SAMPLE_LENGTH))
    scaling = None
    if "batches" in sections:
        scaling = ("bench", "--json", "--scaling", "--corpus", corpus, "--seq-length", str(RNN.seq_length), "--repeat", "1", "--scaling-seconds", f"{budget.scaling_seconds:g}",
                   "--reference-updates", str(budget.bench_reference_updates))
    return Plan(sections=tuple(s for s in SECTIONS if s in sections), corpus=corpus, tweets=tweets, seed=seed,
                budget=budget, scaling_args=scaling, sampling=Sampling() if "sampling" in sections else None,
                ngram=ngram, runs=tuple(runs))


def timed_first(runs: Sequence[StudyRun]) -> tuple[list[StudyRun], list[StudyRun]]:
    """The runs compared in seconds (trained together, alone) and the others."""
    return [r for r in runs if r.timed], [r for r in runs if not r.timed]
