"""Build the report: gradient check, benchmark, training runs, studies, notebooks, HTML, PDF.

    python -m report.build [--quick] [--corpus PATH] [--eta 0.05] [--updates N] ... [--out DIR]
    make report QUICK=1 CORPUS=PATH ETA=0.05 ...      (the same: MAKE_VARIABLES maps each to its option)

The training flags are those of ``a4lib train`` (``a4lib.config.Config``): they override the main
run's settings. The command line is read once into frozen ``Settings``; each step takes values and
returns values:

1. gradient check   ``a4lib gradcheck --json``          -> BUILD/gradcheck.json
2. benchmark        ``a4lib bench --json``              -> BUILD/bench.json
3. the main run from N_SEEDS initial seeds (``train_runs``: a4lib.sweep)   -> RUN/seed=S/
4. the studies beyond the assignment (``report.studies``): the scaling benchmark and training runs
   on the same engine                                   -> BUILD/bench-scaling.json, STUDIES/<name>/
5. BUILD/manifest.json (``report.manifest``): what the build made, which the notebooks open
6. notebooks/report.ipynb and notebooks/beyond.ipynb (only the sections with data, numbered on),
   then notebooks/inside.ipynb on the model study's best network, executed by papermill in
   notebooks/; the drafted answers' premises checked
                                                        -> BUILD/report.ipynb, beyond.ipynb, inside.ipynb
7. HTML: both as one document, code and JupyterLab-only cells left out (nbconvert) -> OUT/report.html
8. PDF: the HTML printed by a headless Chromium         -> OUT/report.pdf

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
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a4lib import config as config_module
from a4lib.config import Config
from a4lib.corpus import Corpus
from a4lib.gradcheck import MS as GRADCHECK_MS
from a4lib.train import updates_per_epoch

from . import manifest as manifest_module
from . import studies

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "report" / "templates"
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = NOTEBOOKS / "report.ipynb"
BEYOND_NOTEBOOK = NOTEBOOKS / "beyond.ipynb"
INSIDE_NOTEBOOK = NOTEBOOKS / "inside.ipynb"  # after the model study, on its best network
FIRST_BEYOND_SECTION = 7  # report.ipynb has sections 1-6
MIN_UPDATES = 100_000  # the handout: samples every 10,000 updates through 100,000
#: the main run's epochs: on tinyshakespeare (1.1 M characters, like the course text) the best smooth
#: loss of seeds 0 and 1 fell 1.6 and 1.7 nats in epoch 2, 0.8 and 0.8 in epoch 5, 0.3 in epoch 8:
#: after 5 epochs each further epoch gains about 1 % while the seeds differ by 4 nats
MAIN_EPOCHS = 5
#: the main run's seeds: a multiple of the two cores (a fifth seed would train alone in a third round)
N_SEEDS, QUICK_SEEDS = 4, 2
QUICK_UPDATES, QUICK_SAMPLE_EVERY = 1500, 500
QUICK_GRADCHECK_M = (5,)  # the full build checks a4lib.gradcheck.MS
QUICK_BENCH = ("--updates", "300", "--reference-updates", "60")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_CHROMIUM = "install Chromium (apt-get install chromium) or set CHROMIUM=/path/to/chromium"
#: cells with these tags never reach the HTML and PDF: the notebooks' JupyterLab-only cells
REMOVED_TAGS = {"remove", "notes", "parameters", "injected-parameters"}
STEPS = 8

#: make variable -> this build's option: the one mapping (``make report`` passes its variables on in
#: the environment; ``--make`` reads them). TRAIN_ARGS holds any other ``a4lib train`` flags.
MAKE_VARIABLES: dict[str, str | None] = {
    "QUICK": "--quick", "CORPUS": "--corpus", "M": "--m", "ETA": "--eta", "SEQ_LENGTH": "--seq-length",
    "SIG": "--sig", "OPTIMIZER": "--optimizer", "N_UPDATES": "--updates", "N_EPOCHS": "--epochs", "SEED": "--seed",
    "SAMPLE_EVERY": "--sample-every", "SAMPLE_LENGTH": "--sample-length", "N_SEEDS": "--n-seeds",
    "SCHEDULER": "--scheduler", "OUT": "--out", "RUN": "--run", "FORCE": "--force", "PDF": "--pdf",
    "CHROMIUM": "--chromium", "BEYOND": "--beyond", **{f"BEYOND_{k.upper()}": f"--beyond-{k}" for k in studies.SECTIONS},
    "TWEETS": "--tweets", "TRAIN_ARGS": None,
}
#: the make variables that a repeat of the build names (not where it wrote or how it printed)
REPEATED = ("QUICK", "N_SEEDS", "CORPUS", "BEYOND", *(f"BEYOND_{k.upper()}" for k in studies.SECTIONS), "TWEETS")


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
        print(f"report: error: {message} (python -m report.build --help lists the options)", file=sys.stderr)
        sys.exit(2)


def switch(value: str) -> bool:
    """A switch: 1/0, on/off, yes/no, true/false."""
    v = str(value).strip().lower()
    if v in ("1", "on", "yes", "true"):
        return True
    if v in ("0", "off", "no", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")


def make_argv(env: Mapping[str, str]) -> list[str]:
    """The options of the make variables set (non-empty) in ``env``."""
    argv: list[str] = []
    for name, option in MAKE_VARIABLES.items():
        value = env.get(name, "")
        if value.strip():
            argv += shlex.split(value) if option is None else [option, value]
    return argv


@dataclass(frozen=True)
class Settings:
    """Everything a build was asked for, read once from the command line."""

    quick: bool
    corpus: str | None  # as given (None: the default corpus)
    overrides: Mapping[str, Any]  # the main run's Config settings that were given
    n_seeds: int
    scheduler: str | None
    passage_length: int
    gradcheck_m: tuple[int, ...]
    sections: tuple[str, ...]  # the sections beyond the assignment asked for
    tweets: str | None  # the tweet corpus as given (None: no tweets)
    force: bool
    chromium: str | None  # the browser that prints the PDF (None: the HTML only)
    out: Path  # report.html and report.pdf
    figures: Path
    build: Path
    run: Path  # the main run's seeds
    studies: Path
    command: str  # the make command that repeats this build

    @property
    def budget(self) -> studies.Budget:
        return studies.QUICK if self.quick else studies.FULL


def parser() -> Parser:
    p = Parser(prog="python -m report.build",
               description="Build report/report.html and report/report.pdf (with --quick: report/quick/). Each option "
                           "is also a make variable: " + ", ".join(f"{o} {v}" for v, o in MAKE_VARIABLES.items() if o)
                           + "; TRAIN_ARGS any other a4lib train flag.")
    p.add_argument("--make", action="store_true", help="read the options from make's variables in the environment")
    p.add_argument("--quick", type=switch, nargs="?", const=True, default=False, metavar="0|1",
                   help=f"a small run that checks the build: {QUICK_UPDATES:,} updates, m = 5 check, tiny studies, "
                        f"written to report/quick/ (the corpus as for the full build)")
    p.add_argument("--corpus", help="default: data/goblet_book.txt of the project if present, else builtin:python-docs")
    train = p.add_argument_group("the main run's settings (a4lib train's flags; default: a4lib's, but "
                                 f"{MAIN_EPOCHS} epochs and at least {MIN_UPDATES:,} updates, quick {QUICK_UPDATES:,} "
                                 f"updates)")
    config_module.add_arguments(train, exclude=("corpus",))
    p.add_argument("--n-seeds", type=int, help=f"the main run from this many initial seeds: SEED, SEED + 1, ... "
                                                f"(default {N_SEEDS}, quick {QUICK_SEEDS})")
    p.add_argument("--scheduler", help="train every run on the Dask cluster at this address (tcp://HOST:PORT; "
                                       "the run folders must be on a filesystem its workers share)")
    p.add_argument("--passage-length", type=int, default=1000)
    p.add_argument("--gradcheck-m", type=int, action="append",
                   help=f"m to check (repeatable; default {' and '.join(map(str, GRADCHECK_MS))}, quick "
                        f"{' and '.join(map(str, QUICK_GRADCHECK_M))})")
    p.add_argument("--out", type=Path, help="put everything (HTML, PDF, figures, build files, runs) under this folder")
    p.add_argument("--run", type=Path, help="the folder of the main run's seeds (default runs/report, quick "
                                            "runs/report-quick)")
    p.add_argument("--chromium", help="the browser that prints the PDF (default: found on PATH)")
    p.add_argument("--pdf", type=switch, default=True, metavar="0|1", help="0: the HTML only")
    p.add_argument("--force", type=switch, nargs="?", const=True, default=False, metavar="0|1",
                   help="redo the gradient check, benchmarks, training and studies")
    p.add_argument("--beyond", type=switch, default=True, metavar="0|1",
                   help="the part beyond the assignment (0: leave all of it out)")
    for key, title in studies.SECTIONS.items():
        p.add_argument(f"--beyond-{key}", type=switch, default=True, metavar="0|1", help=f"the section {title!r}")
    p.add_argument("--tweets", help="a tweet corpus (a JSON list of objects with a \"text\" field) for the tweet section; "
                                    "without one, the section is left out")
    return p


def settings(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The build's settings from its options (with --make, first those of make's variables in ``env``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    p = parser()
    if "--make" in argv:
        argv = make_argv(env) + [a for a in argv if a != "--make"]
    a = p.parse_args(argv)
    overrides = {k: v for k, v in config_module.given(a).items() if k != "corpus"}
    n_seeds = a.n_seeds if a.n_seeds is not None else QUICK_SEEDS if a.quick else N_SEEDS
    if n_seeds < 1:
        p.error(f"--n-seeds must be >= 1, got {n_seeds}")
    tweets = None if a.tweets is None or a.tweets.strip().lower() in ("", "none") else a.tweets
    if a.out is not None:
        out = a.out.resolve()
        where = dict(out=out, figures=out / "figures", build=out / "build", run=a.run or out / "run",
                     studies=out / "studies")
    elif a.quick:
        out = ROOT / "report" / "quick"
        where = dict(out=out, figures=out / "figures", build=ROOT / "report" / "build" / "quick",
                     run=a.run or ROOT / "runs" / "report-quick", studies=ROOT / "runs" / "studies-quick")
    else:
        where = dict(out=ROOT / "report", figures=ROOT / "figures", build=ROOT / "report" / "build" / "full",
                     run=a.run or ROOT / "runs" / "report", studies=ROOT / "runs" / "studies")
    sections = tuple(k for k in studies.SECTIONS if a.beyond and getattr(a, f"beyond_{k}"))
    return Settings(quick=a.quick, corpus=a.corpus, overrides=overrides, n_seeds=n_seeds, scheduler=a.scheduler,
                    passage_length=a.passage_length,
                    gradcheck_m=tuple(a.gradcheck_m or (QUICK_GRADCHECK_M if a.quick else GRADCHECK_MS)),
                    sections=sections, tweets=tweets, force=a.force,
                    chromium=find_chromium(a.chromium) if a.pdf else None, **where,
                    command=repeat_command(a, overrides, tweets))


def repeat_command(a: argparse.Namespace, overrides: Mapping[str, Any], tweets: str | None) -> str:
    """The ``make report`` line that repeats this build (the settings given, not where it wrote)."""
    by_option = {option: name for name, option in MAKE_VARIABLES.items() if option}
    values = {"QUICK": "1" if a.quick else None, "N_SEEDS": a.n_seeds, "CORPUS": a.corpus, "TWEETS": tweets,
              "BEYOND": None if a.beyond else "0",
              **{f"BEYOND_{k.upper()}": "0" for k in studies.SECTIONS if a.beyond and not getattr(a, f"beyond_{k}")}}
    words = ["make", "report"] + [f"{name}={values[name]}" for name in REPEATED if values.get(name) is not None]
    other = []
    for name, value in overrides.items():
        flag = config_module.flag_of(name)
        if flag in by_option:
            words.append(f"{by_option[flag]}={value}")
        else:
            other += [flag, str(value)]
    if other:
        words.append(f"TRAIN_ARGS={shlex.join(other)}")
    return shlex.join(words)


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


@dataclass(frozen=True)
class Inputs:
    """The texts and the main run's settings, read once."""

    corpus: Corpus
    spec: str  # the corpus as the runs get it: an absolute path, or the built-in text's name
    config: Config  # the main run's settings (its seed the first of the seeds)
    tweets: Corpus | None
    tweets_spec: str | None


