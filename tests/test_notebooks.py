"""The notebooks: stored clean, one `parameters` cell each (the train notebook's are Config's
settings with Config's defaults), the report's words in Markdown, no math; each runs top to
bottom under papermill as a user types it, from notebooks/ or any folder, and a bad parameter
stops it with one line."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from a4lib.config import defaults
from a4lib.results import display

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["beyond.ipynb", "gradient_check.ipynb", "inside.ipynb", "report.ipynb", "sweep.ipynb", "synthesize.ipynb",
         "train.ipynb"]
MINE = [n for n in NAMES if n != "sweep.ipynb"]  # sweep.ipynb is tested in test_sweep.py
REPORT_HEADINGS = ["1. Data", "2. Gradient check", "3. Smooth loss", "4. Text progression",
                   "5. Passage from the best model", "6. Reproducibility: hyperparameters, timings, versions"]
TRAIN_EXTRAS = {"run_dir", "resume", "progress"}

# The gradient check uses the first 25 characters: on these its largest relative error (1e-6) is
# far below the tolerance (1e-4), whatever the machine's round-off.
TEXT = ("A second line: naïve résumé, 3 × 4 = 12, and ‘single quotes’ too.\n"
        "“Müller’s café,” she said — and stopped. • The über-fast fox – or was it? – jumped…\n")


def read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in tags(c)]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def parameters(nb) -> dict:
    """The parameters cell's names and their default values."""
    tree = ast.parse(parameters_cell(nb).source)
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def markdown_words(nb) -> int:
    return sum(len(re.findall(r"[A-Za-z][\w'’-]*", c.source)) for c in nb.cells if c.cell_type == "markdown")


def notebook_env() -> dict:
    """The kernel must be this interpreter: its environment's kernelspec first on the path."""
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                         env.get("JUPYTER_PATH")]))
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def run_papermill(notebook: Path, out: Path, *args: str, cwd: Path = NOTEBOOKS) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(out), "-k", "python3", "--no-progress-bar", *args]
    return subprocess.run(cmd, cwd=cwd, env=notebook_env(), capture_output=True, text=True, timeout=300)


def papermill(name: str, out: Path, *args: str, cwd: Path = NOTEBOOKS) -> "nbformat.NotebookNode":
    """``papermill NAME OUT ARGS`` in notebooks/ (or ``cwd``); the executed notebook."""
    notebook = NOTEBOOKS / name if cwd != NOTEBOOKS else Path(name)
    r = run_papermill(notebook, out, *args, cwd=cwd)
    assert r.returncode == 0, f"papermill {name} failed:\n{r.stderr[-3000:]}"
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.output_type != "error", f"{name}: {o.get('ename')}: {o.get('evalue')}"
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), "widget output"
    return nb


