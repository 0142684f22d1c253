"""The compiled kernels (numba): the cells' recurrences (``a4lib.model.compiled``), the softmax
loss and the first layer's input and its gradients (``a4lib.model.network``), and the fused
optimizer steps (``a4lib.optim``).

They live in one file on purpose: numba's on-disk cache (``cache=True``, in __pycache__) is
invalidated by a change of the file a kernel is written in, not of the files it calls into; with
every kernel here, an edit anywhere recompiles everything that could have inlined it.

Every kernel takes float64 or float32 arrays (numba compiles one version per type); constants are
cast to the arrays' type (``F = a.dtype.type``) so that float32 work stays float32 (twice the SIMD
lanes). Math:

* tanh and exp are a vectorisable polynomial (``_expm1_parts``: Cody-Waite range reduction,
  Taylor series of e^r - 1, scaling by 2^n), within a few ulp of numpy's: numba's scalar libm tanh
  costs more than the products at m = 100. float64 runs the series to r^13, float32 to r^8
  (``_expm1_parts32``). sigmoid(a) = (1 + tanh(a / 2)) / 2, as ``a4lib.model.cells`` computes it.
* Multiply-adds in the polynomials use the ``llvm.fma`` intrinsic when the CPU has FMA: fused
  (one rounding), never reassociated. No fastmath flags anywhere.
* Matrix products are ``np.dot``, which numba compiles to calls of SciPy's BLAS through its
  public Cython interface (``scipy.linalg.cython_blas``): no private symbols.

numba (and SciPy) are imported lazily, by ``build``; importing this module needs neither.
``available()`` says whether both are installed. The compile, about 30 s on a 2-core machine for
both types, is paid once per machine and source version; later processes load numba's cache.
``Network`` checks the shapes; the two kernels that index by character (``_gather_input``,
``_softmax_loss``) check the indices and raise ValueError; no other kernel checks bounds.
"""
from __future__ import annotations

import math
import sys
import threading

import numpy as np


def available() -> bool:
    """True when numba and SciPy (numba's BLAS for np.dot) can be imported: the compiled backend runs."""
    try:
        import numba  # noqa: F401
        _preload_openblas()
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Which BLAS. np.dot in compiled code calls SciPy's BLAS (scipy.linalg.cython_blas). SciPy's wheels
# bundle an OpenBLAS (0.3.30 in SciPy 1.17) that multiplies 32 rows (the per-step W h of B = 32
# streams) a third slower on this project's 2-core test machine than newer ones do (float32,
# (32 x 256)(256 x 1024): 86 against 112 GFLOP/s with 0.3.34). The package scipy-openblas32 (the
# `fast` extra) is the OpenBLAS build NumPy's and SciPy's wheels are made from, and is made to be
# preloaded: importing it loads its library into the process's global namespace, and SciPy's BLAS,
# loaded after it, binds to it (the same scipy_-prefixed symbols and ABI). ``available`` does that
# before it imports SciPy's BLAS. Where SciPy's linear algebra was imported first (or a conda SciPy
# with its own BLAS names), SciPy keeps its own: correct, only slower. ``BLAS`` says which.

BLAS = "SciPy's own OpenBLAS"
_preloaded: bool | None = None  # None until ``_preload_openblas`` has run


def _preload_openblas() -> None:
    """Import scipy-openblas32 before SciPy's BLAS, when it is installed (see above); sets ``BLAS``
    and ``_preloaded``. Runs once."""
    global BLAS, _preloaded
    if _preloaded is not None:
        return
    _preloaded = False
    if any(name == "scipy.linalg" or name.startswith("scipy.linalg.") for name in sys.modules):
        BLAS = "SciPy's own OpenBLAS (SciPy's linear algebra was imported before a4lib's compiled backend)"
        return
    try:
        import scipy_openblas32
    except (ImportError, OSError):  # OSError: its library did not load
        BLAS = "SciPy's own OpenBLAS (scipy-openblas32 is not installed or did not load)"
        return
    _preloaded = True
    BLAS = " ".join(scipy_openblas32.get_openblas_config().split()[:2]) + " (scipy-openblas32, preloaded)"