def corpus_spec(given: str | None, corpus: Corpus) -> str:
    """The corpus as the runs and notebooks get it: a file as an absolute path (a relative one
    resolves from the working directory), the built-in text by its name."""
    from a4lib.corpus import BUILTIN
    from a4lib.rundir import project_path

    if corpus.name == BUILTIN:
        return BUILTIN
    return str(Path(given).resolve()) if given is not None else str(project_path(corpus.name))


def main_config(s: Settings, spec: str, corpus: Corpus) -> Config:
    """The main run's settings: a4lib's defaults, the build's (updates, quick sampling), the given."""
    base = {"corpus": spec}
    if s.quick:
        base["sample_every"] = QUICK_SAMPLE_EVERY
    try:
        cfg = Config(**{**base, **s.overrides}).validate()
        if cfg.n_updates is None:
            epochs = s.overrides.get("n_epochs", MAIN_EPOCHS)
            cfg = cfg.replace(n_updates=QUICK_UPDATES if s.quick else
                              max(MIN_UPDATES, epochs * updates_per_epoch(corpus, cfg)))
        return cfg.validate()
    except ValueError as err:  # ConfigError, or a batch size the text cannot hold
        raise BadInput(str(err)) from None


def inputs(s: Settings) -> Inputs:
    """Read the corpus (and the tweets, when the tweet section is asked for and given one)."""
    from a4lib.corpus import CorpusError, load_corpus

    try:
        corpus = load_corpus(s.corpus, s.overrides.get("seq_length", 1))
    except CorpusError as err:
        raise BadInput(str(err)) from None
    spec = corpus_spec(s.corpus, corpus)
    tweets = tweets_spec = None
    if s.tweets is not None and "tweets" in s.sections:
        try:
            tweets = load_corpus(s.tweets)
        except CorpusError as err:
            raise BadInput(f"TWEETS: {err}") from None
        if not tweets.is_tweets:
            raise BadInput(f"TWEETS={s.tweets}: not a tweet corpus (a JSON list of objects with a \"text\" field)")
        tweets_spec = str(Path(s.tweets).resolve())
    return Inputs(corpus=corpus, spec=spec, config=main_config(s, spec, corpus), tweets=tweets, tweets_spec=tweets_spec)


