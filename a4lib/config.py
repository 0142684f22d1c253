"""Config: every setting of a training run, with its default, its help and its check.

This is the only place a training setting is written. From it come the ``train`` command's flags
(``add_arguments``), a run's command line (``Config.to_argv``, which ``Config.from_argv`` reads
back to an equal Config), the comparison a resume makes (``Config.differences``), the build's and
the studies' overrides (``dataclasses.replace`` or ``Config(**overrides)``) and the check of a
notebook's parameters (``a4lib.notebook``).

A bad value raises ``ConfigError``: one line that names the setting, the value and what is
allowed; in IPython (and so in a papermill notebook) it shows as that one line, not a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from .model import BACKENDS, INITS, MODEL_NAMES  # the model layer owns its names

OPTIMIZER_NAMES = ("adagrad", "rmsprop", "adam")
ORDERS = ("sequential", "chunks")
DTYPES = ("float64", "float32")
#: the settings that say where a run stops
BUDGET = ("n_epochs", "n_updates", "max_seconds")
#: what a resume may set anew: where to stop, and the threads it uses (the corpus is compared by its
#: sha256 instead)
RESUME_MAY_CHANGE = ("corpus", *BUDGET, "blas_threads")
#: the most BLAS threads a run may ask for
MAX_BLAS_THREADS = 64
#: the longest sample a run draws (a stop request is honoured during one; this bounds its memory)
MAX_SAMPLE_LENGTH = 100_000
#: the longest chunk (order chunks): longer than any text a4lib trains on
MAX_CHUNK_LENGTH = 1_000_000_000


class ConfigError(ValueError):
    """A bad setting; its message is one line naming the setting, the value and what is allowed."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def setting(default: Any, help: str, *, flag: str | None = None, choices: tuple | None = None,
            check=None, allowed: str = "") -> Any:
    """A Config field: its default, a help text, the command-line flag (default: the name with
    dashes), the allowed values (``choices``, or ``check(value) -> bool`` described by ``allowed``)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "check": check,
                                            "allowed": allowed})


def _finite(v) -> bool:
    return math.isfinite(v)


@dataclass
class Config:
    """Every hyperparameter of a run, with the handout's names."""

    corpus: str | None = setting(None, "text file, tweet JSON, or builtin:python-docs (default: "
                                       "data/goblet_book.txt of the project if present, else builtin:python-docs)")
    model: str = setting("rnn", "the recurrence: the handout's vanilla rnn, gru or lstm", choices=MODEL_NAMES)
    m: int = setting(100, "hidden units m (per layer)", check=lambda v: v >= 1, allowed=">= 1")
    layers: int = setting(1, "stacked recurrent layers; layer l + 1 reads layer l's hidden states",
                          check=lambda v: 1 <= v <= 16, allowed="in [1, 16]")
    dropout: float = setting(0.0, "dropout p on the connections between layers and before the output layer "
                                  "(training only)", check=lambda v: 0 <= v < 1, allowed="in [0, 1)")
    eta: float = setting(0.1, "learning rate eta", check=lambda v: v > 0 and _finite(v), allowed="> 0")
    seq_length: int = setting(25, "characters per sequence (one update)", check=lambda v: v >= 1, allowed=">= 1")
    sig: float = setting(0.01, "standard deviation sig of the initial weights", check=lambda v: v > 0 and _finite(v),
                         allowed="> 0")
    init: str = setting("normal", "initial weights: normal N(0, sig^2) (the handout) or uniform "
                                  "U(-init_range, init_range) (char-rnn)", choices=INITS)
    init_range: float = setting(0.08, "half-width of the uniform initialisation", check=lambda v: v > 0 and _finite(v),
                                allowed="> 0")
    optimizer: str = setting("adagrad", "the update rule", choices=OPTIMIZER_NAMES)
    lr_decay: float = setting(1.0, "multiply eta by this at the end of each epoch from epoch lr_decay_after on "
                                   "(char-rnn's learning_rate_decay; 1: eta stays constant)", check=lambda v: 0 < v <= 1,
                              allowed="in (0, 1]")
    lr_decay_after: int = setting(10, "the first epoch whose end decays eta (char-rnn's learning_rate_decay_after)",
                                  check=lambda v: v >= 1, allowed=">= 1")
    clip: float = setting(5.0, "clip each gradient element to [-clip, clip] (0: no clipping)",
                          check=lambda v: v >= 0, allowed=">= 0")
    n_epochs: int | None = setting(2, "stop after this many epochs (unless n_updates is given)", flag="--epochs",
                                   check=lambda v: v >= 1, allowed=">= 1")
    n_updates: int | None = setting(None, "stop after this many updates (instead of n_epochs)", flag="--updates",
                                    check=lambda v: v >= 0, allowed=">= 0")
    max_seconds: float | None = setting(None, "also stop after this much training time (seconds)",
                                        check=lambda v: v > 0 and _finite(v), allowed="> 0")
    seed: int = setting(0, "seeds the initial weights, the order and the samples", check=lambda v: v >= 0,
                        allowed=">= 0")
    sample_every: int = setting(10_000, "updates between samples (0: none)", check=lambda v: v >= 0, allowed=">= 0")
    sample_length: int = setting(200, "characters per sample", check=lambda v: 0 <= v <= MAX_SAMPLE_LENGTH,
                                 allowed=f"in [0, {MAX_SAMPLE_LENGTH:,}]")
    batch_size: int = setting(1, "parallel streams B (1: the handout's walk)", check=lambda v: v >= 1, allowed=">= 1")
    order: str = setting("sequential", "sequential: the handout's walk; chunks: shuffled chunks, h reset per chunk",
                         choices=ORDERS)
    chunk_length: int = setting(1000, "characters per chunk (order chunks)", check=lambda v: 2 <= v <= MAX_CHUNK_LENGTH,
                                allowed=f"in [2, {MAX_CHUNK_LENGTH:,}]")
    val_fraction: float = setting(0.0, "hold out this final part of the text; the best parameters are those of "
                                       "the lowest held-out loss", check=lambda v: 0 <= v < 1, allowed="in [0, 1)")
    val_every: int = setting(1000, "updates between held-out evaluations", check=lambda v: v >= 1, allowed=">= 1")
    checkpoint_every: int = setting(10_000, "updates between checkpoints (fewer when saving gets slow)",
                                    check=lambda v: v >= 1, allowed=">= 1")
    backend: str = setting("auto", "auto: the compiled numba kernels where installed, else numpy", choices=BACKENDS)
    dtype: str = setting("float64", "the floating-point type of parameters, optimizer state and step",
                         choices=DTYPES)
    blas_threads: int = setting(1, "threads of the BLAS compiled code calls (SciPy's; numpy's keeps one): 2 gives "
                                   "one large run both cores", check=lambda v: 1 <= v <= MAX_BLAS_THREADS,
                                allowed=f"in [1, {MAX_BLAS_THREADS}]")

    def __post_init__(self) -> None:
        if self.n_updates is not None:  # a number of updates replaces the number of epochs
            self.n_epochs = None

    # checks -----------------------------------------------------------------------------------
    def validate(self) -> "Config":
        """Raise ConfigError for the first bad value (its type, then its range); self when all good."""
        for f in fields(self):
            check_value(f.name, getattr(self, f.name))
        if self.n_epochs is None and self.n_updates is None:
            raise ConfigError("give a number of epochs (n_epochs) or of updates (n_updates)")
        return self

    # command lines ---------------------------------------------------------------------------
    def to_argv(self) -> list[str]:
        """The ``a4lib train`` flags of every setting that differs from its default."""
        argv: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == f.default:
                continue
            argv += [flag_of(f.name), repr(value) if isinstance(value, float) else str(value)]
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> "Config":
        """The Config of ``a4lib train`` flags (as ``to_argv`` writes them)."""
        parser = _Parser(prog="a4lib train")
        add_arguments(parser)
        return cls.from_namespace(parser.parse_args(argv)).validate()

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "Config":
        """The Config of the settings parsed by ``add_arguments`` (the given ones; defaults elsewhere)."""
        return cls(**given(ns))

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """A Config from a dict such as config.json (keys that are not settings are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: "Config", ignore=()) -> list[str]:
        """The names of the settings whose values differ (except ``ignore``)."""
        return [f.name for f in fields(self) if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)]

    def replace(self, **changes) -> "Config":
        return replace(self, **changes)

    def eta_after(self, epochs: int) -> float:
        """The learning rate once ``epochs`` epochs are done: eta decayed by lr_decay at the end of
        each epoch from epoch lr_decay_after on (char-rnn's schedule)."""
        return self.eta * self.lr_decay ** max(0, epochs - self.lr_decay_after + 1)


# the fields: types, flags, checks --------------------------------------------------------------

FIELDS = {f.name: f for f in fields(Config)}


def value_type(name: str) -> tuple[type, bool]:
    """The base type of a setting (int, float or str) and whether None is allowed."""
    annotation = str(FIELDS[name].type)
    base = int if annotation.startswith("int") else float if annotation.startswith("float") else str
    return base, "None" in annotation


def flag_of(name: str) -> str:
    return FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def allowed_text(name: str) -> str:
    meta = FIELDS[name].metadata
    base, optional = value_type(name)
    what = (" | ".join(meta["choices"]) if meta["choices"] else
            {int: "an integer", float: "a number", str: "a string"}[base] + (f" {meta['allowed']}" if meta["allowed"] else ""))
    return what + (" (or None)" if optional else "")


def check_value(name: str, value: Any) -> Any:
    """``value`` when it is allowed for setting ``name``; a ConfigError naming both otherwise."""
    if name not in FIELDS:
        raise ConfigError(f"unknown setting {name!r}{near(name, FIELDS)}")
    base, optional = value_type(name)
    meta = FIELDS[name].metadata
    if value is None:
        if optional:
            return value
        ok = False
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    else:
        ok = isinstance(value, str)
    if ok and meta["choices"]:
        ok = value in meta["choices"]
    if ok and meta["check"]:
        ok = bool(meta["check"](value))
    if not ok:
        raise ConfigError(f"{name} = {value!r} is not allowed: expected {allowed_text(name)}")
    return value


def near(name: str, names) -> str:
    """' (did you mean X?)' for the valid name nearest to ``name``, or ''."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# argparse ----------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(message)


def add_arguments(parser: argparse.ArgumentParser, exclude=(), only=None) -> None:
    """Add a flag for every setting (or for those in ``only``): its help shows the default and what
    is allowed. Flags that are not given are absent from the namespace (``given`` returns the ones
    that were)."""
    names = [f.name for f in fields(Config) if f.name not in exclude and (only is None or f.name in only)]
    stop = parser.add_mutually_exclusive_group() if {"n_epochs", "n_updates"} & set(names) else None
    for f in fields(Config):
        if f.name not in names:
            continue
        base, optional = value_type(f.name)
        meta = f.metadata
        default = "none" if f.default is None else f.default
        target = stop if f.name in ("n_epochs", "n_updates") else parser
        target.add_argument(flag_of(f.name), dest=f.name, type=_parse(f.name, base), default=argparse.SUPPRESS,
                            metavar=f.name.upper() if not meta["choices"] else "{" + ",".join(meta["choices"]) + "}",
                            help=meta["help"] if "(default" in meta["help"] else f"{meta['help']} (default: {default})")


def _parse(name: str, base: type):
    def convert(text: str):
        if text.strip().lower() == "none" and value_type(name)[1]:
            return None
        try:
            return check_value(name, base(text))
        except ValueError:  # argparse puts the flag in front: "argument --eta: '-1' is not allowed: ..."
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: expected {allowed_text(name)}") from None
    convert.__name__ = base.__name__
    return convert


def given(ns: argparse.Namespace) -> dict:
    """The settings a namespace of ``add_arguments`` holds (those given on the command line)."""
    return {k: v for k, v in vars(ns).items() if k in FIELDS}


def defaults() -> dict:
    """Every setting's default."""
    return {f.name: (f.default if f.default is not MISSING else None) for f in fields(Config)}
