"""a4lib.optim: the update rules written out independently, clipping, flat views, names."""
from __future__ import annotations

import numpy as np
import pytest

from a4lib.optim import OPTIMIZERS, AdaGrad, clip, flatten, make_optimizer, unflatten
from a4lib.train import Config

STEPS = 6


def gradients(n=50, steps=STEPS, seed=0):
    """A start vector and a list of gradients of mixed scales (including some exact zeros)."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(n)
    gs = [rng.standard_normal(n) * rng.choice([1e-3, 1.0, 10.0], n) for _ in range(steps)]
    gs[1][:5] = 0.0
    return w0, gs


def run(name, eta, w0, gs):
    opt = make_optimizer(name, eta)
    w = w0.copy()
    state = opt.init_state(w)
    trace = []
    for g in gs:
        opt.update(w, g.copy(), state)
        trace.append(w.copy())
    return trace, state


def test_adagrad_is_the_handout_formula():
    """AdaGrad: M += g^2; theta -= eta g / sqrt(M + 1e-8), step by step."""
    w0, gs = gradients()
    trace, state = run("adagrad", 0.1, w0, gs)
    w, M = w0.copy(), np.zeros_like(w0)
    for g, got in zip(gs, trace):
        M = M + g ** 2
        w = w - 0.1 * g / np.sqrt(M + 1e-8)
        np.testing.assert_allclose(got, w, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(state["M"], M, rtol=1e-13)


def test_rmsprop_formula():
    """RMSProp, gamma 0.9: M = 0.9 M + 0.1 g^2; theta -= eta g / sqrt(M + 1e-8)."""
    w0, gs = gradients(seed=1)
    trace, _ = run("rmsprop", 0.01, w0, gs)
    w, M = w0.copy(), np.zeros_like(w0)
    for g, got in zip(gs, trace):
        M = 0.9 * M + 0.1 * g ** 2
        w = w - 0.01 * g / np.sqrt(M + 1e-8)
        np.testing.assert_allclose(got, w, rtol=1e-13, atol=1e-15)


def test_adam_formula():
    """Adam, beta1 .9, beta2 .999, eps 1e-8, bias-corrected moments."""
    w0, gs = gradients(seed=2)
    trace, _ = run("adam", 0.01, w0, gs)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, (g, got) in enumerate(zip(gs, trace), start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        w = w - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-15)


def test_adam_first_step_moves_by_eta():
    """Adam's first bias-corrected step is eta * sign(g) for gradients well above eps."""
    w0 = np.zeros(4)
    g = np.array([3.0, -0.5, 1e-2, -7.0])
    opt = make_optimizer("adam", 0.05)
    state = opt.init_state(w0)
    opt.update(w0, g, state)
    np.testing.assert_allclose(w0, -0.05 * np.sign(g), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_does_not_touch_gradient_and_reuses_w(name):
    """update() changes w in place (same object) and leaves the gradient as it was."""
    w0, gs = gradients(seed=3)
    opt = make_optimizer(name, 0.1)
    w = w0.copy()
    state = opt.init_state(w)
    g = gs[0].copy()
    opt.update(w, g, state)
    np.testing.assert_array_equal(g, gs[0])
    assert not np.array_equal(w, w0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_on_different_sizes_do_not_interfere(name):
    """Two optimizers on vectors of different sizes, interleaved, give the same as each alone."""
    wa0, ga = gradients(n=30, seed=4)
    wb0, gb = gradients(n=70, seed=5)
    alone_a, _ = run(name, 0.1, wa0, ga)
    alone_b, _ = run(name, 0.1, wb0, gb)
    oa, ob = make_optimizer(name, 0.1), make_optimizer(name, 0.1)
    wa, wb = wa0.copy(), wb0.copy()
    sa, sb = oa.init_state(wa), ob.init_state(wb)
    for g1, g2 in zip(ga, gb):
        oa.update(wa, g1.copy(), sa)
        ob.update(wb, g2.copy(), sb)
    np.testing.assert_array_equal(wa, alone_a[-1])
    np.testing.assert_array_equal(wb, alone_b[-1])


def test_clip_elementwise_in_place():
    """clip(dw, 5) clips each element to [-5, 5] in place and returns the same array."""
    dw = np.array([-100.0, -5.0, -4.9, 0.0, 3.0, 5.0, 5.1, 1e9, np.inf])
    expected = np.array([-5.0, -5.0, -4.9, 0.0, 3.0, 5.0, 5.0, 5.0, 5.0])
    out = clip(dw, 5.0)
    assert out is dw
    np.testing.assert_array_equal(dw, expected)


@pytest.mark.parametrize("limit", [0.0, np.inf])
def test_clip_disabled(limit):
    """clip limit 0 or inf: no clipping."""
    dw = np.array([-100.0, 3.0, 1e9])
    np.testing.assert_array_equal(clip(dw.copy(), limit), dw)


def test_flatten_copies_and_views_share_memory():
    """flatten copies the arrays into one vector; its views share that vector's memory both ways."""
    arrays = {"U": np.arange(6.0).reshape(2, 3), "b": np.array([7.0, 8.0]), "W": np.ones((2, 2))}
    flat, views = flatten(arrays)
    assert flat.dtype == np.float64 and flat.shape == (12,)
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4, 5, 7, 8, 1, 1, 1, 1])
    assert list(views) == ["U", "b", "W"]
    for k in arrays:
        assert views[k].shape == arrays[k].shape
        assert np.shares_memory(views[k], flat)
        assert not np.shares_memory(views[k], arrays[k])
    flat[6] = -1.0
    assert views["b"][0] == -1.0 and arrays["b"][0] == 7.0
    views["W"][1, 1] = 42.0
    assert flat[-1] == 42.0
    views["U"] -= 1.0  # in-place arithmetic on a view reaches the vector
    np.testing.assert_array_equal(flat[:6], np.arange(6.0) - 1.0)