# --- steps 1-2: checks and benchmark -----------------------------------------------------------

def a4lib(*args: str) -> subprocess.CompletedProcess:
    """``python -m a4lib ARGS`` with this interpreter, in the working directory; its output captured."""
    return subprocess.run([sys.executable, "-m", "a4lib", *args], text=True, capture_output=True)


def cached(key_file: Path, result: Path, key: dict, force: bool) -> bool:
    """True when ``result`` exists and was made from the same ``key``."""
    if force or not result.is_file() or not key_file.is_file():
        return False
    try:
        return json.loads(key_file.read_text()) == key
    except json.JSONDecodeError:
        return False


def last_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (r.stderr or "").splitlines() if ln.strip()]
    return f": {lines[-1][:300]}" if lines else ""


def gradient_check(s: Settings, inp: Inputs) -> Path:
    """Step 1: ``a4lib gradcheck --json`` (reused when made with the same corpus and sizes)."""
    out, key_file = s.build / "gradcheck.json", s.build / "gradcheck.key.json"
    key = {"corpus": inp.corpus.sha256, "ms": list(s.gradcheck_m), "seq_length": inp.config.seq_length}
    if cached(key_file, out, key, s.force):
        say(f"[1/{STEPS}] gradient check: reusing {rel(out)}")
        return out
    say(f"[1/{STEPS}] gradient check, m = {', '.join(map(str, s.gradcheck_m))}")
    key_file.unlink(missing_ok=True)
    args = ["gradcheck", "--corpus", inp.spec, "--seq-length", str(inp.config.seq_length), "--json", str(out)]
    for m in s.gradcheck_m:
        args += ["--m", str(m)]
    r = a4lib(*args)
    if r.returncode not in (0, 1) or not out.is_file():
        raise BuildError(f"the gradient check stopped with exit code {r.returncode}{last_line(r)}")
    key_file.write_text(json.dumps(key))
    results = json.loads(out.read_text())
    worst = max(row["max_rel"] for res in results for row in res["table"].values())
    say(f"      {'passed' if all(res['ok'] for res in results) else 'FAILED'}: largest relative error {worst:.1e}")
    return out


