"""Sweeps: a grid of training runs, each made exactly as ``a4lib train`` makes it, run by an
existing engine: a pool of local processes, or a Dask distributed cluster.

    a4lib sweep --corpus text.txt --out runs/sw --grid seed=0,1,2 --grid eta=0.05,0.1 --updates 20000

Every combination of the grid's values is one run in ``OUT/<name>``, named by its values with the
settings sorted (``eta=0.05,seed=1``); every other setting is the sweep's (the train flags). The
same settings and seed give the same run as ``a4lib train`` (the same summary but for its times).
``OUT/sweep.json`` lists each run's name, overrides (its grid values) and summary, for every run
the folder's sweeps made (a sweep of part of a grid keeps the others); ``sweep.csv`` holds the same
as a table and ``sweep.png`` the runs' smooth-loss curves (``analysis.sweep_csv``,
``plots.sweep_curves``). The folder is locked while a sweep runs into it: a second is refused.

What becomes of each run directory is ``rundir.verdict``'s: finished (and diverged) runs are
skipped, interrupted or killed ones resumed from their checkpoints, finished ones extended to a
larger budget (``--updates``, ``--epochs``); one that holds other settings is refused with one line.

Engines: locally a ``concurrent.futures.ProcessPoolExecutor`` (one run per worker process, as many
workers as cores by default); a worker that ends abruptly (killed) breaks its pool: its run is
reported failed, and the runs the pool stopped with it (saved, "interrupted") and those not yet
started go on in a fresh pool. With ``scheduler="tcp://HOST:PORT"`` the same task (``train_run``)
goes to a running Dask cluster through ``distributed.Client`` (the optional extra ``dask``). The
run directories and the corpus must then be on a filesystem every worker shares, at the same path
(``OUT`` and a relative corpus path are made absolute here) and a4lib installed on the workers.
A worker may run several runs in threads (``--nthreads``): every run's scratch arrays belong to
its own network and optimizer, so runs in one process never share them.

Ctrl-C (or SIGTERM, SIGHUP): locally each worker's trainer saves its run and says "interrupted" (workers
ignore SIGINT between runs; the sweep sends SIGINT to its workers until their runs have stopped),
runs not yet started do not start, ``sweep.json`` is written with what exists and
``SweepInterrupted`` is raised (the CLI exits 130). On a Dask cluster the runs that have not
started are cancelled; the running ones train on to their end there (a Dask task runs in a worker
thread, where a signal cannot reach the trainer).
"""
from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import queue
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from . import config as _config
from .checkpoint import RunFileError, write_bytes, write_json
from .config import FIELDS, Config, ConfigError, check_value, flag_of, near
from .corpus import BUILTIN, load_corpus
from .rundir import LOCK, RunDirError, RunLock, read_json_or, read_summary, status, verdict, write_provenance

#: the most runs one sweep makes (a larger grid is refused: split it)
MAX_RUNS = 1000
#: the lock file of a sweep's folder
SWEEP_LOCK = ".sweep.lock"
#: how often a run goes to a fresh pool after its pool broke under it (a worker killed elsewhere)
MAX_TRIES = 3


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP stopped the sweep: the runs are saved and resumable; ``summaries``
    holds where each run stands (name -> summary), ``entries`` (from ``sweep``) the grid's entries."""

    def __init__(self, summaries: dict[str, dict], signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)
        self.summaries = summaries
        self.signal_name = signal_name
        self.entries: list[dict] = []


# --- the grid ---------------------------------------------------------------------------------

def setting_name(word: str) -> str:
    """The Config setting a grid names: its name (``seq_length``) or its flag without dashes
    (``seq-length``, ``updates``, ``epochs``); a ConfigError with the near name otherwise."""
    if word in FIELDS:
        return word
    by_flag = {flag_of(name)[2:]: name for name in FIELDS}
    if word in by_flag:
        return by_flag[word]
    raise ConfigError(f"--grid {word}: unknown setting{near(word, [*FIELDS, *by_flag])}")


