"""a4lib.model: every cell (rnn, gru, lstm) with 1 and 2 layers on both backends, against the
handout's one-hot loop (a4lib.model.reference), the equations written out in conftest.py
(``own_forward``), each other (numpy against compiled), and themselves (batches against single
streams, steps against whole sequences, states carried); dropout; parameters and states;
bad input; the compiled scalar math. Gradients against centred differences: test_gradcheck.py;
float32: test_dtype.py; runs: test_model_runs.py.

Agreement criterion between two computations of the same float64 quantity: per array,
max |a - b| <= 1e-10 max |b| + 1e-12 (``assert_close``). Entrywise relative agreement is not
asked for: back-propagated through 25 steps, a 1e-16 difference in the order of a sum can reach
1e-11 relative in a small entry. Measured between numpy and compiled: at most 8e-16 relative.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import CELLS, model_problem, own_cell_step, own_forward, own_masks

from a4lib.config import Config
from a4lib.model import Network, make_network, reference, resolve_backend
from a4lib.model.kernels import available
from a4lib.optim import AdaGrad, clip, flatten

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not available(), reason="numba is not installed"))]
LAYERS = [1, 2]
F64_REL, F64_ABS = 1e-10, 1e-12
F32_REL = 1e-5  # float32 against float32: measured at most 6.5e-7 relative to each array's scale


def assert_close(actual, desired, what="", rel=F64_REL, floor=F64_ABS):
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, what
    scale = float(np.max(np.abs(desired), initial=0.0))
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rel * scale + floor, err_msg=what)


def copied(result):
    loss, grads, state = result
    return loss, {k: v.copy() for k, v in grads.items()}, state.copy()


def assert_same(got, expected, what="", rel=F64_REL, floor=F64_ABS):
    (loss, grads, state), (loss_r, grads_r, state_r) = got, expected
    assert_close(loss, loss_r, f"{what} loss", rel, floor)
    assert set(grads) == set(grads_r)
    for k in grads_r:
        assert grads[k].shape == grads_r[k].shape, k
        assert_close(grads[k], grads_r[k], f"{what} d{k}", rel, floor)
    assert_close(state, state_r, f"{what} state", rel, floor)


# --- the handout: one layer of the vanilla RNN, no dropout, equals reference.py ---------------------

REFERENCE_SHAPES = [(7, 5, 1), (7, 5, 5), (7, 5, 25), (7, 100, 25), (9, 100, 5)]  # K, m, T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("K, m, T", REFERENCE_SHAPES)
def test_one_layer_rnn_equals_the_handout_reference(K, m, T, backend):
    """Loss, all five gradients and h_last equal reference.loss_and_grads (nonzero h0, b, c)."""
    net, p, x, y, h0 = model_problem("rnn", K, m, T, seed=m + T, backend=backend)
    loss, grads, h = net.loss_and_grads(p, x, y, h0)
    ref_loss, ref_grads, ref_h = reference.loss_and_grads(p, x, y, h0)
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
    assert set(grads) == set(ref_grads) == {"U", "W", "V", "b", "c"}
    for name in grads:
        assert_close(grads[name], ref_grads[name], name)
    assert h.shape == (m,)
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B", [3, 8])
def test_batched_rnn_is_the_mean_of_reference_streams(B, backend):
    """A (T, B) call: the loss and gradients are the means of the one-stream references, the
    state row by row."""
    net, p, x, y, h0 = model_problem("rnn", 9, 20, 25, B, seed=B, backend=backend)
    got = net.loss_and_grads(p, x, y, h0)
    refs = [reference.loss_and_grads(p, x[:, s], y[:, s], h0[s]) for s in range(B)]
    expected = (np.mean([r[0] for r in refs]), {k: np.mean([r[1][k] for r in refs], axis=0) for k in refs[0][1]},
                np.stack([r[2] for r in refs]))
    assert_same(got, expected)


def test_reference_adagrad_step_is_the_handout_update(rnn_problem):
    """reference.adagrad_step: clipped gradients, M += g^2, theta -= eta g / sqrt(M + eps)."""
    params, x, y, h0 = rnn_problem(6, 5, 7, sig=0.5)
    _, grads, _ = reference.loss_and_grads(params, x, y, h0)
    mem = {k: np.full_like(v, 0.25) for k, v in params.items()}
    new = {k: v.copy() for k, v in params.items()}
    reference.adagrad_step(new, mem, x, y, h0, eta=0.3, clip=0.1)
    for k in params:
        g = np.clip(grads[k], -0.1, 0.1)
        np.testing.assert_allclose(mem[k], 0.25 + g * g, rtol=1e-15)
        np.testing.assert_allclose(new[k], params[k] - 0.3 * g / np.sqrt(0.25 + g * g + 1e-8), rtol=1e-14)


# --- the equations: every cell and layer count against conftest.own_forward -----------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B", [None, 3])
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_loss_and_state_follow_the_equations(cell, layers, B, backend):
    """The loss (summed over time, averaged over streams) and the last state of every layer
    (the LSTM's [h, c] per layer) equal the equations stepped one at a time."""
    net, p, x, y, s0 = model_problem(cell, 7, 6, 9, B, layers=layers, seed=layers, sig=0.5, backend=backend)
    expected, expected_state = own_forward(cell, p, x, y, s0, layers)
    for loss, state in (net.loss_and_grads(p, x, y, s0)[::2], net.loss_and_state(p, x, y, s0)):
        assert loss == pytest.approx(expected, rel=1e-12)
        assert state.shape == s0.shape
        np.testing.assert_allclose(state, expected_state, rtol=0, atol=1e-13)
    assert net.loss(p, x, y, s0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_every_layer_and_the_state_matter(cell, layers):
    """Changing the last layer's recurrent matrix, or the first layer's starting state, changes
    the loss (no layer is skipped; the state carried is really used)."""
    net, p, x, y, s0 = model_problem(cell, 7, 6, 9, layers=layers, sig=0.5)
    loss = net.loss(p, x, y, s0)
    last = "W" if layers == 1 else f"W{layers}"
    assert net.loss({**p, last: 1.1 * p[last]}, x, y, s0) != pytest.approx(loss, rel=1e-9)
    s1 = s0.copy()
    s1[:net.S] = 0.0
    assert net.loss(p, x, y, s1) != pytest.approx(loss, rel=1e-9)


def test_lstm_cell_state_is_carried():
    """The LSTM's state is [h, c]: the cell state c0 alone (h0 fixed) changes the loss."""
    net, p, x, y, s0 = model_problem("lstm", 6, 10, 8, sig=0.5)
    assert net.S == 20
    only_h = s0.copy()
    only_h[10:] = 0.0
    assert net.loss(p, x, y, only_h) != pytest.approx(net.loss(p, x, y, s0), rel=1e-6)


# --- numpy against compiled -------------------------------------------------------------------------

@pytest.mark.skipif(not available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 3, 8])
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_compiled_equals_numpy(cell, layers, B, dtype):
    """The compiled cells give numpy's loss, gradients and state to rounding in each type: below
    and above the hand-written product's SMALL_ROWS (4) streams; the loss-only pass too. float32
    stays float32."""
    K, m, T = 11, 7, 13
    numpy_net, p, x, y, s0 = model_problem(cell, K, m, T, B, layers=layers, seed=B + layers, dtype=dtype)
    compiled = Network(cell, K, m, layers=layers, backend="numba")
    rel, floor = (F64_REL, F64_ABS) if dtype == np.float64 else (F32_REL, 1e-7)
    expected = copied(numpy_net.loss_and_grads(p, x, y, s0))
    got = compiled.loss_and_grads(p, x, y, s0)
    assert all(g.dtype == dtype for g in got[1].values()) and got[2].dtype == dtype
    assert_same(got, expected, rel=rel, floor=floor)
    loss, state = compiled.loss_and_state(p, x, y, s0)
    assert state.dtype == dtype
    assert_close(loss, expected[0], rel=rel, floor=floor)
    assert_close(state, expected[2], rel=rel, floor=floor)


@pytest.mark.skipif(not available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_compiled_equals_numpy_with_dropout(cell, dtype):
    """Two layers, dropout 0.4, generators seeded alike: the same masks, the same results."""
    numpy_net, p, x, y, s0 = model_problem(cell, 9, 6, 10, 3, layers=2, dropout=0.4, dtype=dtype)
    compiled = Network(cell, 9, 6, layers=2, dropout=0.4, backend="numba")
    rel, floor = (F64_REL, F64_ABS) if dtype == np.float64 else (F32_REL, 1e-7)
    expected = copied(numpy_net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(5)))
    assert_same(compiled.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(5)), expected, rel=rel, floor=floor)