def _preloaded_openblas():
    """The preloaded scipy-openblas32 library (ctypes), or None where compiled code calls SciPy's own."""
    return sys.modules["scipy_openblas32"].dll if available() and _preloaded else None


def set_blas_threads(n: int) -> bool:
    """Give the BLAS that compiled code calls ``n`` threads (numpy's BLAS keeps its own number: two
    pools of busy threads on two cores slow each other down). False when that BLAS is SciPy's own,
    whose threads a4lib does not set (then ``OPENBLAS_NUM_THREADS``, read at start, decides)."""
    lib = _preloaded_openblas()
    if lib is not None:
        lib.scipy_openblas_set_num_threads(int(n))
    return lib is not None


def blas_threads() -> int | None:
    """The thread count of the BLAS that compiled code calls, where a4lib can read it (else None)."""
    lib = _preloaded_openblas()
    return None if lib is None else int(lib.scipy_openblas_get_num_threads())


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


def _softmax_loss(O, c, y, B, want_grad, gc, dO):
    """O (R, K) holds V h_t for R = T B rows (step-major); y (R,). Returns the loss over B.

    O is left holding exp(o - max o). With want_grad, the first K columns of dO (R, >= K; may be
    O itself) get dL/do = (softmax(O + c) - onehot(y)) / B and gc its column sums. The loss is
    summed in float64.
    """
    F = O.dtype.type
    R, K = O.shape
    for r in range(R):
        if y[r] < 0 or y[r] >= K:
            raise ValueError("a character index is outside the vocabulary")
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
# The cells' recurrences (a4lib.model.compiled), the equations of a4lib.model.cells. Per step the
# recurrent product is ``_dot``; the gates are loops over the elements. H[0] (and C[0]) are set by
# the caller; every array is C-contiguous; W is (G m, m).

SMALL_ROWS = 4  # products of at most this many rows (streams) are written out by hand in ``_dot``


def _dot(X, M, out):
    """out = X M for X (B, k) and M (k, n) with contiguous rows. From SMALL_ROWS + 1 rows on, np.dot
    (SciPy's BLAS); for fewer, rows of M scaled and added four at a time, which for one stream at
    m = 100 takes half the time of a BLAS call (0.5 against 1.2 us in float64)."""
    B, k = X.shape
    if B > SMALL_ROWS:
        np.dot(X, M, out)
        return
    n = M.shape[1]
    k4 = k - k % 4
    for s in range(B):
        x = X[s]
        o = out[s]
        for i in range(n):
            o[i] = 0.0
        for j in range(0, k4, 4):
            x0, x1, x2, x3 = x[j], x[j + 1], x[j + 2], x[j + 3]
            m0, m1, m2, m3 = M[j], M[j + 1], M[j + 2], M[j + 3]
            for i in range(n):
                o[i] = _fma(x3, m3[i], _fma(x2, m2[i], _fma(x1, m1[i], _fma(x0, m0[i], o[i]))))
        for j in range(k4, k):
            xj = x[j]
            mj = M[j]
            for i in range(n):
                o[i] = _fma(xj, mj[i], o[i])


def _transposed(W):
    """W^T as a contiguous array: the forward product h W^T by ``_dot`` reads rows of W^T."""
    WT = np.empty((W.shape[1], W.shape[0]), W.dtype)
    _transpose(W, WT)
    return WT

def _gather_input(UT, b, x, A):
    """A[t, s] = UT[x[t, s]] + b: the first layer's U x_t + b by indices. UT (K, n), A (T, B, n)."""
    for t in range(x.shape[0]):
        for s in range(x.shape[1]):
            if x[t, s] < 0 or x[t, s] >= UT.shape[0]:
                raise ValueError("a character index is outside the vocabulary")
            u = UT[x[t, s]]
            a = A[t, s]
            for i in range(a.size):
                a[i] = u[i] + b[i]


