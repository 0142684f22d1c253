"""a4lib.lstm: gradients against centred differences and torch autograd, the loss against the gate
equations written out here, batching, step(), the state carried, the trainer's contract, learning.

Gradient check (a4lib.gradcheck.check, h = 1e-4, sig = 0.1, nonzero b, c, h0 and c0), measured over
five seeds per shape of GRADCHECK_SHAPES: max relative error 8e-8 .. 6.4e-5, mean relative error
<= 8e-7 (per array). The largest relative errors come from the few entries of size ~1e-7 (with
gradients up to ~0.1), whose centred differences carry round-off of ~5e-11: they measure the
arithmetic, not the gradient. MAX_REL_TOL and MEAN_REL_TOL are 10x above the measurements; a wrong
gradient (a missing path, a wrong gate derivative) gives relative errors of 1e-2 .. 1.
"""
from __future__ import annotations

import numpy as np
import pytest

from a4lib import gradcheck, lstm
from a4lib.models import get_model
from a4lib.optim import AdaGrad, clip, flatten

MAX_REL_TOL = 1e-3
MEAN_REL_TOL = 1e-5

GRADCHECK_SHAPES = [  # (K_in, K_out, m, T, B); B None: one stream, x (T,) and state (2m,)
    (7, 7, 5, 1, None),
    (7, 7, 5, 5, None),
    (6, 9, 5, 25, None),
    (9, 4, 16, 25, None),
    (7, 7, 5, 5, 3),
    (6, 9, 16, 5, 3),
]


def lstm_problem(K_in, K_out, m, T, B=None, seed=0, sig=0.1, state_scale=0.5):
    """Random lstm parameters (b, c perturbed too), inputs x, targets y and a nonzero state [h0, c0]."""
    rng = np.random.default_rng(seed)
    params = lstm.init_params(K_in, m, sig, rng, K_out=K_out)
    params["b"] += 0.1 * rng.standard_normal(4 * m)
    params["c"] += 0.1 * rng.standard_normal(K_out)
    shape = (T,) if B is None else (T, B)
    x = rng.integers(0, K_in, shape)
    y = rng.integers(0, K_out, shape)
    state0 = state_scale * np.tanh(rng.standard_normal((2 * m,) if B is None else (B, 2 * m)))
    return params, x, y, state0


def own_forward(params, x, y, state0):
    """The gate equations of the module docstring, one stream, one step at a time: loss, [h_T, c_T]."""
    m = params["W"].shape[1]
    W, U, b = params["W"], params["U"], params["b"]
    h, c, total = state0[:m], state0[m:], 0.0
    for t in range(len(x)):
        a = W @ h + U[:, x[t]] + b
        i, f, o = (1 / (1 + np.exp(-a[k * m:(k + 1) * m])) for k in range(3))
        g = np.tanh(a[3 * m:])
        c = f * c + i * g
        h = o * np.tanh(c)
        s = params["V"] @ h + params["c"]
        total += np.log(np.exp(s - s.max()).sum()) + s.max() - s[y[t]]
    return total, np.concatenate([h, c])


def copy(grads):
    return {k: v.copy() for k, v in grads.items()}


def test_init_params_shapes_and_scale():
    """U (4m, K), W (4m, m), V (K_out, m) ~ N(0, sig^2); b is 1 in the forget block, 0 elsewhere; c zero."""
    m = 30
    p = lstm.init_params(11, m, 0.01, np.random.default_rng(3), K_out=13)
    assert list(p) == ["U", "W", "V", "b", "c"]
    assert p["U"].shape == (4 * m, 11) and p["W"].shape == (4 * m, m) and p["V"].shape == (13, m)
    assert p["b"].shape == (4 * m,) and p["c"].shape == (13,)
    assert all(v.dtype == np.float64 for v in p.values())
    np.testing.assert_array_equal(p["b"], np.repeat([0.0, 1.0, 0.0, 0.0], m))
    assert not p["c"].any()
    weights = np.concatenate([p["U"].ravel(), p["W"].ravel(), p["V"].ravel()])
    assert abs(weights.std() - 0.01) < 0.0005  # 5310 draws: std of the std estimate ~1e-4
    assert abs(weights.mean()) < 0.0005