def cached_bench(s: Settings, args: list[str], out: Path, key: dict, what: str) -> dict:
    """``a4lib ARGS`` (a ``bench --json``) into ``out``, or ``out`` as it is when made with the same key."""
    key_file = out.with_suffix(".key.json")
    if cached(key_file, out, key, s.force):
        say(f"      {what}: reusing {rel(out)}")
        return json.loads(out.read_text())
    say(f"      {what}")
    key_file.unlink(missing_ok=True)
    r = a4lib(*args)
    lines = [ln for ln in (r.stdout or "").splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise BuildError(f"{what} stopped with exit code {r.returncode}{last_line(r)}")
    result = json.loads(lines[-1])
    out.write_text(json.dumps(result, indent=1) + "\n")
    key_file.write_text(json.dumps(key))
    return result


def benchmark(s: Settings, inp: Inputs) -> Path:
    """Step 2: the main run's training step against reference.py (``a4lib bench --json``)."""
    cfg, extra = inp.config, list(QUICK_BENCH if s.quick else ())
    args = ["bench", "--json", "--corpus", inp.spec, "--m", str(cfg.m), "--seq-length", str(cfg.seq_length), *extra]
    key = {"corpus": inp.corpus.sha256, "args": args[4:]}
    say(f"[2/{STEPS}] benchmark: a4lib's training step against reference.py")
    out = s.build / "bench.json"
    r = cached_bench(s, args, out, key, "the benchmark")
    say(f"      {r['updates_per_s']:,.0f} updates/s, reference {r['reference_updates_per_s']:,.0f}: {r['speedup']}x")
    return out


# --- steps 3-4: training -------------------------------------------------------------------------

MADE_BY = "report/build.py"  # provenance.json of the runs this build made


def made_here(run: Path) -> bool:
    from a4lib.rundir import read_json_or

    try:
        return (read_json_or(run / "provenance.json", {}) or {}).get("made_by") == MADE_BY
    except (OSError, ValueError):
        return False


def action(v, made_by_build: bool, force: bool) -> str:
    """What the build does with a run directory, given its ``a4lib.rundir.verdict``: "reuse" (done),
    "train" (new, resume, extend), "renew" (start it again: FORCE, or a conflict of settings, text or
    format in a run this build made); a BuildError with the verdict's reason for a run in use, a
    diverged run, or a conflicting run the build did not make."""
    if v.status == "running":
        raise BuildError(v.reason)
    if force or v.kind == "conflict" and made_by_build:
        return "renew"
    if v.kind == "conflict" or v.status == "diverged":
        raise BuildError(v.reason + ("" if made_by_build else "; choose another RUN= or OUT="))
    return "reuse" if v.kind == "done" else "train"


def clear_run_dir(run: Path) -> None:
    """Remove a run directory this build made; a BuildError for one it did not make."""
    if not run.exists():
        return
    if not made_here(run) and any(run.iterdir()):
        raise BuildError(f"{rel(run)} holds a run the report build did not make: remove it or choose another "
                         f"RUN= or OUT=")
    shutil.rmtree(run)


def prepare(s: Settings, runs: Mapping[Path, Config], sha256: Mapping[str, str]) -> dict[Path, Config]:
    """The runs to train, as each one's verdict says (``action``): a run to renew is removed first,
    a done one left out."""
    from a4lib.rundir import verdict, write_provenance

    todo = {}
    for run, cfg in runs.items():
        what = action(verdict(run, cfg, sha256[cfg.corpus]), made_here(run), s.force)
        if what == "reuse":
            continue
        if what == "renew":
            clear_run_dir(run)
        run.mkdir(parents=True, exist_ok=True)
        write_provenance(run, {"made_by": MADE_BY, "command": s.command})
        todo[run] = cfg
    return todo


def train_runs(s: Settings, runs: Mapping[Path, Config], workers: int | None = None) -> None:
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
                                 scheduler=s.scheduler)
        except (ValueError, OSError) as err:  # a bad setting or corpus (ConfigError, CorpusError), a run in use
            raise BuildError(str(err)) from None
        failed += [f"{name} {summary.get('status', 'failed')}" + (f": {summary['error'][:200]}" if summary.get("error") else "")
                   for name, summary in summaries.items() if summary.get("status") != "finished"]
    if failed:
        raise BuildError("training " + "; ".join(failed))