def parse_value(name: str, text: str):
    """A grid value from the command line, parsed with the setting's type and checked."""
    base, optional = _config.value_type(name)
    if optional and text.strip().lower() == "none":
        return None
    try:
        value = base(text.strip())
    except ValueError:
        raise ConfigError(f"--grid {name}={text}: {text!r} is not allowed: expected "
                          f"{_config.allowed_text(name)}") from None
    return check_value(name, value)


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["seed=0,1,2", "eta=0.05,0.1"]`` -> ``{"seed": [0, 1, 2], "eta": [0.05, 0.1]}``, each value
    parsed and checked; a ConfigError (one line) for a malformed, unknown, empty or repeated item."""
    grid: dict[str, list] = {}
    for spec in specs:
        word, sep, values = spec.partition("=")
        if not sep or not word.strip():
            raise ConfigError(f"--grid {spec}: expected NAME=VALUE1,VALUE2,... (e.g. --grid seed=0,1,2)")
        name = setting_name(word.strip())
        if name in grid:
            raise ConfigError(f"--grid {name} is given twice: list all its values in one --grid")
        items = values.split(",")
        if not values.strip() or any(not item.strip() for item in items):
            raise ConfigError(f"--grid {spec}: an empty value; list the values as {name}=VALUE1,VALUE2,...")
        grid[name] = [parse_value(name, item) for item in items]
    return check_grid(grid)


def check_grid(grid: Mapping[str, Sequence]) -> dict[str, list]:
    """The grid (setting -> values) with every value checked (floats as floats); a ConfigError for
    an empty grid, an unknown setting, a bad, repeated or missing value."""
    if not grid:
        raise ConfigError("the grid is empty: give at least one setting and its values (e.g. seed=0,1,2)")
    checked: dict[str, list] = {}
    for word, values in grid.items():
        name = setting_name(word)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"the grid's {name} needs a non-empty list of values, not {values!r}")
        floats = _config.value_type(name)[0] is float
        values = [float(v) if floats and isinstance(v, int) and not isinstance(v, bool) else v for v in values]
        for v in values:
            check_value(name, v)
        if len(set(map(repr, values))) < len(values):
            raise ConfigError(f"the grid's {name} repeats a value: {values}")
        checked[name] = values
    if "n_epochs" in checked and "n_updates" in checked:
        raise ConfigError("the grid may vary n_epochs or n_updates, not both")
    n_runs = math.prod(len(v) for v in checked.values())
    if n_runs > MAX_RUNS:
        raise ConfigError(f"the grid makes {n_runs:,} runs, more than {MAX_RUNS:,}: split it into several sweeps")
    return checked


def _label(value) -> str:
    if isinstance(value, str) and ("/" in value or os.sep in value):
        return Path(value).name  # a path on the grid (a corpus): its file name
    return "none" if value is None else repr(value) if isinstance(value, float) else str(value)


def run_name(overrides: Mapping) -> str:
    """A run's folder name from its grid values, the settings sorted: ``eta=0.05,seed=1``."""
    return ",".join(f"{name}={_label(overrides[name])}" for name in sorted(overrides))


def expand(base: Config, grid: Mapping[str, Sequence]) -> dict[str, tuple[dict, Config]]:
    """Every combination of the grid's values (the first setting varies slowest): name ->
    (overrides, the base Config with them), each validated."""
    grid = check_grid(grid)
    runs: dict[str, tuple[dict, Config]] = {}
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values))
        changes = dict(overrides)
        if "n_epochs" in changes:  # an epoch budget replaces the base's budget in updates
            changes["n_updates"] = None
        name = run_name(overrides)
        if name in runs:
            raise ConfigError(f"two runs of the grid would share the folder {name!r}: give distinct values")
        runs[name] = overrides, base.replace(**changes).validate()
    return runs


# --- the task a worker runs -------------------------------------------------------------------

def train_run(cfg: Config, run_dir: str | Path, resume: bool) -> dict:
    """Train one run into ``run_dir`` as ``a4lib train`` does (``resume``: continue the run there,
    as its verdict said), in a worker; ``{"summary": ..., "error": None | message}``. A diverged
    run returns its summary with the message; a run that cannot train, ``{"status": "failed"}``
    with the message."""
    from .train import TrainingError, train

    path = Path(run_dir)
    try:
        summary = train(cfg, path, resume=resume, progress=False)
    except TrainingError as err:  # diverged: its summary.json says so
        return {"summary": read_summary(path) or {"status": "diverged"}, "error": str(err)}
    except (ValueError, OSError) as err:  # bad settings or corpus, a run in use, a disk error
        return {"summary": {"status": "failed"}, "error": str(err).splitlines()[0] if str(err) else repr(err)}
    write_provenance(path, defaults={"made_by": "a4lib.sweep"})
    return {"summary": summary, "error": None}


