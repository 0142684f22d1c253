"""Beyond the handout: mini-batches, held-out evaluation, chunk order, tweets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from a4lib import gradcheck
from a4lib.corpus import EOT, TWEET_MAX_CHARS, load_corpus
from a4lib.model import Network
from a4lib.sample import generate
from a4lib.train import Config, Trainer, evaluate, train


def small_text(tmp_path, n=4000, seed=0, name="text.txt"):
    rng = np.random.default_rng(seed)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "über ", "•\n"]
    text = "".join(rng.choice(words, size=n // 4))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("B,T", [(3, 5), (4, 1), (2, 25)])
def test_batched_gradients_match_centred_differences(B, T):
    """The batched loss (sum over time, mean over streams) has the gradients its backward claims."""
    rng = np.random.default_rng(B * 100 + T)
    net = Network("rnn", 7, 6)
    params = net.init_params(rng, 0.3)
    x, y = rng.integers(0, 7, (T, B)), rng.integers(0, 7, (T, B))
    h0 = 0.5 * rng.standard_normal((B, 6))
    table = gradcheck.check(net, params, x, y, h0)
    assert max(row["max_rel"] for row in table.values()) < 1e-5, table


def test_batch_is_the_mean_of_its_streams():
    rng = np.random.default_rng(1)
    net = Network("rnn", 9, 8)
    params = net.init_params(rng, 0.2)
    x, y = rng.integers(0, 9, (6, 3)), rng.integers(0, 9, (6, 3))
    h0 = rng.standard_normal((3, 8))
    loss, grads, h_last = net.loss_and_grads(params, x, y, h0)
    singles = [net.loss_and_grads(params, x[:, b], y[:, b], h0[b]) for b in range(3)]
    assert loss == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], np.mean([s[1][k] for s in singles], axis=0), atol=1e-13)
    np.testing.assert_allclose(h_last, np.stack([s[2] for s in singles]), atol=1e-14)


def test_batch_size_one_is_the_handout_run(tmp_path):
    """--batch-size 1 walks the text exactly as the handout: same parameters as the plain walk."""
    path = small_text(tmp_path)
    cfg = dict(corpus=str(path), m=8, n_epochs=None, n_updates=300, sample_every=0, seed=3, backend="numpy")
    a = Trainer(Config(**cfg), tmp_path / "a")
    a.run(progress=False)
    # the handout's loop, written out here with the same model and optimizer
    b = Trainer(Config(**cfg), tmp_path / "b")
    ids, L, h, e = b.ids, 25, np.zeros(8), 0
    for _ in range(300):
        if e > len(ids) - L - 1:
            e, h = 0, np.zeros(8)
        _, _, h = b.model.loss_and_grads(b.params, ids[e:e + L], ids[e + 1:e + L + 1], h, b.grads)
        np.clip(b.dw, -5, 5, out=b.dw)
        b.opt.update(b.w, b.dw, b.opt_state)
        e += L
    np.testing.assert_array_equal(a.w, b.w)


def test_streams_walk_contiguous_parts(tmp_path):
    path = small_text(tmp_path, n=2000)
    tr = Trainer(Config(corpus=str(path), m=4, batch_size=4, n_updates=1, seq_length=10), tmp_path / "r")
    part = len(tr.ids) // 4
    x, y = tr._batch()
    assert x.shape == (10, 4)
    for b in range(4):
        np.testing.assert_array_equal(x[:, b], tr.ids[b * part:b * part + 10])
        np.testing.assert_array_equal(y[:, b], tr.ids[b * part + 1:b * part + 11])
    assert tr.updates_per_epoch() == (part - 1) // 10


def test_validation_loss_is_the_direct_computation(tmp_path):
    """Held-out loss per character = -mean log p(next char), h carried over the whole held-out part
    from stream 0's state after the last update (not h = 0)."""
    path = small_text(tmp_path, n=3000)
    tr = Trainer(Config(corpus=str(path), m=6, val_fraction=0.2, n_updates=50, sample_every=0), tmp_path / "v")
    tr.run(progress=False)
    n = len(tr.ids)
    start = n - int(0.2 * n)
    assert tr.n_train == start
    h0 = tr.last_state.copy()
    assert np.abs(h0).max() > 0.01  # a real state, so starting from it matters
    h, total = h0.copy(), 0.0
    for t in range(start, n - 1):  # one character at a time, from the definition
        h = np.tanh(tr.params["W"] @ h + tr.params["U"][:, tr.ids[t]] + tr.params["b"])
        o = tr.params["V"] @ h + tr.params["c"]
        total += np.log(np.exp(o - o.max()).sum()) + o.max() - o[tr.ids[t + 1]]
    direct = total / (n - 1 - start)
    assert tr.val_hist[-1][1] == pytest.approx(direct, rel=1e-10)
    assert evaluate(tr.model, tr.params, tr.ids, tr.val_starts, tr.val_ends, piece=7,
                    state0=h0) == pytest.approx(direct, rel=1e-10)
    assert evaluate(tr.model, tr.params, tr.ids, tr.val_starts, tr.val_ends) != pytest.approx(direct, rel=1e-6)


