"""The report: the display helpers and figures it is made of, the library's share of it (no
prose, no HTML), the build's settings, the drafted answers' premises, and the quick report built the
way a user builds it (``make report QUICK=1``) on a small UTF-8 text, its HTML and its PDF read back
with pdftotext."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import notebook
from a4lib.results import display, plots
from report import build, manifest, studies

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ["1. Data", "2. Gradient check", "3. Smooth loss", "4. Text progression",
            "5. Passage from the best model", "6. Reproducibility: hyperparameters, timings, versions"]
SUBHEADINGS = ["Hyperparameters", "Timings", "Versions", "To reproduce"]
BEYOND_HEADINGS = ["7. Mini-batches: characters per second", "8. Held-out evaluation",
                   "9. Models: RNN, GRU and LSTM against an n-gram", "10. Sampling: temperature and top-p",
                   "11. Optimizers: AdaGrad, RMSProp, Adam"]
FIGURES = {"3. Smooth loss": ["smooth_loss.png", "seeds.png"], "7. Mini-batches": ["scaling.png"],
           "8. Held-out": ["heldout.png"], "9. Models": ["models.png"], "11. Optimizers": ["optimizers.png"]}
TWEETS = ROOT.parent / "shared" / "data" / "condensed_2018.json"  # tests may read ../shared; the product never does
SPECIAL = ["ü", "•", "“", "”", "‘", "’", "—", "–", "…", "é", "ß", "×"]
# It begins in ASCII: the gradient check uses the first 25 characters, and on these its largest
# relative error (1e-6) is far below the tolerance (1e-4) whatever the machine's round-off.
TEXT = ("The quick brown fox jumps over the lazy dog; naïve café façade.\n"
        "“Grüße aus Köln,” schrieb sie — ‘über’ alles. • Punkt eins – kurz… 3 × 4 = 12 ß é\n")

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome",
                                               "google-chrome-stable")) if p), None)
PDFTOTEXT = shutil.which("pdftotext")
PDFTOPPM = shutil.which("pdftoppm")
MAKE = shutil.which("make")
need_pdf = pytest.mark.skipif(not (CHROMIUM and PDFTOTEXT),
                              reason="the PDF needs Chromium and pdftotext (apt-get install chromium poppler-utils)")


# --- the library's share: numbers and display, no prose ---------------------------------------

def test_the_library_holds_no_report_html_and_no_chdir():
    tags = re.compile(r"<(p|table|div|h[1-6]|ul|li|span)[ >]")
    for name in ("results/analysis.py", "results/plots.py", "train.py", "rundir.py", "notebook.py",
                 "results/display.py"):  # numbers, Markdown
        assert not tags.search((ROOT / "a4lib" / name).read_text(encoding="utf-8")), name
    for path in [*(ROOT / "a4lib").rglob("*.py"), ROOT / "report" / "build.py", ROOT / "report" / "studies.py"]:
        assert "os.chdir" not in path.read_text(encoding="utf-8"), path.name


def test_visible_num_code():
    assert display.visible("a\x03b\nc\td\x7f") == "a\u2403b\nc\td\u2421"
    assert display.num(100000) == "100,000" and display.num(None) == "—" and display.num(2.345) == "2.35"
    assert display.num(np.int64(12)) == "12" and display.num(True) == "yes" and display.num(np.float64(0.5), 3) == "0.500"
    assert display.pct(0.256) == "26 %" and display.pct(None) == "—"
    assert display.code("a.txt") == "`a.txt`" and display.code("a`b") == "`` a`b ``"
    assert display.esc("x_1 | $5 *y*") == "x\\_1 \\| \\$5 \\*y\\*"


def test_table_formats_and_aligns():
    md = display.table([("a|b", 1234, 0.5, None), ("c", 5, 1e-7, "z")], ["name", "n", "err", "note"],
                       fmt=[None, None, ".1e", None]).data.splitlines()
    assert md[0] == "| name | n | err | note |"
    assert md[1] == "|:---|---:|---:|:---|"  # numbers right, text left
    assert md[2] == "| a\\|b | 1,234 | 5.0e-01 | — |" and md[3] == "| c | 5 | 1.0e-07 | z |"
    pairs = display.pairs([("a", 1), ("gone", None), ("b", "x")]).data.splitlines()
    assert len(pairs) == 4 and "gone" not in "".join(pairs)


def test_sample_keeps_every_character_in_a_fence_longer_than_its_backticks():
    md = display.sample("x ``` y\n  two\x03", "update 5").data
    head, blank, fence_open, *body, fence_close = md.split("\n")
    assert (head, blank, fence_open, fence_close) == ("**update 5**", "", "````text", "````")
    assert "\n".join(body) == "x ``` y\n  two\u2403"


def test_vocabulary_names_the_invisible_characters():
    md = display.vocabulary([" ", "\n", "\t", "\x03", "\u00a0", "a", "ü", "`", "\u0301"]).data
    for shown in ("*space*", "*newline*", "*tab*", "end of text", "no-break space", "`a`", "`ü`", "`` ` ``",
                  "`\u25cc\u0301`"):
        assert shown in md, shown


def test_commands_wrap_between_arguments_and_parse_back():
    words = ["a4lib", "train", "--out", str(ROOT / "runs" / "x"), "--corpus", "my text.txt", "--eta", "0.05",
             "--checkpoint-every", "10000", "--sample-every", "0", "--val-fraction", "0.1", "--backend", "numpy",
             "--prime", "\n", "--quiet"]
    text = display.command_text(words, width=40)
    lines = text.split("\n")
    assert len(lines) > 3 and all(len(ln) <= 40 for ln in lines[1:])
    assert all(ln.endswith(" \\") for ln in lines[:-1]) and all(ln.startswith("    --") for ln in lines[1:])
    said = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + text.replace("\\\n", " ")], capture_output=True, text=True)
    assert said.stdout.split("\0")[:-1] == ["a4lib", "train", "--out", "runs/x", *words[4:]]  # as the shell reads it
    blocks = display.commands(["make report QUICK=1", words]).data.split("\n\n")
    assert len(blocks) == 2 and all(b.startswith("```bash\n") and b.endswith("\n```") for b in blocks)
    assert "make report QUICK=1\n```" in blocks[0] and blocks[1].startswith("```bash\na4lib train")


def test_paths_are_shown_relative_to_the_project():
    assert display.path(ROOT / "data" / "goblet_book.txt") == "data/goblet_book.txt"
    assert display.path(ROOT.parent / "shared" / "x.txt") == "../shared/x.txt"
    assert display.path("texts/my.txt") == "texts/my.txt"  # as given
    outside = Path("/") / "elsewhere-than-the-project" / "t.txt"
    assert display.path(outside) == str(outside)


def test_differences_add_up_as_shown():
    """a − b of two figures shown with two decimals is the difference of what is shown."""
    assert display.diff(46.184, 39.0949) == "7.09" and display.diff(2.0004, 1.0, 3) == "1.000"


def fake_history(n=1000, epoch_starts=(0, 300, 600, 900)):
    return {"smooth_loss": np.linspace(100, 50, n), "loss": np.linspace(100, 50, n),
            "epoch_starts": np.array(epoch_starts), "val_update": np.zeros(0, int), "val_loss": np.zeros(0)}


def test_loss_curve_marks_each_new_epoch(tmp_path):
    fig = plots.loss_curve(fake_history(1000, (0, 300, 600, 960)), best_update=1000, raw=True)
    ax = fig.axes[0]
    boundaries = [ln for ln in ax.lines if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 2]
    assert sorted(ln.get_xdata()[0] for ln in boundaries) == [300, 600, 960]
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["epoch 1", "epoch 2", "epoch 3"]  # epoch 4 (40 updates) is too short for a label
    path = plots.save(fig, tmp_path / "sub" / "loss.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_loss_curve_many_epochs_unlabelled_and_an_epoch_that_never_began():
    fig = plots.loss_curve(fake_history(1000, tuple(range(0, 1001, 50))))
    ax = fig.axes[0]
    assert len(ax.texts) == 0
    assert max(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 2) == 950


def test_compare_draws_one_curve_per_run():
    fig = plots.compare({"eta 0.1": fake_history(), "eta 0.05": fake_history(500)})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["eta 0.1", "eta 0.05"]


def test_figure_saves_the_png_and_shows_it_with_its_caption(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(display, "show", shown.append)
    display.figure(plots.loss_curve(fake_history()), tmp_path / "f" / "loss.png", "The *caption*.")
    assert (tmp_path / "f" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert shown[0].data[:4] == b"\x89PNG" and shown[1].data == "The *caption*."


def test_update_axes_keep_their_labels_apart():
    """At most six update ticks on a wide axis and four on a half-width panel: 100,000-style labels
    never run into each other (the optimizer figure's left panel)."""
    history = {**fake_history(200_000), "seconds": np.linspace(0.01, 50, 200_000)}
    fig = plots.compare_updates_seconds({"a": (history, 25)})
    fig.canvas.draw()
    left = fig.axes[0]
    labels = [t for t in left.get_xticklabels() if t.get_text() and 0 <= t.get_position()[0] <= 200_000]
    assert 3 <= len(labels) <= 5
    boxes = [t.get_window_extent() for t in labels]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))


