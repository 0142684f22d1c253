"""The report's part beyond the assignment: the studies as report/studies.py plans them (runs as
Config, their command lines), the build's options, and notebooks/beyond.ipynb executed on small
real runs, its numbers checked against a4lib.analysis. The quick report built with make is
checked in test_report.py (one build for both)."""
from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import analysis, rundir
from a4lib.cli import main as a4lib_main
from a4lib.config import Config

ROOT = Path(__file__).resolve().parent.parent


def load_build():
    spec = importlib.util.spec_from_file_location("a4lib_build", ROOT / "report" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()
studies = build.studies  # report/studies.py


# --- the plan -------------------------------------------------------------------------------------

def test_chunk_length_and_bench_updates():
    assert studies.chunk_length_for(1_000_000, 16, 50) == 1000
    assert studies.chunk_length_for(20_000, 16, 50) == 312
    assert studies.chunk_length_for(100, 16, 50) == 51
    assert studies.bench_updates(100_000, 25, 1) == 4000 and studies.bench_updates(100_000, 25, 128) == 31
    assert studies.bench_updates(10, 25, 128) == 5


def test_plan_times_only_the_runs_compared_in_seconds(tmp_path):
    plan = studies.plan(list(studies.SECTIONS), "builtin:python-docs", 464_970, tmp_path, studies.QUICK,
                        tweets="t.json")
    assert [r.name for r in studies.all_runs(plan) if r.timed] == ["race-lstm", "race-rnn"]
    assert [r.name for r in studies.all_runs(plan) if not r.timed] == [
        "heldout-sequential", "heldout-chunks", "optimizer-adagrad", "optimizer-rmsprop", "optimizer-adam", "tweets"]
    assert [b["batch_size"] for b in plan["batches"]["benches"]] == list(studies.BATCH_SIZES)
    for r in studies.all_runs(plan):
        assert isinstance(r.config, Config) and r.config.validate()
        assert r.config.val_fraction == (0.0 if r.name == "tweets" else 0.1)
        assert r.dir == tmp_path / r.name
    race = {r.name: r.config for r in plan["lstm"]["runs"]}
    assert race["race-lstm"].max_seconds == race["race-rnn"].max_seconds == 4.0
    assert (race["race-lstm"].model, race["race-rnn"].model) == ("lstm", "rnn")
    opt = [r.config for r in plan["optimizers"]["runs"]]
    assert len({c.n_updates for c in opt}) == 1 and [c.optimizer for c in opt] == ["adagrad", "rmsprop", "adam"]
    assert all(c.differences(opt[0], ignore=("optimizer", "eta")) == [] for c in opt)


def test_plan_leaves_out_what_is_switched_off(tmp_path):
    plan = studies.plan(["sampling", "tweets"], "c.txt", 10_000, tmp_path, studies.QUICK, tweets=None)
    assert plan["sections"] == ["sampling", "tweets"] and plan["tweets"] == {"runs": []}
    assert studies.all_runs(plan) == [] and "batches" not in plan and "lstm" not in plan
    with pytest.raises(ValueError, match="unknown section"):
        studies.plan(["nope"], "c.txt", 10_000, tmp_path, studies.QUICK)
    alone = studies.plan(["tweets"], "c.txt", 10_000, tmp_path, studies.QUICK, tweets="t.json")
    assert [r.name for r in studies.all_runs(alone)] == ["tweets"]


def test_run_commands_come_from_config_and_parse_back(tmp_path):
    plan = studies.plan(["lstm"], "data/my text.txt", 50_000, tmp_path / "runs", studies.FULL)
    for r in plan["lstm"]["runs"]:
        words = shlex.split(shlex.join(["a4lib", *r.argv()]))
        assert words[:4] == ["a4lib", "train", "--out", str(tmp_path / "runs" / r.name)]
        assert Config.from_argv(words[4:]) == r.config  # Config -> argv -> Config
    data = json.loads(json.dumps(studies.to_json(plan)))
    lstm = data["lstm"]["runs"][0]
    assert Config.from_dict(lstm["config"]) == plan["lstm"]["runs"][0].config
    assert lstm["timed"] and data["lstm"]["runs"][1]["timed"]


# --- report/build.py ------------------------------------------------------------------------------

def test_build_switches():
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
    (["--m", "abc"], "'abc' is not allowed"),
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
        assert r.returncode == 2  # bad input
        errors = [ln for ln in r.stdout.splitlines() if "error" in ln]
        assert len(errors) == 1 and said in errors[0] and "TWEETS" in errors[0] and str(tweets) in errors[0]


def test_runs_are_reused_only_with_the_same_config_corpus_and_format(tmp_path):
    from a4lib.train import RUN_FORMAT

    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.npz", "samples.json"):
        (run / name).write_text("x")
    cfg = Config(corpus="c.txt", m=8, n_updates=100)
    config = {**cfg.to_dict(), "corpus": "elsewhere/c.txt", "corpus_sha256": "abc", "format": RUN_FORMAT}
    (run / "summary.json").write_text(json.dumps({"status": "finished", "format": RUN_FORMAT}))
    (run / "config.json").write_text(json.dumps(config))
    assert build.reusable(run, cfg, "abc")
    assert not build.reusable(run, cfg, "abd") and not build.reusable(run, cfg.replace(m=9), "abc")
    (run / "config.json").write_text(json.dumps({**config, "format": RUN_FORMAT - 1}))
    assert not build.reusable(run, cfg, "abc")


def test_select_sections_keeps_their_cells_and_numbers_them_on(tmp_path):
    import nbformat

    out = build.select_sections(build.BEYOND_NOTEBOOK, ["lstm", "tweets"], tmp_path / "b.ipynb")
    nb = nbformat.read(out, as_version=4)
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    assert headings == ["## 7. LSTM against the vanilla RNN", "## 8. Tweets"]
    kept = {t for c in nb.cells for t in c.metadata.get("tags", []) if t.startswith("beyond-")}
    assert kept == {"beyond-lstm", "beyond-tweets"}
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)  # the untagged cells stay


