"""The notebooks: stored clean, one `parameters` cell each, no math, and each runs top to bottom
under papermill (the command line, as a user types it) on small parameters."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["beyond.ipynb", "gradient_check.ipynb", "report.ipynb", "synthesize.ipynb", "train.ipynb"]
HANDOUT_NAMES = {"corpus", "m", "eta", "seq_length", "sig", "n_epochs", "n_updates", "seed", "optimizer",
                 "sample_every", "sample_length", "run_dir"}

# The gradient check uses the first 25 characters: on these its largest relative error (1e-6) is
# far below the tolerance (1e-4), whatever the machine's round-off.
TEXT = ("A second line: naïve résumé, 3 × 4 = 12, and ‘single quotes’ too.\n"
        "“Müller’s café,” she said — and stopped. • The über-fast fox – or was it? – jumped…\n")


def read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def parameter_names(nb) -> set[str]:
    tree = ast.parse(parameters_cell(nb).source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def notebook_env() -> dict:
    """The kernel must be this interpreter: its environment's kernelspec first on the path."""
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                         env.get("JUPYTER_PATH")]))
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def papermill(name: str, out: Path, *args: str) -> "nbformat.NotebookNode":
    """``papermill notebooks/NAME OUT ARGS`` from the project folder; the executed notebook."""
    cmd = [sys.executable, "-m", "papermill", f"notebooks/{name}", str(out), "-k", "python3",
           "--no-progress-bar", *args]
    r = subprocess.run(cmd, cwd=ROOT, env=notebook_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"papermill {name} failed:\n{r.stderr[-3000:]}"
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.output_type != "error", f"{name}: {o.get('ename')}: {o.get('evalue')}"
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), "widget output"
    return nb


def outputs_text(nb, kinds=("text/html", "text/plain")) -> str:
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


@pytest.mark.parametrize("name", NAMES)
def test_no_math_in_notebooks(name):
    """The notebooks call a4lib and display; the arithmetic lives in the package."""
    code = "\n".join(c.source for c in read(name).cells if c.cell_type == "code")
    for word in ("import numpy", "np.", "math.", "@", "tqdm.auto"):
        assert word not in code, f"{name} contains {word!r}"


def test_train_parameters_have_the_handout_names():
    assert HANDOUT_NAMES <= parameter_names(read("train.ipynb"))


def test_other_parameters():
    assert {"corpus", "ms", "seq_length", "sig", "h", "tol", "seed", "out_json"} <= parameter_names(read("gradient_check.ipynb"))
    assert {"run_dir", "length", "temperature", "top_p", "prime", "seed"} <= parameter_names(read("synthesize.ipynb"))
    assert {"run_dir", "gradcheck_json", "bench_json", "figures_dir"} <= parameter_names(read("report.ipynb"))
    assert {"beyond_json", "run_dir", "figures_dir", "seed", "batches", "heldout", "lstm", "sampling", "optimizers",
            "tweets"} <= parameter_names(read("beyond.ipynb"))


def test_package_uses_plain_tqdm():
    for path in (ROOT / "a4lib").glob("*.py"):
        assert "tqdm.auto" not in path.read_text(encoding="utf-8"), path.name
        assert "tqdm.notebook" not in path.read_text(encoding="utf-8"), path.name