def test_scaling_legend_is_outside_the_panels():
    rows = [{"dtype": dt, "m": m, "batch_size": B, "chars_per_s": 1000.0 * m * B, "peak_fraction": 0.001 * m * B}
            for dt in ("float64", "float32") for m in (50, 400) for B in (1, 8, 128)]
    fig = plots.scaling({"rows": rows})
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    legend, panels = fig.legends[0].get_window_extent(), [ax.get_window_extent() for ax in fig.axes]
    assert all(legend.y1 <= p.y0 for p in panels)  # below both panels, over no line


def test_heldout_against_seconds_draws_the_baseline():
    history = {"seconds": np.arange(1, 11) * 1.0, "val_update": np.array([5, 10]), "val_loss": np.array([2.0, 1.8])}
    fig = plots.heldout_vs_seconds({"GRU": history}, baseline=("8-gram", 1.6))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["GRU", "8-gram"]
    assert list(ax.lines[-1].get_ydata()) == [1.6, 1.6]


# --- the drafted answers' premises ----------------------------------------------------------------

def premise_notebook(answer_source: str, holds: bool) -> dict:
    """An executed notebook as nbformat reads it: a heading, the premise cell's output, the answer."""
    shown = []
    display_show = display.show
    try:
        display.show = shown.append
        display.premise("lstm-won", holds, "that the LSTM won", "the RNN won")
    finally:
        display.show = display_show
    out = {"output_type": "display_data", "data": {"text/markdown": shown[0].data},
           "metadata": {"text/markdown": shown[0].metadata}}
    return {"cells": [{"cell_type": "markdown", "source": "## 9. Models\n\nWords."},
                      {"cell_type": "code", "source": "", "outputs": [out]},
                      {"cell_type": "markdown", "source": answer_source}]}


