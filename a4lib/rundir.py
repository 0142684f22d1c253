"""A run directory: where a training run lives, and the only hand-off from training to the report.

It holds ``config.json``, ``summary.json``, ``samples.json``, ``history.npz``, ``checkpoint.npz``
and ``provenance.json`` (each written atomically), and ``.lock`` while a process trains into it.

Paths: a path a user gives resolves from the working directory (where the user, the kernel or
papermill stands); the project's own defaults (``runs/``, ``figures/``, ``data/goblet_book.txt``)
resolve from the project folder (``project_path``).
"""
from __future__ import annotations

import datetime as _dt
import errno
import os
import platform
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checkpoint import CHECKPOINT, RunFileError, read_json, write_json

if TYPE_CHECKING:
    from .config import Config
    from .corpus import Corpus

PROVENANCE = "provenance.json"
LOCK = ".lock"
#: what a run directory holds and means; bumped when that changes, so that no run of another format is
#: continued or reused (see ``verdict``). 2: held-out loss from the training state, the states that go with
#: the parameters saved. 3: the best parameters are those the best loss was measured with (before the
#: update's step), best_update the number of updates they have had, held-out evaluations only on their
#: schedule (where a run ends, off the record).
RUN_FORMAT = 3


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (in use, not a run, already a run)."""


# --- where things are -------------------------------------------------------------------------

def project_root() -> Path | None:
    """The a4lib checkout this package lives in (holding pyproject.toml), or None when installed
    elsewhere."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() and (here / "a4lib").is_dir() else None


def project_path(relative: str | Path) -> Path:
    """A project default (``runs``, ``figures``, ``data/goblet_book.txt``): under the project folder
    in a checkout, else under the working directory."""
    return (project_root() or Path.cwd()) / relative


def new_run_dir(run_dir: str | Path | None = None, prefix: str = "train", resume: bool = False) -> Path:
    """The directory a training notebook writes: ``run_dir`` (from the working directory), or a
    new ``runs/<prefix>-<time>`` in the project. What becomes of a run already there is decided by
    ``verdict`` when it trains (``a4lib.train``)."""
    if run_dir is None:
        if resume:
            raise RunDirError("resume=True needs the run_dir of the run to continue")
        runs = project_path("runs")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path, k = runs / f"{prefix}-{stamp}", 1
        while path.exists():
            k += 1
            path = runs / f"{prefix}-{stamp}-{k}"
        return path
    if str(run_dir).strip() == "":
        raise RunDirError("the run directory is an empty path: name one")
    return Path(run_dir)


def latest_run(runs: str | Path | None = None) -> Path:
    """The most recently written run directory (one holding a checkpoint) under ``runs`` (default:
    the project's runs/), searched two levels deep (runs/NAME and runs/SWEEP/NAME)."""
    runs = Path(runs) if runs is not None else project_path("runs")
    found = sorted([*runs.glob(f"*/{CHECKPOINT}"), *runs.glob(f"*/*/{CHECKPOINT}")], key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no training run under {runs}: train one first "
                                f"(notebooks/train.ipynb, or `a4lib train --out runs/NAME`)")
    return found[-1].parent


# --- the lock ---------------------------------------------------------------------------------