def test_best_state_is_saved_and_generation_starts_from_it(tmp_path):
    """The checkpoint keeps stream 0's state at the best update; load_state returns it, and
    generate from it is the primed synthesis from that state (not from h = 0)."""
    from a4lib import checkpoint as ckpt
    from a4lib.sample import generate, primer, synthesize

    path = small_text(tmp_path, n=3000)
    out = tmp_path / "b"
    tr = Trainer(Config(corpus=str(path), m=6, n_updates=80, sample_every=0), out)
    tr.run(progress=False)
    best = ckpt.load_state(out, "best")
    assert tr.best_update > 0 and np.abs(best).max() > 0.01
    np.testing.assert_array_equal(best, tr.best_state)
    np.testing.assert_array_equal(ckpt.load_state(out, "last"), tr.last_state)  # not zeroed by a new epoch
    params, _ = ckpt.load_params(out, "best")
    text = generate(tr.model, params, tr.corpus, 40, np.random.default_rng(1), state=best)
    x0 = tr.corpus.char_to_ix[primer(tr.corpus)]  # the default prime, one character: the first input
    ids = synthesize(tr.model, params, best, x0, 40, np.random.default_rng(1))
    assert text == primer(tr.corpus) + tr.corpus.decode(ids)
    assert text != generate(tr.model, params, tr.corpus, 40, np.random.default_rng(1))


def test_best_parameters_follow_the_validation_loss(tmp_path):
    path = small_text(tmp_path, n=3000)
    out = tmp_path / "best"
    summary = train(Config(corpus=str(path), m=6, val_fraction=0.2, val_every=20, n_updates=200,
                           eta=0.5, sample_every=0), out, progress=False)
    hist = np.load(out / "history.npz")
    i = int(np.argmin(hist["val_loss"]))
    assert summary["best_val_loss"] == pytest.approx(hist["val_loss"][i])
    assert summary["best_update"] == hist["val_update"][i]


def test_chunk_order_covers_the_training_text_once_per_epoch(tmp_path):
    path = small_text(tmp_path, n=5000)
    tr = Trainer(Config(corpus=str(path), m=4, order="chunks", chunk_length=97, seq_length=10,
                        val_fraction=0.1, n_epochs=2), tmp_path / "c")
    seen, epoch0 = [], tr.plan.copy()
    while tr.epoch == 0:
        x, y = tr._batch()
        seen.append((int(tr.plan[tr.group, 0, 0]) + tr.offset, x[:, 0].copy(), y[:, 0].copy()))
        tr._advance()
    starts = sorted(int(s) for s in epoch0[:, 0, 0])
    assert starts == list(range(0, tr.n_train - 1, 97))  # every chunk once
    assert [int(s) for s in epoch0[:, 0, 0]] != starts  # shuffled
    assert not np.array_equal(epoch0, tr.plan)  # a new order for the next epoch
    predicted = np.zeros(tr.n_train, bool)
    for pos, x, y in seen:
        np.testing.assert_array_equal(x, tr.ids[pos:pos + len(x)])
        np.testing.assert_array_equal(y, tr.ids[pos + 1:pos + 1 + len(x)])
        predicted[pos + 1:pos + 1 + len(x)] = True
    chunk_firsts = np.arange(0, tr.n_train, 97)
    assert predicted.sum() == tr.n_train - len(chunk_firsts)  # all but each chunk's first char
    assert not predicted[chunk_firsts].any()


