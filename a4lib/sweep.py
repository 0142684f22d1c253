"""Sweeps: a grid of training runs, each made exactly as ``a4lib train`` makes it, run by an
existing engine: a pool of local processes, or a Dask distributed cluster.

    a4lib sweep --corpus text.txt --out runs/sw --grid seed=0,1,2 --grid eta=0.05,0.1 --updates 20000

Every combination of the grid's values is one run in ``OUT/<name>``, named by its values with the
settings sorted (``eta=0.05,seed=1``); every other setting is the sweep's (the train flags). The
same settings and seed give the same run as ``a4lib train`` (the same summary but for its times).
``OUT/sweep.json`` lists each run's name, overrides (its grid values) and summary; ``sweep.csv``
holds the same as a table and ``sweep.png`` the runs' smooth-loss curves.

Calling the same sweep again skips the finished (and diverged) runs, resumes the interrupted or
killed ones from their checkpoints, and continues finished runs to a larger budget (``--updates``,
``--epochs``); a run directory that holds other settings is refused with one line.

Engines: locally a ``concurrent.futures.ProcessPoolExecutor`` (one run per worker process, as many
workers as cores by default). With ``scheduler="tcp://HOST:PORT"`` the same task (``train_run``)
goes to a running Dask cluster through ``distributed.Client`` (the optional extra ``dask``). The
run directories and the corpus must then be on a filesystem every worker shares, at the same path
(``OUT`` and a relative corpus path are made absolute here) and a4lib installed on the workers.
A worker may run several runs in threads (``--nthreads``): every run's scratch arrays belong to
its own network and optimizer, so runs in one process never share them.

Ctrl-C (or SIGTERM): locally each worker's trainer saves its run and says "interrupted" (workers
ignore SIGINT between runs; the sweep sends SIGINT to its workers until their runs have stopped),
runs not yet started do not start, ``sweep.json`` is written with what exists and
``SweepInterrupted`` is raised (the CLI exits 130). On a Dask cluster the runs that have not
started are cancelled; the running ones train on to their end there (a Dask task runs in a worker
thread, where a signal cannot reach the trainer).
"""
from __future__ import annotations

import argparse
import csv
import io
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
from .checkpoint import CHECKPOINT, write_bytes, write_json
from .config import BUDGET, FIELDS, RESUME_MAY_CHANGE, Config, ConfigError, check_value, flag_of, near
from .corpus import BUILTIN, load_corpus
from .rundir import RunDirError, read_json_or, status, write_provenance

#: the columns of sweep.csv after the name and the grid's settings
CSV_COLUMNS = ("status", "updates", "best_smooth_loss", "final_smooth_loss", "best_val_loss", "seconds")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the sweep: the runs are saved and resumable; ``summaries`` holds
    where each run stands (name -> summary)."""

    def __init__(self, summaries: dict[str, dict], signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)
        self.summaries = summaries
        self.signal_name = signal_name


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

def train_run(cfg: Config, run_dir: str) -> dict:
    """Train one run into ``run_dir`` (resumed when it holds a checkpoint) as ``a4lib train`` does,
    in a worker; ``{"summary": ..., "error": None | message}``. A diverged run returns its summary
    with the message; a run that cannot train, ``{"status": "failed"}`` with the message."""
    from .train import TrainingError, train

    path = Path(run_dir)
    try:
        summary = train(cfg, path, resume=(path / CHECKPOINT).is_file(), progress=False)
    except TrainingError as err:  # diverged: its summary.json says so
        return {"summary": read_json_or(path / "summary.json", {}) or {"status": "diverged"}, "error": str(err)}
    except (ValueError, OSError) as err:  # bad settings or corpus, a run in use, a disk error
        return {"summary": {"status": "failed"}, "error": str(err).splitlines()[0] if str(err) else repr(err)}
    write_provenance(path, defaults={"made_by": "a4lib.sweep"})
    return {"summary": summary, "error": None}


def _worker_init(started) -> None:
    """A local worker ignores Ctrl-C outside its run (its trainer catches it during the run) and
    says its pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def _run_local(tasks: dict[str, tuple[Config, Path]], workers: int, done: Done) -> None:
    ctx = _context()
    started = ctx.Queue()
    # one run per worker process: a worker whose trainer caught SIGTERM (sent by the system, or by
    # the pool when another worker was killed) ends after its run instead of waiting for the next
    one_run = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(started,), **one_run)
    futures: dict = {}
    reported: set = set()
    pending: set = set()
    waiting = iter(tasks.items())

    def submit(count: int) -> None:
        for name, (cfg, path) in itertools.islice(waiting, count):
            try:
                future = pool.submit(train_run, cfg, str(path))
            except BrokenProcessPool as err:  # a worker was killed: the pool takes no more runs
                done(name, {"summary": None, "error": f"not started: {err}"})
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