@pytest.mark.skipif(not available(), reason="numba is not installed")
@pytest.mark.parametrize("cell", CELLS)
def test_compiled_saturated_units_and_extreme_logits(cell):
    """Units and gates in saturation (tanh and sigmoid round to their limits, past the
    polynomials' clamps) and logits spread over more than 745 (exp underflows to 0): still
    numpy's results."""
    numpy_net, p, x, y, s0 = model_problem(cell, 10, 20, 8, 2, layers=2, sig=8.0)
    p["V"] = 100.0 * p["V"]
    trace = numpy_net.trace(p, x[:, 0], s0[0])
    saturated = [np.abs(v - 0.5) > 0.5 - 1e-12 if k in "zrifo" else np.abs(v) > 1 - 1e-12
                 for layer in trace["layers"] for k, v in layer.items() if k != "c"]
    assert np.mean(saturated) > 0.1
    o = trace["layers"][-1]["h"] @ p["V"].T
    assert np.ptp(o, axis=1).max() > 745
    expected = copied(numpy_net.loss_and_grads(p, x, y, s0))
    assert np.isfinite(expected[0])
    assert_same(Network(cell, 10, 20, layers=2, backend="numba").loss_and_grads(p, x, y, s0), expected)


@pytest.mark.skipif(not available(), reason="numba is not installed")
def test_compiled_index_types_and_noncontiguous_inputs():
    """int32 and uint8 indices, a reversed (strided) x and Fortran-order parameters and state."""
    numpy_net, p, x, y, s0 = model_problem("gru", 9, 6, 6, 3, layers=2)
    expected = copied(numpy_net.loss_and_grads(p, x, y, s0))
    odd = {k: np.asfortranarray(v) for k, v in p.items()}
    net = Network("gru", 9, 6, layers=2, backend="numba")
    xs = np.asfortranarray(x[::-1].astype(np.int32))[::-1]
    assert not xs.flags.c_contiguous
    assert_same(net.loss_and_grads(odd, xs, y.astype(np.uint8), np.asfortranarray(s0)), expected)


