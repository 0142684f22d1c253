"""The report: the helpers and figures it is made of, and the quick report built the way a user
builds it (``make report QUICK=1``) on a small UTF-8 text, its HTML and its PDF read back with
pdftotext."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import Config, plots, report, train

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = ["1. Data", "2. Gradient check", "3. Smooth loss", "4. Text progression",
            "5. Passage from the best model", "6. Reproducibility: hyperparameters, timings, versions"]
BEYOND_HEADINGS = ["7. Mini-batches: characters per second", "8. Held-out evaluation",
                   "9. LSTM against the vanilla RNN", "10. Sampling: temperature and top-p",
                   "11. Optimizers: AdaGrad, RMSProp, Adam", "12. Tweets"]
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


# --- helpers -----------------------------------------------------------------------------------

def test_visible_and_pre_keep_every_character():
    assert report.visible("a\x03b\nc\td\x7f") == "a\u2403b\nc\td\u2421"
    html = report.pre("<x> & “ü”\n  two")
    assert html == '<pre class="sample">&lt;x&gt; &amp; “ü”\n  two</pre>'
    assert html._repr_html_() == str(html)


def test_vocabulary_names_the_invisible_characters():
    html = report.vocabulary([" ", "\n", "\t", "\x03", "\u00a0", "a", "ü", "•"])
    for shown in ("space", "newline", "tab", "end of text", "U+00A0 no-break space", ">a<", ">ü<", ">•<"):
        assert shown in html


def test_num_formats():
    assert report.num(100000) == "100,000" and report.num(None) == "—" and report.num(2.345) == "2.35"
    assert report.num(np.int64(12)) == "12" and report.num(True) == "yes"


def test_train_command_repeats_the_config():
    from a4lib.cli import build_parser

    cfg = {"corpus": "data/my text.txt", "model": "rnn", "m": 50, "eta": 0.05, "seq_length": 30, "sig": 0.02,
           "optimizer": "adagrad", "clip": 5.0, "n_epochs": None, "n_updates": 1234, "seed": 7, "sample_every": 100,
           "sample_length": 200, "batch_size": 1, "order": "sequential", "chunk_length": 1000, "val_fraction": 0.0,
           "val_every": 1000, "checkpoint_every": 10000, "max_seconds": None}
    args = build_parser().parse_args(shlex.split(report.train_command(cfg, "runs/x"))[1:])
    assert (args.corpus, args.m, args.eta, args.seq_length, args.sig, args.updates, args.seed) == \
        ("data/my text.txt", 50, 0.05, 30, 0.02, 1234, 7)
    assert args.epochs is None and str(args.out) == "runs/x"


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


def test_gradcheck_verdicts():
    def result(err, ok):
        return {"model": "rnn", "m": 5, "sig": 0.01, "h": 1e-4, "tol": 1e-4, "seq_length": 25, "K": 3,
                "corpus": "c", "seconds": 0.1, "ok": ok,
                "table": {k: {"max_rel": err, "mean_rel": err / 10, "max_abs": 1e-9} for k in "UWVbc"}}
    good = report.gradcheck_section([result(1e-7, True)])
    assert "are correct" in good and "passed" in good and "centred difference" in good
    bad = report.gradcheck_section([result(1e-2, False)])
    assert "do NOT agree" in bad and "FAILED" in bad
    assert "No gradient-check results" in report.gradcheck_section([])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    (d / "text.txt").write_text(TEXT * 10, encoding="utf-8")
    run = d / "run"
    train(Config(corpus=str(d / "text.txt"), m=8, n_updates=120, n_epochs=None, sample_every=40, sample_length=30),
          run, progress=False)
    return run


def test_run_sections(small_run):
    run = report.load_run(small_run)
    assert [s["update"] for s in run.samples] == [0, 40, 80, 120]
    html = report.samples_section(run)
    assert html.count('<pre class="sample">') == 4 and "before the first update" in html and "update 120" in html
    assert report.samples_section(run, until=80).count("<pre") == 3
    data = report.data_section(run)
    assert run.corpus["sha256"] in data and all(ch in data for ch in SPECIAL)
    p = report.passage(small_run, 50, seed=1)
    assert p.update == run.summary["best_update"] and len(p.text) == 51  # the priming character, then 50
    assert "update " in report.passage_section(p)
    repro = report.reproduce_section(run, {"updates_per_s": 900.0, "reference_updates_per_s": 100.0, "speedup": 9.0,
                                          "corpus": "x", "m": 100, "seq_length": 25}, [])
    assert "9.00×" in repro and "a4lib train --out" in repro and "git commit" in repro


def test_load_run_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        report.load_run(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        report.load_run(tmp_path / "half")


def test_new_run_dir_never_overwrites(small_run, tmp_path):
    with pytest.raises(ValueError, match="already holds a run"):
        report.new_run_dir(small_run)
    assert report.new_run_dir(small_run, resume=True) == small_run
    with pytest.raises(ValueError, match="no run to resume"):
        report.new_run_dir(tmp_path / "fresh", resume=True)
    assert report.new_run_dir(None).parent == Path("runs")


# --- the Makefile ------------------------------------------------------------------------------

@pytest.mark.skipif(not MAKE, reason="make is not installed")
def test_make_passes_the_parameters_on():
    r = subprocess.run([MAKE, "-n", "-o", ".venv/.installed", "report", "QUICK=1", "CORPUS=my text.txt", "ETA=0.05",
                        "M=50", "SEQ_LENGTH=30", "SIG=0.02", "SEED=3", "N_UPDATES=2000", "OUT=/tmp/x",
                        "CHROMIUM=/opt/chrome"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if "report/build.py" in ln][-1]
    for flag in ("--quick", "--corpus 'my text.txt'", "--eta 0.05", "--m 50", "--seq-length 30", "--sig 0.02",
                 "--seed 3", "--n-updates 2000", "--out '/tmp/x'", "--chromium '/opt/chrome'"):
        assert flag in line, flag
    r = subprocess.run([MAKE, "-n", "-o", ".venv/.installed", "report", "BEYOND=0", "BEYOND_BATCHES=0", "BEYOND_HELDOUT=0",
                        "BEYOND_LSTM=0", "BEYOND_SAMPLING=0", "BEYOND_OPTIMIZERS=0", "BEYOND_TWEETS=0",
                        "TWEETS=my tweets.json"], cwd=ROOT, capture_output=True, text=True)
    line = [ln for ln in r.stdout.splitlines() if "report/build.py" in ln][-1]
    for flag in ("--beyond '0'", "--beyond-batches '0'", "--beyond-heldout '0'", "--beyond-lstm '0'",
                 "--beyond-sampling '0'", "--beyond-optimizers '0'", "--beyond-tweets '0'", "--tweets 'my tweets.json'"):
        assert flag in line, flag
    for target in ("venv", "test", "bench", "lab", "clean"):
        assert subprocess.run([MAKE, "-n", "-o", ".venv/.installed", target], cwd=ROOT,
                              capture_output=True).returncode == 0, target


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


def test_html_has_every_section_and_no_residue(built):
    html = (built["out"] / "report.html").read_text(encoding="utf-8")
    for heading in HEADINGS + BEYOND_HEADINGS:
        assert re.search(r"<h2[^>]*>" + re.escape(heading), html), heading
    assert re.search(r"<h1[^>]*>Beyond the assignment", html)
    assert html.index("6. Reproducibility") < html.index("Beyond the assignment") < html.index("7. Mini-batches")
    for residue in ("Traceback", "Warning", "warning", "%|", "it/s]", "upd/s", "In&nbsp;[", "injected-parameters",
                    "run_dir =", "report.load_run", "<script", "stderr"):
        assert residue not in html, residue
    assert html.count('<pre class="passage">') == 1
    assert "data:image/png;base64," in html
    assert "grüße.txt" in html and "eta = 0.05" in html
    assert "quick report" in html  # the part beyond says its numbers mean nothing here


def section_html(html: str, heading: str) -> str:
    """The HTML from a section's heading to the next h1/h2."""
    start = html.index(heading)
    ends = [i for i in (html.find("<h2", start + 1), html.find("<h1", start + 1)) if i > 0]
    return html[start:min(ends) if ends else len(html)]