def test_get_model_finds_lstm():
    assert get_model("lstm") is lstm


@pytest.mark.parametrize("K_in, K_out, m, T, B", GRADCHECK_SHAPES)
def test_gradients_match_centred_differences(K_in, K_out, m, T, B):
    """gradcheck.check: per array, max relative error < MAX_REL_TOL and mean < MEAN_REL_TOL."""
    params, x, y, state0 = lstm_problem(K_in, K_out, m, T, B)
    table = gradcheck.check(lstm, params, x, y, state0)
    assert set(table) == {"U", "W", "V", "b", "c"}
    for name, row in table.items():
        assert row["max_rel"] < MAX_REL_TOL, (name, row)
        assert row["mean_rel"] < MEAN_REL_TOL, (name, row)


@pytest.mark.parametrize("K_in, K_out, m, T, B", [(7, 7, 5, 1, None), (6, 9, 5, 25, None), (9, 4, 16, 25, 3)])
def test_loss_and_state_follow_the_gate_equations(K_in, K_out, m, T, B):
    """Loss and last state equal own_forward (stream by stream; the loss averaged over streams)."""
    params, x, y, state0 = lstm_problem(K_in, K_out, m, T, B)
    loss, state = lstm.loss_and_state(params, x, y, state0)
    if B is None:
        expected, expected_state = own_forward(params, x, y, state0)
    else:
        runs = [own_forward(params, x[:, k], y[:, k], state0[k]) for k in range(B)]
        expected, expected_state = np.mean([r[0] for r in runs]), np.array([r[1] for r in runs])
    assert loss == pytest.approx(expected, rel=1e-12)
    assert state.shape == state0.shape
    np.testing.assert_allclose(state, expected_state, rtol=0, atol=1e-14)