# --- batches, single streams, steps, carried states -------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_batch_is_the_mean_of_its_streams(cell, layers, backend):
    """A (T, 4) call: loss and gradients are the means of the 4 one-stream calls (x (T,), state
    (L S,)), the state row by row; a stream alone equals a batch of one."""
    B = 4
    net, p, x, y, s0 = model_problem(cell, 8, 7, 12, B, layers=layers, seed=7, backend=backend)
    got = copied(net.loss_and_grads(p, x, y, s0))
    singles = [copied(net.loss_and_grads(p, x[:, s], y[:, s], s0[s])) for s in range(B)]
    assert all(s[2].shape == (layers * net.S,) for s in singles)
    expected = (np.mean([s[0] for s in singles]), {k: np.mean([s[1][k] for s in singles], axis=0) for k in p},
                np.stack([s[2] for s in singles]))
    assert_same(got, expected)
    one = net.loss_and_grads(p, x[:, :1], y[:, :1], s0[:1])
    assert one[2].shape == (1, layers * net.S)
    assert_same((one[0], one[1], one[2][0]), singles[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_step_matches_the_sequence(cell, layers, backend):
    """step() rolled over the inputs (B = 3) gives the loss of the whole sequence and its last state."""
    net, p, x, y, s0 = model_problem(cell, 6, 7, 11, 3, layers=layers, seed=3, backend=backend)
    state, total = s0, 0.0
    for t in range(len(x)):
        state, o = net.step(p, state, x[t])
        assert o.shape == (3, 6) and state.shape == s0.shape
        o = o - o.max(axis=1, keepdims=True)
        total -= (o[np.arange(3), y[t]] - np.log(np.exp(o).sum(axis=1))).sum() / 3
    loss, last = net.loss_and_state(p, x, y, s0)
    assert total == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(state, last, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_carrying_the_state_splits_a_sequence(cell, layers, backend):
    """Two halves with the state carried give the loss and last state of the whole sequence."""
    net, p, x, y, s0 = model_problem(cell, 6, 10, 20, layers=layers, seed=11, sig=0.5, backend=backend)
    whole, last = net.loss_and_state(p, x, y, s0)
    l1, s1 = net.loss_and_state(p, x[:8], y[:8], s0)
    l2, s2 = net.loss_and_state(p, x[8:], y[8:], s1)
    assert l1 + l2 == pytest.approx(whole, rel=1e-12)
    np.testing.assert_allclose(s2, last, rtol=0, atol=1e-13)


def test_huge_logits_keep_the_loss_finite():
    """Weights of scale 300: the softmax does not overflow."""
    for cell in CELLS:
        net, p, x, y, s0 = model_problem(cell, 5, 4, 6, sig=300.0)
        loss = net.loss(p, x, y, s0)
        assert np.isfinite(loss) and loss >= 0


# --- the gradients' dict, what a call leaves alone ------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_grads_written_in_place_into_flat_vector_views(cell, backend):
    """grads= views of one flat vector (optim.flatten, as the trainer passes them; stale NaN
    contents) are overwritten in place with the values of a call without them."""
    net, p, x, y, s0 = model_problem(cell, 8, 7, 9, 3, layers=2, backend=backend)
    expected = copied(net.loss_and_grads(p, x, y, s0))
    w, params = flatten(p)  # parameters as views of one vector, as the trainer keeps them
    flat, views = flatten({k: np.full_like(v, np.nan) for k, v in p.items()})
    got = net.loss_and_grads(params, x, y, s0, views)
    assert got[1] is views and all(np.shares_memory(views[k], flat) for k in views)
    assert_same(got, expected)
    np.testing.assert_array_equal(flat, np.concatenate([got[1][k].ravel() for k in p]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_later_calls_overwrite_nothing_returned_and_inputs_stay(cell, backend):
    """Gradients and state returned by one call survive later calls of other shapes (T and B);
    params, x, y and the state are left as they were."""
    net, p, x, y, s0 = model_problem(cell, 8, 7, 9, 3, layers=2, backend=backend)
    before = ({k: v.copy() for k, v in p.items()}, x.copy(), y.copy(), s0.copy())
    first = net.loss_and_grads(p, x, y, s0)
    kept = copied(first)
    net.loss_and_grads(p, y[:4], x[:4], first[2])
    net.loss_and_grads(p, x[:, 0], y[:, 0], s0[1])
    net.loss_and_state(p, x[:, :2], y[:, :2], s0[:2])
    assert_same(first, kept, rel=0, floor=0)
    for k in p:
        np.testing.assert_array_equal(p[k], before[0][k])
    for now, then in zip((x, y, s0), before[1:]):
        np.testing.assert_array_equal(now, then)


@pytest.mark.parametrize("backend", BACKENDS)
def test_workspace_reused_across_shapes_without_stale_data(backend):
    """One network called with T = 25, 7, 25, 1 and B = 1, 4, 9 in turn, new parameters each time:
    every call equals that of a fresh network, with and without gradients."""
    net = Network("lstm", 10, 8, layers=2, backend=backend)
    for i, (T, B) in enumerate([(25, None), (7, None), (25, 4), (7, 9), (1, 4), (25, None)]):
        fresh, p, x, y, s0 = model_problem("lstm", 10, 8, T, B, layers=2, seed=100 + i, backend=backend)
        expected = copied(fresh.loss_and_grads(p, x, y, s0))
        assert_same(net.loss_and_grads(p, x, y, s0), expected, f"call {i} (T={T}, B={B})", rel=0, floor=0)
        loss, state = net.loss_and_state(p, x, y, s0)
        assert loss == expected[0] and np.array_equal(state, expected[2])


# --- parameters and states ---------------------------------------------------------------------------

@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_init_params_shapes_and_normal_scale(cell, layers):
    """U (G m, K), W (G m, m), U2 (G m, m), V (K, m) from N(0, sig^2); biases zero but the LSTM's
    forget gates (1); c zero; float64."""
    K, m = 11, 30
    net = Network(cell, K, m, layers=layers)
    G = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    p = net.init_params(np.random.default_rng(3), 0.01)
    shapes = {"U": (G * m, K), "W": (G * m, m), "V": (K, m), "b": (G * m,), "c": (K,)}
    if layers == 2:
        shapes.update({"U2": (G * m, m), "W2": (G * m, m), "b2": (G * m,)})
    assert {k: v.shape for k, v in p.items()} == shapes
    assert all(v.dtype == np.float64 for v in p.values())
    forget = np.repeat([0.0, 1.0, 0.0, 0.0], m) if cell == "lstm" else np.zeros(G * m)
    for b in ("b", "b2")[:layers]:
        np.testing.assert_array_equal(p[b], forget)
    assert not p["c"].any()
    weights = np.concatenate([v.ravel() for k, v in p.items() if k[0] in "UWV"])
    assert abs(weights.std() - 0.01) < 0.0005  # >= 1650 draws: the std estimate's std <= 1.8e-4
    assert abs(weights.mean()) < 0.0005


@pytest.mark.parametrize("cell", CELLS)
def test_init_uniform_draws_within_the_range(cell):
    """init "uniform": every matrix entry in [-init_range, init_range), spread over it like a
    uniform (std r / sqrt(3), the extremes near +-r); biases as with normal."""
    r = 0.05
    net = Network(cell, 11, 30, layers=2)
    p = net.init_params(np.random.default_rng(4), sig=10.0, init="uniform", init_range=r)
    weights = np.concatenate([v.ravel() for k, v in p.items() if k[0] in "UWV"])
    assert np.all(weights >= -r) and np.all(weights < r)
    assert weights.min() < -0.99 * r and weights.max() > 0.99 * r
    assert abs(weights.std() - r / np.sqrt(3)) < 0.02 * r / np.sqrt(3)
    normal = net.init_params(np.random.default_rng(4), sig=0.01)
    for k in p:
        if k[0] in "bc":
            np.testing.assert_array_equal(p[k], normal[k])
    with pytest.raises(ValueError, match="init"):
        net.init_params(np.random.default_rng(4), init="glorot")


def test_init_params_seeded():
    """The same generator state gives the same parameters; another seed others."""
    net = Network("gru", 7, 5, layers=2)
    a, b, c = (net.init_params(np.random.default_rng(s)) for s in (1, 1, 2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W2"], c["W2"])


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_zero_state_shapes_and_types(cell, layers):
    """zero_state: (L S,) or (B, L S) zeros in the parameters' type; S = 2 m for the LSTM."""
    net = Network(cell, 4, 6, layers=layers)
    p = net.init_params(np.random.default_rng(0))
    S = layers * (12 if cell == "lstm" else 6)
    assert net.zero_state(p).shape == (S,) and not net.zero_state(p).any()
    assert net.zero_state(p, 3).shape == (3, S) and not net.zero_state(p, 3).any()
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    assert net.zero_state(p32).dtype == np.float32 and net.zero_state(p, 2).dtype == np.float64


# --- dropout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_dropout_is_off_without_a_generator(cell, backend):
    """dropout 0.5: loss_and_state, loss, step, trace and loss_and_grads without a generator
    compute exactly what the network without dropout computes; with a generator the loss
    differs."""
    net, p, x, y, s0 = model_problem(cell, 8, 6, 10, 3, layers=2, dropout=0.5, backend=backend)
    plain = Network(cell, 8, 6, layers=2, dropout=0.0, backend=backend)
    expected = copied(plain.loss_and_grads(p, x, y, s0))
    assert_same(net.loss_and_grads(p, x, y, s0), expected, rel=0, floor=0)
    loss, state = net.loss_and_state(p, x, y, s0)
    assert loss == expected[0] and np.array_equal(state, expected[2])
    assert net.loss(p, x, y, s0) == expected[0]
    for a, b in zip(net.step(p, s0, x[0]), plain.step(p, s0, x[0])):
        np.testing.assert_array_equal(a, b)
    t1, t0 = net.trace(p, x[:, 0], s0[0]), plain.trace(p, x[:, 0], s0[0])
    np.testing.assert_array_equal(t1["p"], t0["p"])
    dropped = net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(0))[0]
    assert dropped != pytest.approx(expected[0], rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_dropout_masks_come_from_the_generator(cell, backend):
    """Generators seeded alike give the same loss and gradients, other seeds other losses; the
    masks consume the generator (what a resumed run restores), dropout 0 leaves it untouched."""
    net, p, x, y, s0 = model_problem(cell, 8, 6, 10, 3, layers=2, dropout=0.3, backend=backend)
    a = copied(net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(1)))
    b = net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(1))
    assert_same(b, a, rel=0, floor=0)
    others = {net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(s))[0] for s in (2, 3, 4)}
    assert len(others | {a[0]}) == 4
    rng = np.random.default_rng(9)
    start = rng.bit_generator.state
    net.loss_and_grads(p, x, y, s0, rng=rng)
    assert rng.bit_generator.state != start
    rng = np.random.default_rng(9)
    Network(cell, 8, 6, layers=2, dropout=0.0, backend=backend).loss_and_grads(p, x, y, s0, rng=rng)
    assert rng.bit_generator.state == start


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("cell", CELLS)
def test_dropout_masks_are_scaled_bernoulli_between_layers_and_before_the_output(cell, layers):
    """With dropout p the loss is the equations' with masks of 0 and 1 / (1 - p), each unit kept
    with probability 1 - p, one mask per layer (between layers and before the output), drawn
    from the generator in layer order."""
    p_drop, T, B, m = 0.3, 7, 3, 6
    net, p, x, y, s0 = model_problem(cell, 8, m, T, B, layers=layers, dropout=p_drop, sig=0.5)
    masks = own_masks(np.random.default_rng(21), p_drop, layers, (T, B, m))
    expected, state = own_forward(cell, p, x, y, s0, layers, masks)
    loss, _, last = net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(21))
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(last, state, rtol=0, atol=1e-13)  # the states themselves are not dropped
    kept = np.mean([mk > 0 for mk in masks])
    assert 0.55 < kept < 0.85


# --- trace --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_trace_holds_every_layer_and_the_probabilities(cell, backend):
    """trace: per layer h (T, m) of the equations (and the LSTM's c, the gates in [0, 1] or
    [-1, 1]); p (T, K) rows summing to 1 whose -log p[t, y_t] sum to the loss."""
    net, p, x, y, s0 = model_problem(cell, 8, 6, 10, layers=2, sig=0.5, backend=backend)
    tr = net.trace(p, x, s0)
    assert len(tr["layers"]) == 2 and tr["p"].shape == (10, 8)
    np.testing.assert_allclose(tr["p"].sum(axis=1), 1.0, rtol=1e-14)
    assert -np.log(tr["p"][np.arange(10), y]).sum() == pytest.approx(net.loss(p, x, y, s0), rel=1e-12)
    names = {"rnn": {"h"}, "gru": {"z", "r", "n", "h"}, "lstm": {"i", "f", "o", "g", "c", "h"}}[cell]
    states = [s0[None, :6 * (2 if cell == "lstm" else 1)], s0[None, net.S:]]
    for t in range(10):  # the states of each layer, stepped here
        inp = None
        for l in range(2):
            sfx = "" if l == 0 else "2"
            a = (p["U"][:, x[t]][None, :] if l == 0 else inp @ p["U2"].T) + p["b" + sfx]
            states[l], inp = own_cell_step(cell, p["W" + sfx], a, states[l], 6)
            np.testing.assert_allclose(tr["layers"][l]["h"][t], inp[0], rtol=0, atol=1e-13)
    for layer in tr["layers"]:
        assert set(layer) == names and all(v.shape == (10, 6) for v in layer.values())
        for k, v in layer.items():
            if k in ("z", "r", "i", "f", "o"):
                assert v.min() >= 0 and v.max() <= 1, k
    if cell == "lstm":
        np.testing.assert_allclose(tr["layers"][1]["c"][-1], states[1][0, 6:], rtol=0, atol=1e-13)


# --- making a network, bad input -------------------------------------------------------------------

def test_make_network_from_a_config_and_a_config_json_dict():
    """make_network: the model, m, layers, dropout and backend of a Config; a config.json dict
    of an older run (no layers or dropout) is one layer without dropout; backend= overrides."""
    net = make_network(Config(model="gru", m=12, layers=3, dropout=0.25, backend="numpy"), 17)
    assert (net.name, net.K, net.m, net.layers, net.dropout, net.backend) == ("gru", 17, 12, 3, 0.25, "numpy")
    old = make_network({"model": "lstm", "m": 9, "backend": "numpy"}, 5)
    assert (old.name, old.m, old.layers, old.dropout, old.S) == ("lstm", 9, 1, 0.0, 18)
    assert make_network({"model": "rnn", "m": 4}, 5, backend="numpy").backend == "numpy"


def test_resolve_backend():
    """auto is numba where numba and SciPy are installed, else numpy; unknown names refused."""
    assert resolve_backend("auto") == ("numba" if available() else "numpy")
    assert resolve_backend("numpy") == "numpy"
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_raise_value_errors(backend):
    """Indices outside the vocabulary (x or y), x and y of other shapes, a state of the wrong
    size: ValueError, on both backends; an unknown model or backend too."""
    net, p, x, y, s0 = model_problem("lstm", 6, 5, 5, 2, layers=2, backend=backend)
    with pytest.raises(ValueError, match="outside|indices"):
        net.loss_and_grads(p, np.where(x == x[0, 0], 6, x), y, s0)
    with pytest.raises(ValueError, match="outside|indices"):
        net.loss_and_state(p, x, np.where(y == y[0, 0], -1, y), s0)
    with pytest.raises(ValueError):
        net.loss_and_grads(p, x, y[:-1], s0)
    with pytest.raises(ValueError):
        net.loss_and_grads(p, x, y, s0[:, :10])
    with pytest.raises(ValueError):
        net.loss_and_state(p, x, y, s0[0])
    with pytest.raises(ValueError, match="unknown model"):
        Network("transformer", 6, 5)
    with pytest.raises(ValueError, match="unknown backend"):
        Network("rnn", 6, 5, backend="cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_integer_indices_are_a_value_error(backend):
    """Character indices of a float type are bad indices like those outside the vocabulary: a
    ValueError naming them, on both backends. (Found with the new model layer: numpy raises
    TypeError for a float x and IndexError for a float y; the compiled backend numba's
    TypingError, a 27-line message after an attempted compile. The removed a4lib.fast raised
    ValueError.)"""
    net, p, x, y, s0 = model_problem("rnn", 5, 4, 3, backend=backend)
    for bad_x, bad_y in ((x.astype(float), y), (x, y.astype(float))):
        with pytest.raises(ValueError, match="indices"):
            net.loss_and_grads(p, bad_x, bad_y, s0)
        with pytest.raises(ValueError, match="indices"):
            net.loss_and_state(p, bad_x, bad_y, s0)


def test_without_numba_the_model_layer_runs_on_numpy():
    """numba missing: the package imports, auto resolves to numpy, the numpy backend computes,
    asking for numba is one ValueError naming what to install."""
    code = ("import sys; sys.modules['numba'] = None\n"
            "import numpy as np\n"
            "from a4lib.model import Network, resolve_backend\n"
            "from a4lib.model.kernels import available\n"
            "assert available() is False and resolve_backend('auto') == 'numpy'\n"
            "net = Network('gru', 3, 2, layers=2)\n"
            "p = net.init_params(np.random.default_rng(0))\n"
            "assert np.isfinite(net.loss(p, np.array([0, 1]), np.array([1, 2]), net.zero_state(p)))\n"
            "try:\n"
            "    resolve_backend('numba')\n"
            "except ValueError as e:\n"
            "    assert 'numba' in str(e)\n"
            "else:\n"
            "    raise SystemExit('no ValueError')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


# --- the compiled scalar math -----------------------------------------------------------------------

@pytest.mark.skipif(not available(), reason="numba is not installed")
def test_tanh_sigmoid_and_exp_kernels_within_a_few_ulp():
    """float64: tanh within 1e-15 relative of numpy's, exp (for arguments <= 0) too; NaN stays
    NaN. float32: within 3e-7 relative (a few float32 ulp). sigmoid = (1 + tanh(a / 2)) / 2 within
    3e-16 absolute (the formula's, as the numpy cells compute it: exact to an ulp of 1/2)."""
    from a4lib.model import kernels

    kernels.build()
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.standard_normal(5000) * s for s in (1e-12, 1e-3, 0.3, 1, 5, 30)]
                       + [np.array([0.0, -0.0, 9.99, 10.01, 19.99, 20.01, -20.01, 700.0, np.inf, -np.inf])])
    t = a.copy()
    kernels._tanh_inplace(t)
    np.testing.assert_allclose(t, np.tanh(a), rtol=1e-15, atol=0)
    t32 = a.astype(np.float32)
    kernels._tanh_inplace(t32)
    np.testing.assert_allclose(t32, np.tanh(a.astype(np.float32)), rtol=3e-7, atol=1e-37)
    s = a[np.isfinite(a)].copy()
    kernels._sigmoid_inplace(s)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-a[np.isfinite(a)])), rtol=0, atol=3e-16)  # as cells.sigmoid
    z = np.concatenate([-np.abs(a[np.isfinite(a)]), [-707.5, -708.5, -720.0, -745.2, -800.0, -np.inf]])
    e = z.copy()
    kernels._exp_nonpos_inplace(e)
    # below -708 (e^-708 ~ 3e-308) the kernel returns 0 where numpy returns a subnormal
    np.testing.assert_allclose(e, np.exp(z), rtol=1e-15, atol=1e-307)
    e32 = z.astype(np.float32)
    kernels._exp_nonpos_inplace(e32)
    np.testing.assert_allclose(e32, np.exp(z.astype(np.float32)), rtol=3e-7, atol=2e-38)
    nan = np.array([np.nan])
    kernels._tanh_inplace(nan)
    assert np.isnan(nan[0])


