"""a4lib.rnn against the one-hot reference of the handout: loss, gradients, h_last, batching, out-dicts."""
from __future__ import annotations

import numpy as np
import pytest

from a4lib import reference, rnn
from a4lib.optim import flatten

# (K_in, K_out, m, T): the handout's m = 5 and 100, sequences of 1, 5 and 25 steps, K_in != K_out
SHAPES = [
    (7, 7, 5, 1),
    (7, 7, 5, 5),
    (7, 7, 5, 25),
    (7, 7, 100, 25),
    (6, 9, 5, 5),
    (9, 4, 100, 5),
]


def test_init_params_shapes_and_scale():
    """init_params: U (m, K), W (m, m), V (K_out, m) ~ N(0, sig^2), b and c zero."""
    p = rnn.init_params(11, 40, 0.01, np.random.default_rng(3), K_out=13)
    assert p["U"].shape == (40, 11) and p["W"].shape == (40, 40) and p["V"].shape == (13, 40)
    assert p["b"].shape == (40,) and p["c"].shape == (13,)
    assert not p["b"].any() and not p["c"].any()
    weights = np.concatenate([p["U"].ravel(), p["W"].ravel(), p["V"].ravel()])
    assert abs(weights.std() - 0.01) < 0.001  # 2560 draws: std of the std estimate ~1.4e-4, of the mean 2e-4
    assert abs(weights.mean()) < 0.001


@pytest.mark.parametrize("K_in, K_out, m, T", SHAPES)
def test_matches_reference(K_in, K_out, m, T, rnn_problem):
    """Loss, all five gradients and h_last agree with reference.py to 1e-10 (nonzero h0, b, c)."""
    params, x, y, h0 = rnn_problem(K_in, K_out, m, T)
    loss, grads, h = rnn.loss_and_grads(params, x, y, h0)
    ref_loss, ref_grads, ref_h = reference.loss_and_grads(params, x, y, h0)
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-10)
    assert set(grads) == set(ref_grads) == {"U", "W", "V", "b", "c"}
    for name in grads:
        assert grads[name].shape == params[name].shape
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=0, atol=1e-10, err_msg=name)
    assert h.shape == (m,)
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-12)


def test_h0_matters(rnn_problem):
    """The loss depends on h0 (the carried state is really used)."""
    params, x, y, h0 = rnn_problem(7, 7, 5, 5, sig=1.0)
    assert rnn.loss(params, x, y, h0) != pytest.approx(rnn.loss(params, x, y, np.zeros(5)), rel=1e-6)


def test_loss_is_negative_log_likelihood(rnn_problem):
    """The loss is -sum_t log softmax(V h_t + c)[y_t] with h_t = tanh(W h_{t-1} + U[:, x_t] + b)."""
    params, x, y, h0 = rnn_problem(5, 5, 4, 6)
    h, total = h0, 0.0
    for t in range(len(x)):
        h = np.tanh(params["W"] @ h + params["U"][:, x[t]] + params["b"])
        o = params["V"] @ h + params["c"]
        total -= o[y[t]] - np.log(np.sum(np.exp(o)))
    assert rnn.loss(params, x, y, h0) == pytest.approx(total, rel=1e-12)


def test_loss_is_stable_for_huge_logits(rnn_problem):
    """Large weights do not overflow the softmax: the loss stays finite."""
    params, x, y, h0 = rnn_problem(5, 5, 4, 6, sig=300.0)
    loss = rnn.loss(params, x, y, h0)
    assert np.isfinite(loss) and loss >= 0


def test_loss_and_state_agrees_with_loss_and_grads(rnn_problem):
    """loss_and_state and loss give the same loss and h_last as loss_and_grads."""
    params, x, y, h0 = rnn_problem(6, 6, 10, 12)
    loss, _, h = rnn.loss_and_grads(params, x, y, h0)
    loss2, h2 = rnn.loss_and_state(params, x, y, h0)
    assert loss2 == loss and rnn.loss(params, x, y, h0) == loss
    np.testing.assert_array_equal(h, h2)