def _rnn_forward(W, A, H):
    """H[t + 1] = tanh(W h_t + A[t]) for t = 0 .. T - 1. A, H[1:] (T, B, m)."""
    T, B, m = A.shape
    WT = _transposed(W)
    for t in range(T):
        _dot(H[t], WT, H[t + 1])
        h = H[t + 1].reshape(B * m)
        a = A[t].reshape(B * m)
        for j in range(h.size):
            h[j] = _tanh(h[j] + a[j])


def _rnn_backward(W, H, dH, dA, carry):
    """dA[t] = (dH[t] + W^T dA[t + 1]) * (1 - h_t^2), last step first; carry (B, m) scratch."""
    one = dA.dtype.type(1.0)
    T, B, m = dH.shape
    c = carry.reshape(B * m)
    for t in range(T - 1, -1, -1):
        d = dA[t].reshape(B * m)
        g = dH[t].reshape(B * m)
        h = H[t + 1].reshape(B * m)
        if t < T - 1:
            for j in range(d.size):
                d[j] = (g[j] + c[j]) * (one - h[j] * h[j])
        else:
            for j in range(d.size):
                d[j] = g[j] * (one - h[j] * h[j])
        if t:  # W^T dL/da_0 would only feed h_0
            _dot(dA[t], W, carry)


def _gru_forward(W, A, H, G, Qn, q):
    """The GRU's steps: q = W h_{t-1}; G[t] = [z, r, n]; Qn[t] = q_n; H[t + 1]. q (B, 3m) scratch."""
    one = A.dtype.type(1.0)
    T, B, m3 = A.shape
    m = m3 // 3
    WT = _transposed(W)
    for t in range(T):
        _dot(H[t], WT, q)
        for s in range(B):
            a = A[t, s]
            g = G[t, s]
            qs = q[s]
            for j in range(2 * m):
                g[j] = a[j] + qs[j]
            _sigmoid_inplace(g[:2 * m])
            qn = Qn[t, s]
            for j in range(m):
                qn[j] = qs[2 * m + j]
                g[2 * m + j] = a[2 * m + j] + g[m + j] * qn[j]
            _tanh_inplace(g[2 * m:])
            hp = H[t, s]
            hn = H[t + 1, s]
            for j in range(m):
                z = g[j]
                hn[j] = (one - z) * g[2 * m + j] + z * hp[j]


def _gru_backward(W, H, G, Qn, dH, dA, dQ, carry, tmp, dh):
    """The GRU's backward steps, last first: dA[t] = dL/d[a_z, a_r, a_n], dQ[t] = dL/dq_t;
    carry, tmp (B, m), dh (m,) scratch.

    One loop per quantity, each over few arrays: LLVM vectorises a loop only when it can check at
    run time that its arrays do not overlap, and gives up beyond a few arrays (one loop over all
    of them ran scalar, a third slower)."""
    one = dA.dtype.type(1.0)
    T, B, m = dH.shape
    for t in range(T - 1, -1, -1):
        for s in range(B):
            g, da, dq, hp, qn, cs = G[t, s], dA[t, s], dQ[t, s], H[t, s], Qn[t, s], carry[s]
            z, r, n = g[:m], g[m:2 * m], g[2 * m:]
            da_z, da_r, da_n = da[:m], da[m:2 * m], da[2 * m:]
            dhs = dH[t, s]
            if t < T - 1:
                for j in range(m):
                    dh[j] = dhs[j] + cs[j]
            else:
                for j in range(m):
                    dh[j] = dhs[j]
            for j in range(m):
                da_n[j] = dh[j] * (one - z[j]) * (one - n[j] * n[j])
            for j in range(m):
                da_z[j] = dh[j] * (hp[j] - n[j]) * z[j] * (one - z[j])
            for j in range(m):
                da_r[j] = da_n[j] * qn[j] * r[j] * (one - r[j])
            for j in range(2 * m):
                dq[j] = da[j]
            dq_n = dq[2 * m:]
            for j in range(m):
                dq_n[j] = da_n[j] * r[j]
            for j in range(m):
                cs[j] = dh[j] * z[j]
        if t:
            _dot(dQ[t], W, tmp)
            c, d = carry.reshape(B * m), tmp.reshape(B * m)
            for j in range(c.size):
                c[j] += d[j]


