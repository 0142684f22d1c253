"""Issue 19: the faults a crash-and-fuzz probe found, one test (or a few) per item. Training that
must be a real process (signals, kill, two sweeps at once) runs `python -m a4lib`; the rest calls
a4lib in-process. No test sleeps and counts or asserts a duration: processes are polled for a
condition, and where a signal must arrive in the middle of sampling or evaluation the model itself
sends it, so that what happens next is counted in model calls."""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from a4lib import Config, checkpoint as ckpt, load_corpus
from a4lib.cli import main
from a4lib.model import Network, make_network
from a4lib.rundir import list_runs, status, verdict
from a4lib.train import Trainer, evaluate, train

from conftest import start, wait_until

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
SMALL = ["--m", "8", "--sample-every", "0", "--quiet", "--backend", "numpy"]


# --- helpers ---------------------------------------------------------------------------------

def some_text(n: int) -> str:
    """n characters of English (Shakespeare where the shared data is, else seeded words)."""
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:n]
    words = "the king and his men shall come to the gate of the town at night with fire".split()
    return " ".join(np.random.default_rng(0).choice(words, size=n // 3))[:n]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "s.txt"
    path.write_text(some_text(20_000), encoding="utf-8")
    return path


@pytest.fixture
def tweets(tmp_path) -> Path:
    path = tmp_path / "tweets.json"
    rng = np.random.default_rng(0)
    words = "the king and his men come to the gate at night".split()
    path.write_text(json.dumps([{"text": " ".join(rng.choice(words, size=int(rng.integers(2, 9))))}
                                for _ in range(60)]), encoding="utf-8")
    return path


def small(corpus: Path, **overrides) -> Config:
    kw = dict(corpus=str(corpus), m=8, seq_length=10, sig=0.1, n_updates=100, sample_every=0, sample_length=20,
              checkpoint_every=10_000, backend="numpy")
    kw.update(overrides)
    return Config(**kw)


def run_main(*argv) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def snapshot(run_dir: Path) -> dict:
    """Everything a run directory records except wall-clock times."""
    arrays, meta = ckpt.load_arrays(run_dir / ckpt.CHECKPOINT)
    arrays.pop("seconds")
    meta.pop("seconds")
    with np.load(run_dir / "history.npz") as z:
        history = {k: z[k] for k in z.files if k != "seconds"}
    summary = {k: v for k, v in ckpt.read_json(run_dir / "summary.json").items() if k not in ("seconds", "updates_per_s")}
    return {"arrays": arrays, "meta": meta, "history": history, "summary": summary,
            "samples": ckpt.read_json(run_dir / "samples.json")}


def assert_same_run(a: dict, b: dict) -> None:
    assert a["arrays"].keys() == b["arrays"].keys()
    for k in a["arrays"]:
        np.testing.assert_array_equal(a["arrays"][k], b["arrays"][k], err_msg=k)
    assert a["history"].keys() == b["history"].keys()
    for k in a["history"]:
        np.testing.assert_array_equal(a["history"][k], b["history"][k], err_msg=k)
    assert a["samples"] == b["samples"]
    assert a["meta"] == b["meta"]
    assert a["summary"] == b["summary"]


def meta_of(run_dir: Path) -> dict:
    path = run_dir / ckpt.CHECKPOINT
    return ckpt.load_meta(path) if path.is_file() else {}


# --- 1. resume with held-out evaluation is exact ------------------------------------------------

RESUME_CASES = [  # (overrides, the uninterrupted budget, the first part's budget)
    pytest.param(dict(val_fraction=0.1, val_every=50, optimizer="adam", eta=0.01), dict(n_updates=240),
                 dict(n_updates=120), id="updates, the first part off the schedule"),
    pytest.param(dict(val_fraction=0.1, val_every=500), dict(n_updates=240), dict(n_updates=120),
                 id="no scheduled evaluation"),
    pytest.param(dict(val_fraction=0.1, val_every=40, sample_every=30), dict(n_updates=None, n_epochs=2),
                 dict(n_updates=None, n_epochs=1), id="epochs, samples"),
    pytest.param(dict(val_fraction=0.2, val_every=25, order="chunks", chunk_length=300), dict(n_updates=170),
                 dict(n_updates=88), id="chunks"),
]


@pytest.mark.parametrize("overrides, whole, first", RESUME_CASES)
def test_resume_with_held_out_text_equals_the_uninterrupted_run(tmp_path, overrides, whole, first):
    """A run stopped at a budget off the evaluation schedule, then resumed to the full budget,
    records what the uninterrupted run records: held-out history, best loss and update, best and
    last parameters, samples, summary (was: an extra evaluation where the first part stopped,
    possibly chosen as the best)."""
    path = tmp_path / "t.txt"
    path.write_text(some_text(3_000), encoding="utf-8")
    cfg = small(path, **overrides)
    train(cfg.replace(**whole), tmp_path / "whole", progress=False)
    train(cfg.replace(**first), tmp_path / "split", progress=False)
    train(cfg.replace(**whole), tmp_path / "split", resume=True, progress=False)
    assert_same_run(snapshot(tmp_path / "whole"), snapshot(tmp_path / "split"))


def test_resume_of_a_tweet_run_with_held_out_tweets_is_exact(tmp_path, tweets):
    cfg = small(tweets, val_fraction=0.2, val_every=30, n_updates=95, sample_every=40)
    train(cfg, tmp_path / "whole", progress=False)
    train(cfg.replace(n_updates=47), tmp_path / "split", progress=False)
    train(cfg, tmp_path / "split", resume=True, progress=False)
    assert_same_run(snapshot(tmp_path / "whole"), snapshot(tmp_path / "split"))


def test_held_out_evaluations_follow_their_schedule_and_the_end_is_off_the_record(tmp_path, text):
    """val_every 40, 100 updates: evaluations at 40 and 80 are the record; the one at 100 (where the
    run ends) is in the history, not a candidate for the best unless none was made."""
    out = tmp_path / "run"
    summary = train(small(text, val_fraction=0.1, val_every=40), out, progress=False)
    with np.load(out / "history.npz") as z:
        assert z["val_update"].tolist() == [40, 80, 100]
        scheduled = dict(zip(z["val_update"].tolist()[:2], z["val_loss"].tolist()[:2]))
    assert summary["best_update"] == min(scheduled, key=scheduled.get)
    assert summary["best_val_loss"] == scheduled[summary["best_update"]]
    short = train(small(text, val_fraction=0.1, val_every=1000, n_updates=30), tmp_path / "short", progress=False)
    assert short["best_update"] == 30 and short["best_val_loss"] == short["final_val_loss"]


# --- 2. the best parameters are those the best loss was measured with ----------------------------

@pytest.mark.parametrize("overrides", [dict(eta=0.05, n_updates=300),
                                       dict(eta=0.2, n_updates=310, val_fraction=0.2, val_every=20)],
                         ids=["by the smooth loss", "by the held-out loss"])
def test_best_update_is_the_number_of_updates_the_best_parameters_have_had(tmp_path, text, overrides):
    """One convention with and without held-out text (was: without it, one more than the updates
    the best parameters had): the best parameters are those of the same run stopped after
    best_update updates. Without held-out text they are those the lowest smooth loss (of update
    best_update + 1) was measured with, and the best state the state that update ends in."""
    cfg = small(text, **overrides)
    summary = train(cfg, tmp_path / "run", progress=False)
    best = summary["best_update"]
    assert 1 < best < cfg.n_updates  # (with held-out text: an evaluation on its schedule, at most 300)
    train(cfg.replace(n_updates=best), tmp_path / "at", progress=False)
    run, at = (ckpt.load_arrays(tmp_path / d / ckpt.CHECKPOINT)[0] for d in ("run", "at"))
    np.testing.assert_array_equal(run["best_w"], at["w"])
    if "val_fraction" not in overrides:
        assert run["smooth_loss"][best] == run["smooth_loss"].min()
        train(cfg.replace(n_updates=best + 1), tmp_path / "after", progress=False)
        after = ckpt.load_arrays(tmp_path / "after" / ckpt.CHECKPOINT)[0]
        np.testing.assert_array_equal(run["best_state"], after["last_state"])


def test_a_diverged_run_keeps_the_parameters_its_best_loss_was_measured_with(tmp_path, text):
    """--eta 1000: the run diverges at once; its best (after 0 updates) is the initial parameters,
    which predict the text about as well as chance (log K nats per character), not the exploded ones."""
    code, _, err = run_main("train", "--corpus", text, "--out", tmp_path / "run", "--eta", 1000, "--updates", 3000,
                            *SMALL)
    assert code == 1, err
    params, meta = ckpt.load_params(tmp_path / "run", "best")
    assert meta["best_update"] == 0 and meta["diverged"]
    initial = Trainer(Config.from_dict(meta["config"]), tmp_path / "unused")
    for k, v in params.items():
        np.testing.assert_array_equal(v, initial.params[k], err_msg=k)
    corpus = load_corpus(text)
    net = make_network(meta["config"], corpus.K, backend="numpy")
    loss = evaluate(net, params, corpus.ids, np.array([0]), np.array([5000]))
    assert abs(loss - math.log(corpus.K)) < 0.05
    code, out, err = run_main("generate", tmp_path / "run", "--length", 50)
    assert code == 0, err


# --- 3. SIGHUP ----------------------------------------------------------------------------------

def test_sighup_saves_the_run_like_sigterm(text, tmp_path):
    out = tmp_path / "run"
    proc = start("train", "--corpus", text, "--out", out, *SMALL, "--updates", 10_000_000, "--checkpoint-every", 100)
    try:
        wait_until(lambda: meta_of(out).get("updates", 0) >= 100, proc)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGHUP, err
    summary = ckpt.read_json(out / "summary.json")
    assert (summary["status"], summary["signal"]) == ("interrupted", "SIGHUP")
    assert summary["updates"] == meta_of(out)["updates"] >= 100


# --- 4. a stop request is honoured during sampling and evaluation ----------------------------------

class SignalAt:
    """Wraps a Network method: at call number ``at`` (counted from ``arm()``) it sends ``signum``
    to this process; counts the calls made after that."""

    def __init__(self, method: str, at: int, signum=signal.SIGTERM) -> None:
        self.method, self.at, self.signum = method, at, signum
        self.calls, self.after, self.armed = 0, 0, False

    def __call__(self, real):
        def wrapped(net, *args, **kwargs):
            if self.armed:
                self.calls += 1
                if self.calls == self.at:
                    os.kill(os.getpid(), self.signum)
                elif self.calls > self.at:
                    self.after += 1
            return real(net, *args, **kwargs)
        return wrapped


def test_a_stop_during_a_sample_is_honoured_at_once_and_the_resumed_run_draws_it_again(text, tmp_path, monkeypatch):
    """SIGTERM at the 50th character of a 100,000-character sample: the run stops at the next
    character (not after the sample), says "interrupted", and resumed it equals the uninterrupted
    run, the sample drawn again in full."""
    cfg = small(text, n_updates=40, sample_every=20, sample_length=100_000, m=4)
    stop = SignalAt("step", at=50)
    real = Network.step
    monkeypatch.setattr(Network, "step", stop(real))
    on_sample = []

    def sample_of_20_is_next(s):
        on_sample.append(s["update"])
        stop.armed = s["update"] == 0  # the next sample (update 20) is the one cut short
    summary = train(cfg, tmp_path / "split", progress=False, on_sample=sample_of_20_is_next)
    monkeypatch.setattr(Network, "step", real)
    assert stop.calls == 50 and stop.after == 0
    assert (summary["status"], summary["updates"]) == ("interrupted", 20)
    assert [s["update"] for s in ckpt.read_json(tmp_path / "split" / "samples.json")] == [0]
    cfg = cfg.replace(sample_length=300)  # (the same run with shorter samples, to compare in reasonable time)
    shutil.rmtree(tmp_path / "split")
    monkeypatch.setattr(Network, "step", stop(real))
    stop.calls, stop.after, stop.at = 0, 0, 100
    summary = train(cfg, tmp_path / "split", progress=False, on_sample=sample_of_20_is_next)
    monkeypatch.setattr(Network, "step", real)
    assert summary["status"] == "interrupted"
    train(cfg, tmp_path / "split", resume=True, progress=False)
    train(cfg, tmp_path / "whole", progress=False)
    assert_same_run(snapshot(tmp_path / "whole"), snapshot(tmp_path / "split"))


def test_a_stop_during_a_held_out_evaluation_is_honoured_at_once_and_resumed_exactly(tmp_path, monkeypatch):
    """SIGINT at the first model call of the evaluation at update 40 (held-out evaluated in many
    pieces): no further call of the evaluation is made; the resumed run makes the evaluation at 40
    and equals the uninterrupted run."""
    path = tmp_path / "t.txt"
    path.write_text(some_text(20_000), encoding="utf-8")
    cfg = small(path, n_updates=60, val_fraction=0.5, val_every=40)
    stop = SignalAt("loss_and_state", at=1, signum=signal.SIGINT)
    real = Network.loss_and_state
    monkeypatch.setattr(Network, "loss_and_state", stop(real))
    monkeypatch.setattr(sys.modules["a4lib.train"], "EVAL_MAX_STREAMS", 1)  # one stream per call: many calls

    def arm_after_39(self, _real_advance=Trainer._advance):
        _real_advance(self)
        stop.armed = self.updates == 40
    monkeypatch.setattr(Trainer, "_advance", arm_after_39)
    summary = train(cfg, tmp_path / "split", progress=False)
    assert stop.calls == 1 and stop.after == 0
    assert (summary["status"], summary["updates"]) == ("interrupted", 40)
    monkeypatch.undo()
    with np.load(tmp_path / "split" / "history.npz") as z:
        assert z["val_update"].tolist() == []
    train(cfg, tmp_path / "split", resume=True, progress=False)
    train(cfg, tmp_path / "whole", progress=False)
    assert_same_run(snapshot(tmp_path / "whole"), snapshot(tmp_path / "split"))


@pytest.mark.parametrize("argv", [
    ["train", "--sample-length", "99999999999999999999"],
    ["train", "--sample-length", "100001"],
    ["train", "--chunk-length", "99999999999999999999", "--order", "chunks"],
    ["train", "--max-seconds", "inf"],
    ["train", "--m", "100000"],
], ids=["huge sample", "sample over the bound", "huge chunk", "infinite time", "m beyond memory"])
def test_settings_beyond_their_bounds_are_one_line_and_nothing_is_written(argv, text, tmp_path):
    """Items 4 and 8: refused before anything is made (--m 100000: from an estimate, before any
    allocation), exit 2, one line."""
    out = tmp_path / "run"
    code, _, err = run_main(*argv, "--corpus", text, "--out", out, "--updates", 5, "--quiet")
    assert code == 2, err
    one_line(err)
    assert not out.exists()


def test_generate_refuses_a_length_beyond_its_bound(text, tmp_path):
    from a4lib.config import MAX_SAMPLE_LENGTH

    code, _, err = run_main("train", "--corpus", text, "--out", tmp_path / "run", "--updates", 5, *SMALL)
    assert code == 0, err
    for length in (MAX_SAMPLE_LENGTH + 1, 99999999999999999999):
        code, out, err = run_main("generate", tmp_path / "run", "--length", length)
        assert code == 2 and out == ""
        one_line(err)


# --- 6. two sweeps into one folder; part of a grid again --------------------------------------------

SWEEP = ["--corpus", "builtin:python-docs", "--m", "16", "--updates", "10000000", "--max-seconds", "60",
         "--checkpoint-every", "200", "--sample-every", "0", "--backend", "numpy", "--quiet"]


def test_a_second_sweep_into_a_busy_folder_is_refused_and_the_first_is_untouched(tmp_path):
    out = tmp_path / "sw"
    first = start("sweep", "--out", out, "--grid", "seed=0", "--workers", "1", *SWEEP)
    try:
        wait_until(lambda: meta_of(out / "seed=0").get("updates", 0) > 0, first)
        code, _, err = run_main("sweep", "--out", out, "--grid", "seed=0,1", *SWEEP)
        assert code == 2, err
        assert "in use" in one_line(err)
        assert not (out / "seed=1").exists()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    entries = {e["name"]: e["summary"]["status"] for e in json.loads((out / "sweep.json").read_text())}
    assert entries == {"seed=0": "interrupted"}


def test_part_of_a_grid_again_keeps_the_rest_of_sweep_json(tmp_path):
    from a4lib import sweep

    base = Config(corpus="builtin:python-docs", m=8, seq_length=10, n_updates=30, sample_every=0, backend="numpy")
    whole = sweep.sweep(base, {"seed": [0, 1, 2]}, tmp_path / "sw", workers=2, progress=False)
    part = sweep.sweep(base.replace(n_updates=40), {"seed": [1]}, tmp_path / "sw", workers=1, progress=False)
    assert [e["name"] for e in part] == ["seed=1"] and part[0]["summary"]["updates"] == 40
    saved = {e["name"]: e for e in sweep.load(tmp_path / "sw")}
    assert sorted(saved) == ["seed=0", "seed=1", "seed=2"]
    assert [saved[n]["summary"]["updates"] for n in ("seed=0", "seed=1", "seed=2")] == [30, 40, 30]
    assert saved["seed=0"] == whole[0]
    csv_names = [line.split(",")[0] for line in (tmp_path / "sw" / "sweep.csv").read_text().splitlines()[1:]]
    assert sorted(csv_names) == ["seed=0", "seed=1", "seed=2"]


def test_a_grid_of_more_runs_than_a_sweep_makes_is_refused(tmp_path):
    from a4lib.sweep import MAX_RUNS

    values = ",".join(str(i) for i in range(MAX_RUNS + 1))
    code, _, err = run_main("sweep", "--out", tmp_path / "sw", "--grid", f"seed={values}", "--quiet")
    assert code == 2
    assert f"{MAX_RUNS + 1:,}" in one_line(err)
    assert not (tmp_path / "sw").exists()


# --- 7. files read back are checked ---------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory, text) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    code, _, err = run_main("train", "--corpus", text, "--out", out, "--updates", 60, "--checkpoint-every", 20, *SMALL)
    assert code == 0, err
    return out


@pytest.fixture
def runs(finished, tmp_path) -> Path:
    """A folder of three copies of a finished run: good, bad, other."""
    for name in ("good", "bad", "other"):
        shutil.copytree(finished, tmp_path / "runs" / name)
    return tmp_path / "runs"


BAD_FILES = [
    pytest.param("summary.json", {"status": "finished", "updates": "abc"}, id="summary updates a string"),
    pytest.param("summary.json", "finished", id="summary a bare string"),
    pytest.param("summary.json", {"status": "done", "updates": 3}, id="summary status unknown"),
    pytest.param("config.json", [], id="config a list"),
    pytest.param("config.json", {"m": "abc"}, id="config with a bad value"),
]


@pytest.mark.parametrize("name, content", BAD_FILES)
def test_runs_lists_the_others_and_marks_a_malformed_run(runs, name, content):
    (runs / "bad" / name).write_text(json.dumps(content), encoding="utf-8")
    rows = {r["name"]: r for r in list_runs(runs)}
    assert {n: r["status"] for n, r in rows.items()} == {"good": "finished", "bad": "unreadable", "other": "finished"}
    assert name in rows["bad"]["problem"] and rows["good"]["problem"] is None
    code, out, err = run_main("runs", runs)
    assert code == 0
    assert len(out.strip().splitlines()) == 4  # a header and three runs
    assert name in one_line(err) and "Traceback" not in out


@pytest.mark.parametrize("name, content", BAD_FILES)
def test_a_sweep_over_a_malformed_run_is_one_line(finished, text, tmp_path, name, content):
    """A sweep whose run is there, finished: done (exit 0, nothing trained); the same with one of
    its files malformed: a conflict naming the file (exit 2, one line)."""
    argv = ["sweep", "--out", tmp_path / "sw", "--grid", "seed=0", "--corpus", text, "--updates", 60,
            "--checkpoint-every", 20, *SMALL]
    run = Path(shutil.copytree(finished, tmp_path / "sw" / "seed=0"))
    assert run_main(*argv)[0] == 0
    (run / name).write_text(json.dumps(content), encoding="utf-8")
    code, _, err = run_main(*argv)
    assert code == 2
    assert name in one_line(err)


def _rewrite(path: Path, arrays_changes: dict | None = None, **meta_changes) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta.update(meta_changes)
    arrays.update(arrays_changes or {})
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))


