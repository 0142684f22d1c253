"""The compiled kernels (numba) behind the fast backend: the vanilla RNN's (``a4lib.fast``), the
LSTM's (``a4lib.fast_lstm``), the fused optimizer steps (``a4lib.optim``) and what they share.

They live in one file on purpose: numba's on-disk cache (``cache=True``, in a4lib/__pycache__) is
invalidated by a change of the file a kernel is written in, not of the files it calls into; with
every kernel here, an edit anywhere recompiles everything that could have inlined it.

Every kernel takes float64 or float32 arrays (numba compiles one version per type); constants are
cast to the arrays' type (``F = a.dtype.type``) so that float32 work stays float32 (twice the SIMD
lanes). Math:

* tanh and exp are a vectorisable polynomial (``_expm1_parts``: Cody-Waite range reduction,
  Taylor series of e^r - 1, scaling by 2^n), within a few ulp of numpy's: numba's scalar libm tanh
  alone costs more than all the products at m = 100. float64 runs the series to r^13, float32 to
  r^8 (``_expm1_parts32``). sigmoid(a) = (1 + tanh(a / 2)) / 2, as ``a4lib.lstm`` computes it.
* Multiply-adds in the hand-written products and polynomials use the ``llvm.fma`` intrinsic
  when the CPU has FMA: fused (one rounding), never reassociated. No fastmath flags anywhere.
* Matrix products call numpy's own ILP64 cblas_dgemm / cblas_sgemm (numpy's wheels bundle
  scipy-openblas64) from compiled code, when ``build`` finds them (``NATIVE_GEMM``); without them
  the wrappers run the per-step products from Python with np.dot.

numba is imported lazily, by ``build``; importing this module never needs it. ``available()``
says whether it is installed. The compile, about 25 s on a slow 2-core machine for both types,
is paid once per machine and source version; later processes load the cache in about a second.
No bounds checks inside the kernels: the wrappers check shapes, and the kernels check indices.
"""
from __future__ import annotations

import math
import threading

import numpy as np


