"""Build the report: gradient check, benchmark, training run, studies, notebooks, HTML, PDF.

    python report/build.py [--quick] [--corpus PATH] [--eta 0.05] ... [--out DIR]
                           [--beyond 0] [--beyond-lstm 0] ... [--tweets PATH|none]

(``make report`` calls this with the Makefile's variables.) The steps:

1. gradient check   ``a4lib gradcheck --json``          -> BUILD/gradcheck.json
2. benchmark        ``a4lib bench --json``              -> BUILD/bench.json
3. training run     ``a4lib train``                     -> RUN/ (+ provenance.json)
4. the studies beyond the assignment (``a4lib.studies``): benchmarks for several batch sizes
   and training runs, at most two at a time            -> BUILD/beyond.json, STUDIES/<name>/
5. the report notebook and the beyond notebook, executed by papermill
                                                        -> BUILD/report.ipynb, BUILD/beyond.ipynb
6. HTML: both notebooks as one document (nbconvert; no code, no parameter cells, no stderr)
                                                        -> OUT/report.html
7. PDF: the HTML printed by a headless Chromium           -> OUT/report.pdf

Steps 1-4 are reused when their inputs have not changed (a finished run with the same
hyperparameters and corpus, a study run with the same command and corpus; results of the same
check or benchmark); ``--force`` redoes them. Every intermediate file is in git-ignored places:
BUILD (report/build), RUN (runs/report), STUDIES (runs/studies), FIGURES (figures/).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "report" / "templates"
NOTEBOOK = ROOT / "notebooks" / "report.ipynb"
BEYOND_NOTEBOOK = ROOT / "notebooks" / "beyond.ipynb"
MIN_UPDATES = 100_000  # the handout: samples every 10,000 updates through 100,000
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_CHROMIUM = "install Chromium (apt-get install chromium) or set CHROMIUM=/path/to/chromium"
STEPS = 7


class BuildError(Exception):
    """A step failed; the message says which and why (one line, no traceback)."""


def say(msg: str) -> None:
    print(f"report: {msg}", flush=True)


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


def section_keys() -> dict[str, str]:
    from a4lib.studies import SECTIONS

    return dict(SECTIONS)


def parse_args(argv=None) -> argparse.Namespace:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from a4lib.studies import DEFAULT_TWEETS

    p = Parser(description="Build report/report.html and report/report.pdf.")
    p.add_argument("--quick", action="store_true", help="a small run for tests: builtin corpus, 1,500 updates, m = 5 check")
    p.add_argument("--corpus", help="default: data/goblet_book.txt if present, else builtin:python-docs")
    p.add_argument("--m", type=int, default=100)
    p.add_argument("--eta", type=float, default=0.1)
    p.add_argument("--seq-length", type=int, default=25)
    p.add_argument("--sig", type=float, default=0.01)
    p.add_argument("--optimizer", default="adagrad")
    p.add_argument("--n-updates", type=int, help=f"default: max({MIN_UPDATES:,}, n_epochs epochs); quick 1,500")
    p.add_argument("--n-epochs", type=int, default=2, help="at least this many epochs (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-every", type=int, help="default 10,000; quick 500")
    p.add_argument("--sample-length", type=int, default=200)
    p.add_argument("--passage-length", type=int, default=1000)
    p.add_argument("--gradcheck-m", type=int, action="append", help="m to check (repeatable; default 5 and 100, quick 5)")
    p.add_argument("--out", type=Path, help="put everything (HTML, PDF, figures, build files, run) under this folder")
    p.add_argument("--run", type=Path, help="the training run directory (default runs/report, quick runs/report-quick)")
    p.add_argument("--chromium", help="the browser that prints the PDF (default: found on PATH)")
    p.add_argument("--no-pdf", action="store_true", help="the HTML only")
    p.add_argument("--force", action="store_true", help="redo the gradient check, benchmarks, training and studies")
    p.add_argument("--beyond", type=switch, default=True, metavar="0|1",
                   help="the part beyond the assignment (0: leave all of it out)")
    for key, title in section_keys().items():
        p.add_argument(f"--beyond-{key}", type=switch, default=True, metavar="0|1", help=f"the section {title!r}")
    p.add_argument("--tweets", help=f"the tweet corpus of the tweet section, relative to the project folder (default: "
                                    f"{DEFAULT_TWEETS} when it exists; none: no tweets)")
    a = p.parse_args(argv)
    a.sections = [k for k in section_keys() if a.beyond and getattr(a, f"beyond_{k}")]
    a.command = make_command(a)
    if a.sample_every is None:
        a.sample_every = 500 if a.quick else 10_000
    if a.gradcheck_m is None:
        a.gradcheck_m = [5] if a.quick else [5, 100]
    if a.quick and a.corpus is None:
        a.corpus = "builtin:python-docs"
    if a.out is not None:
        a.out = a.out.resolve()
        a.html_dir, a.figures, a.build = a.out, a.out / "figures", a.out / "build"
        a.run = a.run or a.out / "run"
        a.studies = a.out / "studies"
    else:
        a.html_dir, a.figures = ROOT / "report", ROOT / "figures"
        a.build = ROOT / "report" / "build" / ("quick" if a.quick else "full")
        a.run = a.run or ROOT / "runs" / ("report-quick" if a.quick else "report")
        a.studies = ROOT / "runs" / ("studies-quick" if a.quick else "studies")
    return a


def make_command(a: argparse.Namespace) -> str:
    """The ``make report`` line that repeats this build."""
    names = {"corpus": "CORPUS", "m": "M", "eta": "ETA", "seq_length": "SEQ_LENGTH", "sig": "SIG",
             "optimizer": "OPTIMIZER", "n_updates": "N_UPDATES", "n_epochs": "N_EPOCHS", "seed": "SEED",
             "sample_every": "SAMPLE_EVERY", "sample_length": "SAMPLE_LENGTH"}
    defaults = {"m": 100, "eta": 0.1, "seq_length": 25, "sig": 0.01, "optimizer": "adagrad", "n_epochs": 2,
                "seed": 0, "sample_length": 200}
    words = ["make", "report"] + (["QUICK=1"] if a.quick else [])
    for key, var in names.items():
        v = getattr(a, key)
        if v is not None and defaults.get(key, object()) != v:
            words.append(f"{var}={v}")
    if not a.beyond:
        words.append("BEYOND=0")
    else:
        for key in section_keys():
            if not getattr(a, f"beyond_{key}"):
                words.append(f"BEYOND_{key.upper()}=0")
    if a.tweets is not None:
        words.append(f"TWEETS={a.tweets}")
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


# --- steps 1-3: the data the report reads ------------------------------------------------------

def a4lib(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """``python -m a4lib ARGS`` with this interpreter, from the project folder."""
    cmd = [sys.executable, "-m", "a4lib", *args]
    return subprocess.run(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE if capture else None)


def cached(key_file: Path, result: Path, key: dict, force: bool) -> bool:
    """True when ``result`` exists and was made from the same ``key``."""
    if force or not result.is_file() or not key_file.is_file():
        return False
    try:
        return json.loads(key_file.read_text()) == key
    except json.JSONDecodeError:
        return False


def gradient_check(a, corpus) -> bool:
    out, key_file = a.build / "gradcheck.json", a.build / "gradcheck.key.json"
    key = {"corpus": corpus.sha256, "ms": a.gradcheck_m, "seq_length": a.seq_length}
    if cached(key_file, out, key, a.force):
        say(f"[1/{STEPS}] gradient check: reusing {rel(out)}")
    else:
        say(f"[1/{STEPS}] gradient check, m = {', '.join(map(str, a.gradcheck_m))}")
        key_file.unlink(missing_ok=True)
        args = ["gradcheck", "--corpus", a.corpus_spec, "--seq-length", str(a.seq_length), "--json", str(out)]
        for m in a.gradcheck_m:
            args += ["--m", str(m)]
        rc = a4lib(*args).returncode
        if rc not in (0, 1) or not out.is_file():
            raise BuildError(f"the gradient check stopped with exit code {rc}")
        key_file.write_text(json.dumps(key))
    return all(r["ok"] for r in json.loads(out.read_text()))


def benchmark(a, corpus) -> None:
    updates = ["--updates", "300", "--reference-updates", "60"] if a.quick else []
    key = {"corpus": corpus.sha256, "m": a.m, "seq_length": a.seq_length, "args": updates}
    args = ["bench", "--json", "--corpus", a.corpus_spec, "--m", str(a.m), "--seq-length", str(a.seq_length), *updates]
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


def wanted_config(a, n_updates: int) -> dict:
    return {"m": a.m, "eta": a.eta, "seq_length": a.seq_length, "sig": a.sig, "optimizer": a.optimizer,
            "n_updates": n_updates, "seed": a.seed, "sample_every": a.sample_every,
            "sample_length": a.sample_length}


def run_matches(run: Path, want: dict, sha256: str) -> bool:
    try:
        config = json.loads((run / "config.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    from a4lib.train import RUN_FORMAT

    return (summary.get("status") == "finished" and config.get("corpus_sha256") == sha256
            and config.get("format") == RUN_FORMAT
            and (run / "checkpoint.npz").is_file() and (run / "samples.json").is_file()
            and all(config.get(k) == v for k, v in want.items()))


def training(a, corpus) -> None:
    from a4lib.report import write_provenance

    n_seq = (len(corpus.text) - 1) // a.seq_length
    n_updates = a.n_updates if a.n_updates is not None else 1500 if a.quick else max(MIN_UPDATES, a.n_epochs * n_seq)
    want = wanted_config(a, n_updates)
    run = a.run
    if not a.force and run_matches(run, want, corpus.sha256):
        say(f"[3/{STEPS}] training: reusing {rel(run)} ({n_updates:,} updates)")
        return
    if run.exists():
        made_here = json.loads((run / "provenance.json").read_text()).get("made_by") == "report/build.py" \
            if (run / "provenance.json").is_file() else False
        if not made_here and any(run.iterdir()):
            raise BuildError(f"{rel(run)} holds a run the report build did not make: remove it or choose another RUN=")
        shutil.rmtree(run)
    epochs = n_updates / max(1, n_seq)
    say(f"[3/{STEPS}] training: {n_updates:,} updates ({epochs:.2f} epochs of {n_seq:,} sequences) into {rel(run)}")
    args = ["train", "--out", str(run), "--corpus", a.corpus_spec, "--m", str(a.m), "--eta", repr(a.eta),
            "--seq-length", str(a.seq_length), "--sig", repr(a.sig), "--optimizer", a.optimizer,
            "--updates", str(n_updates), "--seed", str(a.seed), "--sample-every", str(a.sample_every),
            "--sample-length", str(a.sample_length)]
    if a.quick:
        args.append("--quiet")
    rc = a4lib(*args).returncode
    if rc != 0 or not (run / "summary.json").is_file():
        raise BuildError(f"training stopped with exit code {rc}")
    write_provenance(run, {"made_by": "report/build.py", "command": a.command})


# --- step 4: the studies beyond the assignment ------------------------------------------------

def tweet_corpus(a):
    """The tweet corpus to use (its spec as given, and the Corpus), or (None, None) without one.

    Not given: ``studies.DEFAULT_TWEETS`` from the project folder when it exists. ``none``: no
    tweets. A given file that is missing or not a tweet corpus is a BuildError.
    """
    from a4lib.corpus import CorpusError, load_corpus
    from a4lib.studies import DEFAULT_TWEETS

    if "tweets" not in a.sections:
        return None, None
    spec = a.tweets
    if spec is None:
        if not (ROOT / DEFAULT_TWEETS).is_file():
            return None, None
        spec = str(DEFAULT_TWEETS)
    elif spec.strip().lower() in ("", "none"):
        return None, None
    try:
        corpus = load_corpus(spec)
    except CorpusError as err:
        raise BuildError(f"TWEETS={spec}: {err}") from None
    if not corpus.is_tweets:
        raise BuildError(f"TWEETS={spec}: not a tweet corpus (a JSON list of objects with a \"text\" field)")
    return spec, corpus


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


def study_run_reusable(run: Path, key: dict) -> bool:
    """A finished study run made by this build from the same command and corpus."""
    try:
        summary = json.loads((run / "summary.json").read_text())
        prov = json.loads((run / "provenance.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    from a4lib.train import RUN_FORMAT

    return (summary.get("status") == "finished" and summary.get("format") == RUN_FORMAT
            and prov.get("key") == key and (run / "checkpoint.npz").is_file())


def clear_run_dir(run: Path) -> None:
    """Remove a run directory this build made; a BuildError for one it did not make."""
    if not run.exists():
        return
    prov = run / "provenance.json"
    made_here = prov.is_file() and json.loads(prov.read_text()).get("made_by") == "report/build.py"
    if not made_here and any(run.iterdir()):
        raise BuildError(f"{rel(run)} holds a run the report build did not make: remove it or choose another OUT=")
    shutil.rmtree(run)


def run_group(a, group: list[dict], shas: dict[str, str]) -> None:
    """Train the runs of one group at the same time (the reusable ones are reused)."""
    from a4lib.report import write_provenance

    todo = []
    for spec in group:
        run = Path(spec["dir"])
        key = {"args": spec["args"], "corpus_sha256": shas[spec["corpus"]]}
        if not a.force and study_run_reusable(run, key):
            say(f"      {spec['name']}: reusing {rel(run)}")
            continue
        clear_run_dir(run)
        todo.append((spec, key))
    if not todo:
        return
    logs = a.build / "studies"
    logs.mkdir(parents=True, exist_ok=True)
    say("      training " + " and ".join(s["name"] for s, _ in todo)
        + (" at the same time" if len(todo) > 1 else ""))
    procs = []
    for spec, key in todo:
        log = open(logs / f"{spec['name']}.log", "w", encoding="utf-8")
        cmd = [sys.executable, "-m", "a4lib", "train", "--out", spec["dir"], *spec["args"], "--quiet"]
        procs.append((spec, key, log, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)))
    failed = []
    for spec, key, log, proc in procs:
        rc = proc.wait()
        log.close()
        run = Path(spec["dir"])
        if rc != 0 or not (run / "summary.json").is_file():
            said = (logs / f"{spec['name']}.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            failed.append(f"{spec['name']} stopped with exit code {rc}" + (f": {said[-1][:200]}" if said else ""))
            continue
        write_provenance(run, {"made_by": "report/build.py", "command": a.command, "key": key})
    if failed:
        raise BuildError("the study run " + "; ".join(failed))


def studies_step(a, corpus) -> Path | None:
    """Step 4: the benchmarks and training runs of the sections beyond the assignment, and
    BUILD/beyond.json that lists them for the beyond notebook. None when every section is off."""
    from a4lib import studies

    if not a.sections:
        say(f"[4/{STEPS}] studies beyond the assignment: none (switched off)")
        return None
    if corpus.is_tweets and set(a.sections) - {"sampling", "tweets"}:
        raise BuildError(f"CORPUS={a.corpus_spec} is a tweet corpus: the studies beyond the assignment need a plain "
                         f"text (give the tweets with TWEETS=, or leave the studies out with BEYOND=0)")
    tweets_spec, tweets = a.tweets_spec, a.tweets_corpus
    plan = studies.plan(a.sections, a.corpus_spec, len(corpus.text), a.studies, studies.QUICK if a.quick else studies.FULL,
                        tweets=tweets_spec, seed=a.seed)
    plan["quick"] = a.quick
    runs = studies.all_runs(plan)
    n_benches = len((plan.get("batches") or {}).get("benches", []))
    say(f"[4/{STEPS}] studies beyond the assignment ({', '.join(a.sections)}): {n_benches} benchmarks, "
        f"{len(runs)} training runs (at most two at a time) into {rel(a.studies)}")
    if "tweets" in a.sections and tweets is None:
        say("      no tweet corpus: the tweet section says how to give one (TWEETS=path)")
    start = time.perf_counter()
    for bench in (plan.get("batches") or {}).get("benches", []):
        bench["result"] = study_bench(a, corpus, bench)
    shas = {a.corpus_spec: corpus.sha256}
    if tweets is not None:
        shas[tweets_spec] = tweets.sha256
    for group in studies.groups(plan):
        run_group(a, group, shas)
    out = a.build / "beyond.json"
    out.write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")
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
    from traitlets.config import Config

    c = Config()
    try:
        import zmq
        if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
            c.KernelManager.transport_encryption = "auto"
    except ImportError:
        pass
    return c


def papermill_run(notebook: Path, out: Path, params: dict, what: str) -> Path:
    """Execute ``notebook`` with ``params`` into ``out`` (papermill, this interpreter's kernel)."""
    import papermill

    try:
        papermill.execute_notebook(str(notebook), str(out), parameters=params, kernel_name="python3",
                                   cwd=str(ROOT), progress_bar=False, log_output=False, config=kernel_config())
    except papermill.PapermillExecutionError as err:
        raise BuildError(f"the {what} notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
                         f"(see {rel(out)})") from None
    return out


def execute_notebook(a) -> Path:
    out = a.build / "report.ipynb"
    say(f"[5/{STEPS}] the report notebook (papermill) -> {rel(out)}")
    params = {"run_dir": str(a.run), "gradcheck_json": str(a.build / "gradcheck.json"),
              "bench_json": str(a.build / "bench.json"), "figures_dir": str(a.figures),
              "passage_length": a.passage_length, "seed": a.seed}
    return papermill_run(NOTEBOOK, out, params, "report")


def execute_beyond(a, plan_file: Path) -> Path:
    """The beyond notebook, its sections switched as the build's options say."""
    out = a.build / "beyond.ipynb"
    say(f"      the beyond notebook (papermill) -> {rel(out)}")
    params = {"beyond_json": str(plan_file), "run_dir": str(a.run), "figures_dir": str(a.figures), "seed": a.seed,
              "first_number": 7, **{key: key in a.sections for key in section_keys()}}
    return papermill_run(BEYOND_NOTEBOOK, out, params, "beyond")


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
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    out = a.html_dir / "report.html"
    say(f"[6/{STEPS}] HTML -> {rel(out)}")
    strip_streams(executed, report_to=say)
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = {"remove", "parameters", "injected-parameters"}
    c.HTMLExporter.exclude_input = True
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.HTMLExporter.template_name = "a4report"
    body, _ = HTMLExporter(config=c).from_filename(str(executed), resources={"metadata": {"name": "report"}})
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
        sys.path.insert(0, str(ROOT))
        os.chdir(ROOT)
        from a4lib.corpus import CorpusError, load_corpus

        try:
            corpus = load_corpus(a.corpus, a.seq_length)
        except CorpusError as err:
            raise BuildError(str(err)) from None
        a.corpus_spec = a.corpus if a.corpus is not None else corpus.name
        say(f"corpus {corpus.name}: {len(corpus.text):,} characters, K = {corpus.K}"
            + (" (quick)" if a.quick else ""))
        a.tweets_spec, a.tweets_corpus = tweet_corpus(a)
        for d in (a.build, a.figures, a.html_dir):
            d.mkdir(parents=True, exist_ok=True)
        checks_ok = gradient_check(a, corpus)
        benchmark(a, corpus)
        training(a, corpus)
        plan_file = studies_step(a, corpus)
        kernel_env()
        executed = execute_notebook(a)
        if plan_file is not None:
            beyond = execute_beyond(a, plan_file)
            for path in (executed, beyond):
                strip_streams(path, report_to=say)
            executed = merge_notebooks(executed, beyond, out=a.build / "document.ipynb")
        html_file = to_html(a, executed)
        if a.chromium:
            to_pdf(a, html_file)
    except BuildError as err:
        say(f"error: {err}")
        return 1
    say(f"done in {time.perf_counter() - start:.0f} s: {rel(a.html_dir / 'report.html')}"
        + ("" if a.no_pdf else f", {rel(a.html_dir / 'report.pdf')}"))
    if not checks_ok:
        say("error: the gradient check FAILED (see section 2 of the report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