def _set_meta(path: Path, meta) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
    np.savez(path, **arrays, meta=np.array(meta if isinstance(meta, str) else json.dumps(meta)))


TAMPERED = [  # (how, whether generate needs what was tampered with)
    pytest.param(lambda p: _rewrite(p, {"plan": np.zeros((2, 3), np.int64)}), False, id="plan of the wrong shape"),
    pytest.param(lambda p: _rewrite(p, {"plan": np.zeros((4, 1, 2), np.float64)}), False, id="plan of floats"),
    pytest.param(lambda p: _rewrite(p, {"plan": np.array([[[0, 10 ** 9]]])}), False, id="plan past the text"),
    pytest.param(lambda p: _rewrite(p, offset=10 ** 9), False, id="offset past the text"),
    pytest.param(lambda p: _rewrite(p, {"state": np.zeros(())}), False, id="a state of the wrong shape"),
    pytest.param(lambda p: _set_meta(p, [1, 2, 3]), True, id="metadata a list"),
    pytest.param(lambda p: _set_meta(p, "[" * 100_000 + "]" * 100_000), True, id="metadata nested 100,000 deep"),
    pytest.param(lambda p: _rewrite(p, best_loss="low"), True, id="best_loss a string"),
    pytest.param(lambda p: _rewrite(p, corpus={**ckpt.load_meta(p)["corpus"],
                                               "chars": ckpt.load_meta(p)["corpus"]["chars"][:-3]}),
                 True, id="a shortened vocabulary"),
    pytest.param(lambda p: _rewrite(p, param_shapes={"V": [10 ** 6, 10 ** 6]}), True, id="parameter shapes of nonsense"),
    pytest.param(lambda p: _rewrite(p, {"best_state": np.full(8, np.nan)}), True, id="a best state not finite"),
    pytest.param(lambda p: _rewrite(p, {"best_state": np.zeros(3)}), True, id="a shortened best state"),
    pytest.param(lambda p: _rewrite(p, {"best_state": np.zeros(80)}), True, id="a lengthened best state"),
    pytest.param(lambda p: _rewrite(p, {"epoch_starts": np.zeros((2, 2), np.int64)}), False, id="epoch_starts 2-d"),
    pytest.param(lambda p: _rewrite(p, {"epoch_starts": np.zeros(1, np.float64)}), False, id="epoch_starts floats"),
]


