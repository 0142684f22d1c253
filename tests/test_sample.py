"""a4lib.sample: the handout's inverse-CDF draw, temperature, nucleus (top-p), seeds, priming, tweets."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import CELLS, own_cell_step

from a4lib import CorpusError, EOT, generate, load_corpus
from a4lib.model import Network
from a4lib.sample import draw, next_index, nucleus, primer, softmax, synthesize


class FixedUniform:
    """An rng whose random() returns given numbers in turn."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def own_rollout(params, h, x, n, pick):
    """Synthesis written out here: h = tanh(W h + U[:, x] + b), o = V h + c, x = pick(o)."""
    out = []
    for _ in range(n):
        h = np.tanh(params["W"] @ h + params["U"][:, x] + params["b"])
        x = pick(params["V"] @ h + params["c"])
        out.append(x)
    return out


def model_for(corpus, m=12, sig=1.0, seed=0):
    """Random parameters of the handout's RNN with large weights: varied, confident outputs."""
    return Network("rnn", corpus.K, m).init_params(np.random.default_rng(seed), sig)


def net(params) -> Network:
    """The one-layer RNN the parameters belong to."""
    return Network("rnn", params["V"].shape[0], params["W"].shape[1])


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("the cat sat on the mat; a dog ate the hat.", encoding="utf-8")
    return load_corpus(path, 5)


# --- draw, softmax, nucleus -----------------------------------------------------------------------

@pytest.mark.parametrize("a, expected", [(0.0, 0), (0.2499, 0), (0.25, 1), (0.4999, 1), (0.5, 2), (0.9999, 2)])
def test_draw_is_first_index_with_cumulative_above_a(a, expected):
    """draw: cp = cumsum(p), the first index whose cp exceeds the uniform number a (strictly)."""
    assert draw(np.array([0.25, 0.25, 0.5]), FixedUniform(a)) == expected


def test_draw_never_picks_zero_probability():
    """Indices with probability 0 are never drawn, at a = 0 or elsewhere."""
    p = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
    for a in (0.0, 0.3, 0.5, 0.999999):
        assert draw(p, FixedUniform(a)) in (1, 3)


def test_draw_frequencies_match_p():
    """100,000 draws: every empirical frequency within 5 binomial standard deviations of p."""
    p = np.array([0.05, 0.4, 0.0, 0.25, 0.01, 0.29])
    n = 100_000
    rng = np.random.default_rng(11)
    counts = np.bincount([draw(p, rng) for _ in range(n)], minlength=len(p))
    freq = counts / n
    std = np.sqrt(p * (1 - p) / n)
    assert counts[2] == 0
    assert np.all(np.abs(freq - p) <= 5 * std + 1e-12), (freq, p)
    chi2 = float(np.sum((counts[p > 0] - n * p[p > 0]) ** 2 / (n * p[p > 0])))
    assert chi2 < 25.7  # chi-square, 4 degrees of freedom: P(chi2 > 25.7) ~ 4e-5


def test_softmax_temperature():
    """softmax(o / T) for T in (1, 0.5, 2), computed here as exp / sum."""
    o = np.array([1.0, -2.0, 0.5, 3.0])
    for T in (1.0, 0.5, 2.0):
        e = np.exp(o / T)
        np.testing.assert_allclose(softmax(o, T), e / e.sum(), rtol=1e-13)


def own_nucleus_size(p, top_p):
    """Smallest k such that the k largest probabilities sum to at least top_p (math.fsum)."""
    s = sorted(p, reverse=True)
    total = math.fsum(s)
    for k in range(1, len(s) + 1):
        if math.fsum(s[:k]) >= top_p * total:
            return k
    return len(s)


