"""Issue 17 item 1: one rule (``rundir.verdict``) decides what becomes of a run directory for a
Config and a corpus, and train, resume, the sweep and the command line act on it. The matrix:
settings the same or changed x the same or another text x the run's status x the budget asked
(less, the same, more; in updates, epochs and seconds), the run format, malformed files, a
directory in use, no run, an n-gram run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from a4lib import Config, checkpoint as ckpt, load_corpus
from a4lib.rundir import RUN_FORMAT, VERDICTS, RunLock, verdict
from a4lib.train import ResumeError, train


def write_text(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.write_text("".join(rng.choice(list("abcdefgh .\n"), size=n)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("texts")
    return write_text(d / "a.txt", 1000, 0), write_text(d / "b.txt", 1000, 1)


def base(corpus: Path, **changes) -> Config:
    return Config(corpus=str(corpus), m=6, seq_length=10, sig=0.1, n_updates=30, sample_every=0,
                  checkpoint_every=10, backend="numpy").replace(**changes)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, texts) -> Path:
    """A run of 30 updates (99 updates make an epoch)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(base(texts[0]), out, progress=False)
    return out


def with_status(run: Path, status: str) -> Path:
    summary = ckpt.read_json(run / "summary.json")
    ckpt.write_json(run / "summary.json", {**summary, "status": status})
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


# status (as the summary says) x budget asked (n_updates; the run stands at 30) -> kind
MATRIX = {
    ("finished", 20): "conflict", ("finished", 30): "done", ("finished", 45): "extend",
    ("interrupted", 20): "conflict", ("interrupted", 30): "resume", ("interrupted", 45): "resume",
    ("running", 20): "conflict", ("running", 30): "resume", ("running", 45): "resume",  # no lock held: killed
    ("diverged", 20): "done", ("diverged", 30): "done", ("diverged", 45): "done",
}


@pytest.mark.parametrize("status, budget", list(MATRIX), ids=[f"{s}-{b}" for s, b in MATRIX])
@pytest.mark.parametrize("settings", ["same", "changed"])
@pytest.mark.parametrize("text", ["same", "other", "not compared"])
def test_the_matrix(run, texts, status, budget, settings, text):
    """The same settings and text: the status and budget decide; changed settings or another text:
    a conflict whatever the status and budget (a diverged run too)."""
    with_status(run, status)
    cfg = base(texts[0], n_updates=budget, **({"m": 7} if settings == "changed" else {}))
    corpus = {"same": load_corpus(texts[0]), "other": load_corpus(texts[1]).sha256, "not compared": None}[text]
    said = verdict(run, cfg, corpus)
    expected = MATRIX[status, budget] if settings == "same" and text != "other" else "conflict"
    assert said.kind == expected, said.reason
    assert said.kind in VERDICTS and said.reason and str(run) in said.reason
    assert said.status == ("killed" if status == "running" else status)
    assert said.updates == 30


def test_a_budget_in_epochs_and_in_seconds(run, texts):
    """Epochs: 30 updates is inside the first epoch: 1 epoch extends, a run already past an epoch
    asked for fewer is a conflict. Seconds: a run finished by its time budget is done for that
    budget, extended when it is lifted."""
    assert verdict(run, base(texts[0], n_updates=None, n_epochs=1)).kind == "extend"
    assert verdict(run, base(texts[0], max_seconds=1e-9, n_updates=None, n_epochs=1)).kind == "done"
    out = run.parent / "epoch"
    train(base(texts[0], n_updates=None, n_epochs=1), out, progress=False)
    assert verdict(out, base(texts[0], n_updates=None, n_epochs=1)).kind == "done"
    assert verdict(out, base(texts[0], n_updates=None, n_epochs=2)).kind == "extend"
    assert verdict(out, base(texts[0], n_updates=50)).kind == "conflict"
    train(base(texts[0], n_updates=120), out, resume=True, progress=False)  # into the second epoch
    assert verdict(out, base(texts[0], n_updates=None, n_epochs=1)).kind == "conflict"


def test_no_run_a_run_in_use_another_format_and_malformed_files(run, texts, tmp_path):
    cfg = base(texts[0])
    assert verdict(tmp_path / "nowhere", cfg).kind == "new"
    (tmp_path / "empty").mkdir()
    assert verdict(tmp_path / "empty", cfg).kind == "new"
    with RunLock(run):
        assert verdict(run, cfg).kind == "conflict"
        assert verdict(run, cfg, check_lock=False).kind == "done"  # the caller holds the lock
    config = ckpt.read_json(run / "config.json")
    ckpt.write_json(run / "config.json", {**config, "format": RUN_FORMAT - 1})
    assert verdict(run, cfg).kind == "conflict"
    ckpt.write_json(run / "config.json", [])
    said = verdict(run, cfg)
    assert said.kind == "conflict" and "config.json" in said.reason
    ckpt.write_json(run / "config.json", config)
    (run / "summary.json").write_text('{"status": "finished", "updates": "many"}', encoding="utf-8")
    said = verdict(run, cfg)
    assert said.kind == "conflict" and "summary.json" in said.reason
    ckpt.write_json(run / "summary.json", {"status": "finished", "updates": 30})
    (run / ckpt.CHECKPOINT).write_bytes(b"not a checkpoint")
    said = verdict(run, cfg)
    assert said.kind == "conflict" and ckpt.CHECKPOINT in said.reason


def test_a_config_without_a_checkpoint_is_new_and_an_ngram_run_a_conflict(run, texts):
    cfg = base(texts[0])
    (run / ckpt.CHECKPOINT).unlink()
    assert verdict(run, cfg).kind == "new"  # killed before its first checkpoint: nothing to continue
    ckpt.write_json(run / "config.json", {"model": "ngram", "ngram_order": 5, "format": RUN_FORMAT})
    assert verdict(run, cfg).kind == "conflict"


# --- train, resume and the sweep act on the verdict ----------------------------------------------

def test_train_acts_on_the_verdict(run, texts):
    """new: only where the verdict says new; resume=True: conflict and a diverged run refused, a
    done run left untouched (its summary returned), extend and resume train to the budget."""
    before = (run / ckpt.CHECKPOINT).read_bytes()
    with pytest.raises(ValueError):  # RunDirError: it holds a run
        train(base(texts[0]), run, progress=False)
    with pytest.raises(ResumeError):
        train(base(texts[0], m=7), run, resume=True, progress=False)
    with pytest.raises(ResumeError):
        train(base(texts[1]), run, resume=True, progress=False)
    assert train(base(texts[0]), run, resume=True, progress=False)["updates"] == 30  # done
    assert (run / ckpt.CHECKPOINT).read_bytes() == before
    assert train(base(texts[0], n_updates=40), run, resume=True, progress=False)["updates"] == 40  # extend
    with_status(run, "diverged")
    with pytest.raises(ResumeError):
        train(base(texts[0], n_updates=50), run, resume=True, progress=False)


def test_the_sweep_acts_on_the_verdict(run, texts):
    """sweep.plan is the verdict, a conflict raised as one line; a done run is not trained again."""
    from a4lib import sweep
    from a4lib.rundir import RunDirError

    folder = run.parent
    assert sweep.plan(run, base(texts[0])).kind == "done"
    assert sweep.plan(run, base(texts[0], n_updates=40)).kind == "extend"
    with pytest.raises(RunDirError):
        sweep.plan(run, base(texts[0], n_updates=20))
    summaries = sweep.run_many({"run": base(texts[0])}, folder, workers=1)
    assert summaries["run"]["updates"] == 30 and json.loads((run / "summary.json").read_text())["updates"] == 30