def available() -> bool:
    """True when numba can be imported (the compiled backend can run)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Scalar math. Plain Python source, compiled by ``build``; kernels call each other by their
# module-level names, which ``build`` rebinds to the compiled versions (``_fma`` included).

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_LN2_HI32 = 0.693359375  # the float32 split: 9 significant bits, n * _LN2_HI32 exact for |n| < 2^15
_LN2_LO32 = -2.12194440e-4


def _fma(a, b, c):
    """a * b + c; ``build`` replaces it by the fused llvm.fma intrinsic when the CPU has FMA."""
    return a * b + c


def _expm1_parts(y):
    """float64: y = n ln2 + r with |r| <= ln2 / 2; returns (2^n, e^r - 1). Needs -1022 <= n <= 1023.

    e^y = s q + s and e^y - 1 = s q + (s - 1); for n = 0 the latter is q, accurate near 0.
    """
    nf = math.floor(y * _INV_LN2 + 0.5)
    r = (y - nf * _LN2_HI) - nf * _LN2_LO
    p = 1.0 / 6227020800.0  # (e^r - 1 - r) / r^2 = sum_k r^k / (k + 2)!, to k = 11: error < 4e-18
    p = _fma(r, p, 1.0 / 479001600.0)
    p = _fma(r, p, 1.0 / 39916800.0)
    p = _fma(r, p, 1.0 / 3628800.0)
    p = _fma(r, p, 1.0 / 362880.0)
    p = _fma(r, p, 1.0 / 40320.0)
    p = _fma(r, p, 1.0 / 5040.0)
    p = _fma(r, p, 1.0 / 720.0)
    p = _fma(r, p, 1.0 / 120.0)
    p = _fma(r, p, 1.0 / 24.0)
    p = _fma(r, p, 1.0 / 6.0)
    p = _fma(r, p, 0.5)
    q = _fma(r * r, p, r)
    s = np.int64((np.int64(nf) + 1023) << 52).view(np.float64)
    return s, q


def _expm1_parts32(y):
    """``_expm1_parts`` for float32: the series to k = 6 (error < 1e-9 relative), 2^n for
    -126 <= n <= 127."""
    F = np.float32
    nf = np.floor(y * F(_INV_LN2) + F(0.5))
    r = (y - nf * F(_LN2_HI32)) - nf * F(_LN2_LO32)
    p = F(1.0 / 40320.0)
    p = _fma(r, p, F(1.0 / 5040.0))
    p = _fma(r, p, F(1.0 / 720.0))
    p = _fma(r, p, F(1.0 / 120.0))
    p = _fma(r, p, F(1.0 / 24.0))
    p = _fma(r, p, F(1.0 / 6.0))
    p = _fma(r, p, F(0.5))
    q = _fma(r * r, p, r)
    s = np.int32((np.int32(nf) + 127) << 23).view(np.float32)
    return s, q


def _tanh(v):
    """tanh of a float64 or float32 scalar (``build`` compiles the version of its type)."""
    return math.tanh(v)


def _tanh64(v):
    """tanh(v) = e / (e + 2) with e = expm1(2 v). NaN stays NaN."""
    if v > 20.0:  # tanh(20) is 1 in float64; also keeps 2^n in range
        v = 20.0
    elif v < -20.0:
        v = -20.0
    s, q = _expm1_parts(2.0 * v)
    e = _fma(s, q, s - 1.0)
    return e / (e + 2.0)


def _tanh32(v):
    F = np.float32
    if v > F(10.0):  # tanh(10) is 1 in float32
        v = F(10.0)
    elif v < F(-10.0):
        v = F(-10.0)
    s, q = _expm1_parts32(F(2.0) * v)
    e = _fma(s, q, s - F(1.0))
    return e / (e + F(2.0))


def _exp_nonpos(v):
    """exp(v) for v <= 0 of a float64 or float32 scalar; 0 below the normal range."""
    return math.exp(v)


def _exp_nonpos64(v):
    w = v
    if w < -708.0:
        w = -708.0
    s, q = _expm1_parts(w)
    e = _fma(s, q, s)
    if v < -708.0:  # exp(-708) ~ 3e-308: the rest are subnormal, irrelevant to a softmax
        e = 0.0
    return e


def _exp_nonpos32(v):
    F = np.float32
    w = v
    if w < F(-87.0):
        w = F(-87.0)
    s, q = _expm1_parts32(w)
    e = _fma(s, q, s)
    if v < F(-87.0):  # exp(-87) ~ 1.6e-38, the smallest normal float32s
        e = F(0.0)
    return e


def _tanh_inplace(a):
    """a[i] = tanh(a[i]) for a 1-D array.

    In place on purpose: with separate in and out arrays LLVM did not vectorise the inlined loop.
    """
    for i in range(a.size):
        a[i] = _tanh(a[i])


def _exp_nonpos_inplace(a):
    """a[i] = exp(a[i]) for a[i] <= 0 (softmax after the max is subtracted)."""
    for i in range(a.size):
        a[i] = _exp_nonpos(a[i])


def _sigmoid_inplace(a):
    """a[i] = sigmoid(a[i]) = (1 + tanh(a[i] / 2)) / 2 for a 1-D array."""
    F = a.dtype.type
    half = F(0.5)
    for i in range(a.size):
        a[i] = _fma(half, _tanh(half * a[i]), half)


# ---------------------------------------------------------------------------------------------
# Small array helpers

def _check_indices(x, n):
    """True when 0 <= x < n everywhere (x 2-D)."""
    ok = True
    for t in range(x.shape[0]):
        for s in range(x.shape[1]):
            v = x[t, s]
            if v < 0 or v >= n:
                ok = False
    return ok


def _transpose(A, AT):
    """AT = A.T (contiguous rows written, strided reads: twice as fast as the other order)."""
    for j in range(A.shape[1]):
        for i in range(A.shape[0]):
            AT[j, i] = A[i, j]


def _row_max(o):
    """max of a 1-D array, with four running maxima (a single one is a latency chain)."""
    n = o.size
    m0 = o[0]
    m1 = m0
    m2 = m0
    m3 = m0
    n4 = n - n % 4
    for k in range(0, n4, 4):
        if o[k] > m0:
            m0 = o[k]
        if o[k + 1] > m1:
            m1 = o[k + 1]
        if o[k + 2] > m2:
            m2 = o[k + 2]
        if o[k + 3] > m3:
            m3 = o[k + 3]
    for k in range(n4, n):
        if o[k] > m0:
            m0 = o[k]
    if m1 > m0:
        m0 = m1
    if m3 > m2:
        m2 = m3
    return m2 if m2 > m0 else m0


def _row_sum(o):
    """sum of a 1-D array in four partial sums."""
    n = o.size
    s0 = o.dtype.type(0.0)
    s1 = s0
    s2 = s0
    s3 = s0
    n4 = n - n % 4
    for k in range(0, n4, 4):
        s0 += o[k]
        s1 += o[k + 1]
        s2 += o[k + 2]
        s3 += o[k + 3]
    for k in range(n4, n):
        s0 += o[k]
    return (s0 + s1) + (s2 + s3)


def _gather_rows(UT, b, xt, Z):
    """Z[s] += UT[xt[s]] + b for every stream s: the input layer U x_t + b by indices."""
    for s in range(Z.shape[0]):
        u = UT[xt[s]]
        z = Z[s]
        for i in range(Z.shape[1]):
            z[i] += u[i] + b[i]


def _softmax_loss(O, c, y, B, want_grad, gc, dO):
    """O (R, K) holds V h_t for R = T B rows (step-major); y (R,). Returns the loss over B.

    O is left holding exp(o - max o). With want_grad, the first K columns of dO (R, >= K; may be
    O itself) get dL/do = (softmax(O + c) - onehot(y)) / B and gc its column sums. Returns -1,
    computing nothing, when y has an index outside [0, K). The loss is summed in float64.
    """
    F = O.dtype.type
    R, K = O.shape
    for r in range(R):
        if y[r] < 0 or y[r] >= K:
            return -1.0
    inv_b = F(1.0) / F(B)
    loss = 0.0
    for r in range(R):  # o + c - max, in place; the loss gets -(o_y + c_y - max)
        o = O[r]
        for k in range(K):
            o[k] += c[k]
        mx = _row_max(o)
        for k in range(K):
            o[k] -= mx
        loss -= o[y[r]]
    # exp over the whole array at once: per row (65 entries) the scalar remainder of the
    # vectorised loop, and the call, cost more than the exps themselves
    _exp_nonpos_inplace(O.reshape(R * K))
    for k in range(K):
        gc[k] = F(0.0)
    for r in range(R):
        o = O[r]
        z = _row_sum(o)
        loss += math.log(z)
        if want_grad:
            d = dO[r]
            scale = inv_b / z
            for k in range(K):
                v = o[k] * scale
                d[k] = v
                gc[k] += v
            d[y[r]] -= inv_b
            gc[y[r]] -= inv_b
    return loss / B


def _input_grads(x, D, gb, gU, gUT):
    """gb = sum of dL/da_t; column x_t of gU gathers dL/da_t. Both overwritten. D (T, B, n),
    gb (n,), gU (n, K_in), gUT (K_in, n) scratch.

    The gathering goes into the rows of gUT, contiguous and vectorised, then one transpose:
    scattering into columns of gU directly (stride K_in) took three times as long.
    """
    T, B = x.shape
    n = D.shape[2]
    gUT[:] = 0.0
    for t in range(T):
        for s in range(B):
            g = gUT[x[t, s]]
            for i in range(n):
                g[i] += D[t, s, i]
    _input_grads_end(gUT, gb, gU)


def _input_grads_end(gUT, gb, gU):
    """gU = gUT^T, and gb its row sums: every dL/da_t is gathered into exactly one row of gUT, so
    db = sum_t dL/da_t is the sum of those rows (K_in rows summed instead of T B)."""
    gb[:] = 0.0
    for k in range(gUT.shape[0]):
        u = gUT[k]
        for i in range(gb.size):
            gb[i] += u[i]
    _transpose(gUT, gU)


# ---------------------------------------------------------------------------------------------
# numpy's BLAS from compiled code

def _cblas_gemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc):
    """cblas_dgemm or cblas_sgemm (by the arrays' type; row-major, ILP64) of numpy's own BLAS:
    C = op(A) op(B) + beta C, op(X) = X^T when its flag is 112 (CblasTrans), X when 111. ``build``
    binds it to the library functions, found by ``_find_gemm``; this Python version only
    documents it."""
    C[...] = (A.T if ta == 112 else A) @ (B.T if tb == 112 else B) + beta * C  # ld = shape[1]


def _ld(A):
    """The row stride, in elements, of a 2-D array with contiguous rows (any, for a single row)."""
    return A.strides[0] // A.itemsize if A.shape[0] > 1 else A.shape[1]


def _gemm(ta, tb, A, B, C, beta):
    """C = op(A) op(B) + beta C for 2-D arrays of one float type with contiguous rows (row strides
    free), op transposing when its flag is True."""
    _cblas_gemm(112 if ta else 111, 112 if tb else 111, C.shape[0], C.shape[1],
                A.shape[0] if ta else A.shape[1], A, _ld(A), B, _ld(B), beta, C, _ld(C))


# ---------------------------------------------------------------------------------------------
# The vanilla RNN (a4lib.fast): a_t = W h_{t-1} + U x_t + b, h_t = tanh(a_t), o_t = V h_t + c.

def _rnn_forward(U, W, b, x, h0, WT, H):
    """H[0] = h0; H[t + 1] = tanh(W H[t] + U[:, x_t] + b). x (T, B), h0 (B, m), H (T + 1, B, m).

    All steps in one call, products by hand. WT (m, m) is scratch for W^T, so that W h is a sum
    of rows of W^T: vectorised axpys, eight rows at a time (the sum is loaded and stored once per
    eight rows: ~20 % faster than four at m = 100, B = 1, where the step is bound by reading W).
    Returns False, computing nothing, when x has an index outside [0, K_in).
    """
    T, B = x.shape
    m = W.shape[0]
    if not _check_indices(x, U.shape[1]):
        return False
    _transpose(W, WT)
    for s in range(B):
        for i in range(m):
            H[0, s, i] = h0[s, i]
    for t in range(T):
        for s in range(B):
            xi = x[t, s]
            for i in range(m):
                H[t + 1, s, i] = U[i, xi] + b[i]
            _axpy_rows(H[t, s], WT, H[t + 1, s])
        _tanh_inplace(H[t + 1].reshape(B * m))
    return True


def _axpy_rows(v, A, out):
    """out += v A (v (n,), A (n, k) with contiguous rows, out (k,)): rows of A scaled and added
    eight at a time, each element's sum in the order of the rows (fused multiply-adds)."""
    n = A.shape[0]
    n8 = n - n % 8
    for j in range(0, n8, 8):
        v0, v1, v2, v3, v4, v5, v6, v7 = v[j], v[j + 1], v[j + 2], v[j + 3], v[j + 4], v[j + 5], v[j + 6], v[j + 7]
        a0, a1, a2, a3, a4, a5, a6, a7 = A[j], A[j + 1], A[j + 2], A[j + 3], A[j + 4], A[j + 5], A[j + 6], A[j + 7]
        for i in range(out.size):
            out[i] = _fma(v7, a7[i], _fma(v6, a6[i], _fma(v5, a5[i], _fma(v4, a4[i], _fma(
                v3, a3[i], _fma(v2, a2[i], _fma(v1, a1[i], _fma(v0, a0[i], out[i]))))))))
    for j in range(n8, n):
        vj = v[j]
        a = A[j]
        for i in range(out.size):
            out[i] = _fma(vj, a[i], out[i])


def _rnn_forward_step(UT, b, xt, Hn):
    """One step after BLAS: Hn (B, m) holds W h_{t-1} and becomes tanh(Hn + U[:, xt] + b)."""
    B, m = Hn.shape
    _gather_rows(UT, b, xt, Hn)
    _tanh_inplace(Hn.reshape(B * m))


def _rnn_backward(W, x, H, D, carry, gb, gU, gUT):
    """D (T, B, m) holds V^T dL/do_t on entry and dL/da_t on exit; gb, gU are overwritten.

    dL/da_t = (V^T dL/do_t + W^T dL/da_{t+1}) * (1 - h_t^2): all steps in one call, products by
    hand as in ``_rnn_forward`` (rows of W are the axpy operands here); carry (B, m) is scratch.
    """
    F = D.dtype.type
    one = F(1.0)
    T, B = x.shape
    m = W.shape[0]
    carry[:] = 0.0
    for t in range(T - 1, -1, -1):
        for s in range(B):
            for i in range(m):
                h = H[t + 1, s, i]
                D[t, s, i] = (D[t, s, i] + carry[s, i]) * (one - h * h)
        if t == 0:
            break  # W^T dL/da_0 would only feed h0, which is not a parameter
        carry[:] = 0.0
        for s in range(B):
            _axpy_rows(D[t, s], W, carry[s])
    _input_grads(x, D, gb, gU, gUT)


def _rnn_backward_step(Dt, carry, Hn, first):
    """One step before BLAS: Dt (B, m) holds V^T dL/do_t and becomes dL/da_t
    = (Dt + carry) * (1 - h_t^2), with Hn = h_t and carry = W^T dL/da_{t+1} (unused if first)."""
    one = Dt.dtype.type(1.0)
    B, m = Dt.shape
    for s in range(B):
        for i in range(m):
            h = Hn[s, i]
            d = Dt[s, i] if first else Dt[s, i] + carry[s, i]
            Dt[s, i] = d * (one - h * h)


def _rnn_loops(U, W, V, b, c, x, y, h0, want_grad, WT, H, H_out, H_in, O, D, D2, carry,
               gU, gW, gV, gb, gc, gUT):
    """The whole of ``a4lib.fast.loss_and_grads`` for few streams in one call: the loops of
    ``_rnn_forward`` and ``_rnn_backward`` for the recurrences, dgemm for the output layer, dV and
    dW (products over all steps). Without want_grad, the loss only (gU, gW, gV, gb unused).
    Returns the loss; -2 when x, -1 when y has an index out of range (nothing computed)."""
    B = x.shape[1]
    if not _rnn_forward(U, W, b, x, h0, WT, H):
        return -2.0
    _gemm(False, True, H_out, V, O, 0.0)  # o_t - c for all steps
    loss = _softmax_loss(O, c, y.reshape(y.size), B, want_grad, gc, O)
    if loss < 0 or not want_grad:
        return loss
    _gemm(True, False, O, H_out, gV, 0.0)  # dV = sum_t dL/do_t h_t^T
    _gemm(False, False, O, V, D2, 0.0)  # V^T dL/do_t
    _rnn_backward(W, x, H, D, carry, gb, gU, gUT)
    _gemm(True, False, D2, H_in, gW, 0.0)  # dW = sum_t dL/da_t h_{t-1}^T
    return loss


def _rnn_forward_blas(UT, WT, V, b, x, H, H_out, O):
    """H[t + 1] = tanh(H[t] W^T + U^T[x_t] + b) for all steps in one compiled call (per step a
    gemm and ``_rnn_forward_step``), then the outputs O (T B, K) = H_out V^T as one gemm over all
    steps (2-core EPYC Zen 5, one thread, K = 65, m = 100, B = 32: 97 us against 130 for 25
    products of 32 rows; float64 214 against 259). Returns False, computing nothing, when x has
    an index outside [0, K_in)."""
    if not _check_indices(x, UT.shape[0]):
        return False
    for t in range(x.shape[0]):
        _gemm(False, False, H[t], WT, H[t + 1], 0.0)
        _rnn_forward_step(UT, b, x[t], H[t + 1])
    _gemm(False, True, H_out, V, O, 0.0)
    return True


def _rnn_backward_blas(V, W, x, H, H_out, H_in, dO, D, gV, gW, gb, gU, gUT):
    """All of the backward pass of the BLAS path in one compiled call, writing every gradient but dc.

    dO (T B, K) holds dL/do_t. D (T, B, m) gets V^T dL/do_t for all steps in one gemm, then step by
    step (last first) dL/da_t = (V^T dL/do_t + W^T dL/da_{t+1}) * (1 - h_t^2), the product a gemm
    added in place; dU is gathered in the same pass (through gUT (K_in, m), as in
    ``_input_grads``, which gives db too). dV and dW are one gemm each over all steps at the end. (One thread, 2-core EPYC
    Zen 5, m = 100, K = 65: 3-8 % faster at B = 8 .. 128 than one product [dL/do_t, dL/da_{t+1}]
    [V; W] per step; one product over all steps for dV and dW: B = 32, float32, 108 + 147 us
    against 125 + 167 step by step.)
    """
    one = D.dtype.type(1.0)
    T, B = x.shape
    m = W.shape[0]
    gUT[:] = 0.0
    _gemm(False, False, dO, V, D.reshape(T * B, m), 0.0)
    for t in range(T - 1, -1, -1):
        Dt = D[t]
        Ht = H[t + 1]
        if t < T - 1:
            _gemm(False, False, D[t + 1], W, Dt, 1.0)
        for s in range(B):
            d = Dt[s]
            h = Ht[s]
            g = gUT[x[t, s]]
            for i in range(m):
                v = d[i] * (one - h[i] * h[i])
                d[i] = v
                g[i] += v
    _gemm(True, False, dO, H_out, gV, 0.0)  # dV = sum_t dL/do_t h_{t+1}^T
    _gemm(True, False, D.reshape(T * B, m), H_in, gW, 0.0)  # dW = sum_t dL/da_t h_t^T
    _input_grads_end(gUT, gb, gU)


# ---------------------------------------------------------------------------------------------
# The LSTM (a4lib.fast_lstm). Gates in blocks of m in the order i, f, o, g, as in a4lib.lstm.

def _lstm_cell(Gt, UT, b, xt, C_prev, C_next, TC, H_next):
    """One step of the gate equations after the product. Gt (B, 4m) holds W h_{t-1} and becomes
    the gates [i, f, o, g] = [sigmoid, sigmoid, sigmoid, tanh](Gt + U[:, xt] + b); then
    c_t = f c_{t-1} + i g into C_next, tanh(c_t) into TC and h_t = o tanh(c_t) into H_next (B, m)."""
    B, m4 = Gt.shape
    m = m4 // 4
    _gather_rows(UT, b, xt, Gt)
    for s in range(B):
        a = Gt[s]
        _sigmoid_inplace(a[:3 * m])
        _tanh_inplace(a[3 * m:])
        cp = C_prev[s]
        cn = C_next[s]
        tc = TC[s]
        for j in range(m):
            cn[j] = _fma(a[m + j], cp[j], a[j] * a[3 * m + j])
            tc[j] = cn[j]
        _tanh_inplace(tc)
        hn = H_next[s]
        for j in range(m):
            hn[j] = a[2 * m + j] * tc[j]


def _lstm_cell_back(Dt, DH, dc_next, Gt, C_prev, TC, x_t, gUT, first, last):
    """One step of the backward gate equations after the product. DH (B, m) holds
    dL/dh_t = V^T dL/ds_t + W^T dL/da_{t+1}; dc_next (B, m) is f_{t+1} dL/dc_{t+1} (ignored when
    ``first``, the last step) and becomes f_t dL/dc_t (not computed when ``last``, step 0).
    Dt (B, 4m) gets dL/da_t; the rows x_t of gUT (K_in, 4m) gather it."""
    F = Dt.dtype.type
    one = F(1.0)
    B, m4 = Gt.shape
    m = m4 // 4
    for s in range(B):
        g = Gt[s]
        d = Dt[s]
        dh = DH[s]
        dcn = dc_next[s]
        cp = C_prev[s]
        tc = TC[s]
        for j in range(m):
            i_ = g[j]
            f_ = g[m + j]
            o_ = g[2 * m + j]
            g_ = g[3 * m + j]
            t_ = tc[j]
            dc = dh[j] * o_ * (one - t_ * t_)
            if not first:
                dc += dcn[j]
            d[j] = dc * g_ * i_ * (one - i_)
            d[m + j] = dc * cp[j] * f_ * (one - f_)
            d[2 * m + j] = dh[j] * t_ * o_ * (one - o_)
            d[3 * m + j] = dc * i_ * (one - g_ * g_)
            if not last:
                dcn[j] = dc * f_
        u = gUT[x_t[s]]
        for j in range(m4):
            u[j] += d[j]


def _lstm_forward_blas(UT, WT, V, b, x, H, H_out, C, G, TC, O):
    """The LSTM's forward pass in one compiled call: per step the gemm W h_{t-1} into G[t] and
    ``_lstm_cell``; then the outputs O (T B, K) = H_out V^T, one gemm over all steps. H, C
    (T + 1, B, m) with H[0], C[0] set; G (T, B, 4m); TC (T, B, m). False when x is out of range."""
    if not _check_indices(x, UT.shape[0]):
        return False
    for t in range(x.shape[0]):
        _gemm(False, False, H[t], WT, G[t], 0.0)
        _lstm_cell(G[t], UT, b, x[t], C[t], C[t + 1], TC[t], H[t + 1])
    _gemm(False, True, H_out, V, O, 0.0)
    return True


def _lstm_backward_blas(V, W, x, H_in, H_out, C, G, TC, dS, D, DH, dc_next, gV, gW, gb, gU, gUT):
    """The LSTM's backward pass in one compiled call, writing dV, dW, db, dU (dc is the softmax's).
    dS (T B, K) holds dL/ds_t; D (T, B, 4m) gets dL/da_t. DH (T, B, m) gets V^T dL/ds_t for all
    steps in one gemm, then step by step (last first) W^T dL/da_{t+1} added by a gemm, making
    dL/dh_t, and ``_lstm_cell_back``; dV and dW are one gemm each over all steps (at B = 16 a
    gemm of 16 rows per step runs at half the speed)."""
    T, B = x.shape
    m = DH.shape[2]
    _gemm(True, False, dS, H_out, gV, 0.0)
    _gemm(False, False, dS, V, DH.reshape(T * B, m), 0.0)
    gUT[:] = 0.0
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            _gemm(False, False, D[t + 1], W, DH[t], 1.0)
        _lstm_cell_back(D[t], DH[t], dc_next, G[t], C[t], TC[t], x[t], gUT, t == T - 1, t == 0)
    _gemm(True, False, D.reshape(T * B, D.shape[2]), H_in, gW, 0.0)
    _input_grads_end(gUT, gb, gU)


# ---------------------------------------------------------------------------------------------
# Optimizer steps, fused with clipping: numpy's order of operations in ``a4lib.optim``, so the
# same bits. Scalars come in the vectors' type (numpy treats Python floats as that type too).

def _clip(g, limit):
    """g clipped to [-limit, limit]; limit 0: unclipped."""
    if limit > 0:
        g = min(max(g, -limit), limit)
    return g


def _clip_adagrad(w, dw, M, eta, eps, limit):
    for i in range(w.size):
        g = _clip(dw[i], limit)
        dw[i] = g
        M[i] += g * g
        w[i] -= (g / math.sqrt(M[i] + eps)) * eta


def _clip_rmsprop(w, dw, M, eta, gamma, one_minus_gamma, eps, limit):
    for i in range(w.size):
        g = _clip(dw[i], limit)
        dw[i] = g
        M[i] = M[i] * gamma + (g * g) * one_minus_gamma
        w[i] -= (g / math.sqrt(M[i] + eps)) * eta


def _clip_adam(w, dw, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, v_scale, eps, step, limit):
    """m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
    w -= step m / (sqrt(v / v_scale) + eps), step = eta / (1 - beta1^t), v_scale = 1 - beta2^t."""
    for i in range(w.size):
        g = _clip(dw[i], limit)
        dw[i] = g
        m[i] = m[i] * beta1 + one_minus_beta1 * g
        v[i] = v[i] * beta2 + (g * g) * one_minus_beta2
        w[i] -= (m[i] / (math.sqrt(v[i] / v_scale) + eps)) * step


# ---------------------------------------------------------------------------------------------
# Building

_INLINE = ("_fma", "_expm1_parts", "_expm1_parts32", "_row_max", "_row_sum", "_gather_rows", "_clip", "_axpy_rows")
_SCALAR_OVERLOADS = {"_tanh": ("_tanh64", "_tanh32"), "_exp_nonpos": ("_exp_nonpos64", "_exp_nonpos32")}
_KERNELS = ("_tanh_inplace", "_exp_nonpos_inplace", "_sigmoid_inplace", "_check_indices", "_transpose",
            "_softmax_loss", "_input_grads", "_input_grads_end", "_rnn_forward", "_rnn_forward_step", "_rnn_backward",
            "_rnn_backward_step", "_lstm_cell", "_lstm_cell_back", "_clip_adagrad", "_clip_rmsprop",
            "_clip_adam")
_GEMM_KERNELS = ("_rnn_loops", "_rnn_forward_blas", "_rnn_backward_blas", "_lstm_forward_blas",
                 "_lstm_backward_blas")  # compiled only when numpy's gemm is found
_GEMM_SYMBOLS = {"d": "a4lib_cblas_dgemm_ilp64", "s": "a4lib_cblas_sgemm_ilp64"}  # our names in compiled code
# True when the products of the compiled paths run in compiled code calling numpy's cblas gemm
# (set by ``build``); False: the wrappers' fallbacks, np.dot from Python.
NATIVE_GEMM = False
_built = False
_build_lock = threading.Lock()


def _fma_intrinsic():
    """llvm.fma as a numba intrinsic: a * b + c with one rounding, in float32 when all three
    operands are float32, else in float64."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx, a, b, c):
        single = all(t == types.float32 for t in (a, b, c))
        ty, irt = (types.float32, ir.FloatType()) if single else (types.float64, ir.DoubleType())
        sig = ty(a, b, c)

        def codegen(context, builder, signature, args):
            fn = builder.module.declare_intrinsic("llvm.fma", [irt], ir.FunctionType(irt, [irt, irt, irt]))
            return builder.call(fn, [context.cast(builder, v, t, ty) for v, t in zip(args, signature.args)])
        return sig, codegen

    return fma


def _gemm_intrinsic():
    """``_cblas_gemm`` as a numba intrinsic: a call of the external symbol of the arrays' type
    (``_GEMM_SYMBOLS``; 64-bit integers, CBLAS enums as C ints, the arrays' data pointers)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def cblas_gemm(typingctx, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc):
        dt = C.dtype
        if dt not in (types.float32, types.float64) or A.dtype != dt or B.dtype != dt:
            return None
        sig = types.void(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc)
        single = dt == types.float32

        def codegen(context, builder, signature, args):
            i32, i64 = ir.IntType(32), ir.IntType(64)
            f = ir.FloatType() if single else ir.DoubleType()
            fp = f.as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, f, fp, i64, fp, i64, f, fp, i64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _GEMM_SYMBOLS["s" if single else "d"])
            ty = signature.args

            def integer(k):
                return context.cast(builder, args[k], ty[k], types.int64)

            def data(k):
                return context.make_array(ty[k])(context, builder, args[k]).data

            builder.call(fn, [ir.Constant(i32, 101), builder.trunc(integer(0), i32), builder.trunc(integer(1), i32),
                              integer(2), integer(3), integer(4), ir.Constant(f, 1.0), data(5), integer(6),
                              data(7), integer(8), context.cast(builder, args[9], ty[9], dt), data(10),
                              integer(11)])
            return context.get_dummy_value()
        return sig, codegen

    return cblas_gemm


def _find_gemm() -> dict[str, int] | None:
    """The addresses of numpy's own ILP64 cblas_dgemm and cblas_sgemm (numpy wheels'
    scipy-openblas64, or an openblas64_) as {"d": ..., "s": ...}, or None: other BLAS builds
    (32-bit integers, MKL, Accelerate) are not used."""
    import ctypes
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core import _multiarray_umath as mu
    try:
        lib = ctypes.CDLL(mu.__file__)  # dlsym on it also searches the libraries it links
    except OSError:  # pragma: no cover
        return None
    for prefix, suffix in (("scipy_", "64_"), ("", "64_")):
        fns = {t: getattr(lib, f"{prefix}cblas_{t}gemm{suffix}", None) for t in "ds"}
        if all(fns.values()):
            return {t: ctypes.cast(fn, ctypes.c_void_p).value for t, fn in fns.items()}
    return None


def _host_has_fma() -> bool:
    """True when numba compiles for this CPU and the CPU has FMA (else llvm.fma is a libm call)."""
    try:
        import llvmlite.binding as llvm
        from numba.core import config
        return config.CPU_NAME is None and bool(llvm.get_host_cpu_features().get("fma"))
    except Exception:  # pragma: no cover - older llvmlite / unusual platforms
        return False


def _by_type(impl64, impl32, float32):
    """An overload's typing function: ``impl32`` for a float32 argument, else ``impl64``."""
    def typed(v):
        return impl32 if v == float32 else impl64
    return typed


def build() -> None:
    """Compile the kernels (or load them from numba's cache), rebinding their module names."""
    global _built, NATIVE_GEMM
    if _built:
        return
    with _build_lock:
        if _built:
            return
        try:
            import numba
            from numba import types
            from numba.extending import overload
        except ImportError:
            raise RuntimeError("the compiled backend needs numba (pip install numba, or the a4lib[fast] "
                               "extra); --backend numpy runs the same models without it") from None
        g = globals()
        opts = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)
        for name in _INLINE:
            g[name] = numba.njit(inline="always", **opts)(g[name])
        if _host_has_fma():
            g["_fma"] = _fma_intrinsic()
        for stub, (impl64, impl32) in _SCALAR_OVERLOADS.items():
            overload(g[stub], inline="always")(_by_type(g[impl64], g[impl32], types.float32))
        for name in _KERNELS:
            g[name] = numba.njit(**opts)(g[name])
        addresses = _find_gemm()
        if addresses:
            import llvmlite.binding as llvm
            for t, address in addresses.items():
                llvm.add_symbol(_GEMM_SYMBOLS[t], address)
            g["_cblas_gemm"] = _gemm_intrinsic()
            for name in ("_ld", "_gemm"):
                g[name] = numba.njit(inline="always", **opts)(g[name])
            for name in _GEMM_KERNELS:
                g[name] = numba.njit(**opts)(g[name])
            NATIVE_GEMM = True
        _built = True