def training(s: Settings, inp: Inputs) -> dict[int, Path]:
    """Step 3: the main run from ``s.n_seeds`` initial seeds; seed -> run directory."""
    cfg = inp.config
    runs = {s.run / f"seed={cfg.seed + k}": cfg.replace(seed=cfg.seed + k) for k in range(s.n_seeds)}
    todo = prepare(s, runs, {cfg.corpus: inp.corpus.sha256})
    per_epoch = updates_per_epoch(inp.corpus, cfg)
    what = (f"{s.n_seeds} seeds ({cfg.seed} to {cfg.seed + s.n_seeds - 1}) of {cfg.n_updates:,} updates "
            f"({cfg.n_updates / max(1, per_epoch):.2f} epochs of {per_epoch:,} updates)")
    if todo:
        say(f"[3/{STEPS}] training: {what} into {rel(s.run)}"
            + (f", reusing {len(runs) - len(todo)}" if len(todo) < len(runs) else ""))
        train_runs(s, todo)
    else:
        say(f"[3/{STEPS}] training: reusing {what} in {rel(s.run)}")
    return {c.seed: run.resolve() for run, c in runs.items()}


def count_ngram(s: Settings, ngram: studies.NGramRun, sha256: str) -> None:
    """The model study's n-gram (``a4lib ngram``), reused when counted with the same order and split
    on the same text."""
    from a4lib.rundir import read_json_or, write_provenance
    from a4lib.train import RUN_FORMAT

    config = read_json_or(ngram.dir / "config.json", {}) or {}
    same = (config.get("corpus_sha256"), config.get("ngram_order"), config.get("val_fraction"),
            config.get("format")) == (sha256, ngram.order, ngram.val_fraction, RUN_FORMAT)
    if same and not s.force and (read_json_or(ngram.dir / "summary.json", {}) or {}).get("status") == "finished":
        say(f"      {ngram.dir.name}: reusing {rel(ngram.dir)}")
        return
    clear_run_dir(ngram.dir)
    ngram.dir.mkdir(parents=True)
    write_provenance(ngram.dir, {"made_by": MADE_BY, "command": s.command})
    say(f"      counting the n-gram (orders 1 to {ngram.order}) into {rel(ngram.dir)}")
    r = a4lib(*ngram.argv())
    if r.returncode != 0:
        raise BuildError(f"a4lib ngram stopped with exit code {r.returncode}{last_line(r)}")


