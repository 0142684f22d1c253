"""`make best` (report/best.py): the headline run beside the n-gram, resumed and kept as it should be."""
from __future__ import annotations

import json

import pytest

from report import best


@pytest.fixture
def text(tmp_path):
    words = "the cat sat on the mat and the dog ran to the cat while it sat".split()
    path = tmp_path / "text.txt"
    path.write_text(" ".join(words[i % len(words)] for i in range(6000)), encoding="utf-8")
    return path


def test_best_trains_the_headline_and_the_ngram_on_the_same_split(tmp_path, text, monkeypatch, capsys):
    monkeypatch.setattr(best, "HEADLINE", best.HEADLINE.replace(m=8, batch_size=2, seq_length=10, val_every=20,
                                                                n_epochs=1, max_seconds=30.0))
    out = tmp_path / "best"
    assert best.main(["--corpus", str(text), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    grams = json.loads((best.ngram_dir(out) / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert summary["status"] == "finished" and summary["best_val_loss"] > 0
    assert config["model"] == best.HEADLINE.model and config["val_fraction"] == best.HEADLINE.val_fraction
    assert grams["n_train_chars"] == summary["n_train_chars"]  # the same split
    printed = capsys.readouterr().out
    assert f"{summary['best_val_loss']:.3f}" in printed and f"{grams['best_val_loss']:.3f}" in printed
    # a second call keeps the finished run as it is
    mtime = (out / "checkpoint.npz").stat().st_mtime_ns
    assert best.main(["--corpus", str(text), "--out", str(out)]) == 0
    assert (out / "checkpoint.npz").stat().st_mtime_ns == mtime


def test_best_refuses_a_missing_corpus_in_one_line(tmp_path, capsys):
    assert best.main(["--corpus", str(tmp_path / "nothing.txt"), "--out", str(tmp_path / "b")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_report_shows_the_headline_run_only_on_its_own_text(tmp_path, text, monkeypatch):
    from a4lib.results import analysis

    monkeypatch.setattr(best, "HEADLINE", best.HEADLINE.replace(m=8, batch_size=2, seq_length=10, val_every=20,
                                                                n_epochs=1, max_seconds=30.0))
    out = tmp_path / "best"
    assert analysis.headline(out, best.ngram_dir(out), "any") is None  # nothing trained yet
    assert best.main(["--corpus", str(text), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    grams = json.loads((best.ngram_dir(out) / "summary.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    shown = analysis.headline(out, best.ngram_dir(out), config["corpus_sha256"])
    assert shown.run.best == summary["best_val_loss"]
    assert shown.ngram_loss == grams["val_loss_by_order"][-1]
    assert shown.gap == shown.run.best - shown.ngram_loss
    assert analysis.headline(out, best.ngram_dir(out), "another text") is None


def test_the_ngram_is_counted_again_for_another_text(tmp_path, text, monkeypatch):
    monkeypatch.setattr(best, "HEADLINE", best.HEADLINE.replace(m=8, batch_size=2, seq_length=10, val_every=20,
                                                                n_epochs=1, max_seconds=30.0))
    out = tmp_path / "best"
    assert best.main(["--corpus", str(text), "--out", str(out)]) == 0
    other = tmp_path / "other.txt"
    other.write_text("a different text with other words in it. " * 200, encoding="utf-8")
    import shutil
    shutil.rmtree(out)  # the run is trained anew on the other text; the n-gram must follow it
    assert best.main(["--corpus", str(other), "--out", str(out)]) == 0
    grams = json.loads((best.ngram_dir(out) / "config.json").read_text())
    assert grams["corpus_sha256"] == json.loads((out / "config.json").read_text())["corpus_sha256"]
