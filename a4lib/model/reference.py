"""The handout's equations one time step at a time with one-hot column vectors.

The yardstick: tests check ``a4lib.rnn`` against it, and ``a4lib bench`` measures the speed-up
from it. Deliberately plain; do not optimise it.
"""
from __future__ import annotations

import numpy as np


def one_hot(i: int, K: int) -> np.ndarray:
    """Column vector (K, 1) with a one at row i."""
    v = np.zeros((K, 1))
    v[i, 0] = 1.0
    return v


def loss_and_grads(params: dict, x, y, h0) -> tuple[float, dict, np.ndarray]:
    """Same contract as ``a4lib.rnn.loss_and_grads`` for one stream: x, y (T,), h0 (m,)."""
    U, W, V = params["U"], params["W"], params["V"]
    b, c = params["b"].reshape(-1, 1), params["c"].reshape(-1, 1)
    K_in, K_out = U.shape[1], V.shape[0]
    T = len(x)
    xs, hs, ps = {}, {-1: np.asarray(h0, dtype=float).reshape(-1, 1)}, {}
    loss = 0.0
    for t in range(T):
        xs[t] = one_hot(x[t], K_in)
        a = W @ hs[t - 1] + U @ xs[t] + b
        hs[t] = np.tanh(a)
        o = V @ hs[t] + c
        ps[t] = np.exp(o - o.max()) / np.exp(o - o.max()).sum()
        loss -= np.log(ps[t][y[t], 0])

    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db, dc = np.zeros_like(b), np.zeros_like(c)
    dh_next = np.zeros_like(hs[0])
    for t in reversed(range(T)):
        do = ps[t] - one_hot(y[t], K_out)
        dV += do @ hs[t].T
        dc += do
        dh = V.T @ do + dh_next
        da = dh * (1 - hs[t] ** 2)
        db += da
        dU += da @ xs[t].T
        dW += da @ hs[t - 1].T
        dh_next = W.T @ da
    grads = {"U": dU, "W": dW, "V": dV, "b": db.ravel(), "c": dc.ravel()}
    return float(loss), grads, hs[T - 1].ravel()


def adagrad_step(params: dict, mem: dict, x, y, h0, eta: float = 0.1, clip: float = 5.0,
                 eps: float = 1e-8) -> tuple[float, np.ndarray]:
    """One training update as the handout writes it: gradients, clipping and AdaGrad per array."""
    loss, grads, h = loss_and_grads(params, x, y, h0)
    for name, g in grads.items():
        g = np.clip(g, -clip, clip)
        mem[name] += g * g
        params[name] -= eta * g / np.sqrt(mem[name] + eps)
    return loss, h
