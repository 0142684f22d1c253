"""Gradients against centred differences: every cell with 1 and 2 layers, with and without
dropout, against differences of a loss written independently (conftest.own_forward); then
a4lib.gradcheck (check, run_checks, the command) and proof that the check fails on wrong
gradients.

Independent differences (float64 numpy, h = 1e-5, K = 5, m = 4, T = 5, B = 2, sig 0.5, nonzero
biases and state): measured max |analytic - numerical| 1.0e-10 .. 2.1e-10 for every cell, layer
count and dropout, with gradients of size 0.03 .. 0.6 (the smallest array's largest entry).
DIFF_TOL is 50 times the measurement; a wrong gradient (a missing path, a wrong gate
derivative, a mask forgotten) is off by 1e-3 or more.

gradcheck.check, measured max relative errors (three seeds per shape, sig =
gradcheck.default_sig(m), nonzero h0, b and c): 2e-9 .. 4e-6 for m = 5, 4e-7 .. 6e-6 for
m = 100. TOL is well above that and orders of magnitude below what a wrong gradient gives.
"""
from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import CELLS, model_problem, own_forward, own_masks, own_numerical

from a4lib import gradcheck, load_corpus
from a4lib.model import Network, reference

TOL = 1e-4
DIFF_TOL = 1e-8


# --- every cell, 1 and 2 layers, dropout: analytic against independent differences ------------------

