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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT, read_json, write_json

PROVENANCE = "provenance.json"
LOCK = ".lock"


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
    new ``runs/<prefix>-<time>`` in the project.

    A ``run_dir`` that already holds a run is refused unless ``resume`` (and a missing one is
    refused with ``resume``), so a run is never overwritten by accident.
    """
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
    path = Path(run_dir)
    if str(run_dir).strip() == "":
        raise RunDirError("the run directory is an empty path: name one")
    has_run = (path / CHECKPOINT).is_file()
    if has_run and not resume:
        raise RunDirError(f"{path} already holds a run: set resume=True to continue it, or choose another run_dir")
    if resume and not has_run:
        raise RunDirError(f"{path}: no run to resume (no {CHECKPOINT})")
    return path


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
    ``DIR/.lock``; the system drops it when the process ends, however it ends)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
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
                raise RunDirError(f"{self.path.parent} is in use: another process is training into it") from None
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


# --- reading ----------------------------------------------------------------------------------

def read_json_or(path: str | Path | None, default=None):
    """A JSON file's content; ``default`` when path is None or the file does not exist."""
    if path is None or not Path(path).is_file():
        return default
    return read_json(path)


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
        from .checkpoint import load_meta

        path = self.path / CHECKPOINT
        return list(load_meta(path).get("corpus", {}).get("chars", [])) if path.is_file() else []


def load_run(run_dir: str | Path) -> Run:
    """Read a training run: config, summary, samples and history."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    missing = [f for f in ("config.json", "summary.json", "samples.json", "history.npz") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a finished training run (missing {', '.join(missing)})")
    with np.load(path / "history.npz", allow_pickle=False) as z:
        history = {k: z[k] for k in z.files}
    return Run(path=path, config=read_json(path / "config.json"), summary=read_json(path / "summary.json"),
               samples=read_json(path / "samples.json"), history=history,
               provenance=read_json_or(path / PROVENANCE, {}))


def status(run_dir: str | Path) -> str:
    """A run's status: its summary's (finished, interrupted, diverged), "running" while a process
    trains into it, "killed" when it said running but no process holds it, "new" without a summary."""
    run_dir = Path(run_dir)
    summary = read_json_or(run_dir / "summary.json", {}) or {}
    said = summary.get("status", "new")
    if said == "running":
        return "running" if is_locked(run_dir) else "killed"
    return said


def list_runs(folder: str | Path) -> list[dict]:
    """One row per run directory under ``folder`` (itself, its children and grandchildren), newest
    last: name, model, corpus, updates, best smooth and held-out loss, status, date."""
    folder = Path(folder)
    dirs = {p.parent for p in [*folder.glob("config.json"), *folder.glob("*/config.json"),
                               *folder.glob("*/*/config.json")]}
    rows = []
    for d in dirs:
        try:
            config = read_json_or(d / "config.json", {}) or {}
            summary = read_json_or(d / "summary.json", {}) or {}
            said = status(d)
        except (OSError, ValueError):  # a file cut short or not JSON: the run is listed as such
            config, summary, said = {}, {}, "unreadable"
        when = max((d / f).stat().st_mtime for f in ("config.json", "summary.json") if (d / f).is_file())
        rows.append({
            "name": str(d.relative_to(folder)) if d != folder else d.name,
            "model": config.get("model"), "corpus": config.get("corpus"),
            "updates": summary.get("updates"), "best_smooth_loss": summary.get("best_smooth_loss"),
            "best_val_loss": summary.get("best_val_loss"), "status": said,
            "date": _dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M"), "mtime": when,
        })
    return sorted(rows, key=lambda r: r["mtime"])


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
