"""a4lib.results.analysis: the numbers the report's sentences are made of, checked on numbers (histories
written here, and small real runs)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from a4lib import Config, rundir, train
from a4lib.results import analysis
from a4lib.config import defaults


def fake_run(history: dict, config: dict | None = None, summary: dict | None = None) -> rundir.Run:
    config = {"seq_length": 25, "batch_size": 1, **(config or {})}
    return rundir.Run(path=Path("nowhere"), config=config, summary={"corpus": {"K": 50}, **(summary or {})},
                      samples=[], history=history)


# --- losses and seconds -------------------------------------------------------------------------

def test_per_char_divides_the_summed_loss_by_seq_length():
    assert analysis.per_char(50.0, 25) == 2.0
    np.testing.assert_allclose(analysis.per_char(np.array([25.0, 100.0]), 50), [0.5, 2.0])
    with pytest.raises(ValueError):
        analysis.per_char(1.0, 0)


def test_bits_from_nats():
    assert analysis.bits(math.log(2)) == pytest.approx(1.0)
    np.testing.assert_allclose(analysis.bits(np.array([0.0, 2 * math.log(2)])), [0.0, 2.0])
    assert analysis.bits(None) is None


def test_seconds_at_maps_updates_to_their_training_time():
    history = {"seconds": np.array([0.5, 1.0, 1.5, 4.0, 4.5])}  # after updates 1..5
    np.testing.assert_allclose(analysis.seconds_at(history, [0, 1, 3, 5]), [0.0, 0.5, 1.5, 4.5])
    with pytest.raises(ValueError):
        analysis.seconds_at(history, [6])


def test_held_out_best_final_seconds_and_first_below():
    history = {"seconds": np.arange(1, 11) * 0.1, "val_update": np.array([2, 6, 10]),
               "val_loss": np.array([3.0, 2.0, 2.5])}
    val = analysis.held_out(history)
    np.testing.assert_allclose(val.seconds, [0.2, 0.6, 1.0])
    assert (val.best, val.best_index, val.final) == (2.0, 1, 2.5)
    assert val.first_below(2.8) == pytest.approx(0.6) and val.first_below(1.0) is None
    empty = analysis.held_out({"seconds": np.ones(3)})
    assert empty.best is None and empty.final is None and len(empty.seconds) == 0


def test_evaluation_share_is_the_excess_of_the_steps_after_evaluations():
    steps = np.full(100, 0.01)
    steps[[20, 40]] += 0.5  # evaluations after updates 20 and 40 lengthen updates 21 and 41
    history = {"seconds": np.cumsum(steps), "val_update": np.array([20, 40, 100])}
    assert analysis.evaluation_share(history) == pytest.approx(1.0 / 2.0)
    assert analysis.evaluation_share({"seconds": np.cumsum(steps), "val_update": np.array([100])}) is None


def test_chars_seen():
    assert analysis.chars_seen({"seq_length": 50, "batch_size": 16}, 10) == 8000


# --- one run --------------------------------------------------------------------------------------

def test_smooth_loss_summary():
    smooth = np.array([100.0, 90.0, 80.0, 85.0])
    run = fake_run({"smooth_loss": smooth, "epoch_starts": np.array([0, 2, 9])},
                   summary={"updates": 4, "epochs": 1.5, "best_update": 3})
    s = analysis.smooth_loss(run)
    assert (s.first, s.best, s.lowest_update, s.final, s.best_update) == (100.0, 80.0, 3, 85.0, 3)
    assert s.best_per_char == pytest.approx(80.0 / 25)
    assert s.chance == pytest.approx(25 * math.log(50))
    assert s.epoch_means == (95.0, 82.5) and s.epochs_fall  # the epoch that begins at 9 never began


def test_smooth_loss_early_fall_and_epoch_means():
    """The share of the fall made in the first tenth of the updates; each epoch's mean."""
    smooth = np.concatenate([np.linspace(100, 40, 10), np.full(90, 40.0) - np.linspace(0, 10, 90)])
    run = fake_run({"smooth_loss": smooth, "epoch_starts": np.array([0, 50])}, summary={"updates": 100})
    s = analysis.smooth_loss(run)
    assert s.early_fall == pytest.approx((100 - 40) / (100 - 30))
    assert s.epoch_means == pytest.approx((smooth[:50].mean(), smooth[50:].mean())) and s.epochs_fall
    rising = fake_run({"smooth_loss": np.linspace(50, 60, 100), "epoch_starts": np.array([0, 50])},
                      summary={"updates": 100})
    assert analysis.smooth_loss(rising).early_fall is None and not analysis.smooth_loss(rising).epochs_fall