def _lstm_forward(W, A, H, C, G, TC):
    """The LSTM's steps: G[t] = the gates [i, f, o, g], C[t + 1] = c_t, TC[t] = tanh(c_t), H[t + 1]."""
    T, B, m4 = A.shape
    m = m4 // 4
    WT = _transposed(W)
    for t in range(T):
        _dot(H[t], WT, G[t])
        for s in range(B):
            g = G[t, s]
            a = A[t, s]
            for j in range(m4):
                g[j] += a[j]
            _sigmoid_inplace(g[:3 * m])
            _tanh_inplace(g[3 * m:])
            cp = C[t, s]
            cn = C[t + 1, s]
            tc = TC[t, s]
            for j in range(m):
                cn[j] = _fma(g[m + j], cp[j], g[j] * g[3 * m + j])
                tc[j] = cn[j]
            _tanh_inplace(tc)
            hn = H[t + 1, s]
            for j in range(m):
                hn[j] = g[2 * m + j] * tc[j]


def _lstm_backward(W, C, G, TC, dH, dA, carry, dc_next, dh, dc):
    """The LSTM's backward steps, last first: dA[t] = dL/da_t. carry (B, m) is W^T dL/da_{t+1},
    dc_next (B, m) f_{t+1} dL/dc_{t+1}; dh, dc (m,) scratch. One loop per quantity (see
    ``_gru_backward``)."""
    one = dA.dtype.type(1.0)
    T, B, m = dH.shape
    for t in range(T - 1, -1, -1):
        for s in range(B):
            g, d, dhs, cs, dcn, cp, tc = G[t, s], dA[t, s], dH[t, s], carry[s], dc_next[s], C[t, s], TC[t, s]
            i_, f_, o_, g_ = g[:m], g[m:2 * m], g[2 * m:3 * m], g[3 * m:]
            d_i, d_f, d_o, d_g = d[:m], d[m:2 * m], d[2 * m:3 * m], d[3 * m:]
            if t < T - 1:
                for j in range(m):
                    dh[j] = dhs[j] + cs[j]
                for j in range(m):
                    dc[j] = dh[j] * o_[j] * (one - tc[j] * tc[j]) + dcn[j]
            else:
                for j in range(m):
                    dh[j] = dhs[j]
                for j in range(m):
                    dc[j] = dh[j] * o_[j] * (one - tc[j] * tc[j])
            for j in range(m):
                d_i[j] = dc[j] * g_[j] * i_[j] * (one - i_[j])
            for j in range(m):
                d_f[j] = dc[j] * cp[j] * f_[j] * (one - f_[j])
            for j in range(m):
                d_o[j] = dh[j] * tc[j] * o_[j] * (one - o_[j])
            for j in range(m):
                d_g[j] = dc[j] * i_[j] * (one - g_[j] * g_[j])
            for j in range(m):
                dcn[j] = dc[j] * f_[j]
        if t:  # at t = 0 both would only feed the initial state
            _dot(dA[t], W, carry)


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
# Subnormal numbers. A float32 gradient that shrinks through many steps and gates (an LSTM or GRU
# at sig = 0.01, two layers) soon holds subnormals (below 1.2e-38), and every arithmetic
# instruction that meets one takes a microcode assist: a 2-layer LSTM (m = 256) took 1.4 times as long
# per update, its gradient products three times as long.
# ``subnormals_flushed`` sets the x86 MXCSR flags FTZ and DAZ for float32 work (as PyTorch's
# set_flush_denormal and TensorFlow do): subnormal results and inputs become zero. float64 work
# stays IEEE (its subnormals, below 2.2e-308, do not arise here), as does any other platform.

MXCSR_FLUSH = 0x8040  # MXCSR bit 15 (FTZ: flush subnormal results) and bit 6 (DAZ: read them as 0)


def _mxcsr():
    """The calling thread's MXCSR; ``build`` replaces it by the stmxcsr intrinsic on x86."""
    return np.uint32(0)


def _set_mxcsr(value):
    """Load ``value`` into the calling thread's MXCSR; ``build`` replaces it by ldmxcsr on x86."""