@pytest.mark.parametrize("K_in, K_out, m, T, B", [(7, 7, 5, 1, 1), (6, 9, 16, 25, 1), (9, 4, 16, 25, 3)])
def test_matches_torch_autograd(K_in, K_out, m, T, B):
    """Loss, all five gradients and the last state agree with the same LSTM in torch to 1e-10."""
    torch = pytest.importorskip("torch")
    params, x, y, state0 = lstm_problem(K_in, K_out, m, T, B)
    loss, grads, state = lstm.loss_and_grads(params, x, y, state0)

    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h, c = torch.tensor(state0[:, :m]), torch.tensor(state0[:, m:])
    xt, yt, total = torch.tensor(x), torch.tensor(y), 0.0
    for t in range(T):
        a = h @ P["W"].T + P["U"][:, xt[t]].T + P["b"]
        i, f, o = torch.sigmoid(a[:, :m]), torch.sigmoid(a[:, m:2 * m]), torch.sigmoid(a[:, 2 * m:3 * m])
        g = torch.tanh(a[:, 3 * m:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        log_p = torch.log_softmax(h @ P["V"].T + P["c"], dim=1)
        total = total - log_p[torch.arange(B), yt[t]].sum()
    total = total / B
    total.backward()

    assert loss == pytest.approx(total.item(), rel=1e-12, abs=1e-10)
    for name in params:
        np.testing.assert_allclose(grads[name], P[name].grad.numpy(), rtol=0, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(state, torch.cat([h, c], dim=1).detach().numpy(), rtol=0, atol=1e-12)


def test_single_stream_equals_batch_of_one():
    """x (T,), state (2m,) and x (T, 1), state (1, 2m): the same loss, gradients and state."""
    params, x, y, state0 = lstm_problem(6, 9, 7, 12)
    loss, grads, state = lstm.loss_and_grads(params, x, y, state0)
    grads = copy(grads)
    loss1, grads1, state1 = lstm.loss_and_grads(params, x[:, None], y[:, None], state0[None, :])
    assert loss1 == pytest.approx(loss, rel=1e-14)
    for name in grads:
        np.testing.assert_allclose(grads1[name], grads[name], rtol=0, atol=1e-14, err_msg=name)
    assert state.shape == (14,) and state1.shape == (1, 14)
    np.testing.assert_allclose(state1[0], state, rtol=0, atol=1e-15)


def test_batch_is_mean_of_single_streams():
    """A (T, 3) call: loss and gradients are the mean of 3 single-stream calls, the state row by row."""
    B = 3
    params, x, y, state0 = lstm_problem(6, 9, 7, 12, B)
    loss, grads, state = lstm.loss_and_grads(params, x, y, state0)
    grads = copy(grads)
    singles = []
    for k in range(B):
        loss_k, grads_k, state_k = lstm.loss_and_grads(params, x[:, k], y[:, k], state0[k])
        singles.append((loss_k, copy(grads_k), state_k))
    assert loss == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], np.mean([s[1][name] for s in singles], axis=0),
                                   rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(state, np.array([s[2] for s in singles]), rtol=0, atol=1e-14)


@pytest.mark.parametrize("B", [1, 3])
def test_step_matches_forward(B):
    """step() rolled over the inputs gives the logits of the loss and the last state of forward."""
    params, x, y, state0 = lstm_problem(6, 9, 7, 11, B)
    state, total = state0, 0.0
    for t in range(len(x)):
        state, s = lstm.step(params, state, x[t])
        assert s.shape == (B, 9) and state.shape == (B, 14)
        s = s - s.max(axis=1, keepdims=True)
        total -= (s[np.arange(B), y[t]] - np.log(np.exp(s).sum(axis=1))).sum() / B
    loss, last = lstm.loss_and_state(params, x, y, state0)
    assert total == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(state, last, rtol=0, atol=1e-14)


def test_cell_state_is_carried():
    """The loss depends on c0 alone (h0 fixed), and two halves with the state carried give the
    loss and last state of the whole sequence."""
    params, x, y, state0 = lstm_problem(6, 6, 10, 20, sig=0.5)
    m = 10
    only_h = state0.copy()
    only_h[m:] = 0.0
    assert lstm.loss(params, x, y, state0) != pytest.approx(lstm.loss(params, x, y, only_h), rel=1e-6)
    whole, last = lstm.loss_and_state(params, x, y, state0)
    l1, s1 = lstm.loss_and_state(params, x[:8], y[:8], state0)
    l2, s2 = lstm.loss_and_state(params, x[8:], y[8:], s1)
    assert l1 + l2 == pytest.approx(whole, rel=1e-12)
    np.testing.assert_allclose(s2, last, rtol=0, atol=1e-14)


@pytest.mark.parametrize("B", [None, 3])
def test_grads_out_dict_filled_in_place(B):
    """grads= views of one flat vector (optim.flatten, as the trainer passes them) are filled in place."""
    params, x, y, state0 = lstm_problem(6, 8, 7, 9, B)
    _, expected, _ = lstm.loss_and_grads(params, x, y, state0)
    expected = copy(expected)
    flat, views = flatten({k: np.full_like(v, np.nan) for k, v in params.items()})
    _, returned, _ = lstm.loss_and_grads(params, x, y, state0, views)
    for name in params:
        assert returned[name] is views[name]
        np.testing.assert_array_equal(views[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(flat, np.concatenate([expected[k].ravel() for k in params]))


def test_outputs_are_not_overwritten_and_inputs_not_modified():
    """Gradients and state returned by one call survive the next call; params, x, y, state0 unchanged."""
    params, x, y, state0 = lstm_problem(6, 6, 7, 9)
    before = (copy(params), x.copy(), y.copy(), state0.copy())
    _, g1, s1 = lstm.loss_and_grads(params, x, y, state0)
    snapshot = (copy(g1), s1.copy())
    lstm.loss_and_grads(params, y, x, s1)
    for name in g1:
        np.testing.assert_array_equal(g1[name], snapshot[0][name], err_msg=name)
        np.testing.assert_array_equal(params[name], before[0][name], err_msg=name)
    np.testing.assert_array_equal(s1, snapshot[1])
    for now, then in zip((x, y, state0), before[1:]):
        np.testing.assert_array_equal(now, then)


def test_zero_state_shapes():
    """zero_state: (2m,) zeros for one stream, (B, 2m) for a batch."""
    params = lstm.init_params(4, 6)
    assert lstm.zero_state(params).shape == (12,) and not lstm.zero_state(params).any()
    assert lstm.zero_state(params, 3).shape == (3, 12) and not lstm.zero_state(params, 3).any()


def test_learns_a_repeating_string():
    """AdaGrad on 'abcabdabe' repeated: the next letter after 'ab' needs the letter three steps back.
    After training, the loss from a fresh state (after one period of warm-up) is below 0.05 a character."""
    period = "abcabdabe"
    ids = np.array(["abcde".index(ch) for ch in period * 12])
    T = 27  # three periods: the state carried from one update to the next is in phase
    params = lstm.init_params(5, 16, 0.1, np.random.default_rng(0))
    w, views = flatten(params)
    dw, grads = flatten(params)
    opt = AdaGrad(eta=0.1)
    opt_state = opt.init_state(w)
    state = lstm.zero_state(views)
    for update in range(500):  # measured over seeds 0..9: below 0.05 after 40 .. 160 updates
        e = (update % 3) * T
        if e == 0:
            state = lstm.zero_state(views)
        _, _, state = lstm.loss_and_grads(views, ids[e:e + T], ids[e + 1:e + T + 1], state, grads)
        opt.update(w, clip(dw, 5.0), opt_state)
    _, warm = lstm.loss_and_state(views, ids[:9], ids[1:10], lstm.zero_state(views))
    test_loss = lstm.loss(views, ids[9:99], ids[10:100], warm) / 90
    assert test_loss < 0.05


# --- the compiled LSTM (a4lib.fast_lstm) ----------------------------------------------------------
# Agreement criterion, as in test_fast.py: per array, max |fast - numpy| <= 1e-10 max |numpy| + 1e-12.
# Both of its paths run: products from compiled code ("native") and through np.dot ("numpy").

COMPILED_SHAPES = [  # (K_in, K_out, m, T, B)
    (7, 7, 5, 1, None),
    (6, 9, 5, 25, None),
    (9, 4, 16, 25, 1),
    (7, 7, 5, 5, 3),
    (65, 65, 128, 50, 16),
]


@pytest.fixture(params=["native", "numpy"])
def compiled(request, monkeypatch):
    """a4lib.fast_lstm on one of its paths (skipped without numba)."""
    pytest.importorskip("numba")
    from a4lib import fast_lstm, kernels

    kernels.build()
    if request.param == "native" and not kernels.NATIVE_GEMM:
        pytest.skip("numpy's BLAS has no ILP64 cblas gemm")
    monkeypatch.setattr(kernels, "NATIVE_GEMM", request.param == "native")
    return fast_lstm


def assert_close(actual, desired, what=""):
    scale = np.max(np.abs(desired), initial=0.0)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=1e-10 * scale + 1e-12, err_msg=what)


def assert_same(got, expected):
    (loss, grads, state), (loss_r, grads_r, state_r) = got, expected
    assert_close(loss, loss_r, "loss")
    for name in grads_r:
        assert grads[name].shape == grads_r[name].shape and grads[name].dtype == np.float64
        assert_close(grads[name], grads_r[name], name)
    assert state.shape == state_r.shape
    assert_close(state, state_r, "state")


@pytest.mark.parametrize("K_in, K_out, m, T, B", COMPILED_SHAPES)
def test_compiled_equals_numpy_to_rounding(K_in, K_out, m, T, B, compiled):
    """Loss, every gradient and the last state; the loss-only pass too."""
    params, x, y, state0 = lstm_problem(K_in, K_out, m, T, B, seed=m + T, sig=1 / np.sqrt(m))
    expected = lstm.loss_and_grads(params, x, y, state0)
    assert_same(compiled.loss_and_grads(params, x, y, state0), copy_result(expected))
    loss, state = compiled.loss_and_state(params, x, y, state0)
    assert_close(loss, expected[0])
    assert_close(state, expected[2])
    assert_close(compiled.loss(params, x, y, state0), expected[0])


def copy_result(result):
    return result[0], copy(result[1]), result[2].copy()


def test_compiled_saturated_gates_and_extreme_logits(compiled):
    """Gates and cells in saturation (tanh and sigmoid round to their limits) and logits spread
    over more than 745 (exp underflows to 0): still equal to numpy."""
    params, x, y, state0 = lstm_problem(10, 12, 20, 8, 2, seed=4, sig=20.0)
    params["V"] *= 100.0
    H, C, G, TC = lstm.cell_states(params, x, state0)
    assert np.mean(np.abs(G) == 1.0) > 0.2
    assert np.ptp(H[1:] @ params["V"].T, axis=-1).max() > 745
    assert_same(compiled.loss_and_grads(params, x, y, state0), copy_result(lstm.loss_and_grads(params, x, y, state0)))


@pytest.mark.parametrize("B", [None, 3])
def test_compiled_fills_flat_views_and_unusual_arrays(B, compiled):
    """grads= views of one flat vector are written in place; a Fortran-order array or one of
    another type is filled through a copy; nothing returned is overwritten by the next call."""
    params, x, y, state0 = lstm_problem(6, 8, 7, 9, B)
    expected = copy_result(lstm.loss_and_grads(params, x, y, state0))
    flat, views = flatten({k: np.full_like(v, np.nan) for k, v in params.items()})
    got = compiled.loss_and_grads(params, x, y, state0, views)
    assert got[1] is views and all(np.shares_memory(views[k], flat) for k in views)
    assert_same(got, expected)
    odd = {"W": np.zeros(params["W"].shape[::-1]).T, "c": np.zeros(8, np.float32)}
    compiled.loss_and_grads(params, x, y, state0, odd)
    assert_close(odd["W"], expected[1]["W"])
    np.testing.assert_allclose(odd["c"], expected[1]["c"], rtol=1e-6, atol=1e-7)
    kept = copy_result(got)
    compiled.loss_and_grads(params, x[::-1], y, got[2])
    assert_same(got, kept)


def test_compiled_bad_inputs_raise(compiled):
    params, x, y, state0 = lstm_problem(6, 4, 5, 5, 2, seed=1)
    with pytest.raises(IndexError):
        compiled.loss_and_grads(params, np.where(x == x[0, 0], 6, x), y, state0)
    with pytest.raises(IndexError):
        compiled.loss_and_state(params, x, np.where(y == y[0, 0], 4, y), state0)
    with pytest.raises(ValueError):
        compiled.loss_and_grads(params, x, y[:-1], state0)
    with pytest.raises(ValueError):
        compiled.loss_and_grads(params, x, y, state0[:, :5])
    with pytest.raises(ValueError):
        compiled.loss_and_grads({**params, "b": params["b"][:-1]}, x, y, state0)


def test_auto_backend_runs_the_compiled_lstm():
    pytest.importorskip("numba")
    from a4lib import fast_lstm
    from a4lib.models import resolve_backend

    assert resolve_backend("lstm", "auto") == "numba"
    assert get_model("lstm", "auto") is fast_lstm and get_model("lstm", "numba") is fast_lstm