# --- the beyond notebook on small real runs -------------------------------------------------------

TINY = studies.Budget(bench_chars=500, bench_reference_updates=3, scaling_seconds=0.01, heldout_updates=60, heldout_val_every=20,
                      race_seconds=0.3, race_rnn_val_every=20, race_lstm_val_every=2, optimizer_updates=40,
                      optimizer_val_every=20, tweet_updates=30, tweet_sample_every=10)


def small_text(n_words=1500, seed=0) -> str:
    rng = np.random.default_rng(seed)
    vocab = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "über ", "dogs ", "ran\n"]
    return "".join(rng.choice(vocab, size=n_words))


@pytest.fixture(scope="module")
def beyond(tmp_path_factory):
    """Every study planned on a small text and a few tweets, its runs trained with the command
    lines the report shows, its benchmarks faked (the build makes those); the beyond notebook
    executed on them by papermill."""
    import nbformat

    pytest.importorskip("papermill")
    d = tmp_path_factory.mktemp("studies")
    text = d / "text.txt"
    text.write_text(small_text(), encoding="utf-8")
    tweets = d / "tweets.json"
    tweets.write_text(json.dumps([{"text": t} for t in ("Great day! #MAGA", "Fake news &amp; more.",
                                                         "The cat sat on the mat.")] * 5), encoding="utf-8")
    plan = studies.plan(list(studies.SECTIONS), str(text), len(text.read_text(encoding="utf-8")), d / "runs", TINY,
                        tweets=str(tweets))
    for r in studies.all_runs(plan):
        assert a4lib_main([*r.argv(), "--quiet"]) == 0
    for b in plan["batches"]["benches"]:
        B = b["batch_size"]
        b["result"] = {"corpus": str(text), "K": 12, "m": 100, "seq_length": 25, "batch_size": B, "updates": 10,
                       "reference_updates": 3, "updates_per_s": 1000.0 / B ** 0.5, "reference_updates_per_s": 100.0,
                       "chars_per_s": round(25_000 * B ** 0.5), "reference_chars_per_s": 2500,
                       "speedup": round(10 * B ** 0.5, 2)}
    plan["batches"]["scaling"] = {"peak_gflop_per_s": {"float64": 50.0, "float32": 100.0}, "rows": [
        {"dtype": dt, "m": m, "batch_size": B, "chars_per_s": round(k * 10_000 * B ** 0.5 / m),
         "peak_fraction": min(1.0, 0.1 * B ** 0.5) / k}
        for dt, k in (("float64", 1), ("float32", 2)) for m in (50, 100) for B in (1, 8, 32)]}
    plan["quick"], plan["workers"], plan["scheduler"] = True, 2, None
    (d / "beyond.json").write_text(json.dumps(studies.to_json(plan)), encoding="utf-8")
    main = plan["heldout"]["runs"][1].dir
    cmd = [sys.executable, "-m", "papermill", str(build.BEYOND_NOTEBOOK), str(d / "beyond.out.ipynb"), "-k", "python3",
           "--no-progress-bar", "-p", "beyond_json", str(d / "beyond.json"), "-p", "run_dir", str(main),
           "-p", "figures_dir", str(d / "figures"), "-p", "seed", "1"]
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter")})
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(d / "beyond.out.ipynb", as_version=4)
    sections: dict[str, str] = {}
    for cell in nb.cells:
        key = next((t[len("beyond-"):] for t in cell.metadata.get("tags", []) if t.startswith("beyond-")), None)
        for o in cell.get("outputs", []):
            sections[key] = sections.get(key, "") + "\n" + o.get("data", {}).get("text/markdown", "") + o.get("text", "")
    return {"plan": plan, "dir": d, "sections": sections, "main": main}