def test_carrying_h_splits_a_sequence(rnn_problem):
    """Two halves with h carried give the same total loss as the whole sequence."""
    params, x, y, h0 = rnn_problem(6, 6, 10, 20)
    whole, h_whole = rnn.loss_and_state(params, x, y, h0)
    l1, h1 = rnn.loss_and_state(params, x[:8], y[:8], h0)
    l2, h2 = rnn.loss_and_state(params, x[8:], y[8:], h1)
    assert l1 + l2 == pytest.approx(whole, rel=1e-12)
    np.testing.assert_allclose(h2, h_whole, atol=1e-14)


@pytest.mark.parametrize("K_in, K_out, m, T, B", [(7, 7, 5, 5, 3), (6, 9, 20, 25, 4), (5, 5, 3, 1, 2)])
def test_batch_is_mean_of_single_streams(K_in, K_out, m, T, B, rnn_problem):
    """A (T, B) call: loss and gradients are the mean over B single-stream calls, h_last row by row."""
    params, x, y, h0 = rnn_problem(K_in, K_out, m, T, B=B)
    loss, grads, h = rnn.loss_and_grads(params, x, y, h0)
    grads = {k: v.copy() for k, v in grads.items()}
    singles = [reference.loss_and_grads(params, x[:, b], y[:, b], h0[b]) for b in range(B)]
    assert loss == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], np.mean([s[1][name] for s in singles], axis=0),
                                   rtol=0, atol=1e-10, err_msg=name)
    assert h.shape == (B, m)
    for b in range(B):
        np.testing.assert_allclose(h[b], singles[b][2], atol=1e-12)


@pytest.mark.parametrize("B", [None, 3])
def test_grads_out_dict_filled_in_place(B, rnn_problem):
    """grads= views of one flat vector (optim.flatten) are filled in place with the same values."""
    params, x, y, h0 = rnn_problem(6, 8, 7, 9, B=B)
    _, expected, _ = rnn.loss_and_grads(params, x, y, h0)
    expected = {k: v.copy() for k, v in expected.items()}
    flat, views = flatten({k: np.full_like(v, np.nan) for k, v in params.items()})
    _, returned, _ = rnn.loss_and_grads(params, x, y, h0, views)
    for name in params:
        assert returned[name] is views[name]
        assert np.shares_memory(views[name], flat)
        np.testing.assert_array_equal(views[name], expected[name], err_msg=name)
    assert np.isfinite(flat).all()
    np.testing.assert_array_equal(flat, np.concatenate([expected[k].ravel() for k in params]))


def test_repeated_calls_do_not_alias(rnn_problem):
    """Gradients returned by one call are not overwritten by the next call (with other inputs)."""
    params, x, y, h0 = rnn_problem(6, 6, 7, 9)
    _, g1, _ = rnn.loss_and_grads(params, x, y, h0)
    snapshot = {k: v.copy() for k, v in g1.items()}
    rnn.loss_and_grads(params, y % 6, x, np.zeros(7))
    for name in g1:
        np.testing.assert_array_equal(g1[name], snapshot[name], err_msg=name)


def test_inputs_are_not_modified(rnn_problem):
    """A call leaves params, x, y and h0 as they were."""
    params, x, y, h0 = rnn_problem(6, 6, 7, 9)
    before = ({k: v.copy() for k, v in params.items()}, x.copy(), y.copy(), h0.copy())
    rnn.loss_and_grads(params, x, y, h0)
    for k in params:
        np.testing.assert_array_equal(params[k], before[0][k])
    np.testing.assert_array_equal(x, before[1])
    np.testing.assert_array_equal(y, before[2])
    np.testing.assert_array_equal(h0, before[3])


def test_step_matches_forward(rnn_problem):
    """step() rolled over the inputs reproduces the hidden states and the loss of forward."""
    params, x, y, h0 = rnn_problem(6, 8, 7, 9)
    h, total = h0[None, :], 0.0
    for t in range(len(x)):
        h, o = rnn.step(params, h, np.array([x[t]]))
        o = o[0] - o[0].max()
        total -= o[y[t]] - np.log(np.exp(o).sum())
    loss, h_last = rnn.loss_and_state(params, x, y, h0)
    assert total == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(h[0], h_last, atol=1e-14)


def test_zero_state_shapes():
    """zero_state: (m,) zeros for one stream, (B, m) for a batch."""
    params = rnn.init_params(4, 6)
    assert rnn.zero_state(params).shape == (6,) and not rnn.zero_state(params).any()
    assert rnn.zero_state(params, 3).shape == (3, 6)