def test_html_samples_and_beyond_sections(built):
    html = (built["out"] / "report.html").read_text(encoding="utf-8")
    assert section_html(html, "4. Text progression").count('<pre class="sample">') == 4  # updates 0, 500, 1000, 1500
    assert section_html(html, "7. Mini-batches").count("<tr>") == 1 + 4  # B = 1, 8, 32, 128
    for heading, figure in (("8. Held-out", "held-out"), ("9. LSTM", "Held-out loss per character"),
                            ("11. Optimizers", "Smooth loss per character")):
        part = section_html(html, heading)
        assert "data:image/png;base64," in part and figure in part and "a4lib train --out" in part, heading
    assert section_html(html, "10. Sampling").count('<pre class="sample">') == 6
    tweets = section_html(html, "12. Tweets")
    if TWEETS.is_file():  # the default tweet corpus, when this checkout has it next door
        assert "condensed_2018.json" in tweets and "before the first update" in tweets
        assert tweets.count('<pre class="sample">') == 3 + 5
    else:
        assert "make report TWEETS=" in tweets


def test_figures_and_build_files(built):
    out = built["out"]
    for name in ("smooth_loss.png", "heldout.png", "lstm_vs_rnn.png", "optimizers.png"):
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG", name
    plan = json.loads((out / "build" / "beyond.json").read_text())
    assert plan["quick"] and plan["sections"] == ["batches", "heldout", "lstm", "sampling", "optimizers", "tweets"]
    for r in [r for key in ("heldout", "lstm", "optimizers") for r in plan[key]["runs"]]:
        assert Path(r["dir"]).parent == out / "studies"
        assert json.loads((Path(r["dir"]) / "config.json").read_text())["val_fraction"] == 0.1
    assert (out / "build" / "beyond.ipynb").is_file() and (out / "build" / "document.ipynb").is_file()
    assert json.loads((out / "run" / "config.json").read_text())["eta"] == 0.05
    assert json.loads((out / "run" / "provenance.json").read_text())["made_by"] == "report/build.py"
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
    assert r.stdout.count("reusing") == 3 + 4 + n_runs  # + the four benchmarks and every study run
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