def _worker_init(started) -> None:
    """A local worker ignores Ctrl-C and SIGHUP outside its run (its trainer catches them during
    the run) and says its pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    started.put(os.getpid())


# --- the engines ------------------------------------------------------------------------------

Done = Callable[[str, dict], None]


def _outcome(future) -> dict:
    """A finished future's result; when its worker ended (killed, a broken pool) or the task
    raised (a bug), ``{"summary": None, "error": message}``."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - reported in the run's row, the other runs go on
        return {"summary": None, "error": f"{type(err).__name__}: {err}"}


def _context():
    """forkserver where there is one: workers start clean (no threads or numba state copied) and
    a4lib is imported once; spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["a4lib.sweep"])
        return ctx
    return multiprocessing.get_context("spawn")


Task = tuple[Config, Path, bool]  # a run's settings, its directory, whether it resumes


def _run_local(tasks: dict[str, Task], workers: int, done: Done) -> None:
    """The runs on local worker processes, one pool after another: a pool that breaks (a worker
    killed) hands the runs it stopped or never started to the next."""
    tries = dict.fromkeys(tasks, 0)
    while tasks:
        tasks = _one_pool(tasks, workers, done, tries)


def _one_pool(tasks: dict[str, Task], workers: int, done: Done, tries: dict[str, int]) -> dict[str, Task]:
    """Run ``tasks`` on one pool of ``workers`` processes; the runs left to do when the pool broke
    (``_after_break``)."""
    ctx = _context()
    started = ctx.Queue()
    # one run per worker process: a worker whose trainer caught SIGTERM (sent by the system, or by
    # the pool when another worker was killed) ends after its run instead of waiting for the next
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_worker_init,
                               initargs=(started,), max_tasks_per_child=1)
    futures: dict = {}
    reported: set = set()
    pending: set = set()
    broken: list[str] = []  # the runs whose pool broke under them
    waiting = iter(tasks.items())

    def submit(count: int) -> None:
        for name, task in itertools.islice(waiting, count):
            try:
                future = pool.submit(train_run, *task)
            except BrokenProcessPool:  # the pool takes no more runs: the next pool will
                broken.append(name)
                continue
            futures[future] = name
            pending.add(future)

    try:
        submit(workers)  # at most one run per worker is submitted: after Ctrl-C no run starts
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                pending.discard(future)
                reported.add(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    broken.append(futures[future])
                else:
                    done(futures[future], _outcome(future))
                submit(1)
    except KeyboardInterrupt:
        _stop_workers(futures, started)
        for future, name in futures.items():
            if future not in reported and future.done() and not future.cancelled():
                done(name, _outcome(future))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    broken += [name for name, _ in waiting]
    return _after_break({name: tasks[name] for name in broken}, _pids(started), done, tries) if broken else {}


def _pids(started) -> set[int]:
    """The pids the workers of a pool said (``_worker_init``)."""
    pids = set()
    try:
        while True:
            pids.add(started.get_nowait())
    except (queue.Empty, OSError, ValueError):
        return pids


def _after_break(tasks: dict[str, Task], pids: set[int], done: Done, tries: dict[str, int]) -> dict[str, Task]:
    """The runs of a broken pool: the one whose worker was killed while training (its run says
    "running", it was locked by one of ``pids``, no process holds it now) is reported failed, as is
    one that went to fresh pools MAX_TRIES times; the others go to the next pool, resumed or not as
    their verdict now says (one that finished meanwhile is reported as done)."""
    again = {}
    for name, (cfg, path, _) in tasks.items():
        _wait_while_running(path)
        try:
            lock_pid = int((path / LOCK).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            lock_pid = None
        said = verdict(path, cfg)
        if said.status == "killed" and lock_pid in pids or tries[name] >= MAX_TRIES:
            done(name, {"summary": None, "error": "its worker process ended abruptly (killed?)"})
        elif said.trains:
            tries[name] += 1
            again[name] = cfg, path, said.kind != "new"
        elif said.kind == "done":
            done(name, {"summary": read_summary(path), "error": None})
        else:
            done(name, {"summary": {"status": "failed"}, "error": said.reason})
    return again


def _stop_workers(futures, started) -> None:
    """Send SIGINT to the workers until their runs have stopped (a worker still setting its run up
    ignores it; its trainer catches the next one), however often Ctrl-C is pressed meanwhile."""
    pids: set[int] = set()
    while True:
        try:
            while True:
                pids.add(started.get_nowait())
        except queue.Empty:
            pass
        running = [f for f in futures if not f.done()]
        if not running:
            return
        for child in multiprocessing.active_children():  # alive: a pid of an ended worker may be reused
            if child.pid in pids:
                try:
                    os.kill(child.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        try:
            wait(running, timeout=0.5)
        except KeyboardInterrupt:
            pass


def _run_dask(tasks: dict[str, Task], scheduler: str, done: Done) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("a Dask scheduler needs the optional extra dask: pip install 'a4lib[dask]'") from None
    try:
        client = Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise OSError(f"cannot reach the Dask scheduler at {scheduler}: {str(err).splitlines()[0]}") from None
    token = uuid.uuid4().hex[:8]
    with client:
        futures = {client.submit(train_run, cfg, str(path), resume, key=f"a4lib-sweep-{name}-{token}", pure=False): name
                   for name, (cfg, path, resume) in tasks.items()}
        try:
            for future in as_completed(futures, loop=client.loop):
                done(futures[future], _outcome(future))
        except KeyboardInterrupt:
            client.cancel([f for f in futures if not f.done()])  # the running ones end on the cluster
            raise


# --- many runs --------------------------------------------------------------------------------

class _Corpora:
    """Each corpus spec read once: its sha256, or the error reading it raised."""

    def __init__(self) -> None:
        self._read: dict = {}

    def _get(self, spec: str | None) -> tuple[str | None, ValueError | None]:
        if spec not in self._read:
            try:
                self._read[spec] = load_corpus(spec).sha256, None
            except ValueError as err:  # CorpusError
                self._read[spec] = None, err
        return self._read[spec]

    def sha256(self, spec: str | None) -> str | None:
        """The text's sha256; None where it cannot be read here."""
        return self._get(spec)[0]

    def check(self, spec: str | None) -> None:
        """Raise the error reading the text raised, if any."""
        error = self._get(spec)[1]
        if error is not None:
            raise error