@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_equal_independent_centred_differences(cell, layers, dropout):
    """The network's gradients (float64, numpy; with dropout, masks from a generator seeded 7)
    equal centred differences of own_forward's loss with the masks the same generator gives, for
    every parameter entry; the gradients are far from zero, so a dropped term shows."""
    T, B, m = 5, 2, 4
    net, p, x, y, s0 = model_problem(cell, 5, m, T, B, layers=layers, seed=layers, sig=0.5, dropout=dropout)
    masks = own_masks(np.random.default_rng(7), dropout, layers, (T, B, m)) if dropout else None
    loss, grads, _ = net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(7) if dropout else None)
    assert loss == pytest.approx(own_forward(cell, p, x, y, s0, layers, masks)[0], rel=1e-12)
    numeric = own_numerical(lambda q: own_forward(cell, q, x, y, s0, layers, masks)[0], p)
    assert set(grads) == set(p)
    for name in p:
        assert grads[name].shape == p[name].shape and grads[name].dtype == np.float64
        assert np.abs(numeric[name]).max() > 1e-2, name
        np.testing.assert_allclose(grads[name], numeric[name], rtol=0, atol=DIFF_TOL, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_gradients_equal_differences_of_the_networks_own_loss(cell):
    """With the same seeded generator for every loss call (fixed masks), centred differences of
    the network's own training loss equal its gradients: the backward pass applies the masks the
    forward pass drew."""
    net, p, x, y, s0 = model_problem(cell, 5, 4, 5, 2, layers=2, seed=3, sig=0.5, dropout=0.4)
    _, grads, _ = net.loss_and_grads(p, x, y, s0, rng=np.random.default_rng(11))
    grads = {k: v.copy() for k, v in grads.items()}
    numeric = own_numerical(lambda q: net.loss_and_grads(q, x, y, s0, rng=np.random.default_rng(11))[0], p)
    for name in p:
        np.testing.assert_allclose(grads[name], numeric[name], rtol=0, atol=DIFF_TOL, err_msg=name)


# --- gradcheck.check ------------------------------------------------------------------------------

SHAPES = [(7, 5, 1), (7, 5, 5), (7, 5, 25), (9, 100, 5)]  # K, m, T


@pytest.mark.parametrize("K, m, T", SHAPES)
def test_check_passes_for_the_handout_rnn(K, m, T, rnn_problem):
    """gradcheck.check on the one-layer RNN: every array's max relative error below TOL."""
    params, x, y, h0 = rnn_problem(K, m, T, sig=gradcheck.default_sig(m))
    table = gradcheck.check(Network("rnn", K, m), params, x, y, h0)
    assert set(table) == {"U", "W", "V", "b", "c"}
    for name, row in table.items():
        assert row["max_rel"] < TOL, (name, row)
        assert 0 <= row["mean_rel"] <= row["max_rel"]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_check_passes_for_every_cell_batched(cell, layers):
    """gradcheck.check on 3 streams with a nonzero state: every array below TOL."""
    net, p, x, y, s0 = model_problem(cell, 6, 5, 6, 3, layers=layers, seed=4, sig=0.3)
    table = gradcheck.check(net, p, x, y, s0)
    assert set(table) == set(p)
    assert max(row["max_rel"] for row in table.values()) < TOL, table


def test_m100_seq25_sampled_entries(rnn_problem):
    """m = 100, seq_length 25 (a full check takes seconds): 60 random entries of each gradient
    against centred differences of the loss, relative error below TOL."""
    params, x, y, h0 = rnn_problem(8, 100, 25, sig=gradcheck.default_sig(100))
    net = Network("rnn", 8, 100)
    _, grads, _ = net.loss_and_grads(params, x, y, h0)
    rng = np.random.default_rng(0)
    h = 1e-4
    for name, theta in params.items():
        flat = theta.reshape(-1)
        for i in rng.choice(flat.size, size=min(60, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + h
            plus = net.loss(params, x, y, h0)
            flat[i] = old - h
            minus = net.loss(params, x, y, h0)
            flat[i] = old
            numeric, analytic = (plus - minus) / (2 * h), grads[name].reshape(-1)[i]
            assert abs(numeric - analytic) / max(1e-8, abs(numeric) + abs(analytic)) < TOL, (name, i)


def test_numerical_grads_against_independent_differences(rnn_problem):
    """gradcheck.numerical_grads of the network's loss equals this file's own centred differences
    of own_forward."""
    params, x, y, h0 = rnn_problem(5, 4, 6, sig=0.3)
    net = Network("rnn", 5, 4)
    theirs = gradcheck.numerical_grads(lambda p: net.loss(p, x, y, h0), params, h=1e-5)
    ours = own_numerical(lambda p: own_forward("rnn", p, x, y, h0)[0], params, h=1e-5)
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

def wrapped(net, loss=None, loss_and_grads=None):
    """A model like ``net`` with one method replaced."""
    return types.SimpleNamespace(loss=loss or net.loss, loss_and_grads=loss_and_grads or net.loss_and_grads)


@pytest.mark.parametrize("name, index", [("W", (1, 2)), ("U", (0, 3)), ("V", (2, 0)), ("b", (4,)), ("c", (1,))])
def test_one_wrong_entry_is_caught(name, index, rnn_problem):
    """One gradient entry off by 1 %: that array's max relative error exceeds TOL, the others do not."""
    params, x, y, h0 = rnn_problem(7, 5, 5, sig=0.1)
    net = Network("rnn", 7, 5)

    def bad(p, x, y, h0, grads=None):
        loss, g, h = net.loss_and_grads(p, x, y, h0)
        g = {k: v.copy() for k, v in g.items()}
        g[name][index] *= 1.01
        return loss, g, h

    table = gradcheck.check(wrapped(net, loss_and_grads=bad), params, x, y, h0)
    assert table[name]["max_rel"] > 10 * TOL
    assert all(row["max_rel"] < TOL for k, row in table.items() if k != name)


def test_different_loss_is_caught(rnn_problem):
    """A loss 1 % larger than the one the gradients belong to fails for every array."""
    params, x, y, h0 = rnn_problem(7, 5, 5, sig=0.1)
    net = Network("rnn", 7, 5)
    table = gradcheck.check(wrapped(net, loss=lambda p, x, y, h0: 1.01 * net.loss(p, x, y, h0)), params, x, y, h0)
    assert all(row["max_rel"] > 10 * TOL for row in table.values())


def test_gradient_ignoring_h0_is_caught(rnn_problem):
    """A realistic bug, backpropagating as if h0 were zero, is caught."""
    params, x, y, h0 = rnn_problem(7, 5, 5, sig=0.3)

    def forgot_h0(p, x, y, h0, grads=None):
        return reference.loss_and_grads(p, x, y, np.zeros_like(h0))

    table = gradcheck.check(wrapped(Network("rnn", 7, 5), loss_and_grads=forgot_h0), params, x, y, h0)
    assert table["W"]["max_rel"] > 10 * TOL


@pytest.mark.parametrize("cell", CELLS)
def test_second_layer_gradient_from_one_layer_only_is_caught(cell):
    """A 2-layer network whose lower layer's gradients miss the path through the upper layer
    (those of a network that stops at layer 1) fails the check for U and W."""
    net, p, x, y, s0 = model_problem(cell, 6, 5, 6, 2, layers=2, seed=4, sig=0.5)

    def upper_only(q, x, y, s0, grads=None):
        loss, g, s = net.loss_and_grads(q, x, y, s0)
        g = {k: v.copy() for k, v in g.items()}
        g["U"][...] = 0.0
        g["W"][...] = 0.0
        return loss, g, s

    table = gradcheck.check(wrapped(net, loss_and_grads=upper_only), p, x, y, s0)
    assert table["U"]["max_rel"] > 10 * TOL and table["W"]["max_rel"] > 10 * TOL
    assert table["V"]["max_rel"] < TOL


# --- the reported checks ------------------------------------------------------------------------

def test_run_checks_and_table(small_text):
    """run_checks on a small corpus for m = 5: ok, the handout's first seq_length characters; the
    table lists every parameter."""
    corpus = load_corpus(small_text, 5)
    (result,) = gradcheck.run_checks(corpus, ms=(5,), seq_length=5)
    assert result["ok"] and result["m"] == 5 and result["K"] == corpus.K and result["seq_length"] == 5
    assert result["layers"] == 1 and result["model"] == "rnn"
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


@pytest.fixture
def fox(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog, again and again. " * 3, encoding="utf-8")
    return load_corpus(str(text), 25)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_handout_sig_check_passes_and_a_small_error_fails(cell, layers, fox):
    """At the handout's sig = 0.01 (m = 5) the check passes for every cell and layer count,
    round-off and all; the same check fails when the last layer's W is 0.1 % off."""
    [result] = gradcheck.run_checks(fox, [5], 25, cell, sig=0.01, layers=layers)
    assert result["ok"], result["table"]
    assert result["model"] == cell and result["layers"] == layers
    assert set(result["table"]) == set(Network(cell, fox.K, 5, layers=layers).init_params(np.random.default_rng(0)))

    net = Network(cell, fox.K, 5, layers=layers)
    params = net.init_params(np.random.default_rng(0), 0.01)
    x, y = fox.ids[:25], fox.ids[1:26]
    last = "W" if layers == 1 else "W2"

    def off(p, x, y, h0, grads=None):
        loss, g, h = net.loss_and_grads(p, x, y, h0)
        g = {k: v.copy() for k, v in g.items()}
        g[last] *= 1.001
        return loss, g, h

    table = gradcheck.check(wrapped(net, loss_and_grads=off), params, x, y, net.zero_state(params))
    assert table[last]["max_rel"] > TOL


def test_gradcheck_command_gru_two_layers_exits_0(tmp_path):
    """`a4lib gradcheck --model gru --layers 2` exits 0 and reports ok for each m; --json holds
    the tables of every parameter of both layers."""
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog, again and again. " * 3, encoding="utf-8")
    out = tmp_path / "g.json"
    run = subprocess.run([sys.executable, "-m", "a4lib", "gradcheck", "--model", "gru", "--layers", "2",
                          "--corpus", str(text), "--m", "5", "--m", "12", "--seq-length", "10", "--json", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())
    assert [(r["model"], r["layers"], r["m"], r["ok"]) for r in results] == [("gru", 2, 5, True), ("gru", 2, 12, True)]
    assert set(results[0]["table"]) == {"U", "W", "U2", "W2", "V", "b", "b2", "c"}