# --- learning ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, layers", [("gru", 1), ("lstm", 1), ("lstm", 2)])
def test_gated_networks_learn_a_repeating_string(cell, layers):
    """AdaGrad on 'abcabdabe' repeated: the letter after 'ab' needs the letter three steps back.
    After 500 updates the loss from a fresh state (after one period of warm-up) is below 0.05 a
    character (chance: log 5 = 1.6)."""
    period = "abcabdabe"
    ids = np.array(["abcde".index(ch) for ch in period * 12])
    T = 27  # three periods: the state carried from one update to the next is in phase
    net = Network(cell, 5, 16, layers=layers)
    w, views = flatten(net.init_params(np.random.default_rng(0), 0.1))
    dw, grads = flatten(views)
    opt = AdaGrad(eta=0.1)
    opt_state = opt.init_state(w)
    state = net.zero_state(views)
    for update in range(500):
        e = (update % 3) * T
        if e == 0:
            state = net.zero_state(views)
        _, _, state = net.loss_and_grads(views, ids[e:e + T], ids[e + 1:e + T + 1], state, grads)
        opt.update(w, clip(dw, 5.0), opt_state)
    _, warm = net.loss_and_state(views, ids[:9], ids[1:10], net.zero_state(views))
    assert net.loss(views, ids[9:99], ids[10:100], warm) / 90 < 0.05