def tweets_file(tmp_path, texts):
    path = tmp_path / "tweets.json"
    path.write_text(json.dumps([{"text": t, "id_str": str(i)} for i, t in enumerate(texts)]), encoding="utf-8")
    return path


def test_tweets_are_parsed_with_entities_and_end_marks(tmp_path):
    path = tweets_file(tmp_path, ["Fish &amp; chips", "“Great” — ok", "a&lt;b"])
    corpus = load_corpus(path)
    assert corpus.is_tweets
    assert corpus.text == EOT + "Fish & chips" + EOT + "“Great” — ok" + EOT + "a<b" + EOT
    assert [corpus.text[s] for s in corpus.starts] == [EOT] * 3
    assert corpus.text[corpus.starts[1] + 1:].startswith("“Great”")


def test_tweet_training_resets_h_per_tweet_and_stops_at_eot(tmp_path):
    texts = ["short one", "a somewhat longer tweet than the first one, to span sequences", "x"]
    path = tweets_file(tmp_path, texts * 3)
    tr = Trainer(Config(corpus=str(path), m=5, seq_length=10, n_epochs=1), tmp_path / "t")
    windows = []
    while tr.epoch == 0:
        x, y = tr._batch()
        windows.append((tr.offset, tr.corpus.decode(x[:, 0]), tr.corpus.decode(y[:, 0]), tr.state.copy()))
        tr.train_step()
        tr._advance()
    firsts = [w for w in windows if w[0] == 0]
    assert len(firsts) == 9  # one fresh start per tweet
    assert all(not w[3].any() for w in firsts)  # h = 0 at each tweet
    assert all(w[1].startswith(EOT) for w in firsts)
    joined = "".join(w[2] for w in windows)
    assert joined == "".join(t + EOT for t in texts * 3)  # every character and end mark predicted once
    # synthesis starts a tweet and stops at EOT or the length limit
    text = generate(tr.model, tr.params, tr.corpus, 1000, np.random.default_rng(0))
    assert EOT not in text and len(text) <= TWEET_MAX_CHARS


def test_tweet_sampling_stops_at_the_end_mark(tmp_path):
    """A model that always predicts EOT after 'ab' produces 'ab' and stops."""
    path = tweets_file(tmp_path, ["ab"] * 200)
    summary = train(Config(corpus=str(path), m=8, seq_length=5, eta=0.3, n_epochs=30, sample_every=0),
                    tmp_path / "ab", progress=False)
    assert summary["final_smooth_loss"] < 0.3
    from a4lib.checkpoint import load_params
    from a4lib.corpus import Corpus
    params, meta = load_params(tmp_path / "ab")
    vocab = Corpus.from_vocabulary(meta["corpus"]["chars"], "v")
    assert generate(Network("rnn", vocab.K, 8), params, vocab, 1000, np.random.default_rng(0), temperature=0) == "ab"


def test_tweet_validation_starts_each_tweet_from_zero(tmp_path):
    """Held-out tweets are evaluated from h = 0 each (as they are trained), not from the training state."""
    path = tweets_file(tmp_path, [f"tweet number {i} says hi" for i in range(20)])
    tr = Trainer(Config(corpus=str(path), m=5, seq_length=10, val_fraction=0.2, n_updates=30, sample_every=0),
                 tmp_path / "t")
    tr.run(progress=False)
    assert np.abs(tr.last_state).max() > 0.01
    zero = evaluate(tr.model, tr.params, tr.ids, tr.val_starts, tr.val_ends)
    assert tr.validate_now() == pytest.approx(zero, rel=1e-12)
    assert zero != pytest.approx(evaluate(tr.model, tr.params, tr.ids, tr.val_starts, tr.val_ends,
                                          state0=tr.last_state), rel=1e-6)


def test_last_state_survives_the_epoch_reset(tmp_path):
    """A run that ends on an epoch boundary: the walk's h is reset to zero, but the saved last state
    is the one after the last update, and generate --params last starts from it."""
    from a4lib import checkpoint as ckpt

    path = small_text(tmp_path, n=1000)
    out = tmp_path / "e"
    tr = Trainer(Config(corpus=str(path), m=6, n_epochs=1, sample_every=0), out)
    tr.run(progress=False)
    assert not tr.state.any()  # the new epoch's h
    last = ckpt.load_state(out, "last")
    assert np.abs(last).max() > 0.01
    np.testing.assert_array_equal(last, tr.last_state)
