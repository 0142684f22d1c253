"""The report's part beyond the assignment: the study plan, the measurements it shows (losses per
character, seconds of the held-out evaluations, the share of corpus words, ...), its figures, and
each section's HTML on small real runs. The quick report built with make is checked in
test_report.py (one build for both)."""
from __future__ import annotations

import importlib.util
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import plots, report, studies
from a4lib.cli import build_parser
from a4lib.cli import main as a4lib_main

ROOT = Path(__file__).resolve().parent.parent


# --- the measurements ---------------------------------------------------------------------------

def test_per_char_divides_the_summed_loss_by_seq_length():
    assert studies.per_char(50.0, 25) == 2.0
    np.testing.assert_allclose(studies.per_char(np.array([25.0, 100.0]), 50), [0.5, 2.0])
    with pytest.raises(ValueError):
        studies.per_char(1.0, 0)


def test_bits_from_nats():
    assert studies.bits(math.log(2)) == pytest.approx(1.0)
    np.testing.assert_allclose(studies.bits(np.array([0.0, 2 * math.log(2)])), [0.0, 2.0])


def test_seconds_at_maps_updates_to_their_training_time():
    history = {"seconds": np.array([0.5, 1.0, 1.5, 4.0, 4.5])}  # after updates 1..5
    np.testing.assert_allclose(studies.seconds_at(history, [0, 1, 3, 5]), [0.0, 0.5, 1.5, 4.5])
    with pytest.raises(ValueError):
        studies.seconds_at(history, [6])


def test_held_out_best_final_and_seconds():
    history = {"seconds": np.arange(1, 11) * 0.1, "val_update": np.array([2, 6, 10]),
               "val_loss": np.array([3.0, 2.0, 2.5])}
    val = studies.held_out(history)
    np.testing.assert_allclose(val.seconds, [0.2, 0.6, 1.0])
    assert (val.best, val.best_index, val.final) == (2.0, 1, 2.5)
    empty = studies.held_out({"seconds": np.ones(3)})
    assert empty.best is None and empty.final is None and len(empty.seconds) == 0


def test_evaluation_share_is_the_excess_of_the_steps_after_evaluations():
    steps = np.full(100, 0.01)
    steps[[20, 40]] += 0.5  # evaluations after updates 20 and 40 lengthen updates 21 and 41
    history = {"seconds": np.cumsum(steps), "val_update": np.array([20, 40, 100])}
    assert studies.evaluation_share(history) == pytest.approx(1.0 / 2.0)
    assert studies.evaluation_share({"seconds": np.cumsum(steps), "val_update": np.array([100])}) is None


def test_words_and_word_share():
    text = "The cat's hat, 3 dogs! a I x_y über-café"
    assert studies.words(text) == ["the", "cat's", "hat", "dogs", "über", "café"]
    assert studies.words("a I", min_letters=1) == ["a", "i"]
    assert studies.word_share("the hat and the zzq", {"the", "hat"}) == pytest.approx(3 / 5)
    assert studies.word_share("!! 12 ?", {"the"}) is None
    assert studies.word_share("Qx Qx", {"the"}) == 0.0
    assert studies.vocabulary_of("The the THE cat") == {"the", "cat"}
    assert studies.distinct_chars("abca\n") == 4


def test_trend():
    assert studies.trend([0.2, 0.5, 0.9]) == 1
    assert studies.trend([9, 5, 1]) == -1
    assert studies.trend([1, 3, 2]) == 0
    assert studies.trend([1, 1, 2]) == 0
    assert studies.trend([1, None, 2]) == 0
    assert studies.trend([1]) == 0


def test_pick_stages_first_middle_last():
    samples = [{"update": u, "text": str(u)} for u in (0, 500, 1000, 1500, 2000)]
    assert [s["update"] for s in studies.pick_stages(samples, 3)] == [0, 1000, 2000]
    assert [s["update"] for s in studies.pick_stages(samples[:2], 3)] == [0, 500]
    assert [s["update"] for s in studies.pick_stages(samples, 2)] == [0, 2000]