def _portable(cfg: Config) -> Config:
    """The Config with a relative corpus path made absolute (cluster workers stand elsewhere)."""
    spec = cfg.corpus
    if spec is None or spec == BUILTIN or Path(spec).is_absolute() or not Path(spec).exists():
        return cfg
    return cfg.replace(corpus=str(Path(spec).absolute()))


def plan(run_dir: Path, cfg: Config, corpora: _Corpora | None = None):
    """``rundir.verdict`` for ``run_dir`` and ``cfg`` (the corpus compared by its sha256 where it
    can be read here); a RunDirError (one line) for a conflict."""
    said = verdict(run_dir, cfg, (corpora or _Corpora()).sha256(cfg.corpus))
    if said.kind == "conflict":
        raise RunDirError(said.reason)
    return said


def check_name(name: str) -> str:
    """A run's folder name: one path component."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ConfigError(f"{name!r} cannot name a run's folder (one name, without '/')")
    return name


def _check_workers(workers) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers = {workers!r} is not allowed: expected an integer >= 1 (or None: the cores)")


def _lock(out: Path) -> RunLock:
    """The lock of a sweep's folder: a second sweep into it is refused while one runs."""
    return RunLock(out, SWEEP_LOCK, "another sweep runs into it")


def run_many(runs: Mapping[str, Config], out: str | Path, workers: int | None = None,
             scheduler: str | None = None, progress: bool = False) -> dict[str, dict]:
    """Train every run (name -> Config) into ``out/<name>``, locally on ``workers`` processes
    (default: the cores, at most one per run) or on the Dask cluster at ``scheduler``; name ->
    summary, in the order of ``runs``. ``out`` is locked meanwhile (a RunDirError when another
    sweep runs into it).

    Each run directory gets what its ``rundir.verdict`` says: done runs are skipped, the others
    trained, resumed or extended; a conflict is a RunDirError (one line) before any run starts. A
    run that diverged has its summary (status "diverged"); a run that could not train
    ``{"status": "failed", "error": message}``. Ctrl-C, SIGTERM or SIGHUP: the runs are saved and
    ``SweepInterrupted`` is raised with the summaries as they stand.
    """
    _check_workers(workers)
    out = Path(out).absolute() if scheduler else Path(out)
    with _lock(out):
        return _run_many(runs, out, workers, scheduler, progress)