def test_a_failed_premise_keeps_its_note_while_the_draft_keeps_its_marker():
    nb = premise_notebook("<!-- premise: lstm-won -->\n**Your answer:** The LSTM won.", holds=False)
    failed = notebook.premise_notes(nb)
    assert [(f.name, f.section) for f in failed] == [("lstm-won", "9. Models")]
    assert len(nb["cells"][1]["outputs"]) == 1 and "the RNN won" in nb["cells"][1]["outputs"][0]["data"]["text/markdown"]
    assert nb["cells"][2]["source"] == "**Your answer:** The LSTM won."  # the marker is not printed
    assert "the RNN won" in failed[0].warning()


@pytest.mark.parametrize("answer,holds", [
    ("<!-- premise: lstm-won -->\n**Your answer:** The LSTM won.", True),  # the premise holds
    ("**Your answer:** The RNN won, by a little.", False),  # the student rewrote the answer
    ("<!-- premise: another -->\n**Your answer:** Something else.", False),  # another premise's marker
])
def test_no_note_where_the_premise_holds_or_the_answer_was_rewritten(answer, holds):
    nb = premise_notebook(answer, holds)
    assert notebook.premise_notes(nb) == [] and nb["cells"][1]["outputs"] == []


def test_every_drafted_answer_declares_a_premise_that_its_notebook_checks():
    import nbformat

    for name in ("report.ipynb", "beyond.ipynb"):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        answers = [c for c in nb.cells if "answer" in c.metadata.get("tags", [])]
        declared = [m for c in answers for m in notebook.PREMISE_MARKER.findall(c.source)]
        checked = re.findall(r'display\.premise\("([\w-]+)"', "\n".join(c.source for c in nb.cells if c.cell_type == "code"))
        assert len(declared) == len(answers) and sorted(declared) == sorted(checked), name
        for k, cell in enumerate(nb.cells):  # the check comes right before its answer
            if "answer" in cell.metadata.get("tags", []):
                assert "premise" in nb.cells[k - 1].metadata.get("tags", []), (name, k)


# --- the build's settings and paths -------------------------------------------------------------

