"""The report: the display helpers and figures it is made of, the library's share of it (no
prose, no HTML), and the quick report built the way a user builds it (``make report QUICK=1``)
on a small UTF-8 text, its HTML and its PDF read back with pdftotext."""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import display, plots

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ["1. Data", "2. Gradient check", "3. Smooth loss", "4. Text progression",
            "5. Passage from the best model", "6. Reproducibility: hyperparameters, timings, versions"]
SUBHEADINGS = ["Hyperparameters", "Timings", "Versions", "To reproduce"]
BEYOND_HEADINGS = ["7. Mini-batches: characters per second", "8. Held-out evaluation",
                   "9. LSTM against the vanilla RNN", "10. Sampling: temperature and top-p",
                   "11. Optimizers: AdaGrad, RMSProp, Adam", "12. Tweets"]
FIGURES = {"3. Smooth loss": ["smooth_loss.png", "seeds.png"], "7. Mini-batches": ["scaling.png"],
           "8. Held-out": ["heldout.png"],
           "9. LSTM": ["lstm_vs_rnn.png"], "11. Optimizers": ["optimizers.png"]}
TWEETS = ROOT.parent / "shared" / "data" / "condensed_2018.json"
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


def load_build():
    spec = importlib.util.spec_from_file_location("a4lib_build", ROOT / "report" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the library's share: numbers and display, no prose ---------------------------------------

def test_the_library_holds_no_report_html_and_no_chdir():
    tags = re.compile(r"<(p|table|div|h[1-6]|ul|li|span)[ >]")
    lines = [ln for path in (ROOT / "a4lib").glob("*.py") for ln in path.read_text(encoding="utf-8").splitlines()
             if tags.search(ln)]
    assert len(lines) <= 12, lines
    for path in [*(ROOT / "a4lib").glob("*.py"), ROOT / "report" / "build.py", ROOT / "report" / "studies.py"]:
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
    words = ["a4lib", "train", "--out", "/proj/runs/x", "--corpus", "my text.txt", "--eta", "0.05",
             "--checkpoint-every", "10000", "--sample-every", "0", "--val-fraction", "0.1", "--backend", "numpy",
             "--quiet"]
    text = display.command_text(words, root="/proj", width=40)
    lines = text.split("\n")
    assert len(lines) > 3 and all(len(ln) <= 40 for ln in lines[1:])
    assert all(ln.endswith(" \\") for ln in lines[:-1]) and all(ln.startswith("    --") for ln in lines[1:])
    assert shlex.split(text.replace("\\\n", " ")) == ["a4lib", "train", "--out", "runs/x", *words[4:]]
    block = display.commands(["make report QUICK=1", words]).data
    assert block.startswith("```bash\nmake report QUICK=1\n\na4lib train")


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


# --- the build's settings and paths -------------------------------------------------------------

def test_the_quick_report_goes_elsewhere_than_the_submission():
    build = load_build()
    quick, full = build.parse_args(["--quick"]), build.parse_args([])
    assert full.html_dir == ROOT / "report"  # report/report.pdf: the submission
    assert quick.html_dir == ROOT / "report" / "quick" and quick.figures.parent == quick.html_dir
    assert quick.build != full.build and quick.run != full.run and quick.studies != full.studies
    assert "report/quick/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_main_run_is_a_config_override():
    from a4lib.config import Config
    from a4lib.corpus import load_corpus

    build = load_build()
    corpus = load_corpus("builtin:python-docs")
    a = build.parse_args(["--eta", "0.05", "--m", "50", "--backend", "numpy", "--epochs", "3"])
    a.corpus_spec = "builtin:python-docs"
    cfg = build.main_config(a, corpus)
    n_seq = (len(corpus.text) - 1) // 25
    assert cfg == Config(corpus="builtin:python-docs", eta=0.05, m=50, backend="numpy",
                         n_updates=max(build.MIN_UPDATES, 3 * n_seq))
    assert a.command == "make report ETA=0.05 M=50 N_EPOCHS=3 'TRAIN_ARGS=--backend numpy'"
    quick = build.parse_args(["--quick", "--updates", "700"])
    quick.corpus_spec = "builtin:python-docs"
    assert build.main_config(quick, corpus).n_updates == 700
    assert build.main_config(quick, corpus).sample_every == build.QUICK_SAMPLE_EVERY
    r = subprocess.run([sys.executable, "report/build.py", "--eta", "-1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "-1" in r.stderr and "eta" in r.stderr


# --- the Makefile ------------------------------------------------------------------------------

@pytest.mark.skipif(not MAKE, reason="make is not installed")
def test_make_passes_the_parameters_on():
    r = subprocess.run([MAKE, "-n", "-o", ".venv/.installed", "report", "QUICK=1", "CORPUS=my text.txt", "ETA=0.05",
                        "M=50", "SEQ_LENGTH=30", "SIG=0.02", "SEED=3", "N_UPDATES=2000", "OUT=/tmp/x",
                        "TRAIN_ARGS=--backend numpy", "CHROMIUM=/opt/chrome"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if "report/build.py" in ln][-1]
    for flag in ("--quick", "--corpus 'my text.txt'", "--eta 0.05", "--m 50", "--seq-length 30", "--sig 0.02",
                 "--seed 3", "--updates 2000", "--backend numpy", "--out '/tmp/x'", "--chromium '/opt/chrome'"):
        assert flag in line, flag
    r = subprocess.run([MAKE, "-n", "-o", ".venv/.installed", "report", "BEYOND=0", "BEYOND_BATCHES=0", "BEYOND_HELDOUT=0",
                        "BEYOND_LSTM=0", "BEYOND_SAMPLING=0", "BEYOND_OPTIMIZERS=0", "BEYOND_TWEETS=0", "N_EPOCHS=3",
                        "TWEETS=my tweets.json"], cwd=ROOT, capture_output=True, text=True)
    line = [ln for ln in r.stdout.splitlines() if "report/build.py" in ln][-1]
    for flag in ("--beyond '0'", "--beyond-batches '0'", "--beyond-heldout '0'", "--beyond-lstm '0'", "--epochs 3",
                 "--beyond-sampling '0'", "--beyond-optimizers '0'", "--beyond-tweets '0'", "--tweets 'my tweets.json'"):
        assert flag in line, flag
    for target in ("venv", "test", "bench", "lab", "clean"):
        assert subprocess.run([MAKE, "-n", "-o", ".venv/.installed", target], cwd=ROOT,
                              capture_output=True).returncode == 0, target
    lab = subprocess.run([MAKE, "-n", "-o", ".venv/.installed", "lab"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "jupyter-lab" in lab and "pip install" not in lab  # JupyterLab comes with the notebooks extra


@pytest.mark.skipif(not MAKE, reason="make is not installed")
def test_missing_browser_is_one_line_saying_what_to_install(tmp_path):
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={tmp_path}",
                        "CHROMIUM=/nonexistent/chromium", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    said = [ln for ln in r.stdout.splitlines() if ln.startswith("report:")]
    assert len(said) == 1 and "apt-get install chromium" in said[0] and "CHROMIUM=" in said[0]


# --- the quick report, built with make --------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``make report QUICK=1`` on a UTF-8 text, everything under a temporary OUT."""
    if not MAKE:
        pytest.skip("make is not installed")
    d = tmp_path_factory.mktemp("report")
    corpus = d / "grüße.txt"
    corpus.write_text(TEXT * 30, encoding="utf-8")
    out = d / "out"
    args = [MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={out}", f"CORPUS={corpus}",
            "ETA=0.05", f"PY={sys.executable}"]
    if not (CHROMIUM and PDFTOTEXT):
        args.append("PDF=0")
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"make report failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return {"out": out, "corpus": corpus, "log": r.stdout + r.stderr}


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


def test_html_has_every_section_and_no_code(built):
    html = html_of(built["out"])
    for heading in HEADINGS + BEYOND_HEADINGS:
        assert re.search(r"<h2[^>]*>" + re.escape(heading), html), heading
    for heading in SUBHEADINGS:
        assert re.search(r"<h3[^>]*>" + re.escape(heading), html), heading
    assert re.search(r"<h1[^>]*>DD2424 Assignment 4", html) and re.search(r"<h1[^>]*>Beyond the assignment", html)
    assert html.index("6. Reproducibility") < html.index("Beyond the assignment") < html.index("7. Mini-batches")
    prose = without_text_blocks(html)
    for residue in ("In&nbsp;[", "In [", "def ", "import ", "display.", "analysis.", "notebook.", "Traceback",
                    "Error", "Warning", "warning", "%|", "it/s]", "injected-parameters", "run_dir =", "<script",
                    "stderr", "&lt;IPython", "None"):
        assert residue not in prose, residue
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
    assert section_html(html, "7. Mini-batches").count("<tr>") == 1 + 4  # B = 1, 8, 32, 128
    for heading in ("8. Held-out", "9. LSTM", "11. Optimizers"):
        assert text_of(section_html(html, heading)).count("a4lib train --out") == 2 + (heading == "11. Optimizers")
    assert section_html(html, "10. Sampling").count("<pre") == 6 + 1  # the passages and the commands
    assert "a4lib train --out" in text_of(section_html(html, "6. Reproducibility"))
    tweets = section_html(html, "12. Tweets")
    if TWEETS.is_file():  # the default tweet corpus, when this checkout has it next door
        assert "condensed_2018.json" in tweets and "before the first update" in tweets
        assert tweets.count("<pre") == 3 + 5 + 1
    else:
        assert "make report TWEETS=" in tweets


def main_run(out: Path) -> Path:
    """The run the report shows: the seed with the lowest smooth loss (as the build picks it)."""
    from a4lib import analysis, rundir

    seeds = json.loads((out / "build" / "seeds.json").read_text())
    summaries = {s["seed"]: rundir.load_run(s["dir"]).summary for s in seeds}
    return Path(next(s["dir"] for s in seeds if s["seed"] == analysis.seed_spread(summaries).best_seed))


def test_html_numbers_are_the_runs(built):
    from a4lib import analysis, rundir

    out = built["out"]
    html = html_of(out)
    run = rundir.load_run(main_run(out))
    loss = analysis.smooth_loss(run)
    assert f"lowest {loss.best:.2f}, final {loss.final:.2f}" in section_html(html, "3. Smooth loss")
    check = analysis.gradcheck_summary(json.loads((out / "build" / "gradcheck.json").read_text()))
    assert f"at most {check.worst:.1e}" in section_html(html, "2. Gradient check")
    plan = json.loads((out / "build" / "beyond.json").read_text())
    opt = {r["label"]: analysis.heldout_run(rundir.load_run(r["dir"])) for r in plan["optimizers"]["runs"]}
    ranked = analysis.rank({label: r.best for label, r in opt.items()})
    assert f"<strong>{ranked.winner}</strong> ({ranked.best:.3f} nats" in section_html(html, "11. Optimizers")


def test_figures_and_build_files(built):
    out = built["out"]
    for name in sum(FIGURES.values(), []):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG", name
    plan = json.loads((out / "build" / "beyond.json").read_text())
    assert plan["quick"] and plan["sections"] == ["batches", "heldout", "lstm", "sampling", "optimizers", "tweets"]
    for r in [r for key in ("heldout", "lstm", "optimizers") for r in plan[key]["runs"]]:
        assert Path(r["dir"]).parent == out / "studies"
        assert json.loads((Path(r["dir"]) / "config.json").read_text())["val_fraction"] == 0.1
    assert (out / "build" / "beyond.ipynb").is_file() and (out / "build" / "document.ipynb").is_file()
    seeds = json.loads((out / "build" / "seeds.json").read_text())
    assert [s["seed"] for s in seeds] == [0, 1] and [Path(s["dir"]) for s in seeds] == [out / "run" / "seed=0",
                                                                                      out / "run" / "seed=1"]
    assert [json.loads((Path(s["dir"]) / "config.json").read_text())["eta"] for s in seeds] == [0.05, 0.05]
    assert json.loads((out / "run" / "seed=0" / "provenance.json").read_text())["made_by"] == "report/build.py"
    for name in ("gradcheck.json", "bench.json", "report.ipynb"):
        assert (out / "build" / name).is_file(), name


def test_a_second_build_reuses_the_run(built):
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={built['out']}",
                        f"CORPUS={built['corpus']}", "ETA=0.05", "PDF=0", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for step in ("[1/7] gradient check: reusing", "[2/7] benchmark: reusing", "[3/7] training: reusing"):
        assert step in r.stdout, step
    plan = json.loads((built["out"] / "build" / "beyond.json").read_text())
    n_runs = sum(len(plan[k]["runs"]) for k in ("heldout", "lstm", "optimizers", "tweets"))
    assert r.stdout.count("reusing") == 3 + 4 + 1 + n_runs  # + the four benchmarks, the scaling one, every study run
    assert "      training " not in r.stdout


@pytest.fixture(scope="module")
def built_without(built, tmp_path_factory):
    """A second quick build, the same corpus, four of the six sections off and no tweet corpus."""
    out = tmp_path_factory.mktemp("report-without") / "out"
    r = subprocess.run([MAKE, "-s", "-o", ".venv/.installed", "report", "QUICK=1", f"OUT={out}",
                        f"CORPUS={built['corpus']}", "ETA=0.05", "PDF=0", "BEYOND_BATCHES=0", "BEYOND_HELDOUT=0",
                        "BEYOND_LSTM=0", "BEYOND_OPTIMIZERS=off", "TWEETS=none", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"out": out, "log": r.stdout}


def test_switching_sections_off_removes_them_and_numbers_the_rest(built_without):
    html = html_of(built_without["out"])
    for gone in ("Mini-batches", "Held-out evaluation", "LSTM against", "Optimizers:", "lstm_vs_rnn"):
        assert gone not in html, gone
    assert html.count("data:image/png;base64,") == 2  # the smooth loss and the seeds' curves only
    assert re.search(r"<h2[^>]*>7\. Sampling: temperature and top-p", html)
    assert re.search(r"<h2[^>]*>8\. Tweets", html)
    assert not (built_without["out"] / "studies").exists()  # nothing trained for the sections left out


def test_tweet_section_falls_back_without_a_tweet_corpus(built_without):
    tweets = section_html(html_of(built_without["out"]), "8. Tweets")
    assert "No tweet corpus was available" in tweets and "make report TWEETS=path/to/tweets.json" in tweets
    assert "<pre" not in tweets
    assert "no tweet corpus" in built_without["log"]


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
    assert "Traceback" not in text and "%|" not in text


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
    samples = json.loads((main_run(built["out"]) / "samples.json").read_text(encoding="utf-8"))
    for s in samples:
        assert "".join(s["text"].split()) in flat, f"the sample of update {s['update']}"


@need_pdf
@pytest.mark.skipif(not PDFTOPPM, reason="pdftoppm is not installed (apt-get install poppler-utils)")
def test_pdf_renders_to_png(built, tmp_path):
    subprocess.run([PDFTOPPM, "-png", "-r", "60", "-f", "1", "-l", "2", str(built["out"] / "report.pdf"),
                    str(tmp_path / "page")], check=True, capture_output=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 and all(p.stat().st_size > 10_000 for p in pages)