# --- executed ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("notebooks")
    (d / "text.txt").write_text(TEXT * 20, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def trained(work):
    """train.ipynb as the issue runs it (``-p eta 0.05``), small: the run directory and notebook."""
    run = work / "run"
    nb = papermill("train.ipynb", work / "train.out.ipynb", "-p", "eta", "0.05", "-p", "corpus", str(work / "text.txt"),
                   "-p", "m", "16", "-p", "n_updates", "300", "-p", "sample_every", "100", "-p", "sample_length", "60",
                   "-p", "run_dir", str(run))
    return run, nb


def test_train_notebook(trained):
    run, nb = trained
    config = json.loads((run / "config.json").read_text())
    assert config["eta"] == 0.05 and config["m"] == 16 and config["n_updates"] == 300
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["updates"] == 300
    text = outputs_text(nb)
    assert "before the first update" in text and "update 300" in text  # the samples as they came
    assert "data:image/png;base64," in text  # the smooth-loss figure
    assert "lowest smooth loss" in text


def test_kernel_is_this_interpreter(trained):
    """The notebook ran in this environment's Python, not some other kernel's."""
    run, _ = trained
    prov = json.loads((run / "provenance.json").read_text())
    assert Path(prov["python_prefix"]).resolve() == Path(sys.prefix).resolve()


def test_train_notebook_refuses_to_overwrite_a_run(trained, work):
    run, _ = trained
    cmd = [sys.executable, "-m", "papermill", "notebooks/train.ipynb", str(work / "again.ipynb"), "-k", "python3",
           "--no-progress-bar", "-p", "run_dir", str(run), "-p", "n_updates", "10"]
    r = subprocess.run(cmd, cwd=ROOT, env=notebook_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "already holds a run" in r.stderr + r.stdout


def test_synthesize_notebook(trained, work):
    run, _ = trained
    nb = papermill("synthesize.ipynb", work / "synth.out.ipynb", "-p", "run_dir", str(run), "-p", "length", "300",
                   "-p", "temperature", "0.8", "-p", "top_p", "0.9", "-p", "prime", "Müller", "-p", "seed", "3")
    html = outputs_text(nb, ("text/html",))
    assert '<pre class="passage">Müller' in html
    assert "300 characters from the best parameters" in html
    assert "temperature 0.8, top-p 0.9" in html


def test_gradient_check_notebook(work):
    out_json = work / "gradcheck.json"
    nb = papermill("gradient_check.ipynb", work / "gc.out.ipynb", "-p", "corpus", str(work / "text.txt"),
                   "-y", f"ms: [5]\nout_json: {out_json}")
    results = json.loads(out_json.read_text())
    assert [r["m"] for r in results] == [5] and results[0]["ok"]
    html = outputs_text(nb, ("text/html",))
    assert "centred difference" in html and "max relative error" in html and "Verdict" in html
    for name in ("U", "W", "V", "b", "c"):
        assert f"<td class=\"txt\">{name}</td>" in html


def test_report_notebook(trained, work):
    run, _ = trained
    gc = work / "gc-for-report.json"
    gc.write_text(json.dumps([{"model": "rnn", "m": 5, "sig": 0.01, "h": 1e-4, "tol": 1e-4, "seq_length": 25,
                               "K": 30, "corpus": "text.txt", "seconds": 0.1, "ok": True,
                               "table": {k: {"max_rel": 1e-7, "mean_rel": 1e-8, "max_abs": 1e-10}
                                         for k in "UWVbc"}}]))
    figures = work / "figures"
    nb = papermill("report.ipynb", work / "report.out.ipynb", "-p", "run_dir", str(run), "-p", "gradcheck_json", str(gc),
                   "-p", "bench_json", str(work / "no-bench.json"), "-p", "figures_dir", str(figures),
                   "-p", "passage_length", "200")
    assert (figures / "smooth_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = outputs_text(nb, ("text/html",))
    for heading in ("1. Data", "2. Gradient check", "3. Smooth loss", "4. Text progression",
                    "5. Passage from the best model", "6. Reproducibility"):
        assert any(heading in c.source for c in nb.cells if c.cell_type == "markdown"), heading
    assert "sha256" in html and "before the first update" in html and "200 characters from the best" in html
    assert "ü" in html and "•" in html  # the vocabulary, as it is


def test_beyond_notebook(trained, work):
    """The beyond notebook with two of its sections on: the sampling study on the trained run and
    the tweet section without a tweet corpus; the others off (not shown, not numbered)."""
    run, _ = trained
    plan = work / "beyond.json"
    plan.write_text(json.dumps({"corpus": str(work / "text.txt"), "quick": True,
                                "sampling": {"temperatures": [0.5, 1.0], "top_ps": [0.9], "length": 120, "seed": 0},
                                "tweets": {"runs": []}}))
    nb = papermill("beyond.ipynb", work / "beyond.out.ipynb", "-p", "beyond_json", str(plan), "-p", "run_dir", str(run),
                   "-p", "figures_dir", str(work / "figures"), "-p", "batches", "False", "-p", "heldout", "False",
                   "-p", "lstm", "False", "-p", "optimizers", "False")
    html = outputs_text(nb, ("text/html",))
    assert "<h2>7. Sampling: temperature and top-p</h2>" in html and "<h2>8. Tweets</h2>" in html
    assert "Mini-batches" not in html and "Held-out" not in html and "Optimizers" not in html
    assert html.count('<pre class="sample">') == 3 and "corpus words" in html
    assert "make report TWEETS=" in html