def test_unflatten_views_and_size_check():
    """unflatten gives views of an existing vector; a vector of the wrong size is a ValueError."""
    like = {"a": np.empty((2, 2)), "b": np.empty(3)}
    flat = np.arange(7.0)
    views = unflatten(flat, like)
    assert np.shares_memory(views["a"], flat) and views["b"].tolist() == [4.0, 5.0, 6.0]
    with pytest.raises(ValueError):
        unflatten(np.arange(8.0), like)


def test_optimizer_on_flat_vector_updates_views():
    """An update of the flat vector is seen through the parameter views (how the trainer uses it)."""
    params = {"U": np.ones((2, 2)), "c": np.zeros(3)}
    w, views = flatten(params)
    opt = AdaGrad(eta=0.5)
    opt.update(w, np.ones_like(w), opt.init_state(w))
    np.testing.assert_allclose(views["U"], 1 - 0.5 / np.sqrt(1 + 1e-8))
    np.testing.assert_allclose(views["c"], -0.5 / np.sqrt(1 + 1e-8))


def test_unknown_optimizer():
    """An unknown optimizer name is a ValueError naming it (make_optimizer and Config.validate)."""
    with pytest.raises(ValueError, match="sgd"):
        make_optimizer("sgd", 0.1)
    with pytest.raises(ValueError, match="sgd"):
        Config(optimizer="sgd").validate()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_make_optimizer_sets_eta(name):
    """make_optimizer passes the learning rate through."""
    assert make_optimizer(name, 0.123).eta == 0.123


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("limit", [5.0, 0.0, np.inf])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_step_is_clip_then_update_fused_or_not(name, limit, dtype):
    """opt.step(w, dw, state, limit) equals clip + update bit for bit, fused (compiled) or not, in
    float64 and float32, over several steps (Adam's bias correction moves with t); the state and
    w keep their type."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal(3000).astype(dtype)
    gs = [(8 * rng.standard_normal(3000)).astype(dtype) for _ in range(3)]
    plain = make_optimizer(name, 0.05)
    ref_w = w0.copy()
    ref_state = plain.init_state(ref_w)
    ref_dws = []
    for g in gs:
        ref_dws.append(clip(g.copy(), limit))
        plain.update(ref_w, ref_dws[-1], ref_state)
    assert (np.abs(gs[0]) > 5).any() and (np.abs(ref_dws[0]) > 5).any() == (limit != 5.0)
    for fused in (False, True):
        opt = make_optimizer(name, 0.05, fused=fused)
        assert opt.fused == fused
        w = w0.copy()
        state = opt.init_state(w)
        for g, ref_dw in zip(gs, ref_dws):
            dw = g.copy()
            opt.step(w, dw, state, limit)
            np.testing.assert_array_equal(dw, ref_dw)
        np.testing.assert_array_equal(w, ref_w)
        for k in state:
            np.testing.assert_array_equal(state[k], ref_state[k])
        assert w.dtype == dtype and all(v.dtype == dtype for k, v in state.items() if k != "t")


def test_fused_step_refuses_mixed_types():
    """A fused step on vectors of different types (or not float) is a ValueError, not a silent cast."""
    pytest.importorskip("numba")
    opt = make_optimizer("adagrad", 0.1, fused=True)
    w = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="float64 or float32"):
        opt.step(w, np.zeros(4), {"M": np.zeros(4, np.float32)}, 5.0)


def test_flatten_in_float32():
    """flatten(dtype=float32) rounds the float64 draws into one float32 vector (views of it)."""
    arrays = {"U": np.full((2, 2), 0.1), "b": np.arange(3.0)}
    flat, views = flatten(arrays, dtype="float32")
    assert flat.dtype == np.float32 and views["U"].dtype == np.float32
    assert views["U"][0, 0] == np.float32(0.1) and np.shares_memory(views["b"], flat)
    assert flatten(arrays)[0].dtype == np.float64