def _run_many(runs: Mapping[str, Config], out: Path, workers: int | None, scheduler: str | None,
              progress: bool) -> dict[str, dict]:
    """``run_many`` in a folder this process has locked."""
    from tqdm import tqdm

    corpora = _Corpora()
    tasks: dict[str, Task] = {}
    summaries: dict[str, dict] = {}
    lost: dict[str, str] = {}  # the runs whose worker ended: name -> message
    for name, cfg in runs.items():
        cfg = (_portable(cfg) if scheduler else cfg).validate()
        run_dir = out / check_name(name)
        said = plan(run_dir, cfg, corpora)
        if said.kind == "done":
            summaries[name] = read_summary(run_dir)
        else:
            tasks[name] = cfg, run_dir, said.kind != "new"
    if not scheduler:  # a bad corpus is one line before any worker starts
        for cfg, _, _ in tasks.values():
            corpora.check(cfg.corpus)
    bar = tqdm(total=len(runs), initial=len(runs) - len(tasks), disable=not progress, file=sys.stderr,
               unit="run", desc="runs", dynamic_ncols=True)

    def done(name: str, outcome: dict) -> None:
        if outcome["summary"] is None:  # its worker ended: read the run once every worker has ended
            lost[name] = outcome["error"]
        else:
            summaries[name] = {**outcome["summary"], **({"error": outcome["error"]} if outcome["error"] else {})}
        bar.set_postfix_str(f"{name}: {summaries[name]['status'] if name in summaries else 'ended'}", refresh=False)
        bar.update(1)

    stop = _StopOnSigterm()
    try:
        with stop:
            if tasks and scheduler:
                _run_dask(tasks, scheduler, done)
            elif tasks:
                _run_local(tasks, min(workers or os.cpu_count() or 1, len(tasks)), done)
    except KeyboardInterrupt:
        bar.close()
        raise SweepInterrupted(_in_order(runs, out, summaries, lost), stop.signal_name) from None
    bar.close()
    return _in_order(runs, out, summaries, lost)


def _in_order(runs: Mapping[str, Config], out: Path, summaries: dict[str, dict], lost: dict[str, str]) -> dict[str, dict]:
    """Every run's summary in the order of ``runs``: as its worker returned it, else as on disk; a
    run whose worker ended (killed) is as its trainer saved it, or "failed" with the message."""
    ordered = {}
    for name in runs:
        if name in lost:  # its trainer may still be saving (a killed forkserver ends a pool at once)
            _wait_while_running(out / name)
        try:
            saved = read_summary(out / name) or {}
        except RunFileError as err:
            saved = {"status": "failed", "error": str(err)}
        if name in lost:
            ordered[name] = saved if saved.get("status") in ("interrupted", "finished", "diverged") else \
                {"status": "failed", "error": lost[name]}
        else:
            ordered[name] = summaries.get(name) or saved or {"status": "new"}
    return ordered


def _wait_while_running(run_dir: Path, timeout: float = 120.0) -> None:
    """Wait until no process trains into ``run_dir`` (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if status(run_dir) != "running":
                return
        except RunFileError:
            return
        time.sleep(0.1)


class _StopOnSigterm:
    """While a sweep runs, SIGTERM and SIGHUP stop it as Ctrl-C does (in the main thread; elsewhere
    a no-op)."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signal_name = "SIGINT"
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        raise KeyboardInterrupt

    def __enter__(self) -> "_StopOnSigterm":
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --- a sweep: the grid and its files ------------------------------------------------------------

def sweep(base: Config, grid: Mapping[str, Sequence], out: str | Path, workers: int | None = None,
          scheduler: str | None = None, progress: bool = True) -> list[dict]:
    """Train every combination of ``grid`` (setting -> values) over ``base`` into ``out/<name>``
    (see ``run_many``) and write ``sweep.json``, ``sweep.csv`` and ``sweep.png`` there (with the
    runs earlier sweeps made in ``out``, see ``write_results``); the entries of this grid (name,
    overrides, summary), in grid order. On Ctrl-C the files are written with what exists and
    ``SweepInterrupted`` is raised."""
    expanded = expand(base, grid)
    _check_workers(workers)
    out = Path(out)
    runs = {name: cfg for name, (_, cfg) in expanded.items()}
    with _lock(out):
        try:
            summaries = _run_many(runs, out.absolute() if scheduler else out, workers, scheduler, progress)
        except SweepInterrupted as stop:
            stop.entries = _entries(expanded, stop.summaries)
            write_results(out, stop.entries)
            raise
        entries = _entries(expanded, summaries)
        write_results(out, entries)
    return entries


def _entries(expanded: dict[str, tuple[dict, Config]], summaries: dict[str, dict]) -> list[dict]:
    return [{"name": name, "overrides": overrides, "summary": summaries[name]}
            for name, (overrides, _) in expanded.items()]