@pytest.mark.parametrize("bad", [dict(m=0), dict(layers=0), dict(dropout=1.0), dict(dropout=-0.1), dict(K=0)])
def test_a_network_of_impossible_sizes_is_a_value_error(bad):
    args = {"K": 5, "m": 4, "layers": 1, "dropout": 0.0, **bad}
    with pytest.raises(ValueError, match="need K, m, layers"):
        Network("gru", args["K"], args["m"], layers=args["layers"], dropout=args["dropout"])


# --- float32 subnormals: flushed to zero in the compiled backend's passes and steps ------------------

def _subnormal_product() -> np.float32:
    """1e-38 * 0.01 in float32: 1e-40, a subnormal, unless subnormals are flushed (then 0)."""
    return np.array([1e-38], np.float32)[0] * np.float32(0.01)


@pytest.mark.skipif(not available(), reason="numba is not installed")
@pytest.mark.skipif(not __import__("a4lib.model.kernels").model.kernels._is_x86(), reason="MXCSR is x86's")
def test_subnormals_are_flushed_for_float32_only_and_the_thread_restored():
    import threading

    from a4lib.model import kernels
    kernels.build()
    assert _subnormal_product() != 0
    seen_by_other_thread, inside, looked = [], threading.Event(), threading.Event()

    def other() -> None:  # started before the block: a new thread would inherit the flags
        inside.wait(timeout=60)
        seen_by_other_thread.append(_subnormal_product())
        looked.set()

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    with kernels.subnormals_flushed(np.float32):
        flushed = _subnormal_product()
        inside.set()
        looked.wait(timeout=60)
    thread.join(timeout=60)
    assert flushed == 0
    assert seen_by_other_thread[0] != 0  # the flags are the calling thread's
    assert _subnormal_product() != 0
    with kernels.subnormals_flushed(np.float64):
        assert _subnormal_product() != 0
        assert np.array([1e-300])[0] * 1e-10 != 0
    with pytest.raises(KeyError), kernels.subnormals_flushed(np.float32):
        raise KeyError("restored on the way out")
    assert _subnormal_product() != 0