@pytest.mark.parametrize("p, top_p, kept", [
    ([0.5, 0.25, 0.125, 0.125], 0.5, {0}),           # the mass reaches p exactly with one
    ([0.5, 0.25, 0.125, 0.125], 0.5000001, {0, 1}),
    ([0.5, 0.25, 0.125, 0.125], 0.75, {0, 1}),
    ([0.125, 0.25, 0.5, 0.125], 0.8, {0, 1, 2, 3}),  # 2, 1 and one of the tied 0, 3: size 3
    ([0.1, 0.6, 0.3], 0.01, {1}),
    ([0.1, 0.6, 0.3], 1.0, {0, 1, 2}),
    ([0.0, 0.6, 0.4], 1.0, {1, 2}),
])
def test_nucleus_known_answers(p, top_p, kept):
    """nucleus keeps the smallest set of largest probabilities reaching top_p and renormalises;
    with ties, any member may be kept, but the set size and kept mass are fixed."""
    p = np.array(p)
    q = nucleus(p, top_p)
    n_keep = own_nucleus_size(p, top_p)
    assert np.count_nonzero(q) == n_keep
    assert set(np.flatnonzero(q)) <= kept
    assert q.sum() == pytest.approx(1.0)
    kept_ix = np.flatnonzero(q)
    np.testing.assert_allclose(q[kept_ix], p[kept_ix] / p[kept_ix].sum(), rtol=1e-13)
    dropped = np.setdiff1d(np.flatnonzero(p), kept_ix)
    if len(dropped):
        assert p[kept_ix].min() >= p[dropped].max()  # only the largest are kept