def _flush_subnormals():
    """Set FTZ and DAZ in the calling thread; return the MXCSR as it was, for ``_restore_mxcsr``."""
    old = _mxcsr()
    _set_mxcsr(old | np.uint32(MXCSR_FLUSH))
    return old


def _restore_mxcsr(old):
    _set_mxcsr(old)


_flushes = False  # True once built on x86: MXCSR exists and the two intrinsics are in place


class subnormals_flushed:
    """``with subnormals_flushed(dtype):`` float32 work in this thread flushes subnormals to zero
    within the block (x86 with the kernels built; elsewhere, and for float64, nothing changes). The
    thread's flags are restored after. A class, not a generator: it runs twice every update."""

    __slots__ = ("_on", "_old")

    def __init__(self, dtype) -> None:
        self._on = _flushes and dtype == np.float32

    def __enter__(self) -> None:
        if self._on:
            self._old = _flush_subnormals()

    def __exit__(self, *exc) -> None:
        if self._on:
            _restore_mxcsr(self._old)


def _mxcsr_intrinsics():
    """stmxcsr and ldmxcsr (x86) as numba intrinsics, through a 4-byte stack slot."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i32, i8p = ir.IntType(32), ir.IntType(8).as_pointer()

    def call(builder, name, slot):
        fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(ir.VoidType(), [i8p]))
        builder.call(fn, [builder.bitcast(slot, i8p)])

    @intrinsic
    def stmxcsr(typingctx):
        def codegen(context, builder, signature, args):
            slot = builder.alloca(i32)
            call(builder, "llvm.x86.sse.stmxcsr", slot)
            return builder.load(slot)
        return types.uint32(), codegen

    @intrinsic
    def ldmxcsr(typingctx, value):
        def codegen(context, builder, signature, args):
            slot = builder.alloca(i32)
            builder.store(context.cast(builder, args[0], signature.args[0], types.uint32), slot)
            call(builder, "llvm.x86.sse.ldmxcsr", slot)
            return context.get_dummy_value()
        return types.none(value), codegen

    return stmxcsr, ldmxcsr


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


# ---------------------------------------------------------------------------------------------
# Building

_INLINE = ("_mxcsr", "_set_mxcsr", "_fma", "_expm1_parts", "_expm1_parts32", "_row_max", "_row_sum", "_clip", "_dot",
           "_transposed")
_SCALAR_OVERLOADS = {"_tanh": ("_tanh64", "_tanh32"), "_exp_nonpos": ("_exp_nonpos64", "_exp_nonpos32")}
_KERNELS = ("_tanh_inplace", "_exp_nonpos_inplace", "_sigmoid_inplace", "_transpose", "_softmax_loss",
            "_input_grads", "_input_grads_end", "_gather_input", "_rnn_forward", "_rnn_backward", "_gru_forward",
            "_gru_backward", "_lstm_forward", "_lstm_backward", "_clip_adagrad", "_clip_rmsprop", "_clip_adam",
            "_flush_subnormals", "_restore_mxcsr")
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
    """Compile the kernels (or load them from numba's cache), rebinding their module names.
    Raises RuntimeError when numba or SciPy is missing."""
    global _built, _flushes
    if _built:
        return
    with _build_lock:
        if _built:
            return
        if not available():
            raise RuntimeError("the compiled backend needs numba and SciPy (pip install 'a4lib[fast]'); "
                               "--backend numpy runs the same models without them")
        import numba
        from numba import types
        from numba.extending import overload

        g = globals()
        opts = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)
        for name in _INLINE:
            g[name] = numba.njit(inline="always", **opts)(g[name])
        if _host_has_fma():
            g["_fma"] = _fma_intrinsic()
        if _is_x86():
            g["_mxcsr"], g["_set_mxcsr"] = _mxcsr_intrinsics()
        for stub, (impl64, impl32) in _SCALAR_OVERLOADS.items():
            overload(g[stub], inline="always")(_by_type(g[impl64], g[impl32], types.float32))
        for name in _KERNELS:
            g[name] = numba.njit(**opts)(g[name])
        _flushes = _is_x86()
        _built = True