class RunLock:
    """An exclusive lock on a run directory while a process trains into it (``flock`` on
    ``DIR/.lock``; the system drops it when the process ends, however it ends); with ``name`` and
    ``holder`` another lock file and who holds it (a sweep's folder)."""

    def __init__(self, run_dir: str | Path, name: str = LOCK, holder: str = "another process is training into it") -> None:
        self.path = Path(run_dir) / name
        self.holder = holder
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise RunDirError(f"cannot write to {self.path.parent}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"{self.path.parent} is in use: {self.holder}") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def is_locked(run_dir: str | Path) -> bool:
    """True while a process trains into ``run_dir``."""
    import fcntl

    path = Path(run_dir) / LOCK
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def clean_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove the ``.NAME.*.tmp`` files an atomic write leaves when its process is killed mid-save
    (call it while holding the lock); the paths removed."""
    removed = []
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


# --- reading: every file read back is checked ---------------------------------------------------

#: a run's status as its summary says it
STATUSES = ("running", "finished", "interrupted", "diverged")
#: the model of an n-gram run (a4lib.ngram), which no training continues
NGRAM = "ngram"
#: summary.json's numbers (None allowed)
_SUMMARY_NUMBERS = ("epochs", "best_smooth_loss", "best_val_loss", "final_smooth_loss", "final_val_loss",
                    "seconds", "updates_per_s")


def read_json_or(path: str | Path | None, default=None):
    """A JSON file's content; ``default`` when path is None or the file does not exist."""
    if path is None or not Path(path).is_file():
        return default
    return read_json(path)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_summary(run_dir: str | Path) -> dict | None:
    """summary.json of a run (None when there is none); a RunFileError naming the file and the
    value when it is not what a4lib writes."""
    path = Path(run_dir) / "summary.json"
    summary = read_json_or(path)
    if summary is None:
        return None
    if not isinstance(summary, dict):
        raise RunFileError(f"{path}: a JSON {type(summary).__name__}, not the summary of a run")
    if summary.get("status") not in STATUSES:
        raise RunFileError(f"{path}: status {str(summary.get('status'))[:40]!r} is none of {', '.join(STATUSES)}")
    for key in ("updates", "best_update"):
        value = summary.get(key, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise RunFileError(f"{path}: {key} = {str(value)[:40]!r} is not a count")
    for key in _SUMMARY_NUMBERS:
        if summary.get(key) is not None and not _is_number(summary[key]):
            raise RunFileError(f"{path}: {key} = {str(summary[key])[:40]!r} is not a number")
    return summary


def read_config(run_dir: str | Path) -> dict | None:
    """config.json of a run (None when there is none); a RunFileError naming the file when it is not
    an object of valid settings (an n-gram run's: ``ngram.read_ngram_config``'s NGramError)."""
    from .config import Config

    path = Path(run_dir) / "config.json"
    config = read_json_or(path)
    if config is None:
        return None
    if not isinstance(config, dict):
        raise RunFileError(f"{path}: a JSON {type(config).__name__}, not the settings of a run")
    if config.get("model") == NGRAM:  # an n-gram run's settings are a4lib.ngram's
        from .ngram import read_ngram_config

        return read_ngram_config(run_dir)
    try:
        Config.from_dict(config).validate()
    except (ValueError, TypeError) as err:
        raise RunFileError(f"{path}: {err}") from None
    return config


def read_samples(run_dir: str | Path) -> list[dict]:
    """samples.json of a run ([] when there is none), each with its update and text."""
    path = Path(run_dir) / "samples.json"
    samples = read_json_or(path, [])
    if not isinstance(samples, list) or not all(isinstance(s, dict) and isinstance(s.get("update"), int) and
                                                isinstance(s.get("text"), str) for s in samples):
        raise RunFileError(f"{path}: not a list of samples (each with its update and text)")
    return samples


def read_history(run_dir: str | Path) -> dict[str, np.ndarray]:
    """history.npz of a run: its arrays, each a vector of numbers."""
    path = Path(run_dir) / "history.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            history = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise RunFileError(f"{path}: not a readable history ({type(err).__name__})") from None
    for k, v in history.items():
        if v.ndim != 1 or v.dtype.kind not in "if":
            raise RunFileError(f"{path}: {k} is not a vector of numbers ({v.dtype} {v.shape})")
    return history


@dataclass
class Run:
    """A training run directory, as the notebooks read it."""

    path: Path
    config: dict
    summary: dict
    samples: list[dict]
    history: dict[str, np.ndarray]
    provenance: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def corpus(self) -> dict:
        """The corpus statistics: name, n_chars, K, n_sequences, sha256, ..."""
        return self.summary.get("corpus", {})

    @property
    def epoch_starts(self) -> list[int]:
        return [int(s) for s in self.history.get("epoch_starts", [0])]

    def epoch_at(self, update: int) -> int:
        """The epoch (1, 2, ...) that update number ``update`` belongs to (0: the first)."""
        return sum(1 for s in self.epoch_starts if s < max(update, 1))

    def vocabulary(self) -> list[str]:
        """The vocabulary (index order) stored in the run's checkpoint."""
        from .checkpoint import check_meta, load_meta

        path = self.path / CHECKPOINT
        return list(check_meta(load_meta(path), path)["corpus"]["chars"]) if path.is_file() else []


def load_run(run_dir: str | Path) -> Run:
    """Read a training run: config, summary, samples and history, each checked (a RunFileError
    names the file that is not what a4lib writes)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    missing = [f for f in ("config.json", "summary.json", "samples.json", "history.npz") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a finished training run (missing {', '.join(missing)})")
    provenance = read_json_or(path / PROVENANCE, {})
    if not isinstance(provenance, dict):
        raise RunFileError(f"{path / PROVENANCE}: a JSON {type(provenance).__name__}, not an object")
    return Run(path=path, config=read_config(path), summary=read_summary(path), samples=read_samples(path),
               history=read_history(path), provenance=provenance)


def status(run_dir: str | Path, check_lock: bool = True) -> str:
    """A run's status: its summary's (finished, interrupted, diverged), "running" while a process
    trains into it, "killed" when it said running but no process holds it (``check_lock`` False:
    the caller holds the lock), "new" without a summary. A RunFileError for a summary that is not
    what a4lib writes."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir) or {}
    said = summary.get("status", "new")
    if said == "running":
        return "running" if check_lock and is_locked(run_dir) else "killed"
    return said


def list_runs(folder: str | Path) -> list[dict]:
    """One row per run directory under ``folder`` (itself, its children and grandchildren), newest
    last: name, model, corpus, updates (where its checkpoint stands), best smooth and held-out loss,
    status, date; a run whose files cannot be read has status "unreadable" and ``problem`` (one
    line naming the file)."""
    from .checkpoint import check_meta, load_meta

    folder = Path(folder)
    dirs = {p.parent for p in [*folder.glob("config.json"), *folder.glob("*/config.json"),
                               *folder.glob("*/*/config.json")]}
    rows = []
    for d in dirs:
        problem = None
        try:
            config = read_config(d) or {}
            summary = read_summary(d) or {}
            said = status(d)
            updates = summary.get("updates")
            if said in ("running", "killed") and (d / CHECKPOINT).is_file():  # its summary lags its checkpoint
                updates = check_meta(load_meta(d / CHECKPOINT), d / CHECKPOINT)["updates"]
        except (OSError, ValueError) as err:  # RunFileError, a file cut short or unreadable
            config, summary, said, updates = {}, {}, "unreadable", None
            problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        when = max(((d / f).stat().st_mtime for f in ("config.json", "summary.json") if (d / f).is_file()), default=0.0)
        rows.append({
            "name": str(d.relative_to(folder)) if d != folder else d.name,
            "model": config.get("model"), "corpus": config.get("corpus"),
            "updates": updates, "best_smooth_loss": summary.get("best_smooth_loss"),
            "best_val_loss": summary.get("best_val_loss"), "status": said,
            "date": _dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M"), "mtime": when,
            "problem": problem,
        })
    return sorted(rows, key=lambda r: r["mtime"])


# --- the run's text ----------------------------------------------------------------------------

def checkpoint_texts(meta: dict) -> list[str | None]:
    """Where a checkpoint (its metadata) says its text is, in the order ``run_text`` tries them: the
    absolute path it recorded, the corpus of its settings (None: the default corpus), its name."""
    stored = meta["corpus"]
    path = [stored["path"]] if isinstance(stored.get("path"), str) else []
    return [*path, meta["config"].get("corpus"), stored.get("name")]


def run_text(run_dir: str | Path, sha256: str | None, recorded: list[str | None],
             given: str | Path | None = None) -> Corpus:
    """The text a run trained on: ``given`` when given, else the first of ``recorded`` (corpus
    specs, None the default corpus) that loads and whose sha256 is ``sha256`` (None: any). A
    RunDirError (one line) when the text loads but differs, or none can be read."""
    from .corpus import CorpusError, load_corpus

    problems, other = [], None
    for spec in dict.fromkeys([given] if given is not None else recorded):
        try:
            text = load_corpus(spec)
        except CorpusError as err:
            problems.append(str(err))
            continue
        if sha256 is None or text.sha256 == sha256:
            return text
        other = other or text.name
    if other is not None:
        raise RunDirError(f"{other} is not the text {run_dir} was trained on (its sha256 differs)")
    raise RunDirError(f"cannot find the text {run_dir} was trained on ({problems[-1] if problems else 'none recorded'})"
                      f": give its path")


# --- the verdict: what to do with a run directory ------------------------------------------------

VERDICTS = ("new", "resume", "extend", "done", "conflict")


@dataclass(frozen=True)
class Verdict:
    """What to do with a run directory when asked to train a Config on a corpus (see ``verdict``):
    ``kind`` one of VERDICTS, ``reason`` one line saying why (naming the directory), ``status`` the
    run's status and ``updates`` where its checkpoint stands."""

    kind: str
    reason: str
    status: str = "new"
    updates: int = 0

    @property
    def trains(self) -> bool:
        """True when the run is to be trained: new, resumed or extended."""
        return self.kind in ("new", "resume", "extend")


def verdict(run_dir: str | Path, cfg: Config, corpus: Corpus | str | None = None, check_lock: bool = True) -> Verdict:
    """The one rule deciding what becomes of ``run_dir`` when asked to train ``cfg`` (a Config, its
    budget included) on ``corpus`` (a Corpus, its sha256, or None: not compared here); train,
    sweep, the command line and the report build act on it:

    - conflict: another process trains into it (unless ``check_lock`` is False: the caller holds
      the lock); a file of it cannot be read or is not what a4lib writes; it was written in another
      run format (RUN_FORMAT); it holds other settings than cfg (the budget and the corpus path
      aside); it was trained on another text (sha256); it has trained past cfg's budget;
    - new: it holds no checkpoint (nothing to continue; what it holds is written over);
    - done: it diverged (trained again it would diverge again), or it finished where cfg's budget
      ends;
    - resume: it was interrupted or killed: it continues from its checkpoint to cfg's budget;
    - extend: it finished, and cfg's budget goes further.
    """
    from .checkpoint import CheckpointError, check_meta, load_arrays_of
    from .config import RESUME_MAY_CHANGE, Config, flag_of

    run_dir = Path(run_dir)
    sha = getattr(corpus, "sha256", corpus)

    def conflict(reason: str, said: str = "new", updates: int = 0) -> Verdict:
        return Verdict("conflict", reason, said, updates)

    if check_lock and is_locked(run_dir):
        return conflict(f"{run_dir} is in use: another process is training into it", "running")
    try:
        config = read_config(run_dir)
        if config is not None and config.get("model") == NGRAM:
            return conflict(f"{run_dir} holds an n-gram run: choose another folder", status(run_dir, check_lock=False))
        if not (run_dir / CHECKPOINT).is_file():
            return Verdict("new", f"{run_dir} holds no run to continue")
        if config is None:
            raise RunFileError(f"{run_dir / 'config.json'}: missing beside {CHECKPOINT}")
        said = status(run_dir, check_lock=False)
        meta, (epoch_starts,) = load_arrays_of(run_dir / CHECKPOINT, ["epoch_starts"])
        check_meta(meta, run_dir / CHECKPOINT)
        if epoch_starts.ndim != 1 or epoch_starts.dtype.kind not in "iu":
            raise CheckpointError(f"{run_dir / CHECKPOINT}: its epoch_starts ({epoch_starts.dtype} "
                                  f"{epoch_starts.shape}) is not a vector of update numbers")
    except (OSError, ValueError) as err:  # RunFileError, CheckpointError
        return conflict(str(err).splitlines()[0] if str(err) else f"{run_dir}: {type(err).__name__}", "unreadable")
    updates, epoch, seconds = meta["updates"], meta["epoch"], meta["seconds"]
    if config.get("format") != RUN_FORMAT:
        return conflict(f"{run_dir} holds a run in format {config.get('format')}, not this a4lib's {RUN_FORMAT}: "
                        f"train it anew (in another folder, or remove it)", said, updates)
    own = Config.from_dict(meta["config"])
    changed = cfg.differences(own, ignore=RESUME_MAY_CHANGE)
    if changed:
        name = changed[0]
        return conflict(f"{run_dir} holds a run with {name} = {getattr(own, name)!r}, not {getattr(cfg, name)!r}: "
                        f"a run keeps its settings (leave out {flag_of(name)}, or use another folder)", said, updates)
    if sha is not None and meta["corpus"].get("sha256") != sha:
        return conflict(f"{run_dir} was trained on another text than {cfg.corpus or 'the default corpus'} (its "
                        f"sha256 differs)", said, updates)
    if said == "diverged":
        return Verdict("done", f"{run_dir} diverged at update {updates:,}: train a new run (with a smaller eta)",
                       said, updates)
    into_next_epoch = len(epoch_starts) > 0 and updates > int(epoch_starts[-1])
    past = (cfg.n_updates is not None and updates > cfg.n_updates or
            cfg.n_epochs is not None and (epoch > cfg.n_epochs or epoch == cfg.n_epochs and into_next_epoch))
    if past:
        budget = f"{cfg.n_updates:,} updates" if cfg.n_updates is not None else f"{cfg.n_epochs} epochs"
        return conflict(f"{run_dir} has trained further ({updates:,} updates, {epoch} whole epochs) than the "
                        f"{budget} asked: ask for at least as much, or use another folder", said, updates)
    reached = (cfg.max_seconds is not None and seconds >= cfg.max_seconds or
               cfg.n_updates is not None and updates >= cfg.n_updates or
               cfg.n_epochs is not None and epoch >= cfg.n_epochs)
    if said == "finished":
        if reached:
            return Verdict("done", f"{run_dir} has finished this budget ({updates:,} updates)", said, updates)
        return Verdict("extend", f"{run_dir} finished at {updates:,} updates; the budget goes further", said, updates)
    return Verdict("resume", f"{run_dir} stopped ({said}) at update {updates:,}", said, updates)


# --- provenance -------------------------------------------------------------------------------

def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def provenance(extra: dict | None = None) -> dict:
    """Where and with what this process runs: versions, git commit, machine, time."""
    root = project_root()
    commit = _git(root, "rev-parse", "HEAD") if root else None
    dirty = None
    if commit:
        said = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = bool(said) if said is not None else None
    info = {
        "a4lib": _version("a4lib"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": np.__version__,
        "numba": _version("numba"),
        "matplotlib": _version("matplotlib"),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "git_commit": commit,
        "git_dirty": dirty,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "argv": sys.argv,
    }
    return {**info, **(extra or {})}


def write_provenance(run_dir: str | Path, extra: dict | None = None, defaults: dict | None = None) -> dict:
    """Record ``provenance()`` in the run directory (provenance.json) with ``extra``, keeping the keys
    an earlier call wrote (a build's ``made_by`` and ``command``) unless given anew; ``defaults``
    only where the file does not already say."""
    path = Path(run_dir) / PROVENANCE
    old = read_json_or(path, {}) or {}
    now = provenance()
    info = {**now, **(defaults or {}), **{k: v for k, v in old.items() if k not in now}, **(extra or {})}
    write_json(path, info)
    return info