def warm_up(timed: list[studies.StudyRun]) -> None:
    """Compile (or load from numba's cache) the kernels of every cell the timed runs use, so that no
    timed run spends its seconds compiling: a few updates of each (``a4lib bench``), untimed."""
    cells = {(r.config.model, r.config.dtype, r.config.optimizer): r.config for r in timed}
    for cfg in cells.values():
        r = a4lib("bench", "--json", "--corpus", cfg.corpus, "--model", cfg.model, "--m", str(cfg.m), "--dtype",
                  cfg.dtype, "--optimizer", cfg.optimizer, "--batch-size", str(cfg.batch_size), "--seq-length",
                  str(cfg.seq_length), "--updates", "5", "--reference-updates", "1")
        if r.returncode != 0:
            raise BuildError(f"the {cfg.model} network could not run{last_line(r)}")


def studies_step(s: Settings, inp: Inputs) -> tuple[studies.Plan | None, Path | None]:
    """Step 4: the scaling benchmark and the training runs of the sections beyond the assignment;
    the plan (None when every section is off) and the scaling result (None without that section)."""
    from a4lib.train import split

    if not s.sections:
        say(f"[4/{STEPS}] studies beyond the assignment: none (switched off)")
        return None, None
    if inp.corpus.is_tweets and set(s.sections) - {"sampling", "tweets"}:
        raise BadInput(f"CORPUS={inp.spec} is a tweet corpus: the studies beyond the assignment need a plain "
                       f"text (give the tweets with TWEETS=, or leave the studies out with BEYOND=0)")
    n_train, _, _ = split(inp.corpus, studies.VAL_FRACTION)
    plan = studies.plan(s.sections, inp.spec, n_train, s.studies, s.budget, tweets=inp.tweets_spec,
                        seed=inp.config.seed)
    left_out = [k for k in s.sections if k not in plan.sections]
    say(f"[4/{STEPS}] studies beyond the assignment ({', '.join(plan.sections)}): {len(plan.runs)} training runs "
        f"into {rel(s.studies)}" + (f"; left out for want of data: {', '.join(left_out)} (TWEETS=path gives a tweet "
                                    f"corpus)" if left_out else ""))
    start = time.perf_counter()
    scaling = None
    if plan.scaling_args is not None:
        scaling = s.build / "bench-scaling.json"
        cached_bench(s, list(plan.scaling_args), scaling, {"corpus": inp.corpus.sha256, "args": list(plan.scaling_args[5:])},
                     "the scaling benchmark: m x B x float64/float32")
    if plan.ngram is not None:
        count_ngram(s, plan.ngram, inp.corpus.sha256)
    shas = {inp.spec: inp.corpus.sha256}
    if inp.tweets is not None:
        shas[inp.tweets_spec] = inp.tweets.sha256
    # the runs compared in seconds have the machine to themselves, one core each (as many at a time
    # as there are cores); the others share the engine's workers
    cores = os.cpu_count() or 1
    for group, alone in zip(studies.timed_first(plan.runs), (True, False)):
        wanted = {r.dir: r.config for r in group}
        batch = prepare(s, wanted, shas)
        for run in [d for d in wanted if d not in batch]:
            say(f"      {run.name}: reusing {rel(run)}")
        if batch:
            if alone:
                warm_up([r for r in group if r.dir in batch])
            say("      training " + ", ".join(d.name for d in batch)
                + (f", {min(cores, len(batch))} at a time, alone" if alone else ""))
            train_runs(s, batch, workers=min(cores, len(batch)) if alone else None)
    say(f"      studies done in {time.perf_counter() - start:.0f} s")
    return plan, scaling