def _run_dask(tasks: dict[str, tuple[Config, Path]], scheduler: str, done: Done) -> None:
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
        futures = {client.submit(train_run, cfg, str(path), key=f"a4lib-sweep-{name}-{token}", pure=False): name
                   for name, (cfg, path) in tasks.items()}
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


def plan(run_dir: Path, cfg: Config, corpora: _Corpora | None = None) -> str:
    """What a sweep does with ``run_dir`` for ``cfg``: "skip" (finished or diverged with these
    settings) or "train" (new, or resumed by the worker from its checkpoint, to the budget of
    ``cfg``). A RunDirError (one line) when it holds other settings, another text, a run trained
    past the budget, or a run in progress."""
    stored_dict = read_json_or(run_dir / "config.json")
    if stored_dict is None:
        return "train"
    stored = Config.from_dict(stored_dict)
    changed = stored.differences(cfg, ignore=RESUME_MAY_CHANGE)
    if changed:
        name = changed[0]
        raise RunDirError(f"{run_dir} holds a run with {name} = {getattr(stored, name)!r}, not {getattr(cfg, name)!r}: "
                          f"choose another folder for this sweep (or remove that run)")
    sha = (corpora or _Corpora()).sha256(cfg.corpus)
    if sha is not None and stored_dict.get("corpus_sha256") not in (None, sha):
        raise RunDirError(f"{run_dir} was trained on another text than {cfg.corpus or 'the default corpus'}: "
                          f"choose another folder for this sweep (or remove that run)")
    said = status(run_dir)
    if said == "running":
        raise RunDirError(f"{run_dir} is in use: another process is training into it")
    budget_changed = stored.differences(cfg, ignore=[n for n in FIELDS if n not in BUDGET])
    if said == "diverged" or said == "finished" and not budget_changed:
        return "skip"
    summary = read_json_or(run_dir / "summary.json", {}) or {}
    past = (cfg.n_updates is not None and summary.get("updates", 0) > cfg.n_updates or
            cfg.n_epochs is not None and summary.get("epochs", 0) > cfg.n_epochs)
    if past:
        raise RunDirError(f"{run_dir} has trained further ({summary.get('updates')} updates, {summary.get('epochs')} "
                          f"epochs) than this sweep's budget: give a budget at least as large, or another folder")
    return "train"