def test_nucleus_random_distributions():
    """On random distributions and top_p the kept-set size equals a sorted cumulative-sum count."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        p = rng.dirichlet(np.full(rng.integers(2, 30), 0.5))
        top_p = float(rng.uniform(0.05, 1.0))
        q = nucleus(p, top_p)
        assert np.count_nonzero(q) == own_nucleus_size(p, top_p)
        assert q.sum() == pytest.approx(1.0)


def test_nucleus_sampling_only_draws_the_nucleus():
    """next_index with top_p draws only kept indices, in proportion to their renormalised mass."""
    o = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(2)
    n = 20_000
    counts = np.bincount([next_index(o, rng, 1.0, 0.7) for _ in range(n)], minlength=4)
    assert counts[2] == counts[3] == 0
    expected = np.array([0.5, 0.3]) / 0.8
    assert np.all(np.abs(counts[:2] / n - expected) <= 5 * np.sqrt(expected * (1 - expected) / n))


# --- temperature, seeds, priming ------------------------------------------------------------------

def test_temperature_zero_is_argmax(corpus):
    """temperature = 0 (and a tiny temperature) gives the argmax rollout computed independently."""
    params = model_for(corpus)
    x0 = corpus.char_to_ix[primer(corpus)]  # the default prime
    expected = own_rollout(params, np.zeros(12), x0, 60, lambda o: int(np.argmax(o)))
    text = generate(net(params), params, corpus, 60, np.random.default_rng(0), temperature=0)
    assert text == corpus.decode([x0] + expected)
    for T in (1e-3, 1e-6):
        assert generate(net(params), params, corpus, 60, np.random.default_rng(5), temperature=T) == text


def own_argmax_rollout(cell: str, layers: int, params, state, prime_ids, n):
    """Argmax synthesis of an L-layer network written out here (conftest.own_cell_step per layer):
    the prime's characters read in turn from ``state``, then n characters, each the likeliest
    after the one before (the first after the prime's last)."""
    m = params["W"].shape[1]
    S = len(state) // layers
    states = [np.asarray(state, dtype=np.float64)[None, l * S:(l + 1) * S] for l in range(layers)]
    inputs, out = list(prime_ids), []
    while len(out) < n:
        x, inp = inputs.pop(0), None
        for l in range(layers):
            sfx = "" if l == 0 else str(l + 1)
            a = (params["U" + sfx][:, x][None, :] if l == 0 else inp @ params["U" + sfx].T) + params["b" + sfx]
            states[l], inp = own_cell_step(cell, params["W" + sfx], a, states[l], m)
        if not inputs:
            out.append(int(np.argmax(inp[0] @ params["V"].T + params["c"])))
            inputs.append(out[-1])
    return out


@pytest.mark.parametrize("cell", CELLS)
def test_temperature_zero_is_argmax_for_every_cell_with_two_layers(corpus, cell):
    """Two layers with dropout 0.5 (off when sampling): temperature 0 is the argmax rollout of the
    equations, whatever the generator's seed."""
    network = Network(cell, corpus.K, 12, layers=2, dropout=0.5)
    params = network.init_params(np.random.default_rng(1), 1.0)
    x0 = corpus.char_to_ix[primer(corpus)]  # the default prime
    expected = own_argmax_rollout(cell, 2, params, network.zero_state(params), [x0], 60)
    texts = {generate(network, params, corpus, 60, np.random.default_rng(seed), temperature=0) for seed in (0, 1, 2)}
    assert texts == {corpus.decode([x0] + expected)}
    assert len(set(expected)) > 2  # not a constant rollout
    assert generate(network, params, corpus, 60, np.random.default_rng(0)) != texts.pop()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_generate_command_temperature_zero_ignores_the_seed(tmp_path, capsys, cell):
    """`a4lib generate RUN --temperature 0 --prime "the "` of a trained 2-layer run (dropout 0.2):
    the same text for every --seed, the prime and the argmax rollout from the run's saved best
    state and parameters."""
    from a4lib import Config, cli, train
    from a4lib import checkpoint as ckpt

    path = tmp_path / "t.txt"
    path.write_text("the cat sat on the mat; a dog ate the hat. " * 20, encoding="utf-8")
    run = tmp_path / "run"
    train(Config(corpus=str(path), model=cell, layers=2, dropout=0.2, m=16, seq_length=10, n_updates=300, eta=0.1,
                 sample_every=0, backend="numpy"), run, progress=False)
    texts = set()
    for seed in ("0", "1", "7"):
        assert cli.main(["generate", str(run), "--temperature", "0", "--seed", seed, "--length", "50",
                         "--prime", "the "]) == 0
        texts.add(capsys.readouterr().out)
    params, _ = ckpt.load_params(run, "best")
    corpus = load_corpus(path)
    expected = own_argmax_rollout(cell, 2, params, ckpt.load_state(run, "best"), corpus.encode("the "), 50)
    assert texts == {"the " + corpus.decode(expected) + "\n"}
    assert len(set(expected)) > 3  # the run learned more than one character
    assert cli.main(["generate", str(run), "--seed", "1", "--length", "50", "--prime", "the "]) == 0
    assert capsys.readouterr().out not in texts


def test_temperature_one_is_the_handout_draw(corpus):
    """temperature 1, top_p 1: each character is the handout's inverse-CDF draw from softmax(o)."""
    params = model_for(corpus, sig=0.5)
    x0 = corpus.char_to_ix[primer(corpus)]  # the default prime: a line break where the text has one
    rng = np.random.default_rng(9)

    def handout(o):
        p = np.exp(o - o.max())
        cp = np.cumsum(p / p.sum())
        return int(np.flatnonzero(cp - rng.random() > 0)[0])

    expected = own_rollout(params, np.zeros(12), x0, 80, handout)
    assert generate(net(params), params, corpus, 80, np.random.default_rng(9)) == corpus.decode([x0] + expected)


def test_same_seed_same_text_other_seed_other_text(corpus):
    """The same seed repeats the text; another seed gives another one."""
    params = model_for(corpus, sig=0.3)
    a = generate(net(params), params, corpus, 100, np.random.default_rng(1))
    b = generate(net(params), params, corpus, 100, np.random.default_rng(1))
    c = generate(net(params), params, corpus, 100, np.random.default_rng(2))
    assert a == b and a != c


@pytest.mark.parametrize("length", [0, 1, 57])
def test_length_and_prime(corpus, length):
    """The text is the prime followed by `length` generated vocabulary characters."""
    params = model_for(corpus, sig=0.3)
    text = generate(net(params), params, corpus, length, np.random.default_rng(1), prime="the ")
    assert text.startswith("the ") and len(text) == 4 + length
    assert set(text) <= set(corpus.chars)


def test_prime_sets_the_state(corpus):
    """Priming runs the prime through the model: the continuation is the rollout from the state after
    the prime's last-but-one character with the last one as input."""
    params = model_for(corpus)
    prime = "a dog"
    h = np.zeros(12)
    for ch in prime[:-1]:
        h = np.tanh(params["W"] @ h + params["U"][:, corpus.char_to_ix[ch]] + params["b"])
    expected = own_rollout(params, h, corpus.char_to_ix[prime[-1]], 30, lambda o: int(np.argmax(o)))
    assert generate(net(params), params, corpus, 30, temperature=0, prime=prime) == prime + corpus.decode(expected)


def test_prime_with_unknown_characters(corpus):
    """A prime with characters outside the vocabulary: CorpusError naming them."""
    params = model_for(corpus)
    with pytest.raises(CorpusError) as err:
        generate(net(params), params, corpus, 10, prime="the Zebra§")
    assert "Z" in str(err.value) and "§" in str(err.value)


@pytest.mark.parametrize("kwargs", [dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(length=-1)])
def test_bad_sampling_arguments(corpus, kwargs):
    """Negative temperature or length, top_p outside (0, 1]: ValueError."""
    params = model_for(corpus)
    args = dict(length=10, temperature=1.0, top_p=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError):
        generate(net(params), params, corpus, args["length"], temperature=args["temperature"], top_p=args["top_p"])


def test_synthesize_stops_after_stop_index(corpus):
    """synthesize with stop returns up to and including the first stop index."""
    params = model_for(corpus, sig=0.5)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    full = synthesize(net(params), params, np.zeros(12), 0, 200, rng_a)
    stop = full[5]
    cut = synthesize(net(params), params, np.zeros(12), 0, 200, rng_b, stop=stop)
    assert cut == full[:full.index(stop) + 1]


# --- tweets -------------------------------------------------------------------------------------

@pytest.fixture
def tweets(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": "hi there"}, {"text": "big news today!"}, {"text": "ok"}]),
                    encoding="utf-8")
    return load_corpus(path, 1)


def biased_params(corpus, favourite: str, m=6):
    """Parameters whose every output strongly prefers one character."""
    params = Network("rnn", corpus.K, m).init_params(np.random.default_rng(0), 0.01)
    params["c"][corpus.char_to_ix[favourite]] = 50.0
    return params


def test_tweet_generation_stops_at_eot(tweets):
    """A tweet ends at the first EOT drawn (EOT not returned), from h = 0 with input EOT."""
    params = model_for(tweets, sig=1.0, seed=3)
    eot = tweets.char_to_ix[EOT]
    for seed in range(5):
        rng = np.random.default_rng(seed)

        def handout(o):
            p = np.exp(o - o.max())
            cp = np.cumsum(p / p.sum())
            return int(np.flatnonzero(cp - rng.random() > 0)[0])

        full = own_rollout(params, np.zeros(12), eot, 281, handout)
        expected = full[:full.index(eot)] if eot in full else full[:280]
        text = generate(net(params), params, tweets, 1000, np.random.default_rng(seed))
        assert EOT not in text
        assert text == tweets.decode(expected)


def test_tweet_that_ends_at_once_is_empty(tweets):
    """A model that always predicts EOT generates the empty tweet."""
    params = biased_params(tweets, EOT)
    assert generate(net(params), params, tweets, 1000, temperature=0) == ""


def test_tweet_without_eot_stops_at_280_characters(tweets):
    """A model that never predicts EOT stops after at most 280 characters (a tweet's limit)."""
    params = biased_params(tweets, "e")
    text = generate(net(params), params, tweets, 1000, temperature=0)
    assert set(text) == {"e"}
    assert len(text) <= 280


def test_tweet_shorter_length_is_respected(tweets):
    """A length below 280 still limits a tweet that does not end."""
    params = biased_params(tweets, "e")
    text = generate(net(params), params, tweets, 50, temperature=0)
    assert text == "e" * 50