# --- steps 5-8: the report ---------------------------------------------------------------------

def write_manifest(s: Settings, seeds: Mapping[int, Path], gradcheck: Path, bench: Path,
                   plan: studies.Plan | None, scaling: Path | None, seed: int) -> manifest_module.Manifest:
    """Step 5: the record of this build that the notebooks open (BUILD/manifest.json)."""
    m = manifest_module.Manifest(
        build=s.build, quick=s.quick, made=manifest_module.now(), command=s.command, seeds=dict(seeds),
        gradcheck=gradcheck, bench=bench, figures=s.figures, seed=seed, passage_length=s.passage_length,
        samples_until=None if s.quick else MIN_UPDATES, workers=os.cpu_count() or 1, scheduler=s.scheduler,
        plan=plan, scaling=scaling)
    say(f"[5/{STEPS}] the build's manifest -> {rel(m.save())}")
    return m


def select_sections(source: Path, sections: list[str] | tuple[str, ...], out: Path,
                    first: int = FIRST_BEYOND_SECTION) -> Path:
    """The notebook ``source`` with only the cells of ``sections`` (a cell tagged ``beyond-KEY``
    belongs to section KEY; untagged cells to every report), its "## N. " headings numbered from
    ``first`` on; written to ``out``."""
    import re

    import nbformat

    unknown = set(sections) - set(studies.SECTIONS)
    if unknown:
        raise BuildError(f"unknown section(s): {', '.join(sorted(unknown))}")
    nb = nbformat.read(source, as_version=4)

    def keep(cell) -> bool:
        keys = [t[len("beyond-"):] for t in cell.get("metadata", {}).get("tags", []) if t.startswith("beyond-")]
        return not keys or any(k in sections for k in keys)

    nb.cells = [c for c in nb.cells if keep(c)]
    number = first
    heading = re.compile(r"^## \d+\. ", re.MULTILINE)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        while heading.search(cell.source):
            cell.source = heading.sub(f"## {number}! ", cell.source, count=1)
            number += 1
        cell.source = re.sub(r"^## (\d+)! ", r"## \1. ", cell.source, flags=re.MULTILINE)
    nbformat.write(nb, out)
    return out


def best_network(plan: studies.Plan) -> Path:
    """The model study's best network (``analysis.rank_runs``): the run the inside section reads."""
    from a4lib.results.analysis import rank_runs
    from a4lib.rundir import read_json_or

    runs = {r.dir: read_json_or(r.dir / "summary.json", {}) for r in plan.runs_of("models")}
    return rank_runs(runs).order[0][0]


def inside_run(m: manifest_module.Manifest) -> tuple[Path, Path] | None:
    """The network the inside section reads and the n-gram run it is compared with: the model
    study's best network and the study's n-gram; None when the build has no model study."""
    if m.plan is None or "models" not in m.plan.sections or m.plan.ngram is None:
        return None
    return best_network(m.plan), m.plan.ngram.dir


