"""The LSTM compiled (numba): the contract of ``a4lib.lstm``, faster, in float64 or float32.

``loss_and_grads`` and ``loss_and_state`` take and return what ``a4lib.lstm``'s do: x, y (T,) or
(T, B) indices; the state [h, c_t] (2m,) or (B, 2m); the loss summed over time and averaged over
streams; gradients written in place when ``grads`` is given; the last state a new array shaped
like the first. They compute in the parameters' type (W's: float32, or float64 for anything
else). The kernels are in ``a4lib.kernels`` (``_lstm_*``):

* Every product is a BLAS gemm called from compiled code (``kernels.NATIVE_GEMM``): the forward
  pass is one compiled call (per step W h_{t-1} into the gates, then the gate equations in one
  fused loop; V h for all steps at the end), the backward pass another (V^T dL/ds for all steps,
  then per step + W^T dL/da_{t+1}, making dL/dh_t, and the backward gate equations fused with
  the gathering of db and dU; dV and dW one product each over all steps). Only the recurrences
  are products per step.
* Without native gemm, a Python loop per step: np.dot, then the same compiled gate kernels.

Results agree with ``a4lib.lstm`` to rounding (about 1e-14 relative in float64). Single-threaded;
work buffers are module state reused between calls with the same shapes (not thread-safe);
nothing returned aliases them.
"""
from __future__ import annotations

import numpy as np

from . import kernels as k
from .fast import _floats, _indices, _store, _targets, compute_type
from .kernels import available  # noqa: F401
from .lstm import NAMES, init_params, step, zero_state  # noqa: F401  (the model's other functions are lstm's)

Params = dict[str, np.ndarray]


class _Plan:
    """Work arrays for one (T, B, m, K_in, K_out, dtype)."""

    def __init__(self, T: int, B: int, m: int, K_in: int, K_out: int, dtype: np.dtype) -> None:
        def empty(*shape):
            return np.empty(shape, dtype)
        self.UT, self.WT = empty(K_in, 4 * m), empty(m, 4 * m)
        self.H, self.C = empty(T + 1, B, m), empty(T + 1, B, m)  # [0]: the state given; [t]: after step t
        self.H_out = self.H[1:].reshape(T * B, m)  # h_1 .. h_T: inputs of the output layer
        self.H_in = self.H[:-1].reshape(T * B, m)  # h_0 .. h_{T-1}: inputs of W
        self.G = empty(T, B, 4 * m)  # the gates [i, f, o, g] of every step
        self.TC = empty(T, B, m)  # tanh(c_t)
        self.O = empty(T * B, K_out)  # s_t, then dL/ds_t
        self.D = empty(T, B, 4 * m)  # dL/da_t
        self.D2 = self.D.reshape(T * B, 4 * m)
        self.DH = empty(T, B, m)  # V^T dL/ds_t, then dL/dh_t
        self.dc_next, self.tmp = empty(B, m), empty(B, m)
        self.gUT = empty(K_in, 4 * m)  # scratch for dL/dU^T
        self.gc = empty(K_out)  # scratch for the loss-only pass


_plans: dict[tuple, _Plan] = {}


def _plan(*key) -> _Plan:
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= 8:  # many distinct shapes: do not hoard memory
            _plans.clear()
        plan = _plans[key] = _Plan(*key)
    return plan


def _prepare(params: Params, x, y, state0):
    """Contiguous parameters of one float type (checked), x and y (T, B) intp, state0 (B, 2m), single flag."""
    k.build()
    dt = compute_type(params)
    U, W, V, b, c = (_floats(params[name], dt) for name in NAMES)
    m = W.shape[1] if W.ndim == 2 else -1
    if (W.shape != (4 * m, m) or U.ndim != 2 or U.shape[0] != 4 * m or V.ndim != 2 or V.shape[1] != m
            or b.shape != (4 * m,) or c.shape != (V.shape[0],)):
        raise ValueError(f"inconsistent parameter shapes: U {U.shape}, W {W.shape}, V {V.shape}, "
                         f"b {b.shape}, c {c.shape}")
    x = _indices(x, "x")
    y = _indices(y, "y", x.shape)
    state0 = _floats(state0, dt)
    single = x.ndim == 1
    if single:
        if state0.shape != (2 * m,):
            raise ValueError(f"the state has shape {state0.shape}; expected {(2 * m,)} for x of shape {x.shape}")
        x, y, state0 = x[:, None], y[:, None], state0[None, :]
    elif x.ndim != 2 or state0.shape != (x.shape[1], 2 * m):
        raise ValueError(f"x has shape {x.shape}, the state {state0.shape}: expected (T,) and ({2 * m},) or "
                         f"(T, B) and (B, {2 * m})")
    return (U, W, V, b, c), x, y, state0, single


