"""Batched held-out evaluation (a4lib.train.evaluate with streams, Trainer.validate_now): the
loss is that of evaluating each contiguous part alone, one stream at a time, to rounding."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import model_problem

from a4lib.config import Config
from a4lib.model import Network
from a4lib.train import Trainer, evaluate, held_out_streams

train_module = importlib.import_module("a4lib.train")  # the module (a4lib.train is also the function)
MODELS = [("rnn", 1, "numpy"), ("rnn", 1, "numba"), ("gru", 2, "numpy"), ("gru", 2, "numba"), ("lstm", 1, "numpy"),
          ("lstm", 2, "numba")]


def setup(model: str, layers: int, backend: str, K: int = 11, m: int = 12, seed: int = 0):
    """A network, parameters with nonzero biases, a random text of K symbols and a nonzero state."""
    impl, params, _, _, state0 = model_problem(model, K, m, 1, layers=layers, seed=seed, sig=0.3, backend=backend)
    return impl, params, np.random.default_rng(seed).integers(0, K, 5000), state0


def one_stream(impl, params, ids, a: int, n: int, state0) -> float:
    """The summed loss of predicting ids[a + 1 : a + n + 1] in one stream from state0."""
    return impl.loss_and_state(params, ids[a:a + n], ids[a + 1:a + n + 1], state0)[0]


@pytest.mark.parametrize("model, layers, backend", MODELS)
@pytest.mark.parametrize("streams", [1, 3, 7, 32])
def test_streams_give_the_loss_of_each_part_alone(model, layers, backend, streams):
    """A segment of 1234 characters (1233 predictions) cut into contiguous parts of 1233 // streams,
    the remainder predicted after the last part: the mean of the parts' one-stream losses."""
    impl, params, ids, state0 = setup(model, layers, backend)
    start, end = 100, 1334
    n = end - 1 - start
    L = n // streams
    lengths = [L] * (streams - 1) + [n - (streams - 1) * L]  # the last part takes the remainder
    expected = sum(one_stream(impl, params, ids, start + s * L, lengths[s], state0) for s in range(streams)) / n
    got = evaluate(impl, params, ids, np.array([start]), np.array([end]), state0=state0, streams=streams)
    assert got == pytest.approx(expected, rel=1e-12)
    assert evaluate(impl, params, ids, np.array([start]), np.array([end]), state0=state0, streams=streams,
                    piece=5) == pytest.approx(expected, rel=1e-12)
    if streams > 1:  # each part starts afresh from state0: not the one-stream loss
        one = evaluate(impl, params, ids, np.array([start]), np.array([end]), state0=state0)
        assert one != pytest.approx(got, rel=1e-9)


@pytest.mark.parametrize("model, layers, backend", MODELS)
def test_segments_of_one_length_run_together_from_zero(model, layers, backend, monkeypatch):
    """Tweet-like segments from h = 0, several of each length, two streams per call at most: the
    mean of the one-at-a-time losses."""
    monkeypatch.setattr(train_module, "EVAL_MAX_STREAMS", 2)
    impl, params, ids, _ = setup(model, layers, backend, seed=3)
    lengths = [5, 9, 5, 2, 9, 5, 30, 5, 1]
    starts = np.cumsum([0] + lengths[:-1]) + 10
    ends = starts + np.array(lengths)
    zero = impl.zero_state(params)
    total = sum(one_stream(impl, params, ids, int(a), int(b - a - 1), zero) for a, b in zip(starts, ends) if b - a > 1)
    expected = total / sum(n - 1 for n in lengths)
    assert evaluate(impl, params, ids, starts, ends) == pytest.approx(expected, rel=1e-12)


def test_held_out_streams():
    assert [held_out_streams(n) for n in (0, 600, 3999, 4000, 10_000, 111_540, 10**7)] == [1, 1, 1, 2, 5, 32, 32]


@pytest.mark.parametrize("model, layers, dropout", [("rnn", 1, 0.0), ("gru", 2, 0.5)])
def test_validate_now_cuts_the_held_out_text_into_streams(tmp_path, model, layers, dropout):
    """Plain text: held_out_streams(n) streams, each from stream 0's last training state; no
    dropout in evaluation (the network without dropout gives the same loss)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "text.txt"
    path.write_text("".join(rng.choice(list("abcdefgh .\n"), 50_000)), encoding="utf-8")
    tr = Trainer(Config(corpus=str(path), model=model, layers=layers, dropout=dropout, m=8, val_fraction=0.2,
                        n_updates=30, sample_every=0), tmp_path / "r")
    tr.run(progress=False)
    n = int(tr.val_ends[0] - tr.val_starts[0])
    assert held_out_streams(n) == 5
    plain = Network(model, tr.corpus.K, 8, layers=layers, backend=tr.backend)
    expected = evaluate(plain, tr.params, tr.ids, tr.val_starts, tr.val_ends, state0=tr.last_state, streams=5)
    assert tr.validate_now() == pytest.approx(expected, rel=1e-13)
    assert tr.val_hist[-1][1] == pytest.approx(expected, rel=1e-13)
