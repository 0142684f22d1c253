"""The vanilla RNN compiled (numba): the contract of ``a4lib.rnn``, faster, in float64 or float32.

``loss_and_grads`` and ``loss_and_state`` take and return exactly what ``a4lib.rnn``'s do: x, y
(T,) or (T, B) indices; h0 (m,) or (B, m); the loss summed over time and averaged over streams;
gradients written in place when ``grads`` is given; h_last a copy shaped like h0. They compute in
the parameters' type (W's: float32, or float64 for anything else); h0 is cast to it. The kernels
are in ``a4lib.kernels``. What changes from ``a4lib.rnn`` is where the time goes:

* For few streams (B < ``BLAS_MIN_STREAMS``) each recurrence (h forward, dL/da backward) is a
  compiled loop over all steps with the matrix-vector products written out by hand, where
  ``a4lib.rnn`` makes three numpy calls per step; with numpy's gemm reachable from compiled code
  (``kernels.NATIVE_GEMM``) the whole call, output layer and dV, dW products included, is one
  compiled call (``_rnn_loops``). The last backward step skips W^T dL/da_0, which only feeds h0.
* For more streams every product is a BLAS gemm, called from compiled code, so the forward pass
  is one compiled call and the backward pass another, with no Python per step. Only the
  recurrences are products per step (W h_{t-1}; W^T dL/da_{t+1}); V h, V^T dL/do, dV and dW are
  one product each over all T B rows. dU is gathered in the pass that makes dL/da_t (db is its
  row sum). Without native gemm, a Python loop per step (np.dot, then one compiled call): ~15 %
  slower at B = 32.

Results agree with ``a4lib.rnn`` to rounding (about 1e-15 relative in float64; only the order of
the sums differs). numba is imported lazily, on the first call; importing this module never needs
it. ``available()`` says whether it is installed; without it the functions raise RuntimeError.
Single-threaded. Work buffers are module state reused between calls with the same shapes, so,
like ``a4lib.rnn``, not thread-safe; nothing returned aliases them. The last parameter and
gradient arrays found usable as they are stay referenced, so that the next call with the same
arrays (the trainer's) skips their checks.
"""
from __future__ import annotations

import numpy as np

from . import kernels as k
from .kernels import available  # noqa: F401
from .rnn import init_params, step, zero_state  # noqa: F401  (the model's other functions are rnn's)

Params = dict[str, np.ndarray]
NAMES = ("U", "W", "V", "b", "c")

# From this many streams on, every recurrence step is one BLAS product rather than hand-written
# loops. Whole call at m = 100, T = 25, loops vs BLAS (OpenBLAS, one thread): 2-core Xeon
# (Sapphire Rapids), K = 80: B = 1 225 vs 384 us, B = 4 639 vs 615, B = 8 1315 vs 1099; 2-core
# EPYC (Zen 5), K = 65, float64: B = 1 90 vs 158, B = 4 313 vs 357, B = 8 625 vs 538 (float32:
# 48 vs 105, 152 vs 160, 292 vs 283).
BLAS_MIN_STREAMS = 5


class _Plan:
    """Work arrays for one (T, B, m, K_in, K_out, dtype), with the 2-D views the products use."""

    def __init__(self, T: int, B: int, m: int, K_in: int, K_out: int, dtype: np.dtype) -> None:
        def empty(*shape):
            return np.empty(shape, dtype)
        self.H = empty(T + 1, B, m)  # H[0] = h0, H[t] = h_t
        self.H_out = self.H[1:].reshape(T * B, m)  # h_1 .. h_T: inputs of the output layer
        self.H_in = self.H[:-1].reshape(T * B, m)  # h_0 .. h_{T-1}: inputs of W
        self.O = empty(T * B, K_out)  # o_t, then dL/do_t
        self.D = empty(T, B, m)  # V^T dL/do_t, then dL/da_t
        self.D2 = self.D.reshape(T * B, m)
        self.carry = empty(B, m)
        self.gc = empty(K_out)  # scratch for the loss-only pass
        self.WT = empty(m, m)
        self.gUT = empty(K_in, m)  # scratch for dL/dU^T
        self.blas = B >= BLAS_MIN_STREAMS
        if self.blas:
            self.UT = empty(K_in, m)


_plans: dict[tuple, _Plan] = {}


def _plan(*key) -> _Plan:
    """The work arrays for these shapes, reused from call to call (no page faults for large B)."""
    plan = _plans.get(key)
    if plan is None or plan.blas != (key[1] >= BLAS_MIN_STREAMS):
        if len(_plans) >= 8:  # many distinct shapes: do not hoard memory
            _plans.clear()
        plan = _plans[key] = _Plan(*key)
    return plan


_F64, _F32, _INTP = np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.intp)  # compared with ``is``