def check_name(name: str) -> str:
    """A run's folder name: one path component."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ConfigError(f"{name!r} cannot name a run's folder (one name, without '/')")
    return name


def run_many(runs: Mapping[str, Config], out: str | Path, workers: int | None = None,
             scheduler: str | None = None, progress: bool = False) -> dict[str, dict]:
    """Train every run (name -> Config) into ``out/<name>``, locally on ``workers`` processes
    (default: the cores, at most one per run) or on the Dask cluster at ``scheduler``; name ->
    summary, in the order of ``runs``.

    Finished runs with the same Config are skipped, interrupted or killed ones resumed (see
    ``plan``). A run that diverged has its summary (status "diverged"); a run that could not train
    ``{"status": "failed", "error": message}``. Ctrl-C or SIGTERM: the runs are saved and
    ``SweepInterrupted`` is raised with the summaries as they stand.
    """
    from tqdm import tqdm

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers = {workers!r} is not allowed: expected an integer >= 1 (or None: the cores)")
    out = Path(out).absolute() if scheduler else Path(out)
    corpora = _Corpora()
    tasks: dict[str, tuple[Config, Path]] = {}
    summaries: dict[str, dict] = {}
    lost: dict[str, str] = {}  # the runs whose worker ended: name -> message
    for name, cfg in runs.items():
        cfg = (_portable(cfg) if scheduler else cfg).validate()
        run_dir = out / check_name(name)
        if plan(run_dir, cfg, corpora) == "skip":
            summaries[name] = read_json_or(run_dir / "summary.json", {})
        else:
            tasks[name] = cfg, run_dir
    if not scheduler:  # a bad corpus is one line before any worker starts
        for cfg, _ in tasks.values():
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
        saved = read_json_or(out / name / "summary.json", {}) or {}
        if name in lost:
            ordered[name] = saved if saved.get("status") in ("interrupted", "finished", "diverged") else \
                {"status": "failed", "error": lost[name]}
        else:
            ordered[name] = summaries.get(name) or saved or {"status": "new"}
    return ordered


def _wait_while_running(run_dir: Path, timeout: float = 120.0) -> None:
    """Wait until no process trains into ``run_dir`` (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while status(run_dir) == "running" and time.monotonic() < deadline:
        time.sleep(0.1)


class _StopOnSigterm:
    """While a sweep runs, SIGTERM stops it as Ctrl-C does (in the main thread; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.signal_name = "SIGINT"
        self._old = None

    def _handler(self, signum, frame) -> None:
        self.signal_name = "SIGTERM"
        raise KeyboardInterrupt

    def __enter__(self) -> "_StopOnSigterm":
        try:
            self._old = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


# --- a sweep: the grid, its files, its table and figure ---------------------------------------

def sweep(base: Config, grid: Mapping[str, Sequence], out: str | Path, workers: int | None = None,
          scheduler: str | None = None, progress: bool = True) -> list[dict]:
    """Train every combination of ``grid`` (setting -> values) over ``base`` into ``out/<name>``
    (see ``run_many``) and write ``sweep.json``, ``sweep.csv`` and ``sweep.png`` there; the entries
    of sweep.json (name, overrides, summary), in grid order. On Ctrl-C the files are written with
    what exists and ``SweepInterrupted`` is raised."""
    expanded = expand(base, grid)
    out = Path(out)
    try:
        summaries = run_many({name: cfg for name, (_, cfg) in expanded.items()}, out, workers, scheduler, progress)
    except SweepInterrupted as stop:
        write_results(out, _entries(expanded, stop.summaries))
        raise
    entries = _entries(expanded, summaries)
    write_results(out, entries)
    return entries


def _entries(expanded: dict[str, tuple[dict, Config]], summaries: dict[str, dict]) -> list[dict]:
    return [{"name": name, "overrides": overrides, "summary": summaries[name]}
            for name, (overrides, _) in expanded.items()]


def load(out: str | Path) -> list[dict]:
    """The entries of ``out/sweep.json``."""
    path = Path(out) / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run the sweep first)")
    return read_json_or(path)


def write_results(out: Path, entries: list[dict]) -> None:
    """sweep.json, sweep.csv and sweep.png (the curves of the runs that have a history), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", entries)
    data = csv_text(entries).encode("utf-8")
    write_bytes(out / "sweep.csv", data)
    fig = figure(entries, out)
    if fig is not None:
        from .plots import png_bytes

        png = png_bytes(fig)
        write_bytes(out / "sweep.png", png)


def csv_text(entries: list[dict]) -> str:
    """The entries as CSV: name, the grid's settings, then CSV_COLUMNS from each summary."""
    settings = list(dict.fromkeys(k for e in entries for k in e["overrides"]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", *settings, *CSV_COLUMNS])
    for e in entries:
        writer.writerow([e["name"], *(_cell(e["overrides"].get(k)) for k in settings),
                         *(_cell(e["summary"].get(k)) for k in CSV_COLUMNS)])
    return buf.getvalue()


def _cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _per_char(entries: list[dict]) -> bool:
    """True when the runs' sequence lengths differ: their smooth losses (sums over a sequence)
    compare only per character."""
    return len({e["overrides"].get("seq_length") for e in entries}) > 1


def ranking(entries: list[dict]) -> tuple[str, list[tuple[dict, float | None]]]:
    """What the runs are ranked by, and (entry, value) best first (runs without a value last):
    the best held-out loss when every run has one, else the best smooth loss (per character when
    the sequence lengths differ)."""
    with_loss = [e for e in entries if e["summary"].get("best_smooth_loss") is not None]
    if with_loss and all(e["summary"].get("best_val_loss") is not None for e in with_loss):
        what, key = "best held-out loss per character", (lambda e: e["summary"].get("best_val_loss"))
    elif _per_char(entries):
        what = "best smooth loss per character"
        key = (lambda e: None if e["summary"].get("best_smooth_loss") is None else
               e["summary"]["best_smooth_loss"] / e["overrides"]["seq_length"])
    else:
        what, key = "best smooth loss", (lambda e: e["summary"].get("best_smooth_loss"))
    valued = [(e, key(e)) for e in entries]
    return what, sorted(valued, key=lambda ev: (ev[1] is None or not math.isfinite(ev[1]), ev[1] or 0.0))


def ranked_rows(entries: list[dict]) -> tuple[str, list[str], list[list]]:
    """What the runs are ranked by, the header and one row per run, best first: rank (None when
    the run has no loss yet), name, status, updates, best and final smooth loss, best held-out
    loss, seconds (None where the summary has no value)."""
    what, ranked = ranking(entries)
    header = ["rank", "name", "status", "updates", "best smooth", "final smooth", "best held-out", "seconds"]
    rows = [[i if value is not None else None, e["name"], e["summary"].get("status"),
             *(e["summary"].get(k) for k in ("updates", "best_smooth_loss", "final_smooth_loss", "best_val_loss",
                                              "seconds"))]
            for i, (e, value) in enumerate(ranked, start=1)]
    return what, header, rows


def messages(entries: list[dict]) -> list[str]:
    """``name: message`` for each run that diverged or could not train."""
    return [f"{e['name']}: {e['summary']['error']}" for e in entries if e["summary"].get("error")]


def _text(x, digits: int) -> str:
    return "-" if x is None else f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}" \
        if isinstance(x, int) else str(x)


def format_table(entries: list[dict]) -> str:
    """The runs ranked (``ranked_rows``) as plain text, then ``messages``."""
    what, header, rows = ranked_rows(entries)
    cells = [header] + [[_text(v, 1 if c == 7 else 3) for c, v in enumerate(row)] for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if c in (1, 2) else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths)))
             for r in cells]
    return "\n".join([f"ranked by {what}", *(line.rstrip() for line in lines), *messages(entries)])


