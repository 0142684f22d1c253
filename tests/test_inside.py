"""Seeing inside the network (issue 16): the text features, the unit search, the gates, the
predictions and the error analysis against the n-gram on hand-made cases; the search finds a
quote-tracking unit in a small network trained on quoted spans; the notebook runs on tiny RNN, GRU
and LSTM runs of one and two layers and, given no run, reads the one the report reads."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from a4lib import Config, ngram, train
from a4lib.results import display, inside, inside_display
from a4lib.corpus import Corpus
from a4lib.model import Network
from a4lib.train import evaluate
from report import manifest, studies

def feature(text: str, name: str) -> list[float]:
    return inside.features(text)[name].tolist()


# --- features of the text ------------------------------------------------------------------------

def test_inside_quotes_straight_curly_and_reopened():
    text = 'say "hi yo" ok'
    assert feature(text, "inside quotes") == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert feature("a “b” c", "inside quotes") == [0, 0, 1, 1, 0, 0, 0]
    # a straight quote after a letter closes; after a space or a line break it opens
    assert feature('x"a', "inside quotes") == [0, 0, 0]
    assert feature('"a\n"b"', "inside quotes") == [1, 1, 1, 1, 1, 0]
    # a blank line closes a quote left open
    assert feature('"a\n\nb', "inside quotes") == [1, 1, 1, 0, 0]


def test_parentheses_lines_words_sentences():
    assert feature("a (b (c) d) e", "inside parentheses") == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert feature("a)b(", "inside parentheses") == [0, 0, 0, 1]  # an unmatched ) does not go below zero
    assert feature("ab\ncd", "position in line") == [1, 2, 0, 1, 2]
    assert feature("ab c'd", "position in word") == [1, 2, 0, 1, 0, 1]
    assert feature("ab c", "in a word") == [1, 1, 0, 1]
    assert feature(" Hi. Yo! x", "start of sentence") == [1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert feature("aB c\nD", "capital next") == [1, 0, 0, 0, 1, 0]
    assert feature("a b\n", "space next") == [1, 0, 0, 0]
    assert feature("a b\n", "newline next") == [0, 0, 1, 0]
    assert feature("GREMIO: Ab I", "in an upper-case word") == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_correlations_match_numpy_and_constant_columns_are_nan():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((200, 5))
    feats = np.column_stack([acts[:, 0] * 2 + 0.1 * rng.standard_normal(200), rng.integers(0, 2, 200), np.ones(200)])
    r = inside.correlations(acts, feats)
    assert r.shape == (5, 3)
    for i in range(5):
        for j in range(2):
            assert r[i, j] == pytest.approx(np.corrcoef(acts[:, i], feats[:, j])[0, 1], abs=1e-12)
    assert np.all(np.isnan(r[:, 2]))
    assert r[0, 0] > 0.99


def _reading(text: str, layers: list[dict[str, np.ndarray]], K: int = 3) -> inside.Reading:
    return inside.Reading(text, layers, np.full((len(text), K), 1.0 / K))


def test_search_ranks_units_and_counts_the_interpretable_share():
    text = 'Ab "cd ef." GH (ij) k\nlm "No" p.\n' * 8
    f = inside.features(text)
    rng = np.random.default_rng(1)
    T = len(text)
    h = 0.05 * rng.standard_normal((T, 4))
    h[:, 1] += 0.9 * f["inside quotes"]  # a quote unit
    h[:, 3] -= 0.02 * f["position in line"]  # a line counter, negative
    search = inside.search(_reading(text, [{"h": np.tanh(h)}]))
    best = {b.feature: b for b in search.best()}
    assert (best["inside quotes"].layer, best["inside quotes"].unit) == (1, 1) and best["inside quotes"].r > 0.95
    assert best["position in line"].unit == 3 and best["position in line"].r < -0.9
    assert best["position in line"].r == pytest.approx(np.corrcoef(np.tanh(h[:, 3]), f["position in line"])[0, 1])
    assert abs(search.best()[0].r) == max(abs(b.r) for b in search.best())
    assert search.absent == [] and set(search.present) == set(inside.FEATURES)
    # units 1 and 3 pass 0.5; units 0 and 2 are noise, unless noise happens to correlate with a feature
    noisy = sum(np.nanmax(np.abs(search.r[i])) > 0.5 for i in (0, 2))
    assert search.interpretable_share() == pytest.approx((2 + noisy) / 4)
    assert [(l, u) for l, u, _, _ in search.top_units(2)] in ([(1, 1), (1, 3)], [(1, 3), (1, 1)])
    assert best["inside quotes"].feature_mean == pytest.approx(f["inside quotes"].mean())


def test_a_constant_unit_correlates_with_nothing():
    text = "ab cd\nef. Gh\n" * 6
    T = len(text)
    h = np.column_stack([np.zeros(T), np.tanh(inside.features(text)["in a word"] - 0.5)])
    search = inside.search(_reading(text, [{"h": h}]))
    assert search.max_abs_r()[0] == 0 and search.max_abs_r()[1] == pytest.approx(1.0)
    assert [(l, u) for l, u, _, _ in search.top_units(2)] == [(1, 1)]
    assert search.interpretable_share() == 0.5


def test_search_leaves_absent_features_out_and_reads_one_layer():
    text = "abc def\nghi jk.\n" * 5
    T = len(text)
    rng = np.random.default_rng(2)
    layers = [{"h": np.tanh(rng.standard_normal((T, 3)))}, {"h": np.tanh(rng.standard_normal((T, 2)))}]
    search = inside.search(_reading(text, layers), layer=2)
    assert search.units == [(2, 0), (2, 1)]
    assert {"inside quotes", "inside parentheses"} <= set(search.absent)
    assert all(b.feature not in search.absent for b in search.best())
    assert inside.search(_reading(text, layers)).units == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]


def test_cell_state_is_shown_as_tanh_and_gates_over_zero_one():
    c = np.array([[-3.0], [0.0], [2.0]])
    reading = _reading("abc", [{"h": np.zeros((3, 1)), "c": c, "f": np.full((3, 1), 0.5)}])
    assert inside.activation(reading, "c", 1)[:, 0].tolist() == pytest.approx(np.tanh(c[:, 0]).tolist())
    assert inside.value_range("f") == (0.0, 1.0) and inside.value_range("h") == (-1.0, 1.0)
    with pytest.raises(inside.InsideError, match="layer"):
        inside.activation(reading, "h", 2)


# --- gates and predictions -------------------------------------------------------------------------

def test_saturation_fractions_per_gate_and_unit():
    T = 10
    f = np.column_stack([np.full(T, 0.95), np.r_[np.full(3, 0.05), np.full(7, 0.5)]])
    i = np.column_stack([np.r_[np.full(5, 0.01), np.full(5, 0.99)], np.full(T, 0.5)])
    layer = {"h": np.zeros((T, 2)), "i": i, "f": f, "o": np.full((T, 2), 0.5), "g": np.zeros((T, 2)),
             "c": np.zeros((T, 2))}
    gates = inside.saturation(_reading("x" * T, [layer, layer]), "lstm")
    assert [(g.layer, g.gate) for g in gates] == [(1, "i"), (1, "f"), (1, "o"), (2, "i"), (2, "f"), (2, "o")]
    forget = gates[1]
    assert forget.right.tolist() == [1.0, 0.0] and forget.left.tolist() == [0.0, 0.3]
    assert gates[0].left.tolist() == [0.5, 0.0] and gates[0].right.tolist() == [0.5, 0.0]
    assert forget.n_mostly("right") == 1 and forget.n_mostly("left") == 0
    assert gates[2].n_never == 2 and forget.n_never == 0
    assert inside.saturation(_reading("x" * T, [{"h": np.zeros((T, 2))}]), "rnn") == []
    gru = {"h": np.zeros((T, 1)), "z": np.full((T, 1), 0.95), "r": np.full((T, 1), 0.05), "n": np.zeros((T, 1))}
    assert [g.gate for g in inside.saturation(_reading("x" * T, [gru]), "gru")] == ["z", "r"]
    fig = inside_display.saturation_figure(gates)
    assert len(fig.axes) == 3 and sum(len(c.get_offsets()) for c in fig.axes[1].collections) == 4


def test_top_predictions_are_the_likeliest_in_order():
    p = np.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0], [0.3, 0.1, 0.1, 0.1, 0.2, 0.2]])
    ids, probs = inside.top_predictions(p, 5)
    assert ids[0].tolist() == [1, 2, 3, 0, 4]
    assert ids[1, 0] == 0 and set(ids[1, 1:3].tolist()) == {4, 5}
    assert probs.tolist() == np.take_along_axis(p, ids, axis=1).tolist()
    assert inside.top_predictions(p[:, :3], 5)[0].shape == (2, 3)


# --- reading a text with a network -----------------------------------------------------------------

def _model(cell: str, layers: int, K: int = 6, m: int = 5, seed: int = 0, tweets: bool = False) -> inside.RunModel:
    net = Network(cell, K, m, layers)
    rng = np.random.default_rng(seed)
    params = net.init_params(rng, sig=0.5)
    chars = list("abcde\x03" if tweets else "abcde\n")
    vocab = Corpus.from_vocabulary(chars, "test", is_tweets=tweets)
    state = 0.3 * rng.standard_normal(layers * net.S)
    return inside.RunModel(Path("run"), net, params, vocab, {"config": {"val_fraction": 0.2}}, state)


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("gru", 2), ("lstm", 2)])
def test_reading_in_chunks_carries_the_state(cell, layers):
    model = _model(cell, layers)
    text = "abcab\nedcba\nabc" * 3
    whole = model.network.trace(model.params, model.vocab.encode(text), model.state)
    chunked = inside.read(model, text, chunk=7)
    assert chunked.names()[0] == "h" and len(chunked) == len(text)
    for l in range(layers):
        for name, values in whole["layers"][l].items():
            np.testing.assert_allclose(chunked.layers[l][name], values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(chunked.p, whole["p"], rtol=1e-12, atol=1e-14)
    part = chunked.window(3, 9)
    assert part.text == text[3:9] and part.p.shape == (6, model.vocab.K)


def test_network_losses_are_the_evaluation_s_per_character():
    model = _model("lstm", 2)
    ids = model.vocab.encode("abcab\nedcba\nabcdd\neab" * 4)
    s, e = 5, len(ids)
    losses = inside.network_losses(model, ids, s, e)
    assert losses.shape == (e - s - 1,)
    mean = evaluate(model.network, model.params, ids, np.array([s]), np.array([e]), state0=model.state)
    assert losses.mean() == pytest.approx(mean, rel=1e-10)


def test_a_text_with_unknown_characters_is_one_error():
    model = _model("rnn", 1)
    with pytest.raises(inside.InsideError, match="'xz'"):  # the characters it never saw
        inside.read(model, "abxz")
    with pytest.raises(inside.InsideError, match="layer = 3"):
        inside.check_settings(model, 3, "h")
    with pytest.raises(inside.InsideError, match="activation = 'c'"):
        inside.check_settings(model, 1, "c")
    assert inside.units_searched(model, None) == "h" and inside.units_searched(_model("lstm", 1), None) == "c"
    with pytest.raises(inside.InsideError, match="passage_length = 0"):
        inside.check_settings(model, None, "h", passage_length=0, analysis_chars=None)


# --- error analysis against the n-gram ---------------------------------------------------------

def test_char_classes_partition_the_characters():
    text = 'He said "no, Bo".\n x3'
    names = [inside.CLASSES[i] for i in inside.char_classes(text)]
    assert names == ["capital", "inside word", "space", "word start", "inside word", "inside word", "inside word",
                     "space", "quote mark", "word start", "inside word", "punctuation", "space", "capital",
                     "inside word", "quote mark", "punctuation", "newline", "space", "word start", "other"]


def _losses(text: str, net, ng, order: int = 3) -> inside.HeldOutLosses:
    return inside.HeldOutLosses(0, text, np.asarray(net, float), np.asarray(ng, float), order)


def test_class_losses_on_a_tiny_case_add_up():
    text = "Ab c."  # capital, inside word, space, word start, punctuation
    nan = math.nan
    losses = _losses(text, [nan, 1.0, 0.5, 2.0, 3.0], [nan, 2.0, 0.5, 1.0, 4.0])
    result = inside.class_losses(losses)
    rows = {r.name: r for r in result.rows}
    assert rows["capital"].count == 0 and rows["capital"].net is None  # not predicted: NaN
    assert rows["inside word"].count == 1 and rows["inside word"].advantage == pytest.approx(1.0)
    assert rows["word start"].advantage == pytest.approx(-1.0)
    assert rows["space"].advantage == 0 and rows["punctuation"].share == pytest.approx(0.25)
    assert (result.net, result.ngram) == (pytest.approx(6.5 / 4), pytest.approx(7.5 / 4))
    assert result.advantage == pytest.approx(0.25)
    assert sum(r.contribution for r in result.rows) == pytest.approx(result.advantage)
    assert [r.name for r in result.ranked()][:2] == ["inside word", "punctuation"]
    assert result.ranked()[-1].name == "word start"
    assert result.part("inside word") == pytest.approx(0.25 / 0.25)
    assert result.part("word start") == pytest.approx(-1.0)


def test_dependency_events_and_distances():
    pos, dist = inside.dependency_events('a "bc" d "e\n"f" g', "quote")
    assert pos.tolist() == [5, 14] and dist.tolist() == [3, 2]  # the second quote reopened after the line break
    pos, dist = inside.dependency_events("(a (bc) d)", "parenthesis")
    assert pos.tolist() == [6, 9] and dist.tolist() == [3, 9]
    pos, dist = inside.dependency_events("ab\ncde\n\nf\n", "line")
    assert pos.tolist() == [6, 7, 9] and dist.tolist() == [4, 1, 2]
    with pytest.raises(inside.InsideError, match="'bracket'"):
        inside.dependency_events("a", "bracket")


def test_closing_losses_by_distance_and_reach():
    text = "(" + "a" * 2 + ")" + "(" + "a" * 9 + ")" + "(" + "a" * 20 + ")"
    net = np.full(len(text), 1.0)
    ng = np.full(len(text), 1.0)
    closes = [i for i, ch in enumerate(text) if ch == ")"]
    net[closes] = [0.5, 0.2, 0.1]
    ng[closes] = [0.4, 2.0, 3.0]
    net[0] = ng[0] = math.nan
    losses = _losses(text, net, ng, order=5)
    bins = inside.by_distance(losses, "parenthesis")
    assert [(b.lo, b.count) for b in bins] == [(1, 1), (8, 1), (16, 1)]
    assert (bins[1].net, bins[1].ngram) == (0.2, 2.0)
    split = inside.reach(losses, "parenthesis")
    assert (split.near.count, split.far.count) == (1, 2)
    assert split.far.net == pytest.approx(0.15) and split.far.edge == pytest.approx(2.35)
    assert split.near.edge_se is None and split.far_edge_larger() is None
    assert inside.longest_dependency(losses, min_events=2) == "parenthesis"
    assert inside.longest_dependency(losses, min_events=3) is None


def test_far_edge_is_larger_only_beyond_two_standard_errors():
    near = inside.Closings(100, 1.0, 1.5, 0.5, 0.05)
    assert inside.Reach("line", 8, near, inside.Closings(100, 1.0, 1.8, 0.8, 0.05)).far_edge_larger()
    assert not inside.Reach("line", 8, near, inside.Closings(100, 1.0, 1.6, 0.6, 0.05)).far_edge_larger()


# --- display ---------------------------------------------------------------------------------------

def test_colours_and_spans():
    assert inside_display.colour(-1) == inside_display.DIVERGING[0]
    assert inside_display.colour(5) == inside_display.DIVERGING[-1]  # clipped
    assert inside_display.colour(0) == inside_display.DIVERGING[2]
    assert inside_display.colour(0.5, 0, 1) == inside_display.DIVERGING[2]
    html = inside_display.coloured_spans("a<\nb", [-1, 0, 0.3, 1])
    spans = re.findall(r'<span style="background:(#[0-9a-f]{6})[^"]*" title="([-0-9.]+)">(.*?)</span>', html)
    assert [s[2] for s in spans] == ["a", "&lt;", "↵", "b"] and "↵</span>\n" in html
    assert [s[0] for s in spans] == [inside_display.colour(v) for v in (-1, 0, 0.3, 1)]
    assert [float(s[1]) for s in spans] == [-1.0, 0.0, 0.3, 1.0]
    with pytest.raises(ValueError):
        inside_display.coloured_spans("ab", [0.0])


def test_predictions_frame_the_character_that_came_next():
    chars = list("ab \n")
    out = inside_display.predictions("ab", np.array([[1, 0], [2, 3]]), np.array([[0.9, 0.1], [0.6, 0.4]]), chars).data
    assert out.count("outline:1px solid") == 1  # after "a" came "b", the likeliest
    assert "\u2423" in out and "↵" in out


# --- the unit search on a network trained to track a state ---------------------------------------

def quoted_spans(n: int, seed: int) -> str:
    """Spans of random letters and spaces, quoted and unquoted in turn: inside quotes only a and b,
    outside also c and d, so that only a network that knows whether a quote is open can tell
    whether a c or a d may come."""
    rng = np.random.default_rng(seed)
    parts, quoted, total = [], False, 0
    while total < n:
        span = "".join(rng.choice(list("ab " if quoted else "abcd "), int(rng.integers(4, 16)))).strip() or "a"
        span = span + '" ' if quoted else span + ' "'
        parts.append(span)
        total += len(span)
        quoted = not quoted
    return "".join(parts)[:n]


@pytest.fixture(scope="module")
def quote_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("quotes")
    path = d / "quotes.txt"
    path.write_text(quoted_spans(20000, seed=0), encoding="utf-8")

    def run(updates: int) -> Path:
        cfg = Config(corpus=str(path), model="lstm", m=16, seq_length=25, batch_size=8, optimizer="adam", eta=0.01,
                     n_updates=updates, n_epochs=None, sample_every=0, checkpoint_every=100_000, backend="numpy",
                     val_fraction=0.1, val_every=updates)
        train(cfg, d / f"lstm{updates}", progress=False)
        return d / f"lstm{updates}"

    return run


def test_the_search_finds_a_quote_unit_in_a_trained_network(quote_runs):
    """After 1000 updates (about a second) a unit follows the quotes with |r| > 0.8 on unseen spans;
    before training none comes near that, so the search finds what training put there."""
    text = quoted_spans(3000, seed=99)
    found = {}
    for updates in (1, 1000):
        model = inside.load_model(quote_runs(updates))
        search = inside.search(inside.read(model, text))
        found[updates] = {b.feature: b for b in search.best()}["inside quotes"]
    assert abs(found[1000].r) > 0.8, found[1000]
    assert abs(found[1].r) < 0.6, found[1]


# --- with a run and an n-gram ----------------------------------------------------------------------

def prose(n: int, seed: int = 0) -> str:
    """Lines of made-up sentences with quotes and parentheses."""
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "said", "no", "yes", "Tom", "ran"]
    out, line = [], []
    while sum(map(len, out)) < n:
        w = str(rng.choice(words))
        r = rng.random()
        w = f'"{w}' if r < 0.06 else f"{w}\"" if r < 0.12 else f"({w})" if r < 0.16 else w + "." if r < 0.25 else w
        line.append(w)
        if sum(len(x) + 1 for x in line) > 40:
            out.append(" ".join(line) + "\n")
            line = []
    return "".join(out)[:n]


@pytest.fixture(scope="module")
def prose_runs(tmp_path_factory):
    """Tiny trained runs on made-up prose: model -> run directory."""
    d = tmp_path_factory.mktemp("prose")
    path = d / "prose.txt"
    path.write_text(prose(6000), encoding="utf-8")
    runs = {}
    for cell, layers in (("rnn", 1), ("gru", 2), ("lstm", 1)):
        cfg = Config(corpus=str(path), model=cell, layers=layers, m=12, seq_length=20, batch_size=4, optimizer="adam",
                     eta=0.01, n_updates=150, n_epochs=None, sample_every=0, checkpoint_every=100_000,
                     backend="numpy", val_fraction=0.2, val_every=50)
        train(cfg, d / f"{cell}{layers}", progress=False)
        runs[f"{cell}{layers}"] = d / f"{cell}{layers}"
    return runs


def test_held_out_losses_are_both_models_on_the_run_s_split(prose_runs):
    model = inside.load_model(prose_runs["lstm1"])
    book = inside.run_corpus(model)
    (s, e), = inside.held_out_segments(book, 0.2)
    assert e == len(book.ids) and s == len(book.ids) - int(0.2 * len(book.ids))
    counts = inside.ngram_model(book, 0.2, order=4)
    losses = inside.held_out_losses(model, book, counts)
    assert losses.start == s and losses.n == e - s - 1 and math.isnan(losses.net[0])
    net, ng = losses.means()
    assert ng == pytest.approx(ngram.held_out_losses(counts, book.ids, np.array([s]), np.array([e]))[-1])
    assert net == pytest.approx(inside.network_losses(model, book.ids, s, e).mean())
    short = inside.held_out_losses(model, book, counts, max_chars=100)
    assert short.n == 100 and np.allclose(short.net[1:], losses.net[1:101])
    assert inside.class_losses(losses).net == pytest.approx(net)


def test_an_ngram_run_must_share_the_text_and_split(prose_runs, tmp_path):
    model = inside.load_model(prose_runs["rnn1"])
    book = inside.run_corpus(model)
    ngram.run(book, tmp_path / "ng", order=3, val_fraction=0.2)
    assert inside.ngram_model(book, 0.2, tmp_path / "ng").order == 3
    ngram.run(book, tmp_path / "ng2", order=3, val_fraction=0.1)
    with pytest.raises(inside.InsideError) as err:  # it names the run and both held-out shares
        inside.ngram_model(book, 0.2, tmp_path / "ng2")
    assert str(tmp_path / "ng2") in str(err.value) and {"0.1", "0.2"} <= set(re.findall(r"\d\.\d+", str(err.value)))
    with pytest.raises(inside.InsideError, match=re.escape(str(prose_runs["rnn1"]))):
        inside.ngram_model(book, 0.2, prose_runs["rnn1"])


def test_the_run_s_text_must_be_the_one_it_trained_on(prose_runs, tmp_path):
    model = inside.load_model(prose_runs["gru2"])
    other = tmp_path / "other.txt"
    other.write_text(prose(6000, seed=5), encoding="utf-8")
    with pytest.raises(inside.InsideError, match="other.txt"):
        inside.run_corpus(model, other)
    with pytest.raises(inside.InsideError, match="missing.txt"):
        inside.run_corpus(model, tmp_path / "missing.txt")
    with pytest.raises(inside.InsideError, match="no checkpoint.npz"):
        inside.load_model(tmp_path)


# --- the notebook ----------------------------------------------------------------------------------

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")

from test_notebooks import NOTEBOOKS, outputs_text, papermill, run_papermill  # noqa: E402


def html_outputs(nb) -> str:
    return "\n".join(o.data["text/html"] for c in nb.cells for o in c.get("outputs", [])
                     if "text/html" in o.get("data", {}))


def cell_text(nb, cell_id: str) -> str:
    """The Markdown and plain-text outputs of one cell (by its id)."""
    cell, = [c for c in nb.cells if c.get("id") == cell_id]
    return outputs_text(nbformat.v4.new_notebook(cells=[cell]))


def numbers(text: str) -> list[float]:
    """The numbers in a text (1,234 read as 1234)."""
    return [float(x.replace(",", "")) for x in re.findall(r"[-+]?\d[\d,]*(?:\.\d+)?", text)]


GIVEN = 'the cat said "no" (yes).\nTom ran.\n'


@pytest.mark.parametrize("name,layer,activation,given", [
    ("rnn1", None, None, None),
    ("gru2", 2, "h", None),
    ("lstm1", None, None, GIVEN),  # an LSTM's cell states by default
])
def test_the_notebook_runs_on_any_run(prose_runs, tmp_path, name, layer, activation, given):
    run = prose_runs[name]
    args = (["-p", "activation", activation] if activation else []) + (["-p", "layer", str(layer)] if layer else []) \
        + (["-p", "text", given] if given else [])
    nb = papermill("inside.ipynb", tmp_path / "out.ipynb", "-p", "run_dir", str(run), "-p", "passage_length", "120",
                   "-p", "predictions_length", "40", "-p", "ngram_order", "4", *args)
    text, shown = outputs_text(nb), html_outputs(nb)
    model = inside.load_model(run)
    book = inside.run_corpus(model)
    # the error analysis shows the numbers the library computes
    losses = inside.held_out_losses(model, book, inside.ngram_model(book, 0.2, order=4))
    result = inside.class_losses(losses)
    assert f"| all | {losses.n:,} | 1.000 | {result.net:.3f} | {result.ngram:.3f} |" in text
    # the share of interpretable units the library finds, as a count and a percentage
    study, _ = inside.study_text(model, book, given, 20000)
    searched = "c" if name == "lstm1" else "h"
    reading = inside.read(model, study)
    search = inside.search(reading, searched, layer)
    share = search.interpretable_share()
    said = cell_text(nb, "inside-09")
    assert float(re.findall(r"(\d+(?:\.\d+)?) %", said)[0]) == pytest.approx(100 * share, abs=0.05)
    assert {len(search.units), round(share * len(search.units)), search.n} <= set(numbers(said))
    # the coloured passages: the top units, then the best unit of each feature, each character's value
    # (its title) the unit's activation after reading it
    passage = reading.window(0, 120)
    shown_units = [(l, u) for l, u, _, _ in search.top_units(4)] + [(b.layer, b.unit) for b in search.best()]
    values = np.concatenate([inside.activation(passage, searched, l)[:, u] for l, u in shown_units])
    titles = re.findall(r'<span style="background:#[0-9a-f]{6}[^"]*" title="([-0-9.]+)">', shown)
    assert [float(t) for t in titles] == pytest.approx(values.tolist(), abs=0.0051)  # shown to 2 decimals
    # the gates' figure for the gated cells, the closing-distance figure where a dependency has one
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images == (name != "rnn1") + (inside.longest_dependency(losses) is not None)


def test_a_bad_parameter_stops_the_notebook_with_one_line(prose_runs, tmp_path):
    r = run_papermill(NOTEBOOKS / "inside.ipynb", tmp_path / "bad.ipynb", "-p", "run_dir", str(prose_runs["rnn1"]),
                      "-p", "layer", "2")
    assert r.returncode != 0
    errors = [o for c in nbformat.read(tmp_path / "bad.ipynb", as_version=4).cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert [e.ename for e in errors] == ["InsideError"]
    error = errors[0]
    assert len(error.traceback) == 1 and "\n" not in error.evalue, error.traceback  # one line, no traceback
    assert re.search(r"\blayer\b", error.evalue) and 2 in numbers(error.evalue), error.evalue  # the bad value
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert last.split(":")[0] == "InsideError", last  # papermill ends with the same line


# --- the notebook's default: the run the report reads ----------------------------------------------

def _study_run(run: Path) -> studies.StudyRun:
    config = Config.from_dict(json.loads((run / "config.json").read_text()))
    return studies.StudyRun("models", run.name, run.name, run, config)


def _write_build(folder: Path, quick: bool, seeds: dict[int, Path], plan: studies.Plan | None) -> manifest.Manifest:
    """A build's manifest as ``report.build`` writes it, naming runs trained here."""
    m = manifest.Manifest(build=folder, quick=quick, made=manifest.now(), command="make report", seeds=seeds,
                          gradcheck=folder / "gradcheck.json", bench=folder / "bench.json", figures=folder / "figures",
                          seed=0, passage_length=200, samples_until=None, workers=2, scheduler=None, plan=plan,
                          scaling=None)
    m.save()
    return m


