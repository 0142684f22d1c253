"""Gradients against centred differences: a4lib.gradcheck.check and an independent implementation,
and proof that the check fails on wrong gradients.

Measured max relative errors (three seeds per shape, sig = gradcheck.default_sig(m), nonzero h0,
b and c): 2e-9 .. 4e-6 for m = 5, 4e-7 .. 6e-6 for m = 100. TOL is well above that and orders of
magnitude below what a wrong gradient gives (>= 1e-3 for a 1 % error in a single entry).
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from a4lib import gradcheck, reference, rnn

TOL = 1e-4

SHAPES = [  # (K_in, K_out, m, T)
    (7, 7, 5, 1),
    (7, 7, 5, 5),
    (7, 7, 5, 25),
    (6, 9, 5, 5),
    (9, 4, 100, 5),
]


def own_loss(params, x, y, h0) -> float:
    """The handout's loss written out here, one step at a time."""
    h, total = np.array(h0, dtype=float), 0.0
    for t in range(len(x)):
        h = np.tanh(params["W"] @ h + params["U"][:, x[t]] + params["b"])
        o = params["V"] @ h + params["c"]
        o = o - o.max()
        total += np.log(np.exp(o).sum()) - o[y[t]]
    return total


def own_numerical(params, x, y, h0, h=1e-5) -> dict:
    """Centred differences of own_loss, on copies of the parameters."""
    out = {}
    for name in params:
        g = np.zeros(params[name].size)
        for i in range(g.size):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name].reshape(-1)[i] += h
            minus[name].reshape(-1)[i] -= h
            g[i] = (own_loss(plus, x, y, h0) - own_loss(minus, x, y, h0)) / (2 * h)
        out[name] = g.reshape(params[name].shape)
    return out


@pytest.mark.parametrize("K_in, K_out, m, T", SHAPES)
def test_check_passes_for_rnn(K_in, K_out, m, T, rnn_problem):
    """gradcheck.check on the rnn: every array's max relative error below TOL."""
    params, x, y, h0 = rnn_problem(K_in, K_out, m, T, sig=gradcheck.default_sig(m))
    table = gradcheck.check(rnn, params, x, y, h0)
    assert set(table) == {"U", "W", "V", "b", "c"}
    for name, row in table.items():
        assert row["max_rel"] < TOL, (name, row)
        assert 0 <= row["mean_rel"] <= row["max_rel"]