def _floats(a, dtype: np.dtype) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype`` (itself when it is one already)."""
    if type(a) is np.ndarray and a.dtype is dtype and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=dtype)


def _indices(a, name: str, shape: tuple | None = None) -> np.ndarray:
    if type(a) is not np.ndarray or a.dtype is not _INTP or not a.flags.c_contiguous:
        a = np.asarray(a)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integer indices; got {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.intp)
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}; expected {shape}, like x")
    return a


def compute_type(params: Params) -> np.dtype:
    """The type the compiled models compute in: float32 when W is float32, else float64."""
    return _F32 if np.asarray(params["W"]).dtype == _F32 else _F64


# The parameter and gradient arrays last found usable as they are, by identity (references kept):
# the trainer passes the same arrays every update, and they skip the checks (~10 us at B = 1).
_known: dict[str, tuple] = {"params": (), "grads": ()}


def _same(a: tuple, b: tuple) -> bool:
    """True when the tuples hold the same objects (``is``, not ==)."""
    if len(a) != len(b):
        return False
    for u, v in zip(a, b):
        if u is not v:
            return False
    return True


def _parameters(params: Params) -> tuple:
    """U, W, V, b, c as contiguous arrays of one float type, shapes checked."""
    given = (params["U"], params["W"], params["V"], params["b"], params["c"])
    if _same(given, _known["params"]):
        return given
    dt = compute_type(params)
    P = U, W, V, b, c = tuple(_floats(p, dt) for p in given)
    m = W.shape[0]
    if (W.shape != (m, m) or U.ndim != 2 or U.shape[0] != m or V.ndim != 2 or V.shape[1] != m
            or b.shape != (m,) or c.shape != (V.shape[0],)):
        raise ValueError(f"inconsistent parameter shapes: U {U.shape}, W {W.shape}, V {V.shape}, "
                         f"b {b.shape}, c {c.shape}")
    if _same(P, given):  # no copies were needed: the next call with these arrays can skip all this
        _known["params"] = given
    return P


def _prepare(params: Params, x, y, h0):
    """Contiguous parameters of one float type (checked), x and y (T, B) intp, h0 (B, m), single flag."""
    k.build()
    P = _parameters(params)
    dt, m = P[1].dtype, P[1].shape[0]
    x = _indices(x, "x")
    y = _indices(y, "y", x.shape)
    h0 = _floats(h0, dt)
    single = x.ndim == 1
    if single:
        if h0.shape != (m,):
            raise ValueError(f"h0 has shape {h0.shape}; expected {(m,)} for x of shape {x.shape}")
        x, y, h0 = x[:, None], y[:, None], h0[None, :]
    elif x.ndim != 2 or h0.shape != (x.shape[1], m):
        raise ValueError(f"x has shape {x.shape}, h0 {h0.shape}: expected (T,) and ({m},) or "
                         f"(T, B) and (B, {m})")
    return P, x, y, h0, single


def _loops_native(P, x, y, h0, pl: _Plan, out: dict | None) -> float:
    """Few streams, native gemm: everything in one compiled call (``kernels._rnn_loops``)."""
    U, W, V, b, c = P
    # without gradients only gc is written: the others get stand-ins of the same types
    g = out if out is not None else {"U": pl.WT, "W": pl.WT, "V": pl.WT, "b": pl.gc, "c": pl.gc}
    loss = k._rnn_loops(U, W, V, b, c, x, y, h0, out is not None, pl.WT, pl.H, pl.H_out, pl.H_in, pl.O,
                        pl.D, pl.D2, pl.carry, g["U"], g["W"], g["V"], g["b"], g["c"], pl.gUT)
    if loss == -2.0:
        raise IndexError(f"x has indices outside [0, {U.shape[1]})")
    if loss < 0:
        raise IndexError(f"y has indices outside [0, {V.shape[0]})")
    return loss


def _forward_loss(P, x, y, h0, want_grad: bool, gc: np.ndarray | None) -> tuple[float, _Plan]:
    """The forward pass into the plan's H and O (dL/do when want_grad); returns the loss."""
    U, W, V, b, c = P
    (T, B), (m, K_in), K = x.shape, U.shape, V.shape[0]
    pl = _plan(T, B, m, K_in, K, W.dtype)
    H = pl.H
    if B < BLAS_MIN_STREAMS:
        if not k._rnn_forward(U, W, b, x, h0, pl.WT, H):
            raise IndexError(f"x has indices outside [0, {K_in})")
    elif k.NATIVE_GEMM:
        k._transpose(U, pl.UT)
        k._transpose(W, pl.WT)  # h W^T with W^T contiguous: ~30 % faster in OpenBLAS than a transposed view
        H[0] = h0
        if not k._rnn_forward_blas(pl.UT, pl.WT, V, b, x, H, pl.H_out, pl.O):
            raise IndexError(f"x has indices outside [0, {K_in})")
    else:
        if not k._check_indices(x, K_in):
            raise IndexError(f"x has indices outside [0, {K_in})")
        k._transpose(U, pl.UT)
        k._transpose(W, pl.WT)
        H[0] = h0
        for t in range(T):
            h = H[t + 1]
            np.dot(H[t], pl.WT, out=h)
            k._rnn_forward_step(pl.UT, b, x[t], h)
    if B < BLAS_MIN_STREAMS or not k.NATIVE_GEMM:
        np.dot(pl.H_out, V.T, out=pl.O)
    loss = k._softmax_loss(pl.O, c, y.reshape(-1), B, want_grad, pl.gc if gc is None else gc, pl.O)
    if loss < 0:
        raise IndexError(f"y has indices outside [0, {K})")
    return float(loss), pl