def _best_val_loss(run: Path) -> float:
    return json.loads((run / "summary.json").read_text())["best_val_loss"]


@pytest.fixture
def kernel_latest(tmp_path, monkeypatch):
    """Point ``report.manifest.latest`` in the notebooks' kernel at a build folder (an IPython startup
    file of a profile of its own), so that a notebook's default opens it and not this checkout's."""
    def point(build: Path) -> None:
        startup = tmp_path / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "latest.py").write_text(
            "def _point():\n    from report import manifest\n\n"
            f"    manifest.latest = lambda root=None: manifest.load({str(build)!r})\n\n\n_point()\ndel _point\n")
        monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    return point


def test_by_default_the_notebook_reads_the_model_study_s_best_network(prose_runs, tmp_path, kernel_latest):
    """No run_dir, no build_dir: the newer build's (``manifest.latest``) model-study network with the
    lowest held-out loss, compared with the study's n-gram (of order 3 here, not the default 8)."""
    networks = [prose_runs["rnn1"], prose_runs["lstm1"]]
    book = inside.run_corpus(inside.load_model(networks[0]))
    ngram.run(book, tmp_path / "ngram", order=3, val_fraction=0.2)
    plan = studies.Plan(sections=("models",), corpus=book.name, tweets=None, seed=0, budget=studies.QUICK,
                        val_fraction=0.2, ngram=studies.NGramRun(tmp_path / "ngram", book.name, 3, 0.2),
                        runs=tuple(_study_run(r) for r in networks))
    build = _write_build(tmp_path / "build", True, {0: prose_runs["gru2"]}, plan)
    kernel_latest(build.build)
    nb = papermill("inside.ipynb", tmp_path / "out.ipynb", "-p", "passage_length", "60", "-p", "predictions_length",
                   "20")
    best, other = sorted(networks, key=_best_val_loss)
    assert _best_val_loss(best) < _best_val_loss(other)
    text = outputs_text(nb)
    for run, read in ((best, True), (other, False)):
        model = inside.load_model(run)
        losses = inside.held_out_losses(model, book, inside.ngram_model(book, 0.2, tmp_path / "ngram"))
        result = inside.class_losses(losses)
        assert (f"| all | {losses.n:,} | 1.000 | {result.net:.3f} | {result.ngram:.3f} |" in text) == read
    assert "3-gram" in text and "8-gram" not in text
    note = cell_text(nb, "inside-build")  # which build: its kind, when it was made and its folder
    assert build.kind in note and build.made in note and display.path(build.build) in note


def test_without_a_model_study_the_notebook_reads_the_build_s_main_run(prose_runs, tmp_path):
    seeds = {0: prose_runs["rnn1"], 1: prose_runs["gru2"]}
    build = _write_build(tmp_path / "build", False, seeds, None)
    nb = papermill("inside.ipynb", tmp_path / "out.ipynb", "-p", "build_dir", str(build.build), "-p",
                   "passage_length", "60", "-p", "predictions_length", "20", "-p", "ngram_order", "4")
    main = build.main_run()
    text = cell_text(nb, "inside-04")  # the run read
    assert [display.code(d.name) in text for d in seeds.values()] == [d == main for d in seeds.values()]
    note = cell_text(nb, "inside-build")
    assert build.kind in note and build.made in note and display.path(build.build) in note