def test_chunk_length_and_bench_updates():
    assert studies.chunk_length_for(400_000, 16, 50) == 1000
    short = studies.chunk_length_for(4_000, 16, 50)
    assert 51 <= short < 1000 and 4_000 // short >= 16
    assert studies.chunk_length_for(100, 16, 50) == 51
    assert studies.bench_updates(100_000, 25, 1) == 4000 and studies.bench_updates(100_000, 25, 128) == 31
    assert studies.bench_updates(10, 25, 128) == 5


# --- the plan -------------------------------------------------------------------------------------

def test_plan_groups_runs_that_are_compared_in_seconds(tmp_path):
    plan = studies.plan(list(studies.SECTIONS), "builtin:python-docs", 464_970, tmp_path, studies.QUICK,
                        tweets="t.json")
    groups = studies.groups(plan)
    assert all(len(g) <= 2 for g in groups)
    names = [[r["name"] for r in g] for g in groups]
    assert ["race-lstm", "race-rnn"] in names
    assert ["optimizer-adagrad", "optimizer-rmsprop"] in names and ["optimizer-adam", "tweets"] in names
    assert [b["batch_size"] for b in plan["batches"]["benches"]] == list(studies.BATCH_SIZES)
    for r in studies.all_runs(plan):
        assert option(r["args"], "--val-fraction") == "0.1" or r["name"] == "tweets"
        assert r["dir"] == str(tmp_path / r["name"])
    race = {r["name"]: r for r in plan["lstm"]["runs"]}
    assert option(race["race-lstm"]["args"], "--max-seconds") == option(
        race["race-rnn"]["args"], "--max-seconds") == "4"
    opt = plan["optimizers"]["runs"]
    assert len({option(r["args"], "--updates") for r in opt}) == 1
    assert [option(r["args"], "--optimizer") for r in opt] == ["adagrad", "rmsprop", "adam"]
    assert partners(plan, "optimizer-adam") == [plan["tweets"]["runs"][0]["label"]]


def test_plan_leaves_out_what_is_switched_off(tmp_path):
    plan = studies.plan(["sampling", "tweets"], "c.txt", 10_000, tmp_path, studies.QUICK, tweets=None)
    assert plan["sections"] == ["sampling", "tweets"] and plan["tweets"] == {"runs": []}
    assert studies.all_runs(plan) == [] and "batches" not in plan and "lstm" not in plan
    with pytest.raises(ValueError, match="unknown section"):
        studies.plan(["nope"], "c.txt", 10_000, tmp_path, studies.QUICK)
    alone = studies.plan(["tweets"], "c.txt", 10_000, tmp_path, studies.QUICK, tweets="t.json")
    assert partners(alone, "tweets") == []


def test_run_commands_parse_back(tmp_path):
    plan = studies.plan(["lstm"], "data/my text.txt", 50_000, tmp_path / "runs", studies.FULL)
    spec = studies.RunSpec(**plan["lstm"]["runs"][0])
    words = shlex.split(spec.command(tmp_path))
    assert words[:4] == ["a4lib", "train", "--out", "runs/race-lstm"]
    a = build_parser().parse_args(words[1:])
    assert (a.model, a.m, a.batch_size, a.seq_length, a.optimizer, a.eta, a.max_seconds, a.order, a.val_fraction) == \
        ("lstm", 128, 16, 50, "adam", 0.003, 300.0, "chunks", 0.1)
    assert a.corpus == "data/my text.txt" and a.quiet


# --- headings, figures ----------------------------------------------------------------------------

def test_part_numbers_only_the_sections_shown():
    part = report.Part(7)
    assert part.show(False, "batches", lambda: 1 / 0) is None  # nothing computed when off
    first = part.show(True, "heldout", lambda: report.HTML("<p>x</p>"))
    second = part.show(True, "tweets", lambda: report.HTML("<p>y</p>"))
    assert first.startswith("<h2>7. Held-out evaluation</h2>") and second.startswith("<h2>8. Tweets</h2>")