def test_chosen_samples_and_stages():
    samples = [{"update": u, "text": str(u)} for u in (0, 500, 1000, 1500, 2000)]
    assert [s["update"] for s in analysis.chosen_samples(samples, until=1000)] == [0, 500, 1000]
    assert [s["update"] for s in analysis.chosen_samples(samples, every=1000)] == [0, 1000, 2000]
    assert [s["update"] for s in analysis.pick_stages(samples, 3)] == [0, 1000, 2000]
    assert [s["update"] for s in analysis.pick_stages(samples[:2], 3)] == [0, 500]
    assert [s["update"] for s in analysis.pick_stages(samples, 2)] == [0, 2000]


def test_settings_of_a_run_follow_config():
    config = {**Config(m=50, eta=0.05, n_updates=300).to_dict(), "corpus": "x.txt", "K": 12, "format": 2}
    rows = analysis.settings(config)
    names = [s.name for s in rows]
    assert names == [name for name in defaults() if name != "corpus"]  # Config's order, nothing else
    changed = {s.name: s.value for s in rows if s.changed}
    assert changed == {"m": 50, "eta": 0.05, "n_updates": 300, "n_epochs": None}
    assert all(s.help for s in rows)


# --- the gradient check ---------------------------------------------------------------------------

def check_result(m, err, ok, sig=0.01):
    return {"model": "rnn", "m": m, "sig": sig, "h": 1e-4, "tol": 1e-4, "floor": 2e-5, "seq_length": 25, "K": 3,
            "corpus": "c", "seconds": 0.1, "ok": ok,
            "table": {k: {"max_rel": err * (i + 1), "mean_rel": err / 10, "max_abs": 1e-9} for i, k in enumerate("UWVbc")}}


def test_gradcheck_summary():
    s = analysis.gradcheck_summary([check_result(5, 1e-7, True), check_result(100, 2e-7, True, sig=0.1)])
    assert s.ok and s.worst == pytest.approx(1e-6) and s.ms == (5, 100) and s.sigs == (0.01, 0.1)
    assert s.floors == (2e-5, 2e-5)
    bad = analysis.gradcheck_summary([check_result(5, 1e-7, True), check_result(5, 1e-2, False)])
    assert not bad.ok and bad.worst == pytest.approx(5e-2)
    assert analysis.gradcheck_summary([]) is None
    rows = analysis.gradcheck_rows(check_result(5, 1e-7, True))
    assert [r[0] for r in rows] == list("UWVbc") and rows[1][1] == pytest.approx(2e-7)


# --- comparing runs -------------------------------------------------------------------------------

def test_rank_winner_and_margin():
    r = analysis.rank({"a": 2.5, "b": 2.0, "c": None, "d": 3.0})
    assert r.order == (("b", 2.0), ("a", 2.5), ("d", 3.0))
    assert r.winner == "b" and r.margin == pytest.approx(0.5) and r.margin_share == pytest.approx(0.2)
    alone = analysis.rank({"x": 1.0})
    assert alone.margin is None and alone.runner_up is None
    with pytest.raises(ValueError):
        analysis.rank({"x": None})


def test_heldout_run():
    history = {"seconds": np.arange(1, 101) * 0.5, "smooth_loss": np.linspace(100, 50, 100),
               "val_update": np.array([20, 40, 60, 80, 100]), "val_loss": np.array([9.0, 4.0, 2.0, 2.2, 2.1])}
    run = fake_run(history, {"seq_length": 25, "batch_size": 2},
                   {"updates": 100, "seconds": 50.0, "final_smooth_loss": 50.0})
    h = analysis.heldout_run(run)
    assert (h.updates, h.chars, h.train) == (100, 5000, 2.0)
    assert (h.best, h.best_update, h.best_seconds, h.final) == (2.0, 60, 30.0, 2.1)
    assert (h.peak, h.peak_update, h.peak_ratio) == (9.0, 20, 4.5)
    assert h.settled_update == 60  # the first within 10 % of the final 2.1
    assert h.gap == pytest.approx(0.1) and h.risen  # 2.1 > 2.0 * 1.005