def figure(entries: list[dict], out: str | Path):
    """The smooth-loss curves of the runs in ``out`` that have a history (best first, per
    character when the sequence lengths differ); None when none has one."""
    import numpy as np

    from .plots import compare

    _, ranked = ranking(entries)
    per_char = _per_char(entries)
    curves = {}
    for e, _ in ranked:
        path = Path(out) / e["name"] / "history.npz"
        if not path.is_file():
            continue
        with np.load(path, allow_pickle=False) as z:
            smooth = z["smooth_loss"]
        if len(smooth):
            curves[e["name"]] = {"smooth_loss": smooth / e["overrides"]["seq_length"] if per_char else smooth}
    if not curves:
        return None
    return compare(curves, title=f"{len(curves)} runs of the sweep {Path(out).name}",
                   ylabel="smooth loss per character" if per_char else "smooth loss (sum over the sequence)")


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
    """``a4lib sweep``: 0 when every run finished or diverged, 1 when one could not train, 130
    (Ctrl-C) or 143 (SIGTERM) when stopped."""
    grid = parse_grid(args.grid)
    both = [name for name in grid if name in _config.given(args)]
    if both:
        raise ConfigError(f"{both[0]} is given both as {flag_of(both[0])} and on the grid: give it once")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: expected an integer >= 1")
    base = Config.from_namespace(args)
    try:
        entries = sweep(base, grid, args.out, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    except SweepInterrupted as stop:
        entries = load(args.out)
        print(format_table(entries))
        where = ("the runs not started are cancelled, the running ones train on to their end on the cluster"
                 if args.scheduler else "every run is saved")
        print(f"a4lib: sweep stopped by {stop.signal_name}: {where}; the same command resumes the sweep",
              file=sys.stderr)
        return 143 if stop.signal_name == "SIGTERM" else 130
    print(format_table(entries))
    print(f"wrote {Path(args.out) / 'sweep.json'}, sweep.csv and sweep.png", file=sys.stderr)
    failed = [e["name"] for e in entries if e["summary"].get("status") == "failed"]
    if failed:
        print(f"a4lib: error: {len(failed)} of {len(entries)} runs could not train (their messages are above)",
              file=sys.stderr)
    return 1 if failed else 0