def fake_history(n=1000, seq_length=25):
    return {"smooth_loss": np.linspace(100, 50, n), "seconds": np.arange(1, n + 1) * 0.01,
            "val_update": np.array([250, 500, 1000]), "val_loss": np.array([3.5, 2.5, 2.0])}


def test_heldout_figure_is_per_character():
    h = fake_history()
    ax = plots.heldout_curves({"run": (h, 25)}).axes[0]
    train, val = ax.lines
    np.testing.assert_allclose(train.get_ydata()[[0, -1]], [4.0, 2.0])
    np.testing.assert_allclose(val.get_xdata(), [250, 500, 1000])
    np.testing.assert_allclose(val.get_ydata(), [3.5, 2.5, 2.0])


def test_heldout_against_seconds_uses_the_seconds_of_each_evaluation():
    ax = plots.heldout_vs_seconds({"a": fake_history()}).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [2.5, 5.0, 10.0])


def test_curves_against_updates_and_seconds_are_thinned():
    h = fake_history(20_000)
    left, right = plots.compare_updates_seconds({"a": (h, 25), "b": (fake_history(500), 25)}).axes
    assert len(left.lines) == 2 and len(left.lines[0].get_xdata()) <= plots.MAX_POINTS + 1
    assert left.lines[0].get_xdata()[-1] == 20_000 and right.lines[0].get_xdata()[-1] == pytest.approx(200.0)
    np.testing.assert_allclose(left.lines[1].get_ydata()[[0, -1]], [4.0, 2.0])


# --- the sections on small real runs --------------------------------------------------------------

TINY = studies.Budget(bench_chars=500, bench_reference_updates=3, heldout_updates=60, heldout_val_every=20,
                      race_seconds=0.3, race_rnn_val_every=20, race_lstm_val_every=2, optimizer_updates=40,
                      optimizer_val_every=20, tweet_updates=30, tweet_sample_every=10)


def small_text(n_words=1500, seed=0) -> str:
    rng = np.random.default_rng(seed)
    vocab = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "über ", "dogs ", "ran\n"]
    return "".join(rng.choice(vocab, size=n_words))


@pytest.fixture(scope="module")
def study_plan(tmp_path_factory):
    """A plan of every section on a small text and three tweets, its runs trained in-process
    with the command lines the build uses, its benchmarks faked (the build makes those)."""
    d = tmp_path_factory.mktemp("studies")
    text = d / "text.txt"
    text.write_text(small_text(), encoding="utf-8")
    tweets = d / "tweets.json"
    tweets.write_text(json.dumps([{"text": t} for t in ("Great day! #MAGA", "Fake news &amp; more.",
                                                         "The cat sat on the mat.")] * 5), encoding="utf-8")
    plan = studies.plan(list(studies.SECTIONS), str(text), len(text.read_text(encoding="utf-8")), d / "runs", TINY,
                        tweets=str(tweets))
    for r in studies.all_runs(plan):
        assert a4lib_main(studies.RunSpec(**r).argv()) == 0
    for b in plan["batches"]["benches"]:
        B = b["batch_size"]
        b["result"] = {"corpus": str(text), "K": 12, "m": 100, "seq_length": 25, "batch_size": B, "updates": 10,
                       "reference_updates": 3, "updates_per_s": 1000.0 / B ** 0.5, "reference_updates_per_s": 100.0,
                       "chars_per_s": round(25_000 * B ** 0.5), "reference_chars_per_s": 2500,
                       "speedup": round(10 * B ** 0.5, 2)}
    return plan, d


def test_batches_section(study_plan):
    plan, _ = study_plan
    html = report.batches_section(plan)
    assert html.count("<tr>") == 1 + len(studies.BATCH_SIZES)
    assert "11.3-fold" in html  # sqrt(128) / sqrt(1), as the fake results say
    assert "B = 128 with" in html and "a4lib bench --json" in html
    assert "was not run" in report.batches_section({})