def outputs_text(nb, kinds=("text/markdown", "text/plain")) -> str:
    """Every stdout stream and every output of the given MIME types, joined."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                parts.append(o.text)
            for kind in kinds:
                if kind in o.get("data", {}):
                    parts.append(o.data[kind])
    return "\n".join(parts)


# --- stored notebooks ------------------------------------------------------------------------

def test_the_notebooks_exist():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs_and_valid(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a cell is stored with outputs"
            assert cell.execution_count is None, f"{name}: a cell is stored with an execution count"
    parameters_cell(nb)


@pytest.mark.parametrize("name", MINE)
def test_no_math_no_chdir_and_parameters_checked(name):
    """The notebooks call a4lib and display; the arithmetic lives in the package. The names a
    notebook holds before its parameters are remembered, so that a misspelt one stops it."""
    nb = read(name)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for word in ("import numpy", "np.", "math.", "@", "tqdm.auto", "chdir", "enter_project", "<p>", "<div"):
        assert word not in code, f"{name} contains {word!r}"
    i = nb.cells.index(parameters_cell(nb))
    assert "notebook.before_parameters()" in nb.cells[i - 1].source and "remove" in tags(nb.cells[i - 1])
    assert re.match(r"(config = )?notebook\.(parameters|train_config)\(globals\(\)", nb.cells[i + 1].source)


def test_the_report_is_written_in_markdown():
    words = {name: markdown_words(read(name)) for name in MINE}
    assert words["report.ipynb"] >= 400, words
    assert sum(words.values()) >= 1200, words
    report = read("report.ipynb")
    md = "\n".join(c.source for c in report.cells if c.cell_type == "markdown")
    for heading in REPORT_HEADINGS:
        assert re.search(r"^## " + re.escape(heading) + "$", md, re.M), heading
    questions = [c for c in report.cells if "question" in tags(c)]
    answers = [c for c in report.cells if "answer" in tags(c)]
    assert len(questions) == len(answers) >= 4
    assert all(c.cell_type == "markdown" and "**Your answer:**" in c.source.split("\n", 2)[1] for c in answers)
    for c in report.cells:  # a heading and its first paragraph stay in one cell
        if c.cell_type == "markdown" and c.source.lstrip().startswith("#"):
            assert len(c.source.strip().splitlines()) > 1, c.source


def test_beyond_sections_are_tagged_and_numbered_on():
    beyond = read("beyond.ipynb")
    headings = [re.match(r"## (\d+)\. ", c.source) for c in beyond.cells if c.cell_type == "markdown"]
    assert [int(h.group(1)) for h in headings if h] == list(range(7, 13))
    keys = {t for c in beyond.cells for t in tags(c) if t.startswith("beyond-")}
    from report.studies import SECTIONS

    assert keys == {f"beyond-{k}" for k in SECTIONS}


def test_train_parameters_are_configs_settings_with_its_defaults():
    params = parameters(read("train.ipynb"))
    assert set(params) == set(defaults()) | TRAIN_EXTRAS
    assert {name: params[name] for name in defaults()} == defaults()
    assert (params["run_dir"], params["resume"], params["progress"]) == (None, False, True)


def test_other_parameters():
    assert {"corpus", "ms", "seq_length", "sig", "h", "tol", "seed", "out_json"} <= set(parameters(read("gradient_check.ipynb")))
    assert {"run_dir", "length", "temperature", "top_p", "prime", "seed"} <= set(parameters(read("synthesize.ipynb")))
    assert {"build_dir", "run_dir", "passage_length", "prime", "seed"} <= set(parameters(read("report.ipynb")))
    assert {"build_dir", "run_dir", "seed"} == set(parameters(read("beyond.ipynb")))


def test_package_uses_plain_tqdm():
    for path in (ROOT / "a4lib").glob("*.py"):
        assert "tqdm.auto" not in path.read_text(encoding="utf-8"), path.name
        assert "tqdm.notebook" not in path.read_text(encoding="utf-8"), path.name


# --- executed ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("notebooks")
    (d / "texts").mkdir()
    (d / "texts" / "text.txt").write_text(TEXT * 20, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def trained(work):
    """train.ipynb run by papermill in a folder of the user's, with paths relative to it
    (``-p eta 0.05``, small): the run directory and the notebook."""
    here = work / "here"
    here.mkdir()
    shutil.copy(NOTEBOOKS / "train.ipynb", here / "train.ipynb")
    nb = papermill("train.ipynb", here / "train.out.ipynb", "-p", "eta", "0.05", "-p", "corpus", "../texts/text.txt",
                   "-p", "m", "16", "-p", "n_updates", "300", "-p", "sample_every", "100", "-p", "sample_length", "60",
                   "-p", "run_dir", "myrun", cwd=here)
    return here / "myrun", nb


def test_train_notebook_writes_where_the_user_stands(trained):
    run, nb = trained
    config = json.loads((run / "config.json").read_text())
    assert config["eta"] == 0.05 and config["m"] == 16 and config["n_updates"] == 300
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["updates"] == 300
    text = outputs_text(nb)
    assert display.FIRST_SAMPLE in text and "update 300" in text  # the samples as they came
    assert "image/png" in {k for c in nb.cells for o in c.get("outputs", []) for k in o.get("data", {})}
    assert f"{summary['best_smooth_loss']:.2f}" in text


def test_kernel_is_this_interpreter(trained):
    """The notebook ran in this environment's Python, not some other kernel's."""
    run, _ = trained
    prov = json.loads((run / "provenance.json").read_text())
    assert Path(prov["python_executable"]).parent.resolve() == Path(sys.executable).parent.resolve()


def test_train_notebook_from_notebooks_puts_the_run_there(work):
    """As the issue runs it: from notebooks/, a corpus given relative to it, the run in notebooks/myrun."""
    run = NOTEBOOKS / "test-run-from-notebooks"
    shutil.rmtree(run, ignore_errors=True)
    try:
        rel_corpus = os.path.relpath(work / "texts" / "text.txt", NOTEBOOKS)
        papermill("train.ipynb", work / "nb.out.ipynb", "-p", "corpus", rel_corpus, "-p", "run_dir", run.name,
                  "-p", "n_updates", "30", "-p", "m", "8", "-p", "progress", "False")
        assert json.loads((run / "summary.json").read_text())["updates"] == 30
    finally:
        shutil.rmtree(run, ignore_errors=True)


@pytest.mark.parametrize("args,said", [
    (["-p", "etta", "0.1"], ["etta", "'eta'"]),
    (["-p", "m", "abc"], ["m = 'abc'", "integer"]),
    (["-p", "eta", "-1"], ["eta = -1", "> 0"]),
])
def test_bad_parameters_stop_with_one_line(work, args, said):
    """``python -m a4lib.notebook`` (papermill with short errors): one line on stderr, exit 1, no
    kernel log; papermill itself ends with the same line."""
    r = subprocess.run([sys.executable, "-m", "a4lib.notebook", str(NOTEBOOKS / "train.ipynb"), str(work / "bad.ipynb"),
                        *args], cwd=work, env=notebook_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "ParameterError: " in lines[0] and all(s in lines[0] for s in said), r.stderr
    r = run_papermill(NOTEBOOKS / "train.ipynb", work / "bad.out.ipynb", *args, cwd=work)
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert r.returncode != 0 and last.startswith("ParameterError: ") and all(s in last for s in said), last


def test_train_notebook_refuses_to_overwrite_a_run(trained, work):
    run, _ = trained
    r = run_papermill(NOTEBOOKS / "train.ipynb", work / "again.ipynb", "-p", "run_dir", str(run), "-p", "n_updates",
                      "10", cwd=work)
    assert r.returncode != 0
    assert str(run) in r.stderr + r.stdout  # the one line names the run it refuses to overwrite


def test_synthesize_notebook(trained, work):
    run, _ = trained
    nb = papermill("synthesize.ipynb", work / "synth.out.ipynb", "-p", "run_dir", str(run), "-p", "length", "300",
                   "-p", "temperature", "0.8", "-p", "top_p", "0.9", "-p", "prime", "Müller", "-p", "seed", "3")
    text = outputs_text(nb, ("text/markdown",))
    assert "```text\nMüller" in text
    assert all(n in text for n in ("300", "0.8", "0.9", "Müller"))  # length, temperature, top-p, prime


def test_gradient_check_notebook(work):
    out_json = work / "gradcheck.json"
    nb = papermill("gradient_check.ipynb", work / "gc.out.ipynb", "-p", "corpus", str(work / "texts" / "text.txt"),
                   "-y", f"ms: [5]\nout_json: {out_json}")
    results = json.loads(out_json.read_text())
    assert [r["m"] for r in results] == [5] and results[0]["ok"]
    text = outputs_text(nb, ("text/markdown",))
    assert "max relative error" in text and "**Verdict:** passed" in text
    for name in ("U", "W", "V", "b", "c"):
        assert f"\n| {name} | {results[0]['table'][name]['max_rel']:.2e} |" in text


def test_report_notebook(trained, work):
    """report.ipynb on a build folder holding one run (as the build's manifest names it)."""
    from report import manifest

    run, _ = trained
    gc = work / "gc-for-report.json"
    gc.write_text(json.dumps([{"model": "rnn", "m": 5, "sig": 0.01, "h": 1e-4, "tol": 1e-4, "seq_length": 25,
                               "K": 30, "corpus": "text.txt", "seconds": 0.1, "ok": True, "floor": 2e-5,
                               "table": {k: {"max_rel": 1e-7, "mean_rel": 1e-8, "max_abs": 1e-10}
                                         for k in "UWVbc"}}]))
    figures = work / "figures"
    manifest.Manifest(build=work / "build", quick=False, made=manifest.now(), command="make report", seeds={0: run},
                      gradcheck=gc, bench=work / "no-bench.json", figures=figures, seed=0, passage_length=200,
                      samples_until=None, workers=2, scheduler=None, plan=None, scaling=None).save()
    nb = papermill("report.ipynb", work / "report.out.ipynb", "-p", "build_dir", str(work / "build"))
    assert (figures / "smooth_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = outputs_text(nb, ("text/markdown",))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["corpus"]["sha256"] in text and display.FIRST_SAMPLE in text
    assert f"{summary['best_update']:,}" in text and "200" in text  # the passage's update and length
    assert "ü" in text and "•" in text  # the vocabulary, as it is
    assert "quick report" not in text  # only the quick build says so