def runs_of(plan, key):
    return {r.name: rundir.load_run(r.dir) for r in plan[key]["runs"]}


def commands_in(markdown: str) -> list[list[str]]:
    """The command lines of the notebook's shell blocks, as argument lists."""
    blocks = [b.split("\n", 1)[1] for b in markdown.split("```")[1::2] if b.startswith("bash")]
    return [shlex.split(c.replace("\\\n", " ")) for b in blocks for c in b.strip().split("\n\n")]


def test_beyond_intro_says_quick_and_the_machine(beyond):
    intro = beyond["sections"][None]
    assert "quick report" in intro and "2 runs at a time" in intro


def test_batches_section(beyond):
    said = beyond["sections"]["batches"]
    assert (beyond["dir"] / "figures" / "scaling.png").is_file()
    point = analysis.scaling_point(beyond["plan"]["batches"]["scaling"], 100, 32)
    assert f"float32 processes {point.float32_gain:.1f} times" in said and "2.0 times" in said
    assert sum(line.startswith("| ") for line in said.splitlines()) == 1 + len(studies.BATCH_SIZES)
    assert "grow 11.3-fold" in said  # sqrt(128) / sqrt(1), as the fake results say
    assert "B = 128 with" in said
    assert [c[:3] for c in commands_in(said)] == [["a4lib", "bench", "--json"]] * (len(studies.BATCH_SIZES) + 1)


def test_heldout_section(beyond):
    plan, said = beyond["plan"], beyond["sections"]["heldout"]
    assert (beyond["dir"] / "figures" / "heldout.png").read_bytes()[:4] == b"\x89PNG"
    runs = runs_of(plan, "heldout")
    seq = analysis.heldout_run(runs["heldout-sequential"])
    assert f"**{seq.best:.3f} nats = {analysis.bits(seq.best):.3f} bits per character**" in said
    assert f"{analysis.heldout_run(runs['heldout-chunks']).train:.3f}" in said
    commands = commands_in(said)
    assert [Config.from_argv(c[4:]) for c in commands] == [r.config for r in plan["heldout"]["runs"]]


def test_lstm_section(beyond):
    plan, said = beyond["plan"], beyond["sections"]["lstm"]
    assert (beyond["dir"] / "figures" / "lstm_vs_rnn.png").is_file()
    assert "LSTM (m 128, B 16, Adam) and RNN (m 100, B 1, AdaGrad) ran at the same time" in said
    race = {name: analysis.heldout_run(run) for name, run in runs_of(plan, "lstm").items()}
    winner = analysis.rank({"LSTM": race["race-lstm"].best, "RNN": race["race-rnn"].best})
    assert f"the **{winner.winner}** reaches the lower held-out loss: {winner.best:.3f}" in said
    assert "--max-seconds 0.3" in said.replace(" \\\n    ", " ") and "--model lstm" in said


def test_sampling_section(beyond, capsys):
    plan, said = beyond["plan"], beyond["sections"]["sampling"]
    study = analysis.sampling_study(beyond["main"], plan["corpus"], studies.TEMPERATURES, studies.TOP_PS,
                                    studies.SAMPLING_LENGTH, seed=1)
    for r in study.rows:
        assert r.passage.text.replace("\n", "\n") in said  # each passage, in its block
    verb = {1: "rises", -1: "falls", 0: "does not change steadily"}[study.trends("temperature")[1]]
    assert f"the share of corpus words {verb}" in said.split("As the temperature goes from 0.5 to 1.2")[1]
    commands = commands_in(said)
    assert len(commands) == len(study.rows)
    capsys.readouterr()
    assert a4lib_main(commands[0][1:]) == 0  # the command prints the passage the section shows
    assert capsys.readouterr().out == study.rows[0].passage.text + "\n"


def test_optimizers_section(beyond):
    plan, said = beyond["plan"], beyond["sections"]["optimizers"]
    assert (beyond["dir"] / "figures" / "optimizers.png").is_file()
    bests = {r.label: analysis.heldout_run(rundir.load_run(r.dir)).best for r in plan["optimizers"]["runs"]}
    ranked = analysis.rank(bests)
    assert f"Lowest held-out loss: **{ranked.winner}** ({ranked.best:.3f}" in said
    assert "AdaGrad, eta 0.1 and RMSProp, eta 0.001 and Adam, eta 0.002 trained on the sweep engine (2 worker" in said


def test_tweets_section(beyond):
    said = beyond["sections"]["tweets"]
    assert "before the first update" in said and said.count("````") + said.count("```text") >= 3 + 5
    assert "15 tweets" in said and "seeds 1 to 5" in said