def scaling_result():
    rows = [{"dtype": dt, "m": m, "batch_size": B, "chars_per_s": c * (2 if dt == "float32" else 1),
             "speedup": c / 10_000 * (2 if dt == "float32" else 1), "peak_fraction": 0.1}
            for dt in ("float64", "float32") for m in (50, 100) for B, c in ((32, 300_000.0), (1, 100_000.0), (8, 400_000.0))]
    return {"rows": rows, "reference_chars_per_s": {"50": 12_000, "100": 10_000}}


def test_batch_speeds_from_one_scaling_measurement():
    s = analysis.batch_speeds(scaling_result(), 100)
    assert [r.B for r in s.rows] == [1, 8, 32]  # ordered by B
    assert (s.gain, s.fastest.B, s.fastest.chars_per_s, s.fastest.speedup) == (3.0, 8, 400_000.0, 40.0)
    assert s.reference_chars_per_s == 10_000 and s.dtype == "float64"
    assert analysis.batch_speeds(scaling_result(), 100, "float32").fastest.chars_per_s == 800_000.0
    assert analysis.batch_speeds(scaling_result(), 400) is None
    assert analysis.scaling_grid(scaling_result()) == ([50, 100], [1, 8, 32])


def test_rank_runs_held_out_else_smooth_per_character():
    held = {"a": {"best_smooth_loss": 50.0, "best_val_loss": 1.9}, "b": {"best_smooth_loss": 60.0, "best_val_loss": 1.7},
            "c": {"best_smooth_loss": None, "best_val_loss": None}}
    r = analysis.rank_runs(held)
    assert (r.by, r.best, [k for k, _ in r.order]) == ("held-out", "b", ["b", "a", "c"])
    smooth = {"a": {"best_smooth_loss": 50.0}, "b": {"best_smooth_loss": 60.0}}
    assert analysis.rank_runs(smooth).best == "a"
    per_char = analysis.rank_runs(smooth, {"a": 25, "b": 50})  # 2.0 against 1.2 per character
    assert (per_char.by, per_char.best) == ("smooth per character", "b")
    with pytest.raises(ValueError):
        analysis.rank_runs({})


def test_ngram_orders_and_runs_against_a_baseline():
    orders = analysis.ngram_orders({"val_loss_by_order": [3.3, 2.5, 1.9, 1.7, 1.75]})
    assert (orders.best_order, orders.best) == (4, 1.7)
    runs = {"x": analysis.HeldOutRun(10, 1.0, 100, 2.0, 1.6, 10, 1.0, 1.6, 1.9, 2, 10, None),
            "y": analysis.HeldOutRun(10, 1.0, 100, 2.0, 1.9, 10, 1.0, 1.9, 2.0, 2, 10, None),
            "z": analysis.HeldOutRun(10, 1.0, 100, 2.0, 1.5, 10, 1.0, 1.5, 1.9, 2, 10, None)}
    vs = analysis.against(orders.best, runs)
    assert vs.beat == ["z", "x"] and vs.lost == ["y"]
    assert vs.gap("y") == pytest.approx(0.2) and vs.gap("z") == pytest.approx(-0.2)


# --- passages and what changes in them ------------------------------------------------------------

def test_words_and_word_share():
    text = "The cat's hat, 3 dogs! a I x_y über-café"
    assert analysis.words(text) == ["the", "cat's", "hat", "dogs", "über", "café"]
    assert analysis.words("a I", min_letters=1) == ["a", "i"]
    assert analysis.word_share("the hat and the zzq", {"the", "hat"}) == pytest.approx(3 / 5)
    assert analysis.word_share("!! 12 ?", {"the"}) is None
    assert analysis.word_share("Qx Qx", {"the"}) == 0.0
    assert analysis.vocabulary_of("The the THE cat") == {"the", "cat"}
    assert analysis.distinct_chars("abca\n") == 4


def test_trend():
    assert analysis.trend([0.2, 0.5, 0.9]) == 1
    assert analysis.trend([9, 5, 1]) == -1
    assert analysis.trend([1, 3, 2]) == 0
    assert analysis.trend([1, 1, 2]) == 0
    assert analysis.trend([1, None, 2]) == 0
    assert analysis.trend([1]) == 0


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis")
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(["the ", "cat ", "sat ", "on ", "a ", "mat. ", "über ", "dogs ", "ran\n"], size=800))
    (d / "text.txt").write_text(text, encoding="utf-8")
    train(Config(corpus=str(d / "text.txt"), m=12, n_updates=150, sample_every=50, sample_length=20,
                 val_fraction=0.1, val_every=50, backend="numpy"), d / "run", progress=False)
    return d