def test_settings_are_made_once_and_frozen():
    import dataclasses

    s = build.settings(["--quick", "--pdf", "0"], env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.quick = False
    assert s.out == ROOT / "report" / "quick" and s.figures.parent == s.out  # never report/report.pdf
    full = build.settings(["--pdf", "0"], env={})
    assert full.out == ROOT / "report" and (full.build, full.run, full.studies) != (s.build, s.run, s.studies)
    assert "report/quick/" in (ROOT / ".gitignore").read_text().splitlines()
    assert s.corpus is None and full.corpus is None  # the quick build's text is the full build's default
    assert s.chromium is None and s.budget == studies.QUICK and full.budget == studies.FULL


def test_the_main_run_is_a_config_override():
    from a4lib.config import Config
    from a4lib.corpus import load_corpus
    from a4lib.train import updates_per_epoch

    corpus = load_corpus("builtin:python-docs")
    s = build.settings(["--eta", "0.05", "--m", "50", "--backend", "numpy", "--epochs", "3", "--pdf", "0"], env={})
    cfg = build.main_config(s, "builtin:python-docs", corpus)
    per_epoch = updates_per_epoch(corpus, Config(corpus="builtin:python-docs", m=50))
    assert cfg == Config(corpus="builtin:python-docs", eta=0.05, m=50, backend="numpy",
                         n_updates=max(build.MIN_UPDATES, 3 * per_epoch))
    assert shlex.split(s.command) == ["make", "report", "ETA=0.05", "M=50", "N_EPOCHS=3", "TRAIN_ARGS=--backend numpy"]
    quick = build.settings(["--quick", "--updates", "700", "--pdf", "0"], env={})
    assert build.main_config(quick, "builtin:python-docs", corpus).n_updates == 700
    assert build.main_config(quick, "builtin:python-docs", corpus).sample_every == build.QUICK_SAMPLE_EVERY
    r = subprocess.run([sys.executable, "-m", "report.build", "--eta", "-1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "-1" in r.stderr and "eta" in r.stderr


def test_make_variables_map_to_options_in_one_place():
    env = {"QUICK": "1", "CORPUS": "my text.txt", "ETA": "0.05", "M": "50", "N_SEEDS": "3", "OUT": "/tmp/x",
           "TRAIN_ARGS": "--backend numpy --clip 1", "PDF": "0", "BEYOND_MODELS": "0", "TWEETS": "t.json", "SEED": "",
           "UNRELATED": "1"}
    argv = build.make_argv(env)
    assert argv == ["--quick", "1", "--corpus", "my text.txt", "--m", "50", "--eta", "0.05", "--n-seeds", "3",
                    "--out", "/tmp/x", "--pdf", "0", "--beyond-models", "0", "--tweets", "t.json",
                    "--backend", "numpy", "--clip", "1"]
    s = build.settings(["--make"], env=env)
    assert (s.quick, s.corpus, s.n_seeds, s.out, s.chromium, s.tweets) == (True, "my text.txt", 3, Path("/tmp/x"), None,
                                                                           "t.json")
    assert dict(s.overrides) == {"m": 50, "eta": 0.05, "backend": "numpy", "clip": 1.0}
    assert "models" not in s.sections and "sampling" in s.sections
    for name, option in build.MAKE_VARIABLES.items():  # every variable is an option of the build
        assert option is None or option in build.parser().format_help(), name


@pytest.mark.skipif(not MAKE, reason="make is not installed")
def test_make_passes_its_variables_on(tmp_path):
    """make exports the variables given to it; the build reads them (one mapping, in report/build.py)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import os, sys, json; from report import build; "
                    f"print(json.dumps(build.make_argv(os.environ)))' \"$@\"\n")
    fake.chmod(0o755)
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", "CORPUS=my text's.txt", "ETA=0.05",
                        "BEYOND_TWEETS=0", "TRAIN_ARGS=--backend numpy", f"PY={fake}"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    argv = json.loads(r.stdout.splitlines()[-1])
    for pair in (["--quick", "1"], ["--corpus", "my text's.txt"], ["--eta", "0.05"], ["--beyond-tweets", "0"],
                 ["--backend", "numpy"]):
        assert any(argv[k:k + 2] == pair for k in range(len(argv))), pair


@pytest.mark.skipif(not MAKE, reason="make is not installed")
def test_make_clean_keeps_the_runs_and_the_submission():
    said = {t: subprocess.run([MAKE, "-n", "-o", ".venv/.installed", t], cwd=ROOT, capture_output=True, text=True)
            for t in ("clean", "clean-runs", "clean-report", "venv", "test", "bench", "lab")}
    assert all(r.returncode == 0 for r in said.values())
    clean = said["clean"].stdout
    assert "report/build" in clean and "runs" not in clean.split() and "report.pdf" not in clean
    assert "rm -rf runs" in said["clean-runs"].stdout
    assert "report/report.pdf" in said["clean-report"].stdout and "runs" not in said["clean-report"].stdout
    assert "jupyter-lab" in said["lab"].stdout and "pip install" not in said["lab"].stdout


@pytest.mark.skipif(not MAKE, reason="make is not installed")
def test_missing_browser_is_one_line_saying_what_to_install(tmp_path):
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={tmp_path}",
                        "CHROMIUM=/nonexistent/chromium", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    said = [ln for ln in r.stdout.splitlines() if ln.startswith("report:")]
    assert len(said) == 1 and "apt-get install chromium" in said[0] and "CHROMIUM=" in said[0]


def test_jupyterlab_opens_the_newer_build(tmp_path):
    """The notebooks' default: the newer of the project's full and quick builds, and which it is."""
    with pytest.raises(manifest.NoBuild):
        manifest.latest(tmp_path)
    made = {}
    for kind in ("full", "quick"):
        folder = tmp_path / "report" / "build" / kind
        made[kind] = manifest.Manifest(build=folder, quick=kind == "quick", made=manifest.now(), command="make report",
                                       seeds={0: folder / "run"}, gradcheck=folder / "g.json", bench=folder / "b.json",
                                       figures=folder / "figures", seed=0, passage_length=100, samples_until=None,
                                       workers=2, scheduler=None, plan=None, scaling=None)
        made[kind].save()
    os.utime(made["full"].build / manifest.MANIFEST, (1, 1))  # the quick build is the newer
    assert manifest.latest(tmp_path).kind == "quick"
    os.utime(made["quick"].build / manifest.MANIFEST, (0, 0))
    assert manifest.latest(tmp_path) == made["full"]


# --- the quick report, built with make --------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``make report QUICK=1`` on a UTF-8 text, everything under a temporary OUT (with the tweet
    corpus next door when this checkout has it)."""
    if not MAKE:
        pytest.skip("make is not installed")
    d = tmp_path_factory.mktemp("report")
    corpus = d / "grüße.txt"
    corpus.write_text(TEXT * 30, encoding="utf-8")
    out = d / "out"
    args = [MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={out}", f"CORPUS={corpus}",
            "ETA=0.05", f"PY={sys.executable}"]
    if TWEETS.is_file():
        args.append(f"TWEETS={TWEETS}")
    if not (CHROMIUM and PDFTOTEXT):
        args.append("PDF=0")
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"make report failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return {"out": out, "corpus": corpus, "log": r.stdout + r.stderr, "build": manifest.load(out / "build")}


def html_of(out: Path) -> str:
    return (out / "report.html").read_text(encoding="utf-8")


def section_html(html: str, heading: str) -> str:
    """The HTML from a section's heading to the next h1/h2."""
    start = html.index(heading)
    ends = [i for i in (html.find("<h2", start + 1), html.find("<h1", start + 1)) if i > 0]
    return html[start:min(ends) if ends else len(html)]


def text_of(html: str) -> str:
    """The text of some HTML (tags removed, entities read)."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", html)).replace(" \\\n    ", " ")  # commands on one line


def without_text_blocks(html: str) -> str:
    """The HTML without its <pre> blocks (the samples may say anything) and its style sheet."""
    html = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    return re.sub(r"<pre.*?</pre>", "", html, flags=re.S)


def test_the_build_says_each_step_in_a_line(built):
    steps = [ln for ln in built["log"].splitlines() if re.match(r"report: \[\d/8\]", ln)]
    assert [int(re.match(r"report: \[(\d)", ln).group(1)) for ln in steps] == list(range(1, 9 if CHROMIUM and PDFTOTEXT else 8))
    assert "Traceback" not in built["log"] and "IPKernelApp" not in built["log"] and "WARNING" not in built["log"]


def test_html_has_every_section_and_no_code_or_authoring_notes(built):
    html = html_of(built["out"])
    beyond = BEYOND_HEADINGS + (["12. Tweets"] if TWEETS.is_file() else [])
    headings = HEADINGS + beyond + [f"{len(HEADINGS) + len(beyond) + 1}. Inside the network"]  # after the studies
    for heading in headings:
        assert re.search(r"<h2[^>]*>" + re.escape(heading), html), heading
    assert len(re.findall(r"<h2", html)) == len(headings)  # no other section
    for heading in SUBHEADINGS:
        assert re.search(r"<h3[^>]*>" + re.escape(heading), html), heading
    assert re.search(r"<h1[^>]*>DD2424 Assignment 4", html) and re.search(r"<h1[^>]*>Beyond the assignment", html)
    assert html.index("6. Reproducibility") < html.index("Beyond the assignment") < html.index("7. Mini-batches")
    prose = without_text_blocks(html)
    for residue in ("In&nbsp;[", "In [", "def ", "import ", "display.", "analysis.", "notebook.", "Traceback",
                    "Error", "Warning", "warning", "%|", "it/s]", "injected-parameters", "run_dir =", "<script",
                    "stderr", "&lt;IPython", "premise:", "build_dir"):
        assert residue not in prose, residue
    assert not re.search(r">\s*None\s*<|= None|\(None|None\)", prose)  # no Python None shown
    import nbformat

    for name in ("report.ipynb", "beyond.ipynb"):  # no cell for JupyterLab only reaches the report
        for cell in nbformat.read(ROOT / "notebooks" / name, as_version=4).cells:
            if {"notes", "remove"} & set(cell.metadata.get("tags", [])) and cell.cell_type == "markdown":
                assert cell.source.split("\n")[0][:60] not in text_of(html), cell.source[:60]
    assert "quick report" in html[html.index("<main"):html.index("1. Data")]  # on page 1
    assert "<title>DD2424 Assignment 4: report (quick report)</title>" in html
    assert "grüße.txt" in html and "eta = 0.05" in html


def test_html_figures_samples_and_commands(built):
    html = html_of(built["out"])
    for heading, names in FIGURES.items():
        assert section_html(html, heading).count("data:image/png;base64,") == len(names), heading
    assert html.count("data:image/png;base64,") == sum(map(len, FIGURES.values()))
    assert section_html(html, "4. Text progression").count("<pre") == 4  # updates 0, 500, 1000, 1500
    assert section_html(html, "5. Passage").count("<pre") == 1
    plan = built["build"].plan
    assert section_html(html, "7. Mini-batches").count("<tr>") == 1 + 4  # B = 1, 8, 32, 128
    for heading, study in (("8. Held-out", "heldout"), ("9. Models", "models"), ("11. Optimizers", "optimizers")):
        assert text_of(section_html(html, heading)).count("a4lib train --out") == len(plan.runs_of(study))
    assert text_of(section_html(html, "9. Models")).count("a4lib ngram --corpus") == 1
    assert section_html(html, "10. Sampling").count("<pre") == 6 + 6  # the passages and their commands
    assert "a4lib train --out" in text_of(section_html(html, "6. Reproducibility"))
    if TWEETS.is_file():
        tweets = section_html(html, "12. Tweets")
        assert "condensed_2018.json" in tweets and display.FIRST_SAMPLE in tweets
        assert tweets.count("<pre") == 3 + 5 + 1


def test_commands_run_as_written_from_the_project_folder(built):
    """The commands of every a4lib command cell start with the line that activates the environment
    make made, and every path in them is the project's or as the user gave it (no machine path of
    the project)."""
    html = html_of(built["out"])
    cells = html.split('celltag_commands')[1:]
    firsts = [text_of(re.search(r"<pre.*?</pre>", c, flags=re.S).group(0)) for c in cells if "<pre" in c[:3000]]
    firsts = [f for f in firsts if "a4lib " in f]
    activate = display.activation()  # as the notebook's kernel, this interpreter, finds it
    assert len(firsts) >= 5 and all(f.lstrip().startswith(activate or "a4lib ") for f in firsts)
    assert str(ROOT) not in text_of(html)


def test_html_numbers_are_the_runs(built):
    from a4lib import rundir
    from a4lib.results import analysis

    out, b = built["out"], built["build"]
    html = html_of(out)
    run = rundir.load_run(b.main_run())
    loss = analysis.smooth_loss(run)
    assert f"{loss.best:.2f}" in section_html(html, "3. Smooth loss") and f"{loss.final:.2f}" in section_html(html, "3. Smooth loss")
    check = analysis.gradcheck_summary(json.loads(b.gradcheck.read_text()))
    assert f"{check.worst:.1e}" in section_html(html, "2. Gradient check")
    spread = analysis.seed_spread({k: rundir.load_run(d).summary for k, d in b.seeds.items()})
    seeds = text_of(section_html(html, "3. Smooth loss"))
    shown = [float(x) for x in (f"{spread.worst:.2f}", f"{spread.best:.2f}")]
    assert f"{shown[0] - shown[1]:.2f} nats" in seeds  # the spread is the difference of the figures shown
    opt = {r.label: analysis.heldout_run(rundir.load_run(r.dir)) for r in b.plan.runs_of("optimizers")}
    ranked = analysis.rank({label: r.best for label, r in opt.items()})
    assert f"<strong>{ranked.winner}</strong>" in section_html(html, "11. Optimizers")  # the winner, in bold
    assert f"{ranked.best:.3f}" in section_html(html, "11. Optimizers")
    ngram = analysis.ngram_orders(json.loads((b.plan.ngram.dir / "summary.json").read_text()))
    models = text_of(section_html(html, "9. Models"))
    assert f"{ngram.best:.3f}" in models and all(f"{v:.3f}" in models for v in ngram.losses)


def test_premise_notes_and_warnings_agree(built):
    """A note in the report for each drafted answer whose premise the run contradicts, and the same
    warning from the build; none for a premise that holds."""
    import nbformat

    nb = nbformat.read(built["out"] / "build" / "document.ipynb", as_version=4)
    notes = [o for c in nb.cells for o in c.get("outputs", [])
             if notebook.PREMISE in o.get("metadata", {}).get("text/markdown", {})]
    assert all(not o["metadata"]["text/markdown"][notebook.PREMISE]["holds"] for o in notes)
    warnings = [ln for ln in built["log"].splitlines() if ln.startswith("report: warning: the drafted answer")]
    assert len(warnings) == len(notes) == text_of(html_of(built["out"])).count("Rewrite the answer below")
    executed = [nbformat.read(built["out"] / "build" / n, as_version=4) for n in ("report.ipynb", "beyond.ipynb")]
    checked = [o["metadata"]["text/markdown"][notebook.PREMISE] for e in executed for c in e.cells
               for o in c.get("outputs", []) if notebook.PREMISE in o.get("metadata", {}).get("text/markdown", {})]
    assert len(notes) == sum(not p["holds"] for p in checked) and len(checked) >= 8


def test_a_rewritten_answer_builds_without_its_note(built):
    """The executed notebook with the markers taken out, as a student's rewritten answers: no note."""
    import nbformat

    for name in ("report.ipynb", "beyond.ipynb"):
        nb = nbformat.read(built["out"] / "build" / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = notebook.PREMISE_MARKER.sub("", cell.source)
        assert notebook.premise_notes(nb) == []
        assert not any(notebook.PREMISE in o.get("metadata", {}).get("text/markdown", {}) for c in nb.cells
                       for o in c.get("outputs", []))


def test_figures_and_build_files(built):
    out, b = built["out"], built["build"]
    for name in sum(FIGURES.values(), []):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG", name
    assert b.quick and b.plan.sections == ("batches", "heldout", "models", "sampling", "optimizers") + (
        ("tweets",) if TWEETS.is_file() else ())
    for r in [r for key in ("heldout", "models", "optimizers") for r in b.plan.runs_of(key)]:
        assert r.dir.parent == out / "studies"
        assert json.loads((r.dir / "config.json").read_text())["val_fraction"] == studies.VAL_FRACTION
    models = [json.loads((r.dir / "config.json").read_text()) for r in b.plan.runs_of("models")]
    assert [(c["model"], c["layers"]) for c in models] == list(studies.NETWORKS)
    assert len({c["max_seconds"] for c in models}) == 1  # the same wall-clock budget
    assert json.loads((b.plan.ngram.dir / "config.json").read_text())["val_fraction"] == studies.VAL_FRACTION
    assert (out / "build" / "beyond.ipynb").is_file() and (out / "build" / "document.ipynb").is_file()
    assert sorted(b.seeds) == [0, 1] and [b.seeds[k] for k in (0, 1)] == [out / "run" / "seed=0", out / "run" / "seed=1"]
    assert [json.loads((b.seeds[k] / "config.json").read_text())["eta"] for k in (0, 1)] == [0.05, 0.05]
    assert json.loads((b.seeds[0] / "provenance.json").read_text())["made_by"] == "report/build.py"
    for path in (b.gradcheck, b.bench, b.scaling, out / "build" / "report.ipynb"):
        assert path.is_file(), path


def test_the_report_notebook_opens_the_build_and_says_which(built, tmp_path):
    """As JupyterLab opens it: papermill with build_dir only; the notes cell says quick or full."""
    import nbformat

    from a4lib.notebook import execute

    out = execute(ROOT / "notebooks" / "report.ipynb", tmp_path / "r.ipynb", {"build_dir": str(built["out"] / "build")})
    said = "\n".join(o.get("data", {}).get("text/markdown", "") for c in nbformat.read(out, as_version=4).cells
                     if "notes" in c.metadata.get("tags", []) for o in c.get("outputs", []))
    assert "quick build" in said and built["build"].made in said


def test_a_second_build_reuses_the_run(built):
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={built['out']}",
                        f"CORPUS={built['corpus']}", "ETA=0.05", "PDF=0", f"PY={sys.executable}"]
                       + ([f"TWEETS={TWEETS}"] if TWEETS.is_file() else []),
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for step in ("[1/8] gradient check: reusing", "the benchmark: reusing", "[3/8] training: reusing"):
        assert step in r.stdout, step
    plan = built["build"].plan
    assert r.stdout.count("reusing") == 3 + 1 + 1 + len(plan.runs)  # + the scaling benchmark, the n-gram, every run
    assert "      training " not in r.stdout


@pytest.fixture(scope="module")
def built_without(built, tmp_path_factory):
    """A second quick build, the same corpus, four of the six sections off and no tweet corpus."""
    out = tmp_path_factory.mktemp("report-without") / "out"
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={out}",
                        f"CORPUS={built['corpus']}", "ETA=0.05", "PDF=0", "BEYOND_BATCHES=0", "BEYOND_HELDOUT=0",
                        "BEYOND_MODELS=0", "BEYOND_OPTIMIZERS=off", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"out": out, "log": r.stdout}


def test_switching_sections_off_removes_them_and_numbers_the_rest(built_without):
    html = html_of(built_without["out"])
    for gone in ("Mini-batches", "Held-out evaluation", "Models:", "Optimizers:", "models.png", "Tweets"):
        assert gone not in html, gone
    assert html.count("data:image/png;base64,") == 2  # the smooth loss and the seeds' curves only
    assert re.search(r"<h2[^>]*>7\. Sampling: temperature and top-p", html)
    assert not (built_without["out"] / "studies").exists()  # nothing trained for the sections left out
    assert "left out for want of data: tweets" in built_without["log"]  # a section without data is left out


def pdf_pages(path: Path) -> list[str]:
    r = subprocess.run([PDFTOTEXT, "-raw", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True)
    return r.stdout.split("\f")


@need_pdf
def test_pdf_has_the_sections_and_every_character(built):
    pages = pdf_pages(built["out"] / "report.pdf")
    text = "\n".join(pages)
    assert "quick report" in " ".join(pages[0].split())
    for heading in HEADINGS + SUBHEADINGS + ["Beyond the assignment"] + BEYOND_HEADINGS:
        assert heading in " ".join(text.split()), heading
    for ch in SPECIAL:
        assert ch in text, f"{ch!r} (U+{ord(ch):04X}) is missing from the PDF"
    for ch in set(TEXT) - set(" \n"):
        assert ch in text, f"{ch!r} is missing from the PDF"
    assert "Traceback" not in text and "%|" not in text and "How this notebook works" not in text


@need_pdf
def test_pdf_headings_are_never_last_on_a_page(built):
    for k, page in enumerate(pdf_pages(built["out"] / "report.pdf")[:-1]):
        lines = [ln.strip() for ln in page.splitlines() if ln.strip()]
        if lines:
            assert lines[-1] not in HEADINGS + SUBHEADINGS + BEYOND_HEADINGS, f"page {k + 1} ends with {lines[-1]!r}"


@need_pdf
def test_pdf_commands_break_between_arguments_only(built):
    """Every flag of every command in the HTML comes out of the PDF whole (none split over lines)."""
    html = html_of(built["out"])
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", " ".join(re.findall(r"<pre.*?</pre>", html, flags=re.S))))
    assert {"--checkpoint-every", "--sample-every", "--val-fraction", "--max-seconds"} & flags
    words = set("\n".join(pdf_pages(built["out"] / "report.pdf")).split())
    for flag in flags:
        assert flag in words, flag


@need_pdf
def test_pdf_samples_read_back_as_written(built):
    """Each sample comes out of the PDF as it is in samples.json (line breaks aside)."""
    flat = "".join("".join(pdf_pages(built["out"] / "report.pdf")).split())
    samples = json.loads((built["build"].main_run() / "samples.json").read_text(encoding="utf-8"))
    for s in samples:
        assert "".join(s["text"].split()) in flat, f"the sample of update {s['update']}"


@need_pdf
@pytest.mark.skipif(not PDFTOPPM, reason="pdftoppm is not installed (apt-get install poppler-utils)")
def test_pdf_renders_to_png(built, tmp_path):
    subprocess.run([PDFTOPPM, "-png", "-r", "60", "-f", "1", "-l", "2", str(built["out"] / "report.pdf"),
                    str(tmp_path / "page")], check=True, capture_output=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 and all(p.stat().st_size > 10_000 for p in pages)
