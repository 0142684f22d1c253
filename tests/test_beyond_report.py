"""The report's part beyond the assignment: the studies as report/studies.py plans them (runs as
Config, their command lines, the plan's JSON form), the build's options, and notebooks/beyond.ipynb
executed on small real runs, its numbers checked against a4lib.results.analysis. The quick report built
with make is checked in test_report.py (one build for both)."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import rundir
from a4lib.results import analysis
from a4lib.cli import main as a4lib_main
from a4lib.config import Config
from report import build, manifest, studies

ROOT = Path(__file__).resolve().parent.parent


# --- the plan -------------------------------------------------------------------------------------

def test_chunk_length_for():
    assert studies.chunk_length_for(1_000_000, 16, 50) == Config().chunk_length
    assert studies.chunk_length_for(20_000, 16, 50) == 312
    assert studies.chunk_length_for(100, 16, 50) == 51


def test_plan_times_only_the_runs_compared_in_seconds(tmp_path):
    plan = studies.plan(list(studies.SECTIONS), "builtin:python-docs", 418_473, tmp_path, studies.QUICK,
                        tweets="t.json")
    timed, untimed = studies.timed_first(plan.runs)
    assert [r.name for r in timed] == [f"model-{m}-{k}" for m, k in studies.NETWORKS]
    assert [r.name for r in untimed] == [
        "heldout-sequential", "heldout-chunks", "optimizer-adagrad", "optimizer-rmsprop", "optimizer-adam", "tweets"]
    assert plan.scaling_args[:3] == ("bench", "--json", "--scaling")
    for r in plan.runs:
        assert isinstance(r.config, Config) and r.config.validate()
        assert r.config.val_fraction == (0.0 if r.name == "tweets" else studies.VAL_FRACTION)
        assert r.dir == tmp_path / r.name
    models = [r.config for r in plan.runs_of("models")]
    assert {c.max_seconds for c in models} == {studies.QUICK.model_seconds}
    assert [(c.model, c.layers) for c in models] == list(studies.NETWORKS)
    assert all(c.differences(models[0], ignore=("model", "layers")) == [] for c in models)  # nothing else differs
    assert plan.ngram.val_fraction == studies.VAL_FRACTION and plan.ngram.dir == tmp_path / "ngram"
    opt = [r.config for r in plan.runs_of("optimizers")]
    assert len({c.n_updates for c in opt}) == 1 and [c.optimizer for c in opt] == ["adagrad", "rmsprop", "adam"]
    assert all(c.differences(opt[0], ignore=("optimizer", "eta")) == [] for c in opt)


def test_plan_leaves_out_what_is_switched_off_or_has_no_data(tmp_path):
    plan = studies.plan(["sampling", "tweets"], "c.txt", 10_000, tmp_path, studies.QUICK, tweets=None)
    assert plan.sections == ("sampling",) and plan.runs == () and plan.ngram is None and plan.scaling_args is None
    with pytest.raises(ValueError, match="unknown section"):
        studies.plan(["nope"], "c.txt", 10_000, tmp_path, studies.QUICK)
    alone = studies.plan(["tweets"], "c.txt", 10_000, tmp_path, studies.QUICK, tweets="t.json")
    assert [r.name for r in alone.runs] == ["tweets"]


def test_the_plan_round_trips_through_its_json_form(tmp_path):
    plan = studies.plan(list(studies.SECTIONS), "data/my text.txt", 50_000, tmp_path / "runs", studies.FULL,
                        tweets="t.json", seed=3)
    assert studies.Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    for r in plan.runs_of("models"):
        words = shlex.split(shlex.join(["a4lib", *r.argv()]))
        assert words[:4] == ["a4lib", "train", "--out", str(tmp_path / "runs" / r.name)]
        assert Config.from_argv(words[4:]) == r.config  # Config -> argv -> Config


# --- report/build.py ------------------------------------------------------------------------------

def test_build_switches():
    s = build.settings(["--quick", "--pdf", "0"], env={})
    assert s.sections == tuple(studies.SECTIONS)
    s = build.settings(["--beyond-models", "0", "--beyond-tweets", "off", "--tweets", "none", "--pdf", "0"], env={})
    assert s.sections == ("batches", "heldout", "sampling", "optimizers") and s.tweets is None
    words = shlex.split(s.command)
    assert "BEYOND_MODELS=0" in words and "BEYOND_TWEETS=0" in words
    s = build.settings(["--beyond", "0", "--beyond-models", "1", "--pdf", "0"], env={})
    assert s.sections == () and "BEYOND=0" in shlex.split(s.command)


@pytest.mark.parametrize("args,said", [
    (["--beyond-models", "maybe"], "expected 0 or 1, got 'maybe'"),
    (["--beyond", "2"], "expected 0 or 1"),
    (["--m", "abc"], "'abc' is not allowed"),
    (["--no-such-option"], "unrecognized arguments"),
])
def test_bad_build_options_are_one_line(args, said):
    r = subprocess.run([sys.executable, "-m", "report.build", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and lines[0].startswith("report: error:")


def test_bad_tweet_corpus_is_one_line(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not tweets at all, just text\n" * 10, encoding="utf-8")
    for tweets, said in ((tmp_path / "missing.json", "no such file"), (plain, "not a tweet corpus")):
        r = subprocess.run([sys.executable, "-m", "report.build", "--quick", "--pdf", "0", "--out", str(tmp_path / "out"),
                            "--tweets", str(tweets)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2  # bad input
        errors = [ln for ln in r.stdout.splitlines() if "error" in ln]
        assert len(errors) == 1 and said in errors[0] and "TWEETS" in errors[0] and str(tweets) in errors[0]


@pytest.mark.parametrize("kind,status,made_here,force,expected", [
    ("done", "finished", True, False, "reuse"),
    ("new", "new", True, False, "train"),
    ("resume", "interrupted", True, False, "train"),
    ("extend", "finished", True, False, "train"),  # make report N_EPOCHS=6 extends, as a4lib sweep would
    ("conflict", "finished", True, False, "renew"),  # other settings in a run the build made: trained anew
    ("done", "finished", True, True, "renew"),  # FORCE=1
    ("conflict", "finished", False, False, None),  # not the build's: left alone
    ("done", "diverged", True, False, None),
    ("conflict", "running", True, True, None),  # in use
])
def test_the_build_acts_on_the_run_verdict(kind, status, made_here, force, expected):
    from a4lib.rundir import Verdict

    v = Verdict(kind, f"runs/x: {kind} ({status})", status)
    if expected is None:
        with pytest.raises(build.BuildError, match="runs/x"):
            build.action(v, made_here, force)
    else:
        assert build.action(v, made_here, force) == expected


def test_select_sections_keeps_their_cells_and_numbers_them_on(tmp_path):
    import nbformat

    out = build.select_sections(build.BEYOND_NOTEBOOK, ["models", "tweets"], tmp_path / "b.ipynb")
    nb = nbformat.read(out, as_version=4)
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    assert headings == ["## 7. Models: RNN, GRU and LSTM against an n-gram", "## 8. Tweets"]
    kept = {t for c in nb.cells for t in c.metadata.get("tags", []) if t.startswith("beyond-")}
    assert kept == {"beyond-models", "beyond-tweets"}
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)  # the untagged cells stay


# --- the beyond notebook on small real runs -------------------------------------------------------

TINY = studies.Budget(bench_reference_updates=3, scaling_seconds=0.01, heldout_updates=60, heldout_val_every=20,
                      model_seconds=0.3, model_val_every=2, optimizer_updates=40, optimizer_val_every=20,
                      tweet_updates=30, tweet_sample_every=10)


def small_text(n_words=1500, seed=0) -> str:
    rng = np.random.default_rng(seed)
    vocab = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "über ", "dogs ", "ran\n"]
    return "".join(rng.choice(vocab, size=n_words))


@pytest.fixture(scope="module")
def beyond(tmp_path_factory):
    """Every study planned on a small text and a few tweets, its runs trained with the command
    lines the report shows, its scaling benchmark faked (the build makes it); a manifest as the
    build writes it; the beyond notebook executed on it."""
    import nbformat

    from a4lib.notebook import execute
    from a4lib.train import split
    from a4lib.corpus import load_corpus

    d = tmp_path_factory.mktemp("studies")
    text = d / "text.txt"
    text.write_text(small_text(), encoding="utf-8")
    tweets = d / "tweets.json"
    tweets.write_text(json.dumps([{"text": t} for t in ("Great day! #MAGA", "Fake news &amp; more.",
                                                         "The cat sat on the mat.")] * 5), encoding="utf-8")
    n_train, _, _ = split(load_corpus(text), studies.VAL_FRACTION)
    plan = studies.plan(list(studies.SECTIONS), str(text), n_train, d / "runs", TINY, tweets=str(tweets))
    for r in plan.runs:
        assert a4lib_main([*r.argv(), "--quiet"]) == 0
    assert a4lib_main(plan.ngram.argv()) == 0
    scaling = {"corpus": str(text), "K": 12, "model": "rnn", "seq_length": 25, "backend": "numpy",
               "peak_gflop_per_s": {"float64": 50.0, "float32": 100.0},
               "reference_chars_per_s": {"50": 3000, "100": 2500}, "rows": [
        {"dtype": dt, "m": m, "batch_size": B, "chars_per_s": round(k * 10_000 * B ** 0.5 / m),
         "speedup": round(k * 10_000 * B ** 0.5 / m / 2500, 2), "peak_fraction": min(1.0, 0.1 * B ** 0.5) / k}
        for dt, k in (("float64", 1), ("float32", 2)) for m in (50, 100) for B in (1, 8, 32, 128)]}
    (d / "scaling.json").write_text(json.dumps(scaling))
    main = plan.runs_of("heldout")[1].dir
    m = manifest.Manifest(build=d / "build", quick=True, made=manifest.now(), command="make report QUICK=1",
                          seeds={1: main}, gradcheck=d / "none.json", bench=d / "none.json", figures=d / "figures",
                          seed=1, passage_length=100, samples_until=None, workers=2, scheduler=None, plan=plan,
                          scaling=d / "scaling.json")
    m.save()
    out = execute(build.BEYOND_NOTEBOOK, d / "beyond.out.ipynb", {"build_dir": str(d / "build")}, cwd=d)
    nb = nbformat.read(out, as_version=4)
    sections: dict[str, str] = {}
    for cell in nb.cells:
        key = next((t[len("beyond-"):] for t in cell.metadata.get("tags", []) if t.startswith("beyond-")), None)
        for o in cell.get("outputs", []):
            sections[key] = sections.get(key, "") + "\n" + o.get("data", {}).get("text/markdown", "") + o.get("text", "")
    return {"plan": plan, "dir": d, "sections": sections, "main": main, "scaling": scaling}


def runs_of(plan, key):
    return {r.name: rundir.load_run(r.dir) for r in plan.runs_of(key)}


def commands_in(markdown: str) -> list[list[str]]:
    """The command lines of the notebook's shell blocks, as argument lists (the activation line left out)."""
    blocks = [b.split("\n", 1)[1] for b in markdown.split("```")[1::2] if b.startswith("bash")]
    commands = [c for b in blocks for c in b.strip().split("\n\n")]
    words = [shlex.split(c.replace("\\\n", " ").replace("$'\\n'", "'\n'")) for c in commands]
    return [w[w.index("a4lib"):] if "a4lib" in w else w for w in words]