def test_passage_from_the_best_parameters(small_run):
    run = rundir.load_run(small_run / "run")
    p = analysis.passage(small_run / "run", 60, seed=3)
    assert p.update == run.summary["best_update"] and p.heldout
    assert p.loss == pytest.approx(run.summary["best_val_loss"])
    assert len(p.text) == 61 and p.text == analysis.passage(small_run / "run", 60, seed=3).text  # seeded
    assert p.prime == "\n" and p.text.startswith("\n")  # the passage begins a new line
    assert analysis.passage(small_run / "run", 10, seed=3, prime="the").text.startswith("the")
    from a4lib.corpus import Corpus
    from a4lib.sample import primer
    assert primer(Corpus.from_vocabulary(["a", "b"], "v")) == "a"
    assert primer(Corpus.from_vocabulary(["\t", " ", "a"], "v")) == " "
    assert primer(Corpus.from_vocabulary(["\t", " ", "a"], "v"), "ab") == "ab"
    last = analysis.passage(small_run / "run", 20, which="last")
    assert last.update == 150 and not last.heldout


def test_sampling_study_measures_each_passage(small_run):
    study = analysis.sampling_study(small_run / "run", str(small_run / "text.txt"), (0.5, 1.5), (0.5,), 200, seed=1)
    assert [(r.temperature, r.top_p) for r in study.rows] == [(0.5, 1.0), (1.5, 1.0), (1.0, 0.5)]
    known = analysis.vocabulary_of((small_run / "text.txt").read_text(encoding="utf-8"))
    assert study.n_known == len(known) == 8  # "a" is too short to count
    for r in study.rows:
        assert r.word_share == analysis.word_share(r.passage.text, known)
        assert r.n_words == len(analysis.words(r.passage.text))
        assert r.distinct_chars == len(set(r.passage.text))
        assert set(r.invented).isdisjoint(known) and r.invented == sorted(r.invented)
    rows = study.of("temperature")
    assert study.trends("temperature") == (analysis.trend([r.distinct_chars for r in rows]),
                                           analysis.trend([r.word_share for r in rows]))
    assert study.trends("top_p") == (0, 0)  # one value: no trend


def test_seed_spread_median_best_worst_and_best_seed():
    summaries = {3: {"best_smooth_loss": 41.67, "best_update": 90_000, "final_smooth_loss": 42.0},
                 0: {"best_smooth_loss": 44.77, "best_update": 80_000, "final_smooth_loss": 45.1},
                 7: {"best_smooth_loss": 38.69, "best_update": 99_000, "final_smooth_loss": 38.9},
                 1: {"best_smooth_loss": 39.15, "best_update": 70_000, "final_smooth_loss": 39.5}}
    s = analysis.seed_spread(summaries)
    assert s.seeds == (0, 1, 3, 7)
    assert s.best_losses == (44.77, 39.15, 41.67, 38.69)
    assert s.median == pytest.approx((39.15 + 41.67) / 2)
    assert (s.best, s.worst, s.best_seed) == (38.69, 44.77, 7)
    assert s.spread == pytest.approx(44.77 - 38.69)
    assert s.best_updates[s.seeds.index(7)] == 99_000
    with pytest.raises(ValueError):
        analysis.seed_spread({})


def test_main_run_is_the_best_seeds_directory(small_run, tmp_path):
    """The report's main run: the seed ranked first (analysis.rank_runs), read from summary.json."""
    for seed, loss in ((0, 44.0), (1, 38.5), (2, 40.0)):
        (tmp_path / f"seed={seed}").mkdir()
        (tmp_path / f"seed={seed}" / "summary.json").write_text(
            f'{{"best_smooth_loss": {loss}, "best_update": 10, "final_smooth_loss": {loss + 1}}}')
    assert analysis.main_run({k: tmp_path / f"seed={k}" for k in range(3)}) == tmp_path / "seed=1"


def test_scaling_point_reads_both_types():
    rows = [{"dtype": dt, "m": m, "batch_size": B, "chars_per_s": c, "peak_fraction": f}
            for dt, m, B, c, f in [("float64", 100, 32, 400_000, 0.75), ("float32", 100, 32, 820_000, 0.7),
                                   ("float64", 100, 1, 200_000, 0.3)]]
    p = analysis.scaling_point({"rows": rows}, 100, 32)
    assert (p.chars64, p.chars32, p.peak64, p.peak32) == (400_000, 820_000, 0.75, 0.7)
    assert p.float32_gain == pytest.approx(2.05)
    assert analysis.scaling_point({"rows": rows}, 100, 1) is None  # no float32 figure