def load(out: str | Path) -> list[dict]:
    """The entries of ``out/sweep.json``; a RunFileError (one line naming it) when it is not a list
    of entries (name, overrides, summary)."""
    path = Path(out) / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run the sweep first)")
    entries = read_json_or(path)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) and
                                                isinstance(e.get("overrides"), dict) and
                                                isinstance(e.get("summary"), dict) for e in entries):
        raise RunFileError(f"{path}: not a list of sweep entries (name, overrides, summary)")
    return entries


def _earlier(out: Path, names: set[str]) -> list[dict]:
    """The entries of the folder's sweep.json for runs not in ``names`` whose folders are still
    there, each with its summary as its run now says."""
    try:
        entries = load(out)
    except (FileNotFoundError, RunFileError):
        return []
    kept = []
    for e in entries:
        if e["name"] in names or not (out / check_name(e["name"])).is_dir():
            continue
        try:
            summary = read_summary(out / e["name"]) or e["summary"]
        except RunFileError as err:
            summary = {"status": "failed", "error": str(err)}
        kept.append({**e, "summary": summary})
    return kept


def write_results(out: Path, entries: list[dict]) -> None:
    """sweep.json, sweep.csv and sweep.png (the curves of the runs that have a history),
    atomically: the ``entries`` after those of earlier sweeps into ``out`` (runs still there),
    so that a sweep of part of a grid keeps the rest."""
    from .results.analysis import sweep_csv
    from .results.plots import png_bytes, sweep_curves

    out.mkdir(parents=True, exist_ok=True)
    entries = _earlier(out, {e["name"] for e in entries}) + entries
    write_json(out / "sweep.json", entries)
    write_bytes(out / "sweep.csv", sweep_csv(entries).encode("utf-8"))
    fig = sweep_curves(entries, out)
    if fig is not None:
        write_bytes(out / "sweep.png", png_bytes(fig))


# --- the command line -------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``a4lib sweep`` flags: --out, --grid (repeatable), every train setting, --workers,
    --scheduler, --quiet."""
    parser.description = ("Train a grid of runs into OUT/<name> (e.g. OUT/eta=0.05,seed=1), each as `a4lib train` "
                          "would; write OUT/sweep.json, sweep.csv and sweep.png and print the runs ranked. "
                          "Calling it again skips finished runs and resumes interrupted ones; Ctrl-C saves "
                          "every run (exit 130).")
    parser.add_argument("--out", required=True, help="the sweep's folder (with --scheduler: on a filesystem every "
                                                     "worker shares, at the same path)")
    parser.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,...",
                        help="a setting and its values (repeatable; every combination is one run), e.g. "
                             "--grid seed=0,1,2 --grid eta=0.05,0.1")
    _config.add_arguments(parser)
    parser.add_argument("--workers", type=int, help="local worker processes (default: the cores, at most one per run)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="send the runs to this running Dask scheduler instead (needs the extra dask; the "
                             "workers must share the filesystem of --out and --corpus and have a4lib installed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def command(args: argparse.Namespace) -> int:
    """``a4lib sweep``: 0 when every run finished or diverged, 1 when one could not train, 128 + the
    signal's number when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    from .results.analysis import sweep_table

    grid = parse_grid(args.grid)
    both = [name for name in grid if name in _config.given(args)]
    if both:
        raise ConfigError(f"{both[0]} is given both as {flag_of(both[0])} and on the grid: give it once")
    _check_workers(args.workers)
    base = Config.from_namespace(args)
    try:
        entries = sweep(base, grid, args.out, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    except SweepInterrupted as stop:
        print(sweep_table(stop.entries))
        where = ("the runs not started are cancelled, the running ones train on to their end on the cluster"
                 if args.scheduler else "every run is saved")
        print(f"a4lib: sweep stopped by {stop.signal_name}: {where}; the same command resumes the sweep",
              file=sys.stderr)
        return 128 + signal.Signals[stop.signal_name]
    print(sweep_table(entries))
    print(f"wrote {Path(args.out) / 'sweep.json'}, sweep.csv and sweep.png", file=sys.stderr)
    failed = [e["name"] for e in entries if e["summary"].get("status") == "failed"]
    if failed:
        print(f"a4lib: error: {len(failed)} of {len(entries)} runs could not train (their messages are above)",
              file=sys.stderr)
    return 1 if failed else 0