def config_of(command: list[str]) -> Config:
    """The Config of an ``a4lib train --out DIR ...`` command as it runs from the project folder
    (a relative corpus path resolves from there)."""
    import os

    cfg = Config.from_argv(command[4:])
    return cfg.replace(corpus=os.path.normpath(ROOT / cfg.corpus)) if cfg.corpus and not cfg.corpus.startswith(
        ("/", "builtin:")) else cfg


def test_beyond_intro_says_quick_and_the_machine(beyond):
    intro = beyond["sections"][None]
    assert "quick report" in intro and f"{rundir.provenance()['cores']} cores" in intro


def test_batches_section(beyond):
    said = beyond["sections"]["batches"]
    assert (beyond["dir"] / "figures" / "scaling.png").is_file()
    speeds = analysis.batch_speeds(beyond["scaling"], Config().m)
    assert sum(line.startswith("| ") for line in said.splitlines()) == 1 + len(speeds.rows)
    assert f"{speeds.gain:.1f}" in said and f"{speeds.fastest.chars_per_s:,.0f}" in said
    assert all(f"{r.chars_per_s:,.0f}" in said for r in speeds.rows)
    point = analysis.scaling_point(beyond["scaling"], speeds.m, 8)
    assert f"{point.float32_gain:.1f}" in said and f"{point.chars32:,.0f}" in said
    assert [c[:3] for c in commands_in(said)] == [["a4lib", "bench", "--json"]]