@pytest.mark.skipif(not available(), reason="numba is not installed")
@pytest.mark.skipif(not __import__("a4lib.model.kernels").model.kernels._is_x86(), reason="MXCSR is x86's")
def test_a_float32_compiled_pass_has_no_subnormal_gradients_where_numpy_has():
    """V scaled to 1e-36 makes dL/dU subnormal in places: numpy (IEEE) keeps them, the compiled
    pass has none (flushed to zero), and the caller's flags are as before. (Near 1e-36 the two then
    differ by tens of per cent: flushed terms are missing from the sums. Above float32's normal range
    the backends agree as everywhere else: test_dtype.py.)"""
    tiny = np.finfo(np.float32).tiny
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 9, (20, 3)), rng.integers(0, 9, (20, 3))
    grads = {}
    for backend in ("numpy", "numba"):
        net = Network("rnn", 9, 16, backend=backend)
        p = {k: v.astype(np.float32) for k, v in net.init_params(np.random.default_rng(0), sig=0.5).items()}
        p["V"] *= np.float32(1e-36)
        grads[backend] = net.loss_and_grads(p, x, y, net.zero_state(p, 3))[1]["U"]
    assert np.any((np.abs(grads["numpy"]) < tiny) & (grads["numpy"] != 0))
    assert np.all((np.abs(grads["numba"]) >= tiny) | (grads["numba"] == 0))
    assert _subnormal_product() != 0