def execute(s: Settings, m: manifest_module.Manifest) -> Path:
    """Step 6: the report notebook and, with studies, the beyond notebook under papermill, merged
    into one document; the drafted answers' premises checked (a warning for each that fails)."""
    import nbformat

    from a4lib.notebook import NotebookError, premise_notes
    from a4lib.notebook import execute as run_notebook

    params = {"build_dir": str(s.build)}
    say(f"[6/{STEPS}] the notebooks (papermill) -> {rel(s.build)}/report.ipynb"
        + (", beyond.ipynb, inside.ipynb" if m.plan is not None else ""))
    try:
        executed = [run_notebook(NOTEBOOK, s.build / "report.ipynb", params, cwd=NOTEBOOKS)]
        if m.plan is not None:
            source = select_sections(BEYOND_NOTEBOOK, m.plan.sections, s.build / "beyond.source.ipynb")
            executed.append(run_notebook(source, s.build / "beyond.ipynb", params, cwd=NOTEBOOKS))
        inside = inside_run(m)
        if inside is not None:
            source = select_sections(INSIDE_NOTEBOOK, m.plan.sections, s.build / "inside.source.ipynb",
                                     first=FIRST_BEYOND_SECTION + len(m.plan.sections))
            executed.append(run_notebook(source, s.build / "inside.ipynb", {
                "run_dir": str(inside[0]), "ngram_run": str(inside[1]), "figures_dir": str(s.figures)}, cwd=NOTEBOOKS))
    except NotebookError as err:
        raise BuildError(str(err)) from None
    nb = nbformat.read(executed[0], as_version=4)
    for path in executed[1:]:
        nb.cells.extend(nbformat.read(path, as_version=4).cells)
    for failed in premise_notes(nb):
        say(f"warning: {failed.warning()}")
    for cell in nb.cells:  # stderr (warnings, progress bars) never reaches the report
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    out = s.build / "document.ipynb"
    nbformat.write(nb, out)
    return out


def to_html(s: Settings, executed: Path) -> Path:
    """Step 7: the document as one HTML page, without code, prompts or JupyterLab-only cells."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config as TraitletsConfig

    out = s.out / "report.html"
    say(f"[7/{STEPS}] HTML -> {rel(out)}")
    c = TraitletsConfig()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = REMOVED_TAGS
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.HTMLExporter.template_name = "a4report"
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["title"] = "DD2424 Assignment 4: report" + (" (quick report)" if s.quick else "")
    body, _ = HTMLExporter(config=c).from_notebook_node(nb, resources={"metadata": {"name": "report"}})
    s.out.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".report.html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, out)
    return out


def to_pdf(s: Settings, html_file: Path) -> Path:
    """Step 8: the HTML printed to PDF by a headless Chromium."""
    out = s.out / "report.pdf"
    say(f"[8/{STEPS}] PDF ({Path(s.chromium).name}) -> {rel(out)}")
    with tempfile.TemporaryDirectory(prefix="a4lib-chromium-") as profile:
        tmp = Path(profile) / "report.pdf"
        cmd = [s.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
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
            tail = " | ".join((r.stderr or "").strip().splitlines()[-3:])
            raise BuildError(f"Chromium could not print the PDF (exit code {r.returncode}): {tail}")
        shutil.move(str(tmp), out)
    return out


def build(s: Settings) -> bool:
    """Every step; whether the gradient check passed."""
    inp = inputs(s)
    say(f"corpus {inp.corpus.name}: {len(inp.corpus.text):,} characters, K = {inp.corpus.K}"
        + (" (quick)" if s.quick else ""))
    for d in (s.build, s.figures, s.out):
        d.mkdir(parents=True, exist_ok=True)
    with timed("gradient check and benchmark"):
        gradcheck = gradient_check(s, inp)
        bench = benchmark(s, inp)
    with timed("the main run"):
        seeds = training(s, inp)
    plan, scaling = studies_step(s, inp)
    m = write_manifest(s, seeds, gradcheck, bench, plan, scaling, inp.config.seed)
    with timed("notebooks, HTML and PDF"):
        html_file = to_html(s, execute(s, m))
        if s.chromium:
            to_pdf(s, html_file)
    return all(r["ok"] for r in json.loads(gradcheck.read_text()))


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    try:
        s = settings(argv)
        checks_ok = build(s)
    except BuildError as err:
        say(f"error: {err}")
        return 2 if isinstance(err, BadInput) else 1
    except KeyboardInterrupt as err:  # a4lib.sweep.SweepInterrupted says which signal
        say("interrupted: the runs are saved; the next build continues or reuses them")
        return 143 if getattr(err, "signal_name", None) == "SIGTERM" else 130
    say(f"done in {time.perf_counter() - start:.0f} s: {rel(s.out / 'report.html')}"
        + (f", {rel(s.out / 'report.pdf')}" if s.chromium else ""))
    if not checks_ok:
        say("error: the gradient check FAILED (see section 2 of the report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