def test_heldout_section(study_plan, tmp_path):
    plan, _ = study_plan
    html = report.heldout_section(plan, tmp_path)
    assert (tmp_path / "heldout.png").read_bytes()[:4] == b"\x89PNG"
    runs = {s["name"]: report.load_run(s["dir"]) for s in plan["heldout"]["runs"]}
    best = float(runs["heldout-sequential"].history["val_loss"].min())
    assert f"{best:.3f} nats = {best / math.log(2):.3f} bits per character" in html
    train = runs["heldout-chunks"].summary["final_smooth_loss"] / 25
    assert f"{train:.3f}" in html
    assert html.count("a4lib train --out") == 2 and "--order chunks" in html


def test_lstm_section(study_plan, tmp_path):
    plan, _ = study_plan
    html = report.lstm_section(plan, tmp_path)
    assert (tmp_path / "lstm_vs_rnn.png").is_file()
    assert "LSTM (m 128, B 16, Adam) and RNN (m 100, B 1, AdaGrad) ran at the same time" in html
    assert "--max-seconds 0.3" in html and "--model lstm" in html


def test_sampling_section(study_plan, capsys):
    plan, d = study_plan
    run_dir = plan["heldout"]["runs"][1]["dir"]
    study = report.sampling_study(run_dir, plan["corpus"], (0.5, 1.5), (0.5,), length=200, seed=1)
    assert [(r["temperature"], r["top_p"]) for r in study["rows"]] == [(0.5, 1.0), (1.5, 1.0), (1.0, 0.5)]
    known = studies.vocabulary_of(Path(plan["corpus"]).read_text(encoding="utf-8"))
    for r in study["rows"]:
        assert r["word_share"] == studies.word_share(r["passage"].text, known)
        assert set(r["invented"]).isdisjoint(known)
    html = report.sampling_section(plan, run_dir, seed=1)
    assert html.count('<pre class="sample">') == 6 and "As the temperature goes from 0.5 to 1.2" in html
    command = [ln for ln in html.split("\n") if "a4lib generate" in ln][0]
    words = shlex.split(command[command.index("a4lib generate"):].split("\n")[0].replace("&#x27;", "'"))
    a = build_parser().parse_args(words[1:])
    assert (a.length, a.temperature, a.top_p, a.seed) == (300, 0.5, 1.0, 1)
    assert Path(a.run_dir).resolve() == Path(run_dir).resolve()
    capsys.readouterr()
    assert a4lib_main(words[1:]) == 0  # the command prints the passage the section shows
    shown = report.sampling_study(run_dir, plan["corpus"], (0.5,), (), length=300, seed=1)["rows"][0]["passage"]
    assert capsys.readouterr().out == shown.text + "\n"
    share = [r["word_share"] for r in study["rows"][:2]]
    verb = {1: "rises", -1: "falls", 0: "does not change steadily"}[studies.trend(share)]
    sentence = report.sampling_html(study).split("As the temperature goes from 0.5 to 1.5, ")[1].split(".")[0]
    assert f"the share of corpus words {verb}" in sentence


def test_sampling_trend_in_words():
    def rows(shares, chars):
        return [{"value": v, "word_share": s, "distinct_chars": c} for v, s, c in zip((0.5, 0.8, 1.2), shares, chars)]
    said = report._sampling_trend("temperature", rows([0.9, 0.7, 0.4], [20, 30, 40]))
    assert said == ("As the temperature goes from 0.5 to 1.2, the number of distinct characters rises (20, 30, 40) "
                    "and the share of corpus words falls (90 %, 70 %, 40 %).")
    said = report._sampling_trend("temperature", rows([None, 0.6, 0.3], [4, 30, 25]))
    assert "does not change steadily (4, 30, 25)" in said
    assert "the share of corpus words (at 0.8, 1.2) falls (60 %, 30 %)" in said
    assert said.endswith("at temperature 0.5 the passage holds no word of two or more letters.")
    assert "no passage has words" in report._sampling_trend("top-p", rows([None, None], [3, 4]))