def test_heldout_section(beyond):
    plan, said = beyond["plan"], beyond["sections"]["heldout"]
    assert (beyond["dir"] / "figures" / "heldout.png").read_bytes()[:4] == b"\x89PNG"
    runs = runs_of(plan, "heldout")
    seq, chk = (analysis.heldout_run(runs[n]) for n in ("heldout-sequential", "heldout-chunks"))
    for value in (seq.best, analysis.bits(seq.best), chk.best, chk.train, seq.gap):
        assert f"{value:.3f}".lstrip("-") in said
    from a4lib.train import HELD_OUT_MIN_CHARS, HELD_OUT_STREAMS

    assert f"{HELD_OUT_STREAMS}" in said and f"{HELD_OUT_MIN_CHARS:,}" in said
    commands = commands_in(said)
    assert [config_of(c) for c in commands] == [r.config for r in plan.runs_of("heldout")]


def test_models_section(beyond):
    plan, said = beyond["plan"], beyond["sections"]["models"]
    assert (beyond["dir"] / "figures" / "models.png").is_file()
    orders = analysis.ngram_orders(json.loads((plan.ngram.dir / "summary.json").read_text()))
    assert all(f"{v:.3f}" in said for v in orders.losses) and f"{orders.best:.3f}" in said
    results = {n: analysis.heldout_run(r) for n, r in runs_of(plan, "models").items()}
    vs = analysis.against(orders.best, results)
    for name, r in results.items():
        assert f"{r.best:.3f}" in said and f"{vs.gap(name):+.3f}" in said
    commands = commands_in(said)
    assert commands[0][:2] == ["a4lib", "ngram"]
    assert [config_of(c) for c in commands[1:]] == [r.config for r in plan.runs_of("models")]