@pytest.mark.parametrize("K_in, K_out, m, T", [(5, 5, 4, 6), (4, 6, 5, 3)])
def test_analytic_gradients_against_independent_differences(K_in, K_out, m, T, rnn_problem):
    """rnn's analytic gradients equal centred differences of a loss written independently here."""
    params, x, y, h0 = rnn_problem(K_in, K_out, m, T, sig=0.3)
    _, grads, _ = rnn.loss_and_grads(params, x, y, h0)
    numeric = own_numerical(params, x, y, h0)
    for name in params:
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_m100_seq25_sampled_entries(rnn_problem):
    """m = 100, seq_length 25 (a full check takes seconds): 60 random entries of each gradient against
    centred differences of the loss, relative error below TOL."""
    params, x, y, h0 = rnn_problem(8, 8, 100, 25, sig=gradcheck.default_sig(100))
    _, grads, _ = rnn.loss_and_grads(params, x, y, h0)
    grads = {k: v.copy() for k, v in grads.items()}
    rng = np.random.default_rng(0)
    h = 1e-4
    for name, theta in params.items():
        flat = theta.reshape(-1)
        for i in rng.choice(flat.size, size=min(60, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + h
            plus = rnn.loss(params, x, y, h0)
            flat[i] = old - h
            minus = rnn.loss(params, x, y, h0)
            flat[i] = old
            numeric, analytic = (plus - minus) / (2 * h), grads[name].reshape(-1)[i]
            assert abs(numeric - analytic) / max(1e-8, abs(numeric) + abs(analytic)) < TOL, (name, i)


def test_numerical_grads_against_independent_differences(rnn_problem):
    """gradcheck.numerical_grads of rnn.loss equals this file's own centred differences."""
    params, x, y, h0 = rnn_problem(5, 5, 4, 6, sig=0.3)
    theirs = gradcheck.numerical_grads(lambda p: rnn.loss(p, x, y, h0), params, h=1e-5)
    ours = own_numerical(params, x, y, h0, h=1e-5)
    for name in params:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_numerical_grads_of_known_function():
    """numerical_grads of sum(a * theta^3) is 3 a theta^2 (up to h^2 a theta), and params are restored."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4))
    params = {"t": rng.standard_normal((3, 4)), "s": rng.standard_normal(2)}
    before = {k: v.copy() for k, v in params.items()}
    g = gradcheck.numerical_grads(lambda p: float((a * p["t"] ** 3).sum() + (p["s"] ** 2).sum()), params, h=1e-4)
    np.testing.assert_allclose(g["t"], 3 * a * before["t"] ** 2, atol=1e-7)
    np.testing.assert_allclose(g["s"], 2 * before["s"], atol=1e-8)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_relative_errors_formula():
    """relative_errors: |ga - gn| / max(floor, |ga| + |gn|), max and mean, and max absolute error."""
    ga = {"a": np.array([1.0, -2.0, 0.0, 1e-12])}
    gn = {"a": np.array([1.1, -2.0, 0.0, 0.0])}
    row = gradcheck.relative_errors(ga, gn, floor=1e-8)["a"]
    expected = [0.1 / 2.1, 0.0, 0.0, 1e-12 / 1e-8]
    assert row["max_rel"] == pytest.approx(max(expected))
    assert row["mean_rel"] == pytest.approx(np.mean(expected))
    assert row["max_abs"] == pytest.approx(0.1)


# --- the check can fail -----------------------------------------------------------------------------

def wrapped(loss=None, loss_and_grads=None):
    """A model module like rnn with one function replaced."""
    return types.SimpleNamespace(loss=loss or rnn.loss, loss_and_grads=loss_and_grads or rnn.loss_and_grads)


@pytest.mark.parametrize("name, index", [("W", (1, 2)), ("U", (0, 3)), ("V", (2, 0)), ("b", (4,)), ("c", (1,))])
def test_one_wrong_entry_is_caught(name, index, rnn_problem):
    """One gradient entry off by 1 %: that array's max relative error exceeds TOL, the others do not."""
    params, x, y, h0 = rnn_problem(7, 7, 5, 5, sig=0.1)

    def bad(p, x, y, h0, grads=None):
        loss, g, h = rnn.loss_and_grads(p, x, y, h0)
        g = {k: v.copy() for k, v in g.items()}
        g[name][index] *= 1.01
        return loss, g, h

    table = gradcheck.check(wrapped(loss_and_grads=bad), params, x, y, h0)
    assert table[name]["max_rel"] > 10 * TOL
    assert all(row["max_rel"] < TOL for k, row in table.items() if k != name)


def test_different_loss_is_caught(rnn_problem):
    """A loss 1 % larger than the one the gradients belong to fails for every array."""
    params, x, y, h0 = rnn_problem(7, 7, 5, 5, sig=0.1)
    model = wrapped(loss=lambda p, x, y, h0: 1.01 * rnn.loss(p, x, y, h0))
    table = gradcheck.check(model, params, x, y, h0)
    assert all(row["max_rel"] > 10 * TOL for row in table.values())


def test_gradient_ignoring_h0_is_caught(rnn_problem):
    """A realistic bug, backpropagating as if h0 were zero, is caught."""
    params, x, y, h0 = rnn_problem(7, 7, 5, 5, sig=0.3)

    def forgot_h0(p, x, y, h0, grads=None):
        return reference.loss_and_grads(p, x, y, np.zeros_like(h0))

    table = gradcheck.check(wrapped(loss_and_grads=forgot_h0), params, x, y, h0)
    assert table["W"]["max_rel"] > 10 * TOL


def test_missing_tanh_derivative_is_caught(rnn_problem):
    """Gradients computed without the 1 - h^2 factor fail the check."""
    params, x, y, h0 = rnn_problem(7, 7, 5, 5, sig=0.5)

    def no_dtanh(p, x, y, h0, grads=None):
        T, m = len(x), len(h0)
        hs, ps = [np.asarray(h0, float)], []
        for t in range(T):
            hs.append(np.tanh(p["W"] @ hs[-1] + p["U"][:, x[t]] + p["b"]))
            o = p["V"] @ hs[-1] + p["c"]
            ps.append(np.exp(o - o.max()) / np.exp(o - o.max()).sum())
        g = {k: np.zeros_like(v) for k, v in p.items()}
        carry = np.zeros(m)
        for t in reversed(range(T)):
            do = ps[t].copy()
            do[y[t]] -= 1
            g["V"] += np.outer(do, hs[t + 1])
            g["c"] += do
            da = p["V"].T @ do + carry  # bug: should be multiplied by 1 - h_t^2
            g["W"] += np.outer(da, hs[t])
            g["U"][:, x[t]] += da
            g["b"] += da
            carry = p["W"].T @ da
        return rnn.loss(p, x, y, h0), g, hs[-1]

    table = gradcheck.check(wrapped(loss_and_grads=no_dtanh), params, x, y, h0)
    assert table["b"]["max_rel"] > 10 * TOL and table["W"]["max_rel"] > 10 * TOL
    assert table["V"]["max_rel"] < TOL  # V's gradient does not involve the bug


# --- the reported checks ------------------------------------------------------------------------

def test_run_checks_and_table(small_text):
    """run_checks on a small corpus for m = 5: ok, the handout's first seq_length characters; the table
    lists every parameter."""
    from a4lib import load_corpus

    corpus = load_corpus(small_text, 5)
    (result,) = gradcheck.run_checks(corpus, ms=(5,), seq_length=5)
    assert result["ok"] and result["m"] == 5 and result["K"] == corpus.K and result["seq_length"] == 5
    assert all(row["max_rel"] <= result["tol"] for row in result["table"].values())
    text = gradcheck.format_table(result["table"], "title")
    lines = text.splitlines()
    assert lines[0] == "title" and len(lines) == 2 + 5
    assert [ln.split()[0] for ln in lines[2:]] == ["U", "W", "V", "b", "c"]


def test_floor_is_the_round_off_of_a_centred_difference():
    """floor = 10 eps |L| / h / tol, never below 1e-8; and it is what check() divides by."""
    eps = np.finfo(np.float64).eps
    assert gradcheck.check_floor(115.0, 1e-4, 1e-4) == pytest.approx(10 * eps * 115 / 1e-4 / 1e-4)
    assert gradcheck.check_floor(0.5, 1e-4, 1e-4) == pytest.approx(10 * eps / 1e-4 / 1e-4)  # |L| < 1 counts as 1
    assert gradcheck.check_floor(1.0, 1.0, 1.0) == 1e-8
    ga, gn = {"a": np.array([1e-9])}, {"a": np.array([0.0])}
    assert gradcheck.relative_errors(ga, gn, floor=1e-5)["a"]["max_rel"] == pytest.approx(1e-4)


@pytest.mark.parametrize("model_name", ["rnn", "lstm"])
def test_handout_sig_check_passes_and_a_small_error_fails(model_name, tmp_path):
    """At the handout's sig = 0.01 (m = 5) the check passes for both models, round-off and all;
    the same check fails when one gradient array is 0.1 % off."""
    from a4lib import load_corpus
    from a4lib.models import get_model

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog, again and again. " * 3, encoding="utf-8")
    corpus = load_corpus(str(text), 25)
    [result] = gradcheck.run_checks(corpus, [5], 25, model_name, sig=0.01)
    assert result["ok"], result["table"]

    model = get_model(model_name)
    params = model.init_params(corpus.K, 5, 0.01, np.random.default_rng(0))
    x, y = corpus.ids[:25], corpus.ids[1:26]

    def off(p, x, y, h0, grads=None):
        loss, g, h = model.loss_and_grads(p, x, y, h0)
        g = {k: v.copy() for k, v in g.items()}
        g["W"] *= 1.001
        return loss, g, h

    bad = types.SimpleNamespace(loss=model.loss, loss_and_grads=off)
    table = gradcheck.check(bad, params, x, y, model.zero_state(params))
    assert table["W"]["max_rel"] > TOL
