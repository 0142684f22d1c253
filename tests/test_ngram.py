"""The Kneser-Ney n-gram baseline: normalisation, a hand-computed example, an independent
dict-based implementation, the training split, the run directory and the command line."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from a4lib import checkpoint as ckpt
from a4lib.cli import main
from a4lib.corpus import load_corpus
from pathlib import Path

from a4lib.config import MAX_SAMPLE_LENGTH
from a4lib.ngram import MAX_ORDER, NGram, NGramError, fit_corpus, held_out_losses, is_ngram_run, kn_discounts, run
from a4lib.rundir import RunDirError, list_runs, load_run
from a4lib.train import split

from conftest import random_text


@pytest.fixture(scope="module")
def docs():
    return load_corpus("builtin:python-docs")


# --- the model ------------------------------------------------------------------------------------

def test_probabilities_sum_to_one_for_seen_and_unseen_contexts(docs):
    ids = docs.ids[:20_000]
    model = NGram.fit(ids, docs.K + 3, order=5)  # three characters the text never uses
    rng = np.random.default_rng(0)
    contexts = {"seen": docs.ids[500:510], "random": rng.integers(0, docs.K + 3, 10),
                "unseen characters": np.array([docs.K, docs.K + 1, docs.K + 2, docs.K]), "empty": ids[:0],
                "shorter than the order": ids[100:102]}
    for order in range(1, 6):
        for name, context in contexts.items():
            p = np.exp(model.log_probs(context, order))
            assert p.shape == (docs.K + 3,) and np.all(p > 0), (order, name)
            assert abs(p.sum() - 1) < 1e-12, (order, name, p.sum())


def test_char_losses_agree_with_log_probs(docs):
    ids = docs.ids[:30_000]
    model = NGram.fit(ids[:25_000], docs.K, order=4)
    for order in (1, 2, 4):
        losses = model.char_losses(ids, 24_990, 25_100, order)
        one_by_one = [-model.log_probs(ids[:t], order)[ids[t]] for t in range(24_990, 25_100)]
        np.testing.assert_allclose(losses, one_by_one, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.losses_by_order(ids, 0, 50)[1], model.char_losses(ids, 0, 50, 2), atol=0)


def test_discounts_from_count_of_counts():
    # n1 = 4, n2 = 2, n3 = 1, n4 = 1: Y = 4 / (4 + 2 * 2) = 0.5,
    # D1 = 1 - 2 * 0.5 * 2 / 4 = 0.5, D2 = 2 - 3 * 0.5 * 1 / 2 = 1.25, D3+ = 3 - 4 * 0.5 * 1 / 1 = 1
    np.testing.assert_allclose(kn_discounts(np.array([1, 1, 1, 1, 2, 2, 3, 4, 7])), [0, 0.5, 1.25, 1.0])
    # no n3: plain Kneser-Ney's D = n1 / (n1 + 2 n2) = 2 / (2 + 2) for all three
    np.testing.assert_allclose(kn_discounts(np.array([1, 1, 2, 4])), [0, 0.5, 0.5, 0.5])
    # no singletons: n1 / (n1 + 2 n2) = 0 would leave no mass for unseen characters; 0.5 instead
    np.testing.assert_allclose(kn_discounts(np.array([2, 2])), [0, 0.5, 0.5, 0.5])


def test_a_bigram_computed_by_hand():
    """The text "aaaaabbbbcccd" (K = 4: a b c d = 0 1 2 3), order 2.

    Bigram counts: aa 4, ab 1, bb 3, bc 1, cc 2, cd 1; n1 = 3, n2 = 1, n3 = 1, n4 = 1, so
    Y = 3 / 5 = 0.6, D1 = 1 - 2 * 0.6 * 1/3 = 0.6, D2 = 2 - 3 * 0.6 * 1/1 = 0.2, D3+ = 3 - 4 * 0.6 = 0.6.
    Unigram continuation counts (distinct left neighbours): a 1 (a), b 2 (a, b), c 2 (b, c), d 1 (c):
    n1 = 2, n2 = 2, n3 = 0, so plain KN: D = 2 / (2 + 4) = 1/3; total 6, gamma = 4 * 1/3;
    P1(a) = (1 - 1/3 + 4/3 * 1/4) / 6 = 1/6, P1(b) = (2 - 1/3 + 1/3) / 6 = 1/3, P1(c) = 1/3, P1(d) = 1/6.
    After b (bb 3, bc 1): total 4, gamma = D3+ + D1 = 1.2;
    P(b|b) = (3 - 0.6 + 1.2/3) / 4 = 0.7, P(c|b) = (1 - 0.6 + 1.2/3) / 4 = 0.2, P(a|b) = P(d|b) = 1.2/6 / 4 = 0.05.
    After c (cc 2, cd 1): total 3, gamma = D2 + D1 = 0.8; P(c|c) = (2 - 0.2 + 0.8/3) / 3,
    P(d|c) = (1 - 0.6 + 0.8/6) / 3.  After d (never followed in training): P1.
    The order-1 model uses raw unigram counts a 5, b 4, c 3, d 1: n1 = 1, n2 = 0: D = 1 / 1 = 1,
    total 13, gamma 4: P(a) = (4 + 1) / 13, P(b) = 4/13, P(c) = 3/13, P(d) = 1/13.
    """
    ids = np.array([0] * 5 + [1] * 4 + [2] * 3 + [3])
    model = NGram.fit(ids, K=4, order=2)
    np.testing.assert_allclose(model.levels[1].raw.discounts, [0, 0.6, 0.2, 0.6])
    np.testing.assert_allclose(model.levels[0].cont.discounts, [0, 1 / 3, 1 / 3, 1 / 3])
    p = lambda context, order=2: np.exp(model.log_probs(np.array(context), order))  # noqa: E731
    np.testing.assert_allclose(p([1]), [0.05, 0.7, 0.2, 0.05], atol=1e-12)
    np.testing.assert_allclose(p([2]), [0.8 / 6 / 3, 1 / 3 * 0.8 / 3, (1.8 + 0.8 / 3) / 3, (0.4 + 0.8 / 6) / 3],
                               atol=1e-12)
    np.testing.assert_allclose(p([3]), [1 / 6, 1 / 3, 1 / 3, 1 / 6], atol=1e-12)
    np.testing.assert_allclose(p([], 1), [5 / 13, 4 / 13, 3 / 13, 1 / 13], atol=1e-12)
    np.testing.assert_allclose(model.char_losses(ids, 9, 10), [-math.log(0.2)], atol=1e-12)  # c after b


def reference_losses(train: list[int], K: int, order: int, text: list[int], start: int, end: int) -> list[float]:
    """Interpolated modified Kneser-Ney written out with dicts, one character at a time (slow)."""
    raw = {k: Counter(tuple(train[t - k + 1:t + 1]) for t in range(k - 1, len(train))) for k in range(1, order + 1)}
    cont = {k: Counter(gram[1:] for gram in raw[k + 1]) for k in range(1, order)}

    def discounts(counts: Counter) -> list[float]:
        n = [sum(1 for c in counts.values() if c == j) for j in range(5)]
        if min(n[1:5]) > 0:
            y = n[1] / (n[1] + 2 * n[2])
            d = [1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3]]
            if all(0 < d[j] <= j + 1 for j in range(3)):
                return [0.0, *d]
        plain = n[1] / (n[1] + 2 * n[2]) if n[1] else 0.5
        return [0.0, plain, plain, plain]

    def by_context(counts: Counter) -> dict:
        table = defaultdict(dict)
        for gram, c in counts.items():
            table[gram[:-1]][gram[-1]] = c
        return table

    tables = {("raw", k): (by_context(raw[k]), discounts(raw[k])) for k in raw}
    tables.update({("cont", k): (by_context(cont[k]), discounts(cont[k])) for k in cont})

    def prob(w: int, history: list[int], k: int, top: int) -> float:
        if k == 0:
            return 1 / K
        lower = prob(w, history, k - 1, top)
        if len(history) < k - 1:
            return lower
        table, d = tables[("raw" if k == top else "cont", k)]
        following = table.get(tuple(history[len(history) - (k - 1):]) if k > 1 else (), {})
        total = sum(following.values())
        if total == 0:
            return lower
        gamma = sum(d[min(c, 3)] for c in following.values())
        c = following.get(w, 0)
        return (max(c - d[min(c, 3)], 0) + gamma * lower) / total

    return [-math.log(prob(text[t], text[max(0, t - order + 1):t], order, order)) for t in range(start, end)]


def test_agrees_with_a_dict_implementation(docs):
    text = docs.ids[:4000].tolist()
    model = NGram.fit(np.array(text[:3000]), docs.K, order=4)
    for order in range(1, 5):
        np.testing.assert_allclose(model.char_losses(np.array(text), 2990, 3400, order),
                                   reference_losses(text[:3000], docs.K, order, text, 2990, 3400), rtol=1e-12)
    np.testing.assert_allclose(model.char_losses(np.array(text), 0, 5, 4),  # contexts cut by the text's start
                               reference_losses(text[:3000], docs.K, 4, text, 0, 5), rtol=1e-12)


def test_held_out_loss_falls_from_order_1_to_3(docs):
    model, _, starts, ends = fit_corpus(docs, 3, 0.1)
    nats = held_out_losses(model, docs.ids, starts, ends)
    assert nats[0] > nats[1] > nats[2]
    # the mean over the characters train.evaluate predicts: start + 1 .. end - 1
    expect = model.char_losses(docs.ids, int(starts[0]) + 1, int(ends[0]), 2).mean()
    assert nats[1] == pytest.approx(expect, rel=1e-12)


def test_generation_is_seeded_and_temperature_0_is_the_likeliest(docs):
    model = NGram.fit(docs.ids[:20_000], docs.K, order=4)
    a = model.generate(200, np.random.default_rng(3), docs.ids[:5])
    assert len(a) == 200 and 0 <= a.min() and a.max() < docs.K
    np.testing.assert_array_equal(a, model.generate(200, np.random.default_rng(3), docs.ids[:5]))
    assert not np.array_equal(a, model.generate(200, np.random.default_rng(4), docs.ids[:5]))
    greedy = model.generate(3, np.random.default_rng(0), docs.ids[:5], temperature=0)
    assert greedy[0] == np.argmax(model.log_probs(docs.ids[:5]))
    assert greedy[1] == np.argmax(model.log_probs(np.append(docs.ids[:5], greedy[0])))


def test_bad_arguments_raise_one_kind_of_error(docs):
    with pytest.raises(NGramError):
        NGram.fit(docs.ids[:100], docs.K, order=0)
    with pytest.raises(NGramError):
        NGram.fit(docs.ids[:100], 3, order=2)  # indices above K
    model = NGram.fit(docs.ids[:100], docs.K, order=2)
    with pytest.raises(NGramError):
        model.log_probs(docs.ids[:3], order=3)
    with pytest.raises(NGramError):
        model.char_losses(docs.ids, 10, 5)


# --- the split, the run directory, the command line ------------------------------------------------

def test_trains_on_the_split_of_train(tmp_path, docs):
    tweets = tmp_path / "t.json"
    tweets.write_text(json.dumps([{"text": random_text(30 + k, seed=k)} for k in range(40)]), encoding="utf-8")
    for corpus in (docs, load_corpus(tweets)):
        model, n_train, starts, ends = fit_corpus(corpus, 2, 0.1)
        expect = split(corpus, 0.1)
        assert n_train == expect[0]
        np.testing.assert_array_equal(starts, expect[1])
        np.testing.assert_array_equal(ends, expect[2])
        assert model.levels[0].raw.total[0] == n_train  # every training character counted, no other
        assert model.levels[1].raw.total.sum() == n_train - 1
        per_segment = np.concatenate([model.char_losses(corpus.ids, s + 1, e, 2) for s, e in zip(starts, ends)])
        assert held_out_losses(model, corpus.ids, starts, ends)[1] == pytest.approx(per_segment.mean(), rel=1e-12)


def test_run_directory(tmp_path, small_text):
    corpus = load_corpus(small_text)
    out = tmp_path / "ng"
    summary, text = run(corpus, out, order=3, val_fraction=0.2, seed=1, sample_length=40)
    config = ckpt.read_json(out / "config.json")
    assert config["model"] == "ngram" and config["ngram_order"] == 3 and config["val_fraction"] == 0.2
    assert config["corpus_sha256"] == corpus.sha256 and config["K"] == corpus.K and "format" in config
    saved = ckpt.read_json(out / "summary.json")
    assert saved == summary and saved["status"] == "finished" and saved["model"] == "ngram"
    assert len(saved["val_loss_by_order"]) == 3 and saved["best_val_loss"] == saved["val_loss_by_order"][-1]
    np.testing.assert_allclose(np.array(saved["val_bits_by_order"]) * math.log(2), saved["val_loss_by_order"])
    assert saved["n_train_chars"] == split(corpus, 0.2)[0] and saved["corpus"]["sha256"] == corpus.sha256
    model, _, starts, ends = fit_corpus(corpus, 3, 0.2)
    np.testing.assert_allclose(saved["val_loss_by_order"], held_out_losses(model, corpus.ids, starts, ends))
    assert len(text) == 40 and load_run(out).samples[0]["text"] == text
    (row,) = list_runs(tmp_path)
    assert (row["model"], row["status"], row["best_val_loss"]) == ("ngram", "finished", saved["best_val_loss"])
    with pytest.raises(NGramError):
        run(corpus, out, order=3)  # never over a run


def test_cli(tmp_path, small_text, capsys):
    out = tmp_path / "ng"
    assert main(["ngram", "--corpus", str(small_text), "--order", "4", "--val-fraction", "0.2", "--out", str(out),
                 "--sample-length", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("order  nats/char  bits/char")
    rows = [line.split() for line in lines[header + 1:header + 5]]
    summary = ckpt.read_json(out / "summary.json")
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    np.testing.assert_allclose([float(r[1]) for r in rows], summary["val_loss_by_order"], atol=5e-5)
    assert main(["runs", str(tmp_path)]) == 0 and "ngram" in capsys.readouterr().out
    # generate refits the counts from the corpus: the same seed, the same text
    texts = []
    for _ in range(2):
        assert main(["generate", str(out), "--length", "50", "--seed", "7", "--prime", "ab"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].startswith("ab") and len(texts[0]) == 2 + 50 + 1
    small_text.write_text(random_text(300, seed=99), encoding="utf-8")  # another text at the same path
    assert main(["generate", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--order", "0"], ["--order", "x"], ["--val-fraction", "1.5"],
                                  ["--val-fraction", "0"], ["--sample-length", "-1"], ["--corpus", "/no/such/file"],
                                  ["--order", str(MAX_ORDER + 1)], ["--sample-length", str(MAX_SAMPLE_LENGTH + 1)],
                                  ["--val-fraction", "0.003"]])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, small_text, capsys, args):
    """Bad input (an order or sample length past its bound, a held-out part of 0 characters among
    them) is refused before the run directory is made."""
    code = main(["ngram", "--corpus", str(small_text), "--out", str(tmp_path / "ng"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "ng").exists()


def test_the_order_is_bounded_in_the_library_too(docs):
    with pytest.raises(NGramError):
        NGram.fit(docs.ids[:100], docs.K, order=MAX_ORDER + 1)
    assert NGram.fit(docs.ids[:100], docs.K, order=MAX_ORDER).order == MAX_ORDER


@pytest.fixture
def ngram_run(tmp_path, small_text) -> Path:
    out = tmp_path / "runs" / "ng"
    run(load_corpus(small_text), out, order=3, val_fraction=0.2, sample_length=10)
    return out


MALFORMED = [  # config.json of an n-gram run: its whole content, or changes to the run's own
    pytest.param([1], None, id="a list"),
    pytest.param({"model": "ngram"}, None, id="only the model"),
    pytest.param(None, {"ngram_order": "x"}, id="an order that is a string"),
    pytest.param(None, {"ngram_order": MAX_ORDER + 1}, id="an order past the bound"),
    pytest.param(None, {"corpus_sha256": None}, id="no sha256"),
    pytest.param(None, {"corpus_path": 5}, id="a corpus path that is a number"),
    pytest.param(None, {"val_fraction": "x"}, id="a val_fraction that is a string"),
]


@pytest.mark.parametrize("content, changes", MALFORMED)
def test_generate_from_an_n_gram_run_with_a_malformed_config_is_one_line(ngram_run, capsys, content, changes):
    """Was an AttributeError ([1]) or KeyError ('corpus') traceback: exit 2, one line naming
    config.json; `a4lib runs` lists the run as unreadable, naming the file."""
    if changes is not None:
        content = {**ckpt.read_json(ngram_run / "config.json"), **changes}
    (ngram_run / "config.json").write_text(json.dumps(content), encoding="utf-8")
    code = main(["generate", str(ngram_run), "--length", "10"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    line, = err.strip().splitlines()
    assert "Traceback" not in err
    if isinstance(content, dict):
        assert "config.json" in line
        (row,) = list_runs(ngram_run.parent)
        assert row["status"] == "unreadable" and "config.json" in row["problem"]


def test_is_ngram_run_only_for_an_object_saying_ngram(tmp_path):
    for content, said in (([1], False), ("ngram", False), ({"model": "rnn"}, False), ({"model": "ngram"}, True)):
        (tmp_path / "config.json").write_text(json.dumps(content), encoding="utf-8")
        assert is_ngram_run(tmp_path) is said
    (tmp_path / "config.json").write_text("{", encoding="utf-8")
    assert is_ngram_run(tmp_path) is False


def test_a_second_n_gram_run_into_a_folder_being_written_is_refused(tmp_path, small_text, monkeypatch):
    """The folder is locked before it is checked: another run started while this one fits is
    refused (was: both checked an empty folder and the second to finish overwrote the first)."""
    corpus = load_corpus(small_text)
    out = tmp_path / "ng"
    real_fit, other = NGram.fit, []

    def fit_while_another_run_starts(ids, K, order):
        if not other:
            try:
                other.append(run(corpus, out, order=2, val_fraction=0.2, seed=5))
            except RunDirError as err:
                other.append(err)
        return real_fit(ids, K, order)

    monkeypatch.setattr(NGram, "fit", staticmethod(fit_while_another_run_starts))
    run(corpus, out, order=3, val_fraction=0.2)
    assert isinstance(other[0], RunDirError)
    assert ckpt.read_json(out / "config.json")["ngram_order"] == 3


def test_out_of_memory_names_the_flag_of_the_command(tmp_path, small_text, monkeypatch, capsys):
    """Out of memory in `a4lib ngram`: exit 1, one line naming --order; the hint of every command
    names flags of that command only."""
    import re

    from a4lib import cli

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli.ngram, "run", out_of_memory)
    assert main(["ngram", "--corpus", str(small_text), "--out", str(tmp_path / "ng")]) == 1
    line, = capsys.readouterr().err.strip().splitlines()
    assert re.findall(r"--[a-z-]+", line) == ["--order"]
    parsers = cli.build_parser().commands
    for command, hint in cli.SMALLER.items():
        flags = {s for action in parsers[command]._actions for s in action.option_strings}
        assert set(re.findall(r"--[a-z-]+", hint)) <= flags, command