def test_sampling_section(beyond, capsys):
    plan, said = beyond["plan"], beyond["sections"]["sampling"]
    study = analysis.sampling_study(beyond["main"], plan.corpus, plan.sampling.temperatures, plan.sampling.top_ps,
                                    plan.sampling.length, seed=1)
    for r in study.rows:
        assert r.passage.text in said  # each passage, in its block
        assert f"{r.distinct_chars}" in said and analysis.word_share(r.passage.text, analysis.corpus_words(plan.corpus)) \
            == r.word_share
    commands = commands_in(said)
    assert len(commands) == len(study.rows)
    capsys.readouterr()
    assert a4lib_main(commands[0][1:]) == 0  # the command prints the passage the section shows
    assert capsys.readouterr().out == study.rows[0].passage.text + "\n"


def test_optimizers_section(beyond):
    from a4lib import optim

    plan, said = beyond["plan"], beyond["sections"]["optimizers"]
    assert (beyond["dir"] / "figures" / "optimizers.png").is_file()
    bests = {r.label: analysis.heldout_run(rundir.load_run(r.dir)).best for r in plan.runs_of("optimizers")}
    ranked = analysis.rank(bests)
    assert ranked.winner in said and f"{ranked.best:.3f}" in said
    assert all(f"{v:.3f}" in said for v in bests.values())
    assert f"{optim.RMSProp.gamma}" in said and f"{optim.Adam.beta2}" in said


def test_tweets_section(beyond):
    said = beyond["sections"]["tweets"]
    tweets = rundir.load_run(beyond["plan"].runs_of("tweets")[0].dir)
    assert said.count("```text") == 3 + 5  # three samples from training, five tweets written
    assert f"{tweets.corpus['n_documents']:,}" in said and f"{tweets.corpus['n_chars']:,}" in said