def test_switching_sections_off_removes_them(built_without):
    html = (built_without["out"] / "report.html").read_text(encoding="utf-8")
    for gone in ("Mini-batches", "Held-out evaluation", "LSTM against", "Optimizers:", "lstm_vs_rnn"):
        assert gone not in html, gone
    assert re.search(r"<h2[^>]*>7\. Sampling: temperature and top-p", html)
    assert re.search(r"<h2[^>]*>8\. Tweets", html)
    assert not (built_without["out"] / "studies").exists()  # nothing trained for the sections left out


def test_tweet_section_falls_back_without_a_tweet_corpus(built_without):
    html = (built_without["out"] / "report.html").read_text(encoding="utf-8")
    tweets = section_html(html, "8. Tweets")
    assert "No tweet corpus was available" in tweets and "make report TWEETS=path/to/tweets.json" in tweets
    assert "<pre" not in tweets
    assert "no tweet corpus" in built_without["log"]


def pdf_text(path: Path) -> str:
    r = subprocess.run([PDFTOTEXT, "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True)
    return r.stdout


@need_pdf
def test_pdf_has_the_sections_and_every_character(built):
    text = pdf_text(built["out"] / "report.pdf")
    for heading in HEADINGS + ["Beyond the assignment"] + BEYOND_HEADINGS:
        assert heading in " ".join(text.split()), heading
    for ch in SPECIAL:
        assert ch in text, f"{ch!r} (U+{ord(ch):04X}) is missing from the PDF"
    for ch in set(TEXT) - set(" \n"):
        assert ch in text, f"{ch!r} is missing from the PDF"
    assert "Traceback" not in text and "%|" not in text


@need_pdf
def test_pdf_samples_read_back_as_written(built):
    """Each sample comes out of the PDF as it is in samples.json (line breaks aside)."""
    flat = "".join(pdf_text(built["out"] / "report.pdf").split())
    samples = json.loads((built["out"] / "run" / "samples.json").read_text(encoding="utf-8"))
    for s in samples:
        assert "".join(s["text"].split()) in flat, f"the sample of update {s['update']}"


@need_pdf
@pytest.mark.skipif(not PDFTOPPM, reason="pdftoppm is not installed (apt-get install poppler-utils)")
def test_pdf_renders_to_png(built, tmp_path):
    subprocess.run([PDFTOPPM, "-png", "-r", "60", "-f", "1", "-l", "2", str(built["out"] / "report.pdf"),
                    str(tmp_path / "page")], check=True, capture_output=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 and all(p.stat().st_size > 10_000 for p in pages)
