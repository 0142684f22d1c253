"""Build the report: gradient check, benchmark, training run, studies, notebooks, HTML, PDF.

    python report/build.py [--quick] [--corpus PATH] [--eta 0.05] [--updates N] ... [--out DIR]
                           [--beyond 0] [--beyond-lstm 0] ... [--tweets PATH|none]

(``make report`` calls this with the Makefile's variables.) The training flags are those of
``a4lib train`` (``a4lib.config.Config``): they override the main run's settings. The steps:

1. gradient check   ``a4lib gradcheck --json``          -> BUILD/gradcheck.json
2. benchmark        ``a4lib bench --json``              -> BUILD/bench.json
3. the main run from N_SEEDS initial seeds (``train_runs``: a4lib.sweep)
                                                        -> RUN/seed=S/, BUILD/seeds.json
4. the studies beyond the assignment (``report/studies.py``): benchmarks for several batch sizes
   and training runs on the same engine                 -> BUILD/beyond.json, STUDIES/<name>/
5. notebooks/report.ipynb and notebooks/beyond.ipynb (only the sections asked for, numbered on),
   executed by papermill in notebooks/               -> BUILD/report.ipynb, BUILD/beyond.ipynb
6. HTML: both as one document, code cells hidden (nbconvert; cells tagged remove or parameters
   left out, no stderr)                                -> OUT/report.html
7. PDF: the HTML printed by a headless Chromium         -> OUT/report.pdf

OUT is report/ (the submission) or, with --quick, report/quick/, so that a quick build never
replaces the submission. Steps 1-4 are reused when their inputs have not changed (a finished run
with the same settings and corpus, results of the same check or benchmark); ``--force`` redoes
them. Every intermediate file is in git-ignored places: BUILD (report/build/full|quick), RUN
(runs/report, runs/report-quick), STUDIES (runs/studies, runs/studies-quick), FIGURES (figures/,
report/quick/figures/). A relative path given here resolves from the working directory.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a4lib of this checkout, also when it is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))

import studies  # noqa: E402  (report/studies.py)
from a4lib import config as settings  # noqa: E402
from a4lib.config import Config  # noqa: E402
from a4lib.train import updates_per_epoch  # noqa: E402

TEMPLATES = ROOT / "report" / "templates"
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = NOTEBOOKS / "report.ipynb"
BEYOND_NOTEBOOK = NOTEBOOKS / "beyond.ipynb"
FIRST_BEYOND_SECTION = 7  # report.ipynb has sections 1-6
MIN_UPDATES = 100_000  # the handout: samples every 10,000 updates through 100,000
#: the main run's epochs: on tinyshakespeare (1.1 M characters, like the course text) the best smooth
#: loss of seeds 0 and 1 fell 1.6 and 1.7 nats in epoch 2, 0.8 and 0.8 in epoch 5, 0.3 in epoch 8:
#: after 5 epochs each further epoch gains about 1 % while the seeds differ by 4 nats
MAIN_EPOCHS = 5
N_SEEDS, QUICK_SEEDS = 5, 2
QUICK_UPDATES, QUICK_SAMPLE_EVERY = 1500, 500
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_CHROMIUM = "install Chromium (apt-get install chromium) or set CHROMIUM=/path/to/chromium"
STEPS = 7
#: make variable of each training setting that has one (the others go in TRAIN_ARGS)
MAKE_VARIABLES = {"corpus": "CORPUS", "m": "M", "eta": "ETA", "seq_length": "SEQ_LENGTH", "sig": "SIG",
                  "optimizer": "OPTIMIZER", "n_updates": "N_UPDATES", "n_epochs": "N_EPOCHS", "seed": "SEED",
                  "sample_every": "SAMPLE_EVERY", "sample_length": "SAMPLE_LENGTH"}


class BuildError(Exception):
    """A step failed; the message says which and why (one line, no traceback): exit code 1."""


class BadInput(BuildError):
    """A bad setting, corpus or tweet file given to the build: exit code 2."""


def say(msg: str) -> None:
    print(f"report: {msg}", flush=True)


@contextlib.contextmanager
def timed(what: str):
    """Say how long the steps inside took (where a build's time goes)."""
    start = time.perf_counter()
    yield
    say(f"      {what} took {time.perf_counter() - start:.0f} s")


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- the settings ------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """Bad options: one line (what is wrong) and exit code 2, not argparse's usage block."""

    def error(self, message: str):
        print(f"report: error: {message} (python report/build.py --help lists the options)", file=sys.stderr)
        sys.exit(2)


def switch(value: str) -> bool:
    """A section switch: 1/0, on/off, yes/no, true/false."""
    v = str(value).strip().lower()
    if v in ("1", "on", "yes", "true"):
        return True
    if v in ("0", "off", "no", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(description="Build report/report.html and report/report.pdf (with --quick: report/quick/).")
    p.add_argument("--quick", action="store_true",
                   help=f"a small run for tests: builtin corpus, {QUICK_UPDATES:,} updates, m = 5 check, "
                        f"written to report/quick/")
    p.add_argument("--corpus", help="default: data/goblet_book.txt if present, else builtin:python-docs")
    train = p.add_argument_group("the main run's settings (a4lib train's flags; default: a4lib's, but "
                                 f"{MAIN_EPOCHS} epochs and at least {MIN_UPDATES:,} updates, quick {QUICK_UPDATES:,} "
                                 f"updates)")
    settings.add_arguments(train, exclude=("corpus",))
    p.add_argument("--n-seeds", type=int, help=f"the main run from this many initial seeds: SEED, SEED + 1, ... "
                                                f"(default {N_SEEDS}, quick {QUICK_SEEDS})")
    p.add_argument("--scheduler", help="train every run on the Dask cluster at this address (tcp://HOST:PORT; "
                                       "the run folders must be on a filesystem its workers share)")
    p.add_argument("--passage-length", type=int, default=1000)
    p.add_argument("--gradcheck-m", type=int, action="append", help="m to check (repeatable; default 5 and 100, quick 5)")
    p.add_argument("--out", type=Path, help="put everything (HTML, PDF, figures, build files, run) under this folder")
    p.add_argument("--run", type=Path, help="the folder of the main run's seeds (default runs/report, quick "
                                            "runs/report-quick)")
    p.add_argument("--chromium", help="the browser that prints the PDF (default: found on PATH)")
    p.add_argument("--no-pdf", action="store_true", help="the HTML only")
    p.add_argument("--force", action="store_true", help="redo the gradient check, benchmarks, training and studies")
    p.add_argument("--beyond", type=switch, default=True, metavar="0|1",
                   help="the part beyond the assignment (0: leave all of it out)")
    for key, title in studies.SECTIONS.items():
        p.add_argument(f"--beyond-{key}", type=switch, default=True, metavar="0|1", help=f"the section {title!r}")
    p.add_argument("--tweets", help=f"the tweet corpus of the tweet section (default: {studies.DEFAULT_TWEETS} of the "
                                    f"project folder when it exists; none: no tweets)")
    a = p.parse_args(argv)
    a.overrides = {k: v for k, v in settings.given(a).items() if k != "corpus"}
    a.sections = [k for k in studies.SECTIONS if a.beyond and getattr(a, f"beyond_{k}")]
    a.command = make_command(a)
    if a.gradcheck_m is None:
        a.gradcheck_m = [5] if a.quick else [5, 100]
    if a.n_seeds is None:
        a.n_seeds = QUICK_SEEDS if a.quick else N_SEEDS
    if a.n_seeds < 1:
        p.error(f"--n-seeds must be >= 1, got {a.n_seeds}")
    if a.quick and a.corpus is None:
        a.corpus = "builtin:python-docs"
    if a.out is not None:
        a.out = a.out.resolve()
        a.html_dir, a.figures, a.build = a.out, a.out / "figures", a.out / "build"
        a.run = a.run or a.out / "run"
        a.studies = a.out / "studies"
    elif a.quick:
        a.html_dir = ROOT / "report" / "quick"
        a.figures, a.build = a.html_dir / "figures", ROOT / "report" / "build" / "quick"
        a.run, a.studies = a.run or ROOT / "runs" / "report-quick", ROOT / "runs" / "studies-quick"
    else:
        a.html_dir, a.figures, a.build = ROOT / "report", ROOT / "figures", ROOT / "report" / "build" / "full"
        a.run, a.studies = a.run or ROOT / "runs" / "report", ROOT / "runs" / "studies"
    return a


def make_command(a: argparse.Namespace) -> str:
    """The ``make report`` line that repeats this build."""
    words = ["make", "report"] + (["QUICK=1"] if a.quick else [])
    if a.n_seeds is not None:
        words.append(f"N_SEEDS={a.n_seeds}")
    if a.corpus is not None:
        words.append(f"CORPUS={a.corpus}")
    other = []
    for name, value in a.overrides.items():
        if name in MAKE_VARIABLES:
            words.append(f"{MAKE_VARIABLES[name]}={value}")
        else:
            other += [settings.flag_of(name), str(value)]
    if other:
        words.append(f"TRAIN_ARGS={shlex.join(other)}")
    if not a.beyond:
        words.append("BEYOND=0")
    else:
        words += [f"BEYOND_{key.upper()}=0" for key in studies.SECTIONS if not getattr(a, f"beyond_{key}")]
    if a.tweets is not None:
        words.append(f"TWEETS={a.tweets}")
    return shlex.join(words)


def corpus_spec(given: str | None, corpus) -> str:
    """The corpus as the runs and notebooks get it: a file as an absolute path (a relative one
    resolves from the working directory), the built-in text by its name."""
    from a4lib.corpus import BUILTIN
    from a4lib.rundir import project_path

    if corpus.name == BUILTIN:
        return BUILTIN
    return str(Path(given).resolve()) if given is not None else str(project_path(corpus.name))


def main_config(a, corpus) -> Config:
    """The main run's settings: a4lib's defaults, the build's (updates, quick sampling), the given."""
    base = {"corpus": a.corpus_spec}
    if a.quick:
        base["sample_every"] = QUICK_SAMPLE_EVERY
    try:
        cfg = Config(**{**base, **a.overrides}).validate()
        if cfg.n_updates is None:
            epochs = a.overrides.get("n_epochs", MAIN_EPOCHS)
            cfg = cfg.replace(n_updates=QUICK_UPDATES if a.quick else
                              max(MIN_UPDATES, epochs * updates_per_epoch(corpus, cfg)))
        return cfg.validate()
    except ValueError as err:  # ConfigError, or a batch size the text cannot hold
        raise BadInput(str(err)) from None


def find_chromium(given: str | None) -> str:
    """The browser's path; a BuildError saying what to install when there is none."""
    if given:
        path = shutil.which(given)
        if path is None:
            raise BuildError(f"CHROMIUM={given} is not an executable: {INSTALL_CHROMIUM}")
        return path
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise BuildError(f"no Chromium to print the PDF: {INSTALL_CHROMIUM} (or make the HTML only: PDF=0)")


# --- steps 1-3: the data the report reads ------------------------------------------------------

def a4lib(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """``python -m a4lib ARGS`` with this interpreter, in the working directory."""
    return subprocess.run([sys.executable, "-m", "a4lib", *args], text=True,
                          stdout=subprocess.PIPE if capture else None)


def cached(key_file: Path, result: Path, key: dict, force: bool) -> bool:
    """True when ``result`` exists and was made from the same ``key``."""
    if force or not result.is_file() or not key_file.is_file():
        return False
    try:
        return json.loads(key_file.read_text()) == key
    except json.JSONDecodeError:
        return False


def gradient_check(a, corpus, cfg: Config) -> bool:
    out, key_file = a.build / "gradcheck.json", a.build / "gradcheck.key.json"
    key = {"corpus": corpus.sha256, "ms": a.gradcheck_m, "seq_length": cfg.seq_length}
    if cached(key_file, out, key, a.force):
        say(f"[1/{STEPS}] gradient check: reusing {rel(out)}")
    else:
        say(f"[1/{STEPS}] gradient check, m = {', '.join(map(str, a.gradcheck_m))}")
        key_file.unlink(missing_ok=True)
        args = ["gradcheck", "--corpus", a.corpus_spec, "--seq-length", str(cfg.seq_length), "--json", str(out)]
        for m in a.gradcheck_m:
            args += ["--m", str(m)]
        rc = a4lib(*args).returncode
        if rc not in (0, 1) or not out.is_file():
            raise BuildError(f"the gradient check stopped with exit code {rc}")
        key_file.write_text(json.dumps(key))
    return all(r["ok"] for r in json.loads(out.read_text()))


def benchmark(a, corpus, cfg: Config) -> None:
    updates = ["--updates", "300", "--reference-updates", "60"] if a.quick else []
    key = {"corpus": corpus.sha256, "m": cfg.m, "seq_length": cfg.seq_length, "args": updates}
    args = ["bench", "--json", "--corpus", a.corpus_spec, "--m", str(cfg.m), "--seq-length", str(cfg.seq_length),
            *updates]
    out = a.build / "bench.json"
    result = cached_bench(a, args, out, key, "the benchmark",
                          f"[2/{STEPS}] benchmark: a4lib's training step against reference.py")
    if result is None:
        say(f"[2/{STEPS}] benchmark: reusing {rel(out)}")
        return
    say(f"      {result['updates_per_s']:,.0f} updates/s, reference {result['reference_updates_per_s']:,.0f}: "
        f"{result['speedup']}x")


def cached_bench(a, args: list[str], out: Path, key: dict, what: str, announce: str | None = None) -> dict | None:
    """Run ``a4lib ARGS`` (a ``bench --json``) into ``out``, saying ``announce`` first; None when
    ``out`` was made with the same key (kept in ``out``'s .key.json) and can be reused."""
    key_file = out.with_suffix(".key.json")
    if cached(key_file, out, key, a.force):
        return None
    if announce:
        say(announce)
    key_file.unlink(missing_ok=True)
    r = a4lib(*args, capture=True)
    lines = [ln for ln in (r.stdout or "").splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise BuildError(f"{what} stopped with exit code {r.returncode}")
    result = json.loads(lines[-1])
    out.write_text(json.dumps(result, indent=1) + "\n")
    key_file.write_text(json.dumps(key))
    return result


def reusable(run: Path, cfg: Config, sha256: str) -> bool:
    """A finished run in the current run format, trained with ``cfg`` on the corpus ``sha256``."""
    return same_run(run, cfg, sha256) and status(run) == "finished" and (run / "samples.json").is_file()


def same_run(run: Path, cfg: Config, sha256: str) -> bool:
    """A run in the current run format with the settings ``cfg`` on the corpus ``sha256`` (finished
    or not: an interrupted one is resumed)."""
    from a4lib.rundir import read_json_or
    from a4lib.train import RUN_FORMAT

    try:
        config = read_json_or(run / "config.json", {}) or {}
        same = not Config.from_dict(config).differences(cfg, ignore=("corpus",))
    except (OSError, ValueError, TypeError):
        return False
    return (same and config.get("format") == RUN_FORMAT and config.get("corpus_sha256") == sha256
            and (run / "checkpoint.npz").is_file())


def status(run: Path) -> str:
    from a4lib.rundir import status as run_status

    return run_status(run)


def clear_run_dir(run: Path) -> None:
    """Remove a run directory this build made; a BuildError for one it did not make."""
    if not run.exists():
        return
    prov = run / "provenance.json"
    made_here = prov.is_file() and json.loads(prov.read_text()).get("made_by") == "report/build.py"
    if not made_here and any(run.iterdir()):
        raise BuildError(f"{rel(run)} holds a run the report build did not make: remove it or choose another "
                         f"RUN= or OUT=")
    shutil.rmtree(run)


def prepare(a, runs: dict[Path, Config], sha256: dict[str, str]) -> dict[Path, Config]:
    """The runs to train (new, or interrupted ones to resume); a stale run this build made (other
    settings, text or run format) is removed first, a reusable one left out."""
    from a4lib.rundir import is_locked, write_provenance

    todo = {}
    for run, cfg in runs.items():
        if is_locked(run):
            raise BuildError(f"{rel(run)} is in use: another process is training into it")
        sha = sha256[cfg.corpus]
        if not a.force and reusable(run, cfg, sha):
            continue
        if a.force or not same_run(run, cfg, sha) or status(run) == "diverged":
            clear_run_dir(run)
        run.mkdir(parents=True, exist_ok=True)
        write_provenance(run, {"made_by": "report/build.py", "command": a.command})
        todo[run] = cfg
    return todo


def train_runs(a, runs: dict[Path, Config], workers: int | None = None) -> None:
    """Train the runs as ``a4lib train`` would, on the sweep engine (``a4lib.sweep.run_many``: local
    worker processes, ``workers`` of them, default one per core; or the Dask cluster of
    ``--scheduler``); a BuildError naming those that did not finish. This is the one place the
    build trains."""
    from a4lib.sweep import run_many

    by_folder: dict[Path, dict[str, Config]] = {}
    for run, cfg in runs.items():
        by_folder.setdefault(run.parent, {})[run.name] = cfg
    failed = []
    for folder, named in by_folder.items():
        try:
            summaries = run_many(named, folder, workers=workers or min(len(named), os.cpu_count() or 1),
                                 scheduler=a.scheduler)
        except (ValueError, OSError) as err:  # a bad setting or corpus (ConfigError, CorpusError), a run in use
            raise BuildError(str(err)) from None
        failed += [f"{name} {s.get('status', 'failed')}" + (f": {s['error'][:200]}" if s.get("error") else "")
                   for name, s in summaries.items() if s.get("status") != "finished"]
    if failed:
        raise BuildError("training " + "; ".join(failed))


def training(a, corpus, cfg: Config) -> Path:
    """Step 3: the main run from ``a.n_seeds`` initial seeds; BUILD/seeds.json lists them."""
    runs = {a.run / f"seed={cfg.seed + k}": cfg.replace(seed=cfg.seed + k) for k in range(a.n_seeds)}
    todo = prepare(a, runs, {cfg.corpus: corpus.sha256})
    per_epoch = updates_per_epoch(corpus, cfg)
    what = (f"{a.n_seeds} seeds ({cfg.seed} to {cfg.seed + a.n_seeds - 1}) of {cfg.n_updates:,} updates "
            f"({cfg.n_updates / max(1, per_epoch):.2f} epochs of {per_epoch:,} updates)")
    if todo:
        say(f"[3/{STEPS}] training: {what} into {rel(a.run)}" + (f", reusing {len(runs) - len(todo)}" if len(todo) < len(runs) else ""))
        train_runs(a, todo)
    else:
        say(f"[3/{STEPS}] training: reusing {what} in {rel(a.run)}")
    out = a.build / "seeds.json"
    out.write_text(json.dumps([{"seed": c.seed, "dir": str(run.resolve())} for run, c in runs.items()], indent=1) + "\n")
    return out


def best_seed_run(seeds_json: Path) -> Path:
    """The run directory of the seed with the lowest smooth loss (the report's main run)."""
    from a4lib.analysis import seed_spread
    from a4lib.rundir import read_json_or

    runs = {s["seed"]: Path(s["dir"]) for s in json.loads(seeds_json.read_text())}
    return runs[seed_spread({k: read_json_or(d / "summary.json") for k, d in runs.items()}).best_seed]


# --- step 4: the studies beyond the assignment ------------------------------------------------

def tweet_corpus(a):
    """The tweet corpus to use (its spec as given, and the Corpus), or (None, None) without one.

    Not given: ``studies.DEFAULT_TWEETS`` from the project folder when it exists. ``none``: no
    tweets. A given file that is missing or not a tweet corpus is a BuildError.
    """
    from a4lib.corpus import CorpusError, load_corpus

    if "tweets" not in a.sections:
        return None, None
    spec = a.tweets
    if spec is None:
        if not (ROOT / studies.DEFAULT_TWEETS).is_file():
            return None, None
        spec = str((ROOT / studies.DEFAULT_TWEETS).resolve())
    elif spec.strip().lower() in ("", "none"):
        return None, None
    try:
        corpus = load_corpus(spec)
    except CorpusError as err:
        raise BadInput(f"TWEETS: {err}") from None
    if not corpus.is_tweets:
        raise BadInput(f"TWEETS={spec}: not a tweet corpus (a JSON list of objects with a \"text\" field)")
    return str(Path(spec).resolve()), corpus


def study_bench(a, corpus, bench: dict) -> dict:
    """One benchmark of the mini-batch study (reused when the same one was made on the same corpus)."""
    B = bench["batch_size"]
    out = a.build / f"bench-B{B}.json"
    key = {"corpus": corpus.sha256, "args": bench["args"][4:]}  # after "bench --json --corpus PATH"
    result = cached_bench(a, bench["args"], out, key, f"the benchmark with B = {B}")
    if result is None:
        say(f"      benchmark B = {B}: reusing {rel(out)}")
        return json.loads(out.read_text())
    say(f"      benchmark B = {B}: {result['chars_per_s']:,} characters/s, reference "
        f"{result['reference_chars_per_s']:,}: {result['speedup']}x")
    return result


def scaling_bench(a, corpus, args: list[str]) -> dict:
    """The scaling table of the mini-batch study (m x B x type; reused as study_bench)."""
    out = a.build / "bench-scaling.json"
    result = cached_bench(a, args, out, {"corpus": corpus.sha256, "args": args[5:]}, "the scaling benchmark",
                          "      scaling benchmark: m x B x float64/float32")
    if result is None:
        say(f"      scaling benchmark: reusing {rel(out)}")
        return json.loads(out.read_text())
    return result


def studies_step(a, corpus) -> Path | None:
    """Step 4: the benchmarks and training runs of the sections beyond the assignment, and
    BUILD/beyond.json that lists them for the beyond notebook. None when every section is off."""
    if not a.sections:
        say(f"[4/{STEPS}] studies beyond the assignment: none (switched off)")
        return None
    if corpus.is_tweets and set(a.sections) - {"sampling", "tweets"}:
        raise BadInput(f"CORPUS={a.corpus_spec} is a tweet corpus: the studies beyond the assignment need a plain "
                         f"text (give the tweets with TWEETS=, or leave the studies out with BEYOND=0)")
    plan = studies.plan(a.sections, a.corpus_spec, len(corpus.text), a.studies,
                        studies.QUICK if a.quick else studies.FULL, tweets=a.tweets_spec, seed=a.config.seed)
    plan["quick"] = a.quick
    plan["workers"] = os.cpu_count() or 1
    plan["scheduler"] = a.scheduler
    runs = studies.all_runs(plan)
    benches = (plan.get("batches") or {}).get("benches", [])
    say(f"[4/{STEPS}] studies beyond the assignment ({', '.join(a.sections)}): {len(benches)} benchmarks, "
        f"{len(runs)} training runs into {rel(a.studies)}")
    if "tweets" in a.sections and a.tweets_corpus is None:
        say("      no tweet corpus: the tweet section says how to give one (TWEETS=path)")
    start = time.perf_counter()
    for bench in benches:
        bench["result"] = study_bench(a, corpus, bench)
    if "batches" in plan:
        plan["batches"]["scaling"] = scaling_bench(a, corpus, plan["batches"]["scaling_args"])
    shas = {a.corpus_spec: corpus.sha256}
    if a.tweets_corpus is not None:
        shas[a.tweets_spec] = a.tweets_corpus.sha256
    # the runs compared in seconds start together and have the machine to themselves; the others
    # share the engine's workers
    for timed in (True, False):
        wanted = {r.dir: r.config for r in runs if r.timed == timed}
        batch = prepare(a, wanted, shas)
        for run in [d for d in wanted if d not in batch]:
            say(f"      {run.name}: reusing {rel(run)}")
        if batch:
            say("      training " + ", ".join(d.name for d in batch) + (" at the same time, alone" if timed else ""))
            train_runs(a, batch, workers=len(batch) if timed else None)
    out = a.build / "beyond.json"
    out.write_text(json.dumps(studies.to_json(plan), indent=1) + "\n", encoding="utf-8")
    say(f"      studies done in {time.perf_counter() - start:.0f} s -> {rel(out)}")
    return out


# --- steps 5-7: the report ---------------------------------------------------------------------

def kernel_env() -> None:
    """The notebook kernel is this interpreter: its environment's kernelspec comes first, and
    jupyter_client starts a kernelspec's ``python`` as sys.executable."""
    prefix_kernels = Path(sys.prefix) / "share" / "jupyter"
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(prefix_kernels), os.environ.get("JUPYTER_PATH")]))
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")


def kernel_config():
    """Kernel-manager settings: CurveZMQ keys for the kernel's TCP sockets where jupyter_client
    and zmq support them (else the kernel warns that it runs unencrypted)."""
    from jupyter_client import KernelManager
    from traitlets.config import Config as TraitletsConfig

    c = TraitletsConfig()
    try:
        import zmq
        if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
            c.KernelManager.transport_encryption = "auto"
    except ImportError:
        pass
    return c


def papermill_run(notebook: Path, out: Path, params: dict, what: str) -> Path:
    """Execute ``notebook`` with ``params`` into ``out`` (papermill, this interpreter's kernel,
    in notebooks/ as JupyterLab would)."""
    import papermill

    try:
        papermill.execute_notebook(str(notebook), str(out), parameters=params, kernel_name="python3",
                                   cwd=str(NOTEBOOKS), progress_bar=False, log_output=False, config=kernel_config())
    except papermill.PapermillExecutionError as err:
        raise BuildError(f"the {what} notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
                         f"(see {rel(out)})") from None
    return out


def execute_report(a) -> Path:
    out = a.build / "report.ipynb"
    say(f"[5/{STEPS}] the report notebook (papermill) -> {rel(out)}")
    params = {"seeds_json": str(a.seeds_json), "gradcheck_json": str(a.build / "gradcheck.json"),
              "bench_json": str(a.build / "bench.json"), "figures_dir": str(a.figures),
              "passage_length": a.passage_length, "seed": a.config.seed, "quick": a.quick,
              "samples_until": None if a.quick else MIN_UPDATES}  # the handout: every 10,000 to 100,000
    return papermill_run(NOTEBOOK, out, params, "report")


SECTION_HEADING = re.compile(r"^## \d+\. ", re.MULTILINE)


def select_sections(source: Path, sections: list[str], out: Path, first: int = FIRST_BEYOND_SECTION) -> Path:
    """The notebook ``source`` with only the cells of ``sections`` (a cell tagged ``beyond-KEY``
    belongs to section KEY; untagged cells to every report), its "## N. " headings numbered from
    ``first`` on; written to ``out``."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    unknown = set(sections) - set(studies.SECTIONS)
    if unknown:
        raise BuildError(f"unknown section(s): {', '.join(sorted(unknown))}")

    def keep(cell) -> bool:
        keys = [t[len("beyond-"):] for t in cell.get("metadata", {}).get("tags", []) if t.startswith("beyond-")]
        return not keys or any(k in sections for k in keys)

    nb.cells = [c for c in nb.cells if keep(c)]
    number = first
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        while SECTION_HEADING.search(cell.source):
            cell.source = SECTION_HEADING.sub(f"## {number}! ", cell.source, count=1)
            number += 1
        cell.source = re.sub(r"^## (\d+)! ", r"## \1. ", cell.source, flags=re.MULTILINE)
    nbformat.write(nb, out)
    return out


def execute_beyond(a, plan_file: Path) -> Path:
    """The beyond notebook with the sections the build's options ask for."""
    source = select_sections(BEYOND_NOTEBOOK, a.sections, a.build / "beyond.source.ipynb")
    out = a.build / "beyond.ipynb"
    say(f"      the beyond notebook (papermill) -> {rel(out)}")
    params = {"beyond_json": str(plan_file), "run_dir": str(a.main_run), "figures_dir": str(a.figures),
              "seed": a.config.seed}
    return papermill_run(source, out, params, "beyond")


def merge_notebooks(first: Path, *more: Path, out: Path) -> Path:
    """One notebook of the cells of several executed notebooks, in order (the document)."""
    import nbformat

    nb = nbformat.read(first, as_version=4)
    for path in more:
        nb.cells.extend(nbformat.read(path, as_version=4).cells)
    nbformat.write(nb, out)
    return out


def strip_streams(path: Path, report_to=None) -> list[str]:
    """Remove stderr output (warnings, progress bars) from the executed notebook; what it said
    (each also given to ``report_to`` when given)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    said = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        keep = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                said.append(out.get("text", ""))
            else:
                keep.append(out)
        cell.outputs = keep
    nbformat.write(nb, path)
    for text in said if report_to else []:
        report_to("note: the notebook wrote to stderr (left out of the report): "
                  + (text.strip().splitlines() or [""])[-1][:200])
    return said


def to_html(a, executed: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config as TraitletsConfig

    out = a.html_dir / "report.html"
    say(f"[6/{STEPS}] HTML -> {rel(out)}")
    strip_streams(executed, report_to=say)
    c = TraitletsConfig()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = {"remove", "parameters", "injected-parameters"}
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.HTMLExporter.template_name = "a4report"
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["title"] = "DD2424 Assignment 4: report" + (" (quick report)" if a.quick else "")
    body, _ = HTMLExporter(config=c).from_notebook_node(nb, resources={"metadata": {"name": "report"}})
    a.html_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".report.html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, out)
    return out


def to_pdf(a, html_file: Path) -> Path:
    out = a.html_dir / "report.pdf"
    say(f"[7/{STEPS}] PDF ({Path(a.chromium).name}) -> {rel(out)}")
    with tempfile.TemporaryDirectory(prefix="a4lib-chromium-") as profile:
        tmp = Path(profile) / "report.pdf"
        cmd = [a.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-pdf-header-footer", "--print-to-pdf-no-header", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={profile}/profile", f"--print-to-pdf={tmp}",
               html_file.resolve().as_uri()]
        env = {**os.environ, "HOME": profile, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
        except subprocess.TimeoutExpired:
            raise BuildError("Chromium did not finish printing the PDF within 180 s") from None
        if r.returncode != 0 or not tmp.is_file() or tmp.read_bytes()[:5] != b"%PDF-":
            tail = "\n".join((r.stderr or "").strip().splitlines()[-5:])
            raise BuildError(f"Chromium could not print the PDF (exit code {r.returncode}):\n{tail}")
        shutil.move(str(tmp), out)
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    start = time.perf_counter()
    try:
        a.chromium = None if a.no_pdf else find_chromium(a.chromium)
        from a4lib.corpus import CorpusError, load_corpus

        try:
            corpus = load_corpus(a.corpus, a.overrides.get("seq_length", 1))
        except CorpusError as err:
            raise BadInput(str(err)) from None
        a.corpus_spec = corpus_spec(a.corpus, corpus)
        a.config = main_config(a, corpus)
        say(f"corpus {corpus.name}: {len(corpus.text):,} characters, K = {corpus.K}"
            + (" (quick)" if a.quick else ""))
        a.tweets_spec, a.tweets_corpus = tweet_corpus(a)
        for d in (a.build, a.figures, a.html_dir):
            d.mkdir(parents=True, exist_ok=True)
        with timed("gradient check and benchmark"):
            checks_ok = gradient_check(a, corpus, a.config)
            benchmark(a, corpus, a.config)
        with timed("the main run"):
            a.seeds_json = training(a, corpus, a.config)
            a.main_run = best_seed_run(a.seeds_json)
        plan_file = studies_step(a, corpus)
        kernel_env()
        with timed("notebooks, HTML and PDF"):
            executed = execute_report(a)
            if plan_file is not None:
                beyond = execute_beyond(a, plan_file)
                executed = merge_notebooks(executed, beyond, out=a.build / "document.ipynb")
            html_file = to_html(a, executed)
            if a.chromium:
                to_pdf(a, html_file)
    except BuildError as err:
        say(f"error: {err}")
        return 2 if isinstance(err, BadInput) else 1
    except KeyboardInterrupt as err:  # a4lib.sweep.SweepInterrupted says which signal
        say("interrupted: the runs are saved; the next build continues or reuses them")
        return 143 if getattr(err, "signal_name", None) == "SIGTERM" else 130
    say(f"done in {time.perf_counter() - start:.0f} s: {rel(a.html_dir / 'report.html')}"
        + ("" if a.no_pdf else f", {rel(a.html_dir / 'report.pdf')}"))
    if not checks_ok:
        say("error: the gradient check FAILED (see section 2 of the report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