# --- which BLAS compiled code calls: scipy-openblas32's, preloaded before SciPy's own --------------

_BOUND_SGEMM = """
import ctypes, sys
{before}
import a4lib
from a4lib.model import kernels
kernels.available()
class Info(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p), ("sname", ctypes.c_char_p),
                ("saddr", ctypes.c_void_p)]
import scipy.linalg.cython_blas  # what SciPy's BLAS binds to: the process's global scope first
info = Info()
try:
    address = ctypes.cast(ctypes.CDLL(None).scipy_sgemm_, ctypes.c_void_p)
    ctypes.CDLL(None).dladdr(address, ctypes.byref(info))
    print(info.fname.decode())
except AttributeError:  # no sgemm in the global scope: SciPy binds to the OpenBLAS it bundles
    print("none")
print(kernels.BLAS)
"""


@pytest.mark.skipif(not available(), reason="numba is not installed")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is an ELF global-namespace matter")
@pytest.mark.parametrize("scipy_first", [False, True])
def test_scipy_blas_runs_scipy_openblas32_when_a4lib_loads_it_first(scipy_first):
    pytest.importorskip("scipy_openblas32", reason="scipy-openblas32 is not installed")
    before = "import scipy.linalg" if scipy_first else ""
    out = subprocess.run([sys.executable, "-c", _BOUND_SGEMM.format(before=before)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    library, blas = out[0], out[1]
    if scipy_first:  # too late: SciPy keeps the OpenBLAS its wheel bundles, and says so
        assert library == "none" and "own" in blas
    else:
        assert "scipy_openblas32" in library and "preloaded" in blas


@pytest.mark.skipif(not available(), reason="numba is not installed")
def test_blas_threads_sets_compiled_codes_pool_and_changes_no_bit(tmp_path):
    """--blas-threads 2 gives compiled code's BLAS two threads (numpy's keeps one) and trains the
    same parameters, bit for bit, as one thread."""
    pytest.importorskip("scipy_openblas32", reason="scipy-openblas32 is not installed")
    from a4lib.model import kernels
    from a4lib.train import Trainer

    text = tmp_path / "text.txt"
    text.write_text("".join(chr(97 + i % 23) + chr(97 + i * 7 % 19) for i in range(4000)))
    weights = {}
    try:
        for threads in (1, 2):
            cfg = Config(corpus=str(text), model="gru", m=256, batch_size=32, seq_length=20, n_updates=3,
                         dtype="float32", blas_threads=threads, sample_every=0)
            trainer = Trainer(cfg, tmp_path / f"run{threads}")
            if not kernels._preloaded:
                pytest.skip(f"compiled code calls {kernels.BLAS}")
            assert kernels.blas_threads() == threads
            for _ in range(3):
                trainer.train_step()
                trainer._advance()
            weights[threads] = trainer.w.copy()
    finally:
        kernels.set_blas_threads(1)
    assert np.array_equal(weights[1], weights[2])
    with pytest.raises(ValueError, match="blas_threads"):
        Config(blas_threads=0).validate()


@pytest.mark.skipif(not available(), reason="numba is not installed")
def test_blas_threads_that_cannot_reach_the_pool_are_said_in_one_line(tmp_path):
    """With SciPy's linear algebra imported before a4lib, --blas-threads cannot reach compiled code's
    BLAS: the run trains and stderr has one line naming the flag."""
    text = tmp_path / "text.txt"
    text.write_text("abcab cabca bcabc " * 50)
    code = ("import sys, scipy.linalg\nfrom a4lib.cli import main\n"
            f"sys.exit(main(['train', '--corpus', {str(text)!r}, '--updates', '2', '--out', {str(tmp_path / 'run')!r}, "
            "'--blas-threads', '2', '--quiet', '--sample-every', '0']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "--blas-threads 2" in line]
    assert len(said) == 1
    assert (tmp_path / "run" / "summary.json").exists()