@pytest.mark.parametrize("tamper, generate_reads_it", TAMPERED)
def test_a_tampered_checkpoint_is_one_line_for_resume_and_generate(finished, tmp_path, tamper, generate_reads_it):
    """A checkpoint whose CRC is valid but whose contents do not fit the run: `train --resume`
    exits 2 with one line naming the checkpoint (was IndexError/TypeError/RecursionError), the run
    untouched; `generate` too where it reads what was tampered with, else it generates."""
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    tamper(run / ckpt.CHECKPOINT)
    before = (run / ckpt.CHECKPOINT).read_bytes()
    code, _, err = run_main("train", "--out", run, "--resume", "--updates", 80, "--quiet")
    assert code == 2, err
    assert "checkpoint.npz" in one_line(err)
    assert (run / ckpt.CHECKPOINT).read_bytes() == before
    code, out, err = run_main("generate", run, "--length", 20)
    if generate_reads_it:
        assert code == 2 and out == ""
        assert "checkpoint.npz" in one_line(err)
    else:
        assert code == 0 and len(out) == 21, err


def test_a_sweep_over_a_run_with_a_tampered_epoch_starts_is_one_line(finished, text, tmp_path):
    """The verdict reads epoch_starts: a 2-d one is a conflict naming the checkpoint (exit 2, one
    line; was a traceback from rundir.verdict)."""
    run = Path(shutil.copytree(finished, tmp_path / "sw" / "seed=0"))
    _rewrite(run / ckpt.CHECKPOINT, {"epoch_starts": np.zeros((2, 2), np.int64)})
    said = verdict(run, Config(corpus=str(text), m=8, n_updates=60, checkpoint_every=20, sample_every=0,
                               backend="numpy"))
    assert said.kind == "conflict" and str(run / ckpt.CHECKPOINT) in said.reason
    code, _, err = run_main("sweep", "--out", tmp_path / "sw", "--grid", "seed=0", "--corpus", text, "--updates", 60,
                            "--checkpoint-every", 20, *SMALL)
    assert code == 2
    assert "checkpoint.npz" in one_line(err)