def test_optimizers_section(study_plan, tmp_path):
    plan, _ = study_plan
    html = report.optimizers_section(plan, tmp_path)
    assert (tmp_path / "optimizers.png").is_file()
    bests = {s["label"]: float(report.load_run(s["dir"]).history["val_loss"].min()) for s in plan["optimizers"]["runs"]}
    winner = min(bests, key=bests.get)
    assert f"Lowest held-out loss: <b>{winner}</b> ({bests[winner]:.3f}" in html
    assert "AdaGrad, eta 0.1 and RMSProp, eta 0.001 ran at the same time" in html


def test_tweets_section_and_its_fallback(study_plan):
    plan, _ = study_plan
    html = report.tweets_section(plan, n_tweets=3)
    assert "before the first update" in html and html.count('<pre class="sample">') == 3 + 3
    assert "15 tweets" in html
    fallback = report.tweets_section({"tweets": {"runs": []}})
    assert fallback.count("<p>") == 1 and "make report TWEETS=" in fallback


def option(args, flag: str, default=None):
    """The value after ``flag`` in an argument list (the last one), or ``default``."""
    value = default
    for a, b in zip(args, args[1:]):
        if a == flag:
            value = b
    return value


def partners(the_plan, name: str) -> list[str]:
    """The labels of the runs that ran at the same time as run ``name``."""
    for group in studies.groups(the_plan):
        if any(r["name"] == name for r in group):
            return [r["label"] for r in group if r["name"] != name]
    return []


# --- report/build.py's options ------------------------------------------------------------------

def load_build():
    spec = importlib.util.spec_from_file_location("a4lib_build", ROOT / "report" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_switches():
    build = load_build()
    a = build.parse_args(["--quick"])
    assert a.sections == list(studies.SECTIONS)
    a = build.parse_args(["--beyond-lstm", "0", "--beyond-tweets", "off", "--tweets", "none"])
    assert a.sections == ["batches", "heldout", "sampling", "optimizers"]
    assert "BEYOND_LSTM=0" in a.command and "BEYOND_TWEETS=0" in a.command and "TWEETS=none" in a.command
    a = build.parse_args(["--beyond", "0", "--beyond-lstm", "1"])
    assert a.sections == [] and "BEYOND=0" in a.command


@pytest.mark.parametrize("args,said", [
    (["--beyond-lstm", "maybe"], "expected 0 or 1, got 'maybe'"),
    (["--beyond", "2"], "expected 0 or 1"),
    (["--no-such-option"], "unrecognized arguments"),
])
def test_bad_build_options_are_one_line(args, said):
    r = subprocess.run([sys.executable, "report/build.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and lines[0].startswith("report: error:")


def test_bad_tweet_corpus_is_one_line(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not tweets at all, just text\n" * 10, encoding="utf-8")
    for tweets, said in ((tmp_path / "missing.json", "no such file"), (plain, "not a tweet corpus")):
        r = subprocess.run([sys.executable, "report/build.py", "--quick", "--no-pdf", "--out", str(tmp_path / "out"),
                            "--tweets", str(tweets)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        errors = [ln for ln in r.stdout.splitlines() if "error" in ln]
        assert len(errors) == 1 and said in errors[0] and f"TWEETS={tweets}" in errors[0]


def test_runs_of_an_older_format_are_not_reused(tmp_path):
    """A finished run is reused only when it was written in the current run format."""
    from a4lib.train import RUN_FORMAT

    build = load_build()
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.npz", "samples.json"):
        (run / name).write_text("x")
    config = {"corpus_sha256": "abc", "m": 8, "format": RUN_FORMAT}
    (run / "summary.json").write_text(json.dumps({"status": "finished", "format": RUN_FORMAT}))
    (run / "provenance.json").write_text(json.dumps({"key": {"k": 1}}))
    (run / "config.json").write_text(json.dumps(config))
    assert build.run_matches(run, {"m": 8}, "abc") and build.study_run_reusable(run, {"k": 1})
    (run / "config.json").write_text(json.dumps({**config, "format": RUN_FORMAT - 1}))
    (run / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert not build.run_matches(run, {"m": 8}, "abc") and not build.study_run_reusable(run, {"k": 1})