def _backward_all(W, x, pl: _Plan, gb, gU) -> None:
    """pl.D: V^T dL/do_t on entry, dL/da_t on exit; gb and gU written."""
    T, B = x.shape
    if B < BLAS_MIN_STREAMS:
        k._rnn_backward(W, x, pl.H, pl.D, pl.carry, gb, gU, pl.gUT)
        return
    H, D, carry = pl.H, pl.D, pl.carry
    for t in range(T - 1, -1, -1):
        d = D[t]
        k._rnn_backward_step(d, carry, H[t + 1], t == T - 1)
        if t:
            np.dot(d, W, out=carry)
    k._input_grads(x, D, gb, gU, pl.gUT)


def _target(grads: Params, name: str, like: np.ndarray) -> np.ndarray:
    """grads[name] when the kernels can write into it, else a fresh array (copied back later)."""
    g = grads.get(name)
    if (type(g) is np.ndarray and g.dtype is like.dtype and g.shape == like.shape
            and g.flags.c_contiguous and g.flags.writeable):
        return g
    return np.empty_like(like)


def _store(grads: Params, out: dict) -> None:
    """Put the gradients the kernels wrote (``_targets``) into ``grads``: copied into arrays that
    were given but could not be written into, added where none was given."""
    for name, g in out.items():
        if grads.get(name) is not g:
            if name in grads:
                grads[name][...] = g
            else:
                grads[name] = g


def _targets(grads: Params, P: tuple) -> dict:
    """The arrays the kernels write the gradients into (``_target`` of each), by name."""
    given = tuple(grads.get(name) for name in NAMES)
    if _same(given + P, _known["grads"]):
        return dict(zip(NAMES, given))
    out = {name: _target(grads, name, p) for name, p in zip(NAMES, P)}
    if _same(tuple(out.values()), given):
        _known["grads"] = given + P
    return out


def loss_and_grads(params: Params, x, y, h0, grads: Params | None = None) -> tuple[float, Params, np.ndarray]:
    """As ``a4lib.rnn.loss_and_grads``: the loss summed over time steps (averaged over streams),
    its unclipped gradients (written into ``grads`` when given) and the last hidden state.

    x, y: int arrays (T,) or (T, B); h0: (m,) or (B, m). h_last has the shape of h0.
    """
    P, x, y, h0, single = _prepare(params, x, y, h0)
    U, W, V = P[0], P[1], P[2]
    if grads is None:
        grads = {}
    out = _targets(grads, P)
    T, B = x.shape
    if B < BLAS_MIN_STREAMS and k.NATIVE_GEMM:
        pl = _plan(T, B, W.shape[0], U.shape[1], V.shape[0], W.dtype)
        loss = _loops_native(P, x, y, h0, pl, out)
    else:
        loss, pl = _forward_loss(P, x, y, h0, True, out["c"])
        if B >= BLAS_MIN_STREAMS and k.NATIVE_GEMM:
            k._rnn_backward_blas(V, W, x, pl.H, pl.H_out, pl.H_in, pl.O, pl.D, out["V"], out["W"], out["b"],
                                 out["U"], pl.gUT)
        else:
            dO = pl.O
            np.dot(dO.T, pl.H_out, out=out["V"])
            np.dot(dO, V, out=pl.D2)
            _backward_all(W, x, pl, out["b"], out["U"])
            np.dot(pl.D2.T, pl.H_in, out=out["W"])

    _store(grads, out)
    h_last = pl.H[-1]
    return loss, grads, (h_last[0] if single else h_last).copy()


def loss_and_state(params: Params, x, y, h0) -> tuple[float, np.ndarray]:
    """As ``a4lib.rnn.loss_and_state``: the loss and the last hidden state, no gradients."""
    P, x, y, h0, single = _prepare(params, x, y, h0)
    U, W, V = P[0], P[1], P[2]
    T, B = x.shape
    if B < BLAS_MIN_STREAMS and k.NATIVE_GEMM:
        pl = _plan(T, B, W.shape[0], U.shape[1], V.shape[0], W.dtype)
        loss = _loops_native(P, x, y, h0, pl, None)
    else:
        loss, pl = _forward_loss(P, x, y, h0, False, None)
    h_last = pl.H[-1]
    return loss, (h_last[0] if single else h_last).copy()


def loss(params: Params, x, y, h0) -> float:
    """The loss only."""
    return loss_and_state(params, x, y, h0)[0]