# --- 8. smaller -------------------------------------------------------------------------------------

def test_a_full_disk_names_the_file(text, tmp_path, monkeypatch):
    """An OSError while a run file is written (here ENOSPC from fsync) names that file."""
    real_fsync = os.fsync
    seen = []

    def full(fd):
        seen.append(fd)
        if len(seen) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_main("train", "--corpus", text, "--out", tmp_path / "run", "--updates", 10, *SMALL)
    monkeypatch.undo()
    assert code == 1
    line = one_line(err)
    assert os.strerror(errno.ENOSPC) in line and str(tmp_path / "run") in line


def test_runs_shows_where_a_killed_runs_checkpoint_stands(text, tmp_path):
    out = tmp_path / "runs" / "killed"
    proc = start("train", "--corpus", text, "--out", out, *SMALL, "--updates", 10_000_000, "--checkpoint-every", 100)
    try:
        wait_until(lambda: meta_of(out).get("updates", 0) >= 300, proc)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    (row,) = list_runs(tmp_path / "runs")
    assert row["status"] == "killed" and status(out) == "killed"
    assert row["updates"] == meta_of(out)["updates"] >= 300


def test_a_path_that_is_not_utf8_is_one_line(text, tmp_path):
    bad = os.fsdecode(bytes(tmp_path) + b"/\xff")
    code, _, err = run_main("train", "--corpus", text, "--out", bad, "--updates", 5, *SMALL)
    assert code == 2
    one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_sighup_after_the_terminal_is_gone_still_saves_the_run(text, tmp_path):
    """Item 3 as a closed ssh session makes it: the output's reader is gone (writes fail) and
    SIGHUP arrives; samples and the progress bar fail to print, the run saves all the same and
    exits 129."""
    out = tmp_path / "run"
    proc = start("train", "--corpus", text, "--out", out, "--m", "8", "--backend", "numpy", "--updates", 10_000_000,
                 "--checkpoint-every", 100, "--sample-every", 50, "--sample-length", 20)
    try:
        wait_until(lambda: meta_of(out).get("updates", 0) >= 100, proc)
        proc.stdout.close()
        proc.stderr.close()
        wait_until(lambda: meta_of(out).get("updates", 0) >= 300, proc)  # samples printed into the void meanwhile
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGHUP
    summary = ckpt.read_json(out / "summary.json")
    assert (summary["status"], summary["signal"]) == ("interrupted", "SIGHUP")
    assert summary["updates"] == meta_of(out)["updates"] >= 300