def _forward_loss(P, x, y, state0, want_grad: bool, gc: np.ndarray | None) -> tuple[float, _Plan]:
    """The forward pass into the plan (dL/ds in pl.O when want_grad); returns the loss."""
    U, W, V, b, c = P
    (T, B), (m4, K_in), (K, m) = x.shape, U.shape, V.shape
    pl = _plan(T, B, m, K_in, K, W.dtype)
    k._transpose(U, pl.UT)
    k._transpose(W, pl.WT)
    pl.H[0], pl.C[0] = state0[:, :m], state0[:, m:]
    if k.NATIVE_GEMM:
        if not k._lstm_forward_blas(pl.UT, pl.WT, V, b, x, pl.H, pl.H_out, pl.C, pl.G, pl.TC, pl.O):
            raise IndexError(f"x has indices outside [0, {K_in})")
    else:
        if not k._check_indices(x, K_in):
            raise IndexError(f"x has indices outside [0, {K_in})")
        H, C, G, TC = pl.H, pl.C, pl.G, pl.TC
        for t in range(T):
            np.dot(H[t], pl.WT, out=G[t])
            k._lstm_cell(G[t], pl.UT, b, x[t], C[t], C[t + 1], TC[t], H[t + 1])
        np.dot(pl.H_out, V.T, out=pl.O)
    loss = k._softmax_loss(pl.O, c, y.reshape(-1), B, want_grad, pl.gc if gc is None else gc, pl.O)
    if loss < 0:
        raise IndexError(f"y has indices outside [0, {K})")
    return float(loss), pl


def _backward(P, x, pl: _Plan, out: dict) -> None:
    """Every gradient but dc (the softmax's) from the plan's forward pass."""
    U, W, V, b, c = P
    T, B = x.shape
    if k.NATIVE_GEMM:
        k._lstm_backward_blas(V, W, x, pl.H_in, pl.H_out, pl.C, pl.G, pl.TC, pl.O, pl.D, pl.DH, pl.dc_next,
                              out["V"], out["W"], out["b"], out["U"], pl.gUT)
        return
    np.dot(pl.O.T, pl.H_out, out=out["V"])
    np.dot(pl.O, V, out=pl.DH.reshape(T * B, -1))
    pl.gUT[...] = 0.0
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            pl.DH[t] += np.dot(pl.D[t + 1], W, out=pl.tmp)
        k._lstm_cell_back(pl.D[t], pl.DH[t], pl.dc_next, pl.G[t], pl.C[t], pl.TC[t], x[t], pl.gUT,
                          t == T - 1, t == 0)
    np.dot(pl.D2.T, pl.H_in, out=out["W"])
    k._input_grads_end(pl.gUT, out["b"], out["U"])


def _last_state(pl: _Plan, single: bool) -> np.ndarray:
    """[h_T, c_T] as a new array: (2m,) for one stream, (B, 2m) for B."""
    state = np.concatenate([pl.H[-1], pl.C[-1]], axis=-1)
    return state[0] if single else state


def loss_and_grads(params: Params, x, y, h0, grads: Params | None = None) -> tuple[float, Params, np.ndarray]:
    """As ``a4lib.lstm.loss_and_grads``: the loss summed over time steps (averaged over streams),
    its unclipped gradients (written into ``grads`` when given) and the last state.

    x, y: int arrays (T,) or (T, B); h0: the state [h, c_t], (2m,) or (B, 2m).
    """
    P, x, y, state0, single = _prepare(params, x, y, h0)
    if grads is None:
        grads = {}
    out = _targets(grads, P)
    loss, pl = _forward_loss(P, x, y, state0, True, out["c"])
    _backward(P, x, pl, out)
    _store(grads, out)
    return loss, grads, _last_state(pl, single)


def loss_and_state(params: Params, x, y, h0) -> tuple[float, np.ndarray]:
    """As ``a4lib.lstm.loss_and_state``: the loss and the last state, no gradients."""
    P, x, y, state0, single = _prepare(params, x, y, h0)
    loss, pl = _forward_loss(P, x, y, state0, False, None)
    return loss, _last_state(pl, single)


def loss(params: Params, x, y, h0) -> float:
    """The loss only."""
    return loss_and_state(params, x, y, h0)[0]
