"""Optional numba accelerator for the vanilla RNN: the contract of ``a4lib.rnn``, faster.

``loss_and_grads`` and ``loss_and_state`` take and return exactly what ``a4lib.rnn``'s do: x, y
(T,) or (T, B) indices; h0 (m,) or (B, m); the loss summed over time and averaged over streams;
gradients written in place when ``grads`` is given; h_last a copy shaped like h0. What changes
is where the time goes:

* For few streams (B < ``BLAS_MIN_STREAMS``) each recurrence (h forward, dL/da backward) is one
  compiled call over all steps, its matrix-vector products written out by hand, where
  ``a4lib.rnn`` makes three numpy calls per step. The last backward step skips W^T dL/da_0,
  which only feeds h0.
* For more streams every product is a BLAS dgemm, and when numpy's BLAS exports an ILP64
  cblas_dgemm (numpy's wheels: scipy-openblas64; ``NATIVE_GEMM``) the compiled code calls it
  directly, so the forward pass is one compiled call and the backward pass another, with no
  Python per step. Products are per step, 32-row products running faster in OpenBLAS than one
  over all T B rows: forward W h_{t-1}, then V h_t; backward [dL/do_t, dL/da_{t+1}] [V; W] as
  one product (up to ``FOLD_MAX_STREAMS`` streams, else two), then dV and dW accumulated.
  db and dU are gathered in the same pass. At m = 100, T = 25, K = 65, B = 32 (2-core EPYC,
  one thread) the call takes ~1.75 ms, ~1.45 of them in dgemm; most of the rest is tanh
  (~0.1 ms) and the softmax (~0.1). Without such a BLAS, a Python loop per step (np.dot, then
  one compiled call) and single products over all steps for V h, dV, V^T dL/do and dW: ~15 %
  slower at B = 32.
* tanh and exp are a vectorisable polynomial (``_expm1_parts``: Cody-Waite range reduction,
  Taylor series of e^r - 1 to r^13, scaling by 2^n), within a few ulp of numpy's: numba's scalar
  libm tanh alone costs more than all the products at m = 100.
* Multiply-adds in the hand-written products and polynomials use the ``llvm.fma`` intrinsic
  when the CPU has FMA: fused (one rounding), never reassociated. No fastmath flags anywhere.

Results agree with ``a4lib.rnn`` to rounding (about 1e-15 relative; only the order of the sums
differs). numba is imported lazily, on the first call; importing this module never needs it.
``available()`` says whether it is installed; without it the functions raise RuntimeError.
Kernels are compiled with ``cache=True`` (into a4lib/__pycache__): the compile, about 10 s on a
slow 2-core machine, is paid once per machine and source version; later processes load the
cache in well under a second on their first call.
Single-threaded. Work buffers are module state reused between calls with the same shapes, so,
like ``a4lib.rnn``, not thread-safe; nothing returned aliases them.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from .rnn import init_params, step, zero_state  # noqa: F401  (the model's other functions are rnn's)

Params = dict[str, np.ndarray]
NAMES = ("U", "W", "V", "b", "c")

# From this many streams on, every recurrence step is one BLAS product rather than hand-written
# loops. Measured at m = 100, T = 25, K = 80 on a 2-core Xeon (Sapphire Rapids; OpenBLAS, one
# thread), whole call, loops vs BLAS: B = 1 225 vs 384 us, B = 4 639 vs 615, B = 8 1315 vs 1099.
BLAS_MIN_STREAMS = 5


def available() -> bool:
    """True when numba can be imported (the accelerator can run)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Kernels: plain Python source, compiled by ``_build`` on first use. They call each other by
# their module-level names, which ``_build`` rebinds to the compiled versions (``_fma`` included).
# No bounds checks inside: the wrappers check shapes, and the kernels check indices first.

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^20
_LN2_LO = 1.90821492927058770002e-10


def _fma(a, b, c):
    """a * b + c; ``_build`` replaces it by the fused llvm.fma intrinsic when the CPU has FMA."""
    return a * b + c


def _expm1_parts(y):
    """y = n ln2 + r with |r| <= ln2 / 2; returns (2^n, e^r - 1). Needs -1022 <= n <= 1023.

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


def _tanh_inplace(a):
    """a[i] = tanh(a[i]) for a 1-D array: e / (e + 2) with e = expm1(2 a). NaN stays NaN.

    In place on purpose: with separate in and out arrays LLVM did not vectorise the inlined loop.
    """
    for i in range(a.size):
        v = a[i]
        if v > 20.0:  # tanh(20) is 1 in float64; also keeps 2^n in range
            v = 20.0
        elif v < -20.0:
            v = -20.0
        s, q = _expm1_parts(2.0 * v)
        e = _fma(s, q, s - 1.0)
        a[i] = e / (e + 2.0)


def _exp_nonpos_inplace(a):
    """a[i] = exp(a[i]) for a[i] <= 0 (softmax after the max is subtracted); < -708 gives 0."""
    for i in range(a.size):
        v = a[i]
        w = v
        if w < -708.0:
            w = -708.0
        s, q = _expm1_parts(w)
        e = _fma(s, q, s)
        if v < -708.0:  # exp(-708) ~ 3e-308: the rest are subnormal, irrelevant to a softmax
            e = 0.0
        a[i] = e


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
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    n4 = n - n % 4
    for k in range(0, n4, 4):
        s0 += o[k]
        s1 += o[k + 1]
        s2 += o[k + 2]
        s3 += o[k + 3]
    for k in range(n4, n):
        s0 += o[k]
    return (s0 + s1) + (s2 + s3)


def _forward(U, W, b, x, h0, WT, H):
    """H[0] = h0; H[t + 1] = tanh(W H[t] + U[:, x_t] + b). x (T, B), h0 (B, m), H (T + 1, B, m).

    All steps in one call, products by hand. WT (m, m) is scratch for W^T, so that W h is a sum
    of rows of W^T: vectorised axpys, four rows at a time (fewer loads and stores of the sum).
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
    m4 = m - m % 4
    for t in range(T):
        for s in range(B):
            xi = x[t, s]
            for i in range(m):
                H[t + 1, s, i] = U[i, xi] + b[i]
        for j in range(0, m4, 4):
            for s in range(B):
                h0_ = H[t, s, j]
                h1_ = H[t, s, j + 1]
                h2_ = H[t, s, j + 2]
                h3_ = H[t, s, j + 3]
                for i in range(m):
                    H[t + 1, s, i] = _fma(h3_, WT[j + 3, i], _fma(h2_, WT[j + 2, i], _fma(
                        h1_, WT[j + 1, i], _fma(h0_, WT[j, i], H[t + 1, s, i]))))
        for j in range(m4, m):
            for s in range(B):
                hj = H[t, s, j]
                for i in range(m):
                    H[t + 1, s, i] = _fma(hj, WT[j, i], H[t + 1, s, i])
        _tanh_inplace(H[t + 1].reshape(B * m))
    return True


def _forward_step(UT, b, xt, Hn):
    """One step after BLAS: Hn (B, m) holds W h_{t-1} and becomes tanh(Hn + U[:, xt] + b)."""
    B, m = Hn.shape
    for s in range(B):
        xi = xt[s]
        for i in range(m):
            Hn[s, i] += UT[xi, i] + b[i]
    _tanh_inplace(Hn.reshape(B * m))


def _softmax_loss(O, c, y, B, want_grad, gc, dO):
    """O (R, K) holds V h_t for R = T B rows (step-major); y (R,). Returns the loss over B.

    O is left holding exp(o - max o). With want_grad, the first K columns of dO (R, >= K; may be
    O itself) get dL/do = (softmax(O + c) - onehot(y)) / B and gc its column sums. Returns -1,
    computing nothing, when y has an index outside [0, K).
    """
    R, K = O.shape
    for r in range(R):
        if y[r] < 0 or y[r] >= K:
            return -1.0
    inv_b = 1.0 / B
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
        gc[k] = 0.0
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


def _backward(W, x, H, D, carry, gb, gU, gUT):
    """D (T, B, m) holds V^T dL/do_t on entry and dL/da_t on exit; gb, gU are overwritten.

    dL/da_t = (V^T dL/do_t + W^T dL/da_{t+1}) * (1 - h_t^2): all steps in one call, products by
    hand as in ``_forward`` (rows of W are the axpy operands here); carry (B, m) is scratch.
    """
    T, B = x.shape
    m = W.shape[0]
    m4 = m - m % 4
    for s in range(B):
        for i in range(m):
            carry[s, i] = 0.0
    for t in range(T - 1, -1, -1):
        for s in range(B):
            for i in range(m):
                h = H[t + 1, s, i]
                D[t, s, i] = (D[t, s, i] + carry[s, i]) * (1.0 - h * h)
        if t == 0:
            break  # W^T dL/da_0 would only feed h0, which is not a parameter
        for s in range(B):
            for j in range(m):
                carry[s, j] = 0.0
        for i in range(0, m4, 4):
            for s in range(B):
                d0 = D[t, s, i]
                d1 = D[t, s, i + 1]
                d2 = D[t, s, i + 2]
                d3 = D[t, s, i + 3]
                for j in range(m):
                    carry[s, j] = _fma(d3, W[i + 3, j], _fma(d2, W[i + 2, j], _fma(
                        d1, W[i + 1, j], _fma(d0, W[i, j], carry[s, j]))))
        for i in range(m4, m):
            for s in range(B):
                di = D[t, s, i]
                for j in range(m):
                    carry[s, j] = _fma(di, W[i, j], carry[s, j])
    _input_grads(x, D, gb, gU, gUT)


def _backward_step(Dt, carry, Hn, first):
    """One step before BLAS: Dt (B, m) holds V^T dL/do_t and becomes dL/da_t
    = (Dt + carry) * (1 - h_t^2), with Hn = h_t and carry = W^T dL/da_{t+1} (unused if first)."""
    B, m = Dt.shape
    for s in range(B):
        for i in range(m):
            h = Hn[s, i]
            d = Dt[s, i] if first else Dt[s, i] + carry[s, i]
            Dt[s, i] = d * (1.0 - h * h)


def _input_grads(x, D, gb, gU, gUT):
    """gb = sum of dL/da_t; column x_t of gU gathers dL/da_t. Both overwritten.

    The gathering goes into the rows of gUT (K_in, m), contiguous and vectorised, then one
    transpose: scattering into columns of gU directly (stride K_in) took three times as long.
    """
    T, B = x.shape
    m = D.shape[2]
    for i in range(m):
        gb[i] = 0.0
    for k in range(gUT.shape[0]):
        for i in range(m):
            gUT[k, i] = 0.0
    for t in range(T):
        for s in range(B):
            g = gUT[x[t, s]]
            for i in range(m):
                d = D[t, s, i]
                gb[i] += d
                g[i] += d
    _transpose(gUT, gU)


def _cblas_dgemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc):
    """cblas_dgemm (row-major, ILP64) of numpy's own BLAS: C = op(A) op(B) + beta C, op(X) = X^T
    when its flag is 112 (CblasTrans), X when 111. ``_build`` binds it to the library function,
    found by ``_find_dgemm``; this Python version only documents it."""
    C[...] = (A.T if ta == 112 else A) @ (B.T if tb == 112 else B) + beta * C  # ld = shape[1]


def _ld(A):
    """The row stride of a 2-D float64 array with contiguous rows (any, for a single row)."""
    return A.strides[0] // 8 if A.shape[0] > 1 else A.shape[1]


def _gemm(ta, tb, A, B, C, beta):
    """C = op(A) op(B) + beta C for 2-D arrays with contiguous rows (row strides free), op
    transposing when its flag is True."""
    _cblas_dgemm(112 if ta else 111, 112 if tb else 111, C.shape[0], C.shape[1],
                 A.shape[0] if ta else A.shape[1], A, _ld(A), B, _ld(B), beta, C, _ld(C))


def _forward_blas(UT, WT, VT, b, x, H, O):
    """H[t + 1] = tanh(H[t] W^T + U^T[x_t] + b) and its rows of O (T B, K) = H[t + 1] V^T, all
    steps in one compiled call: per step two dgemm calls and ``_forward_step``. (At K = 65 the
    25 products of 32 rows take ~25 % less time than the one product of 800.) Returns False,
    computing nothing, when x has an index outside [0, K_in)."""
    if not _check_indices(x, UT.shape[0]):
        return False
    B = x.shape[1]
    for t in range(x.shape[0]):
        _gemm(False, False, H[t], WT, H[t + 1], 0.0)
        _forward_step(UT, b, x[t], H[t + 1])
        _gemm(False, False, H[t + 1], VT, O[t * B:(t + 1) * B], 0.0)
    return True


def _backward_blas(VW, x, H, G, D, gV, gW, gb, gU, gUT, fold):
    """All of the backward pass of the BLAS path in one compiled call, writing every gradient but dc.

    G (T B, K + m) holds dL/do_t in its first K columns. With fold, the other columns of row
    block t receive dL/da_{t+1}, so that dL/da_t = [dL/do_t, dL/da_{t+1}] [V; W] * (1 - h_t^2)
    is one dgemm per step with VW = [V; W]; without, two (dL/do_t V, then + dL/da_{t+1} W),
    which OpenBLAS runs faster from about 48 streams on (see ``FOLD_MAX_STREAMS``). dV and dW
    are summed step by step too: at B = 32 the 25 products of 32 rows take 15-20 % less time
    than one of 800. db and dU (through gUT (K_in, m), as in ``_input_grads``) are gathered in
    the pass that makes dL/da_t. D (T, B, m) gets dL/da_t.
    """
    T, B = x.shape
    m = VW.shape[1]
    K = VW.shape[0] - m
    gb[:] = 0.0
    gUT[:] = 0.0
    for t in range(T - 1, -1, -1):
        r = t * B
        Dt = D[t]
        Ht = H[t + 1]
        if t == T - 1 or not fold:
            _gemm(False, False, G[r:r + B, :K], VW[:K], Dt, 0.0)
            if t < T - 1:
                _gemm(False, False, D[t + 1], VW[K:], Dt, 1.0)
        else:
            _gemm(False, False, G[r:r + B], VW, Dt, 0.0)
        for s in range(B):  # dL/da_t, into G for the next step; db and dU^T gather it
            d = Dt[s]
            h = Ht[s]
            g = gUT[x[t, s]]
            for i in range(m):
                v = d[i] * (1.0 - h[i] * h[i])
                d[i] = v
                gb[i] += v
                g[i] += v
            if fold and t:
                G[r - B + s, K:] = d
        beta = 0.0 if t == T - 1 else 1.0
        _gemm(True, False, G[r:r + B, :K], Ht, gV, beta)  # dV += dL/do_t^T h_{t+1}
        _gemm(True, False, Dt, H[t], gW, beta)  # dW += dL/da_t^T h_t
    _transpose(gUT, gU)


def _clip_adagrad(w, dw, M, eta, eps, limit):
    for i in range(w.size):
        g = dw[i]
        if limit > 0.0:
            g = min(max(g, -limit), limit)
            dw[i] = g
        M[i] += g * g
        w[i] -= (g / math.sqrt(M[i] + eps)) * eta  # numpy's order of operations: bit for bit


_INLINE = ("_fma", "_expm1_parts", "_row_max", "_row_sum")
_KERNELS = ("_tanh_inplace", "_exp_nonpos_inplace", "_check_indices", "_transpose", "_input_grads",
            "_forward", "_forward_step", "_softmax_loss", "_backward", "_backward_step", "_clip_adagrad")
# Up to this many streams the compiled BLAS path's backward step is one product [dL/do_t,
# dL/da_{t+1}] [V; W] rather than two. OpenBLAS, one thread, K = 65, m = 100 (2-core EPYC Zen 4):
# B = 32 one 18.8 us vs two 20.1; B = 48 29.9 vs 28.9; B = 64 48.5 vs 39.6; B = 128 98 vs 91.
FOLD_MAX_STREAMS = 40
_GEMM_KERNELS = ("_forward_blas", "_backward_blas")  # compiled only when numpy's dgemm is found
_DGEMM_SYMBOL = "a4lib_cblas_dgemm_ilp64"  # our name for it in compiled (and cached) code
# True when the BLAS path runs in compiled code calling numpy's cblas_dgemm (set by ``_build``);
# False: a Python loop of np.dot and a compiled call per step, and single products over all
# steps for V h, dV, V^T dL/do and dW (~15 % slower at B = 32).
NATIVE_GEMM = False
_built = False
_build_lock = threading.Lock()


def _fma_intrinsic():
    """llvm.fma.f64 as a numba intrinsic: a * b + c with one rounding."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx, a, b, c):
        sig = types.float64(types.float64, types.float64, types.float64)

        def codegen(context, builder, signature, args):
            d = ir.DoubleType()
            fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
            return builder.call(fn, [context.cast(builder, v, t, types.float64)
                                     for v, t in zip(args, signature.args)])
        return sig, codegen

    return fma


def _dgemm_intrinsic():
    """``_cblas_dgemm`` as a numba intrinsic: a call of the external symbol ``_DGEMM_SYMBOL``
    (64-bit integers, CBLAS enums as C ints, the arrays' data pointers)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def cblas_dgemm(typingctx, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc):
        i8 = types.int64
        sig = types.void(i8, i8, i8, i8, i8, A, i8, B, i8, types.float64, C, i8)

        def codegen(context, builder, signature, args):
            i32, i64, d = ir.IntType(32), ir.IntType(64), ir.DoubleType()
            dp = d.as_pointer()
            fnty = ir.FunctionType(ir.VoidType(),
                                   [i32, i32, i32, i64, i64, i64, d, dp, i64, dp, i64, d, dp, i64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _DGEMM_SYMBOL)
            ta_, tb_, M_, N_, K_, A_, lda_, B_, ldb_, beta_, C_, ldc_ = args
            ty = signature.args

            def data(v, t):
                return context.make_array(t)(context, builder, v).data

            builder.call(fn, [ir.Constant(i32, 101), builder.trunc(ta_, i32), builder.trunc(tb_, i32),
                              M_, N_, K_, ir.Constant(d, 1.0), data(A_, ty[5]), lda_, data(B_, ty[7]), ldb_,
                              beta_, data(C_, ty[10]), ldc_])
            return context.get_dummy_value()
        return sig, codegen

    return cblas_dgemm


def _find_dgemm() -> int | None:
    """The address of numpy's own ILP64 cblas_dgemm (numpy wheels' scipy-openblas64, or an
    openblas64_), or None: other BLAS builds (32-bit integers, MKL, Accelerate) are not used."""
    import ctypes
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core import _multiarray_umath as mu
    try:
        lib = ctypes.CDLL(mu.__file__)  # dlsym on it also searches the libraries it links
    except OSError:  # pragma: no cover
        return None
    for name in ("scipy_cblas_dgemm64_", "cblas_dgemm64_"):
        fn = getattr(lib, name, None)
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value
    return None


def _host_has_fma() -> bool:
    """True when numba compiles for this CPU and the CPU has FMA (else llvm.fma is a libm call)."""
    try:
        import llvmlite.binding as llvm
        from numba.core import config
        return config.CPU_NAME is None and bool(llvm.get_host_cpu_features().get("fma"))
    except Exception:  # pragma: no cover - older llvmlite / unusual platforms
        return False


def _build() -> None:
    """Compile the kernels (or load them from numba's cache), rebinding their module names."""
    global _built
    with _build_lock:
        if _built:
            return
        try:
            import numba
        except ImportError:
            raise RuntimeError("a4lib.fast needs numba (pip install numba, or the a4lib[fast] extra); "
                               "a4lib.rnn has the same functions without it") from None
        g = globals()
        opts = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)
        for name in _INLINE:
            g[name] = numba.njit(inline="always", **opts)(g[name])
        if _host_has_fma():
            g["_fma"] = _fma_intrinsic()
        for name in _KERNELS:
            g[name] = numba.njit(**opts)(g[name])
        address = _find_dgemm()
        if address:
            import llvmlite.binding as llvm
            llvm.add_symbol(_DGEMM_SYMBOL, address)
            g["_cblas_dgemm"] = _dgemm_intrinsic()
            for name in ("_ld", "_gemm"):
                g[name] = numba.njit(inline="always", **opts)(g[name])
            for name in _GEMM_KERNELS:
                g[name] = numba.njit(**opts)(g[name])
            g["NATIVE_GEMM"] = True
        _built = True


# ---------------------------------------------------------------------------------------------
# Wrappers: checks, buffers, the BLAS products.

class _Plan:
    """Work arrays for one (T, B, m, K_in, K_out), with the 2-D views the products use."""

    def __init__(self, T: int, B: int, m: int, K_in: int, K_out: int) -> None:
        self.H = np.empty((T + 1, B, m))  # H[0] = h0, H[t] = h_t
        self.H_out = self.H[1:].reshape(T * B, m)  # h_1 .. h_T: inputs of the output layer
        self.H_in = self.H[:-1].reshape(T * B, m)  # h_0 .. h_{T-1}: inputs of W
        self.O = np.empty((T * B, K_out))  # o_t, then dL/do_t
        self.D = np.empty((T, B, m))  # V^T dL/do_t, then dL/da_t
        self.D2 = self.D.reshape(T * B, m)
        self.carry = np.empty((B, m))
        self.gc = np.empty(K_out)  # scratch for the loss-only pass
        self.WT = np.empty((m, m))
        self.UT = np.empty((K_in, m)) if B >= BLAS_MIN_STREAMS else None
        self.gUT = np.empty((K_in, m))  # scratch for dL/dU^T
        if B >= BLAS_MIN_STREAMS:  # for the compiled BLAS path (NATIVE_GEMM)
            self.G = np.empty((T * B, K_out + m))  # [dL/do_t, dL/da_{t+1}] in row block t
            self.VW = np.empty((K_out + m, m))  # [V; W]
            self.VT = np.empty((m, K_out))


_plans: dict[tuple, _Plan] = {}


def _plan(*key: int) -> _Plan:
    """The work arrays for these shapes, reused from call to call (no page faults for large B)."""
    plan = _plans.get(key)
    if plan is None or (plan.UT is None) != (key[1] < BLAS_MIN_STREAMS):
        if len(_plans) >= 8:  # many distinct shapes: do not hoard memory
            _plans.clear()
        plan = _plans[key] = _Plan(*key)
    return plan


_F64, _INTP = np.dtype(np.float64), np.dtype(np.intp)  # compared with ``is``: fast, and exact


def _f64(a) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype is _F64 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.float64)


def _indices(a, name: str, shape: tuple | None = None) -> np.ndarray:
    if type(a) is not np.ndarray or a.dtype is not _INTP or not a.flags.c_contiguous:
        a = np.asarray(a)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integer indices; got {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.intp)
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}; expected {shape}, like x")
    return a


def _prepare(params: Params, x, y, h0):
    """Contiguous float64 parameters (checked), x and y (T, B) intp, h0 (B, m), single flag."""
    if not _built:
        _build()
    U, W, V = _f64(params["U"]), _f64(params["W"]), _f64(params["V"])
    b, c = _f64(params["b"]), _f64(params["c"])
    m = W.shape[0]
    if (W.shape != (m, m) or U.ndim != 2 or U.shape[0] != m or V.ndim != 2 or V.shape[1] != m
            or b.shape != (m,) or c.shape != (V.shape[0],)):
        raise ValueError(f"inconsistent parameter shapes: U {U.shape}, W {W.shape}, V {V.shape}, "
                         f"b {b.shape}, c {c.shape}")
    x = _indices(x, "x")
    y = _indices(y, "y", x.shape)
    h0 = _f64(h0)
    single = x.ndim == 1
    if single:
        if h0.shape != (m,):
            raise ValueError(f"h0 has shape {h0.shape}; expected {(m,)} for x of shape {x.shape}")
        x, y, h0 = x[:, None], y[:, None], h0[None, :]
    elif x.ndim != 2 or h0.shape != (x.shape[1], m):
        raise ValueError(f"x has shape {x.shape}, h0 {h0.shape}: expected (T,) and ({m},) or "
                         f"(T, B) and (B, {m})")
    return (U, W, V, b, c), x, y, h0, single


def _forward_loss(P, x, y, h0, want_grad: bool, gc: np.ndarray | None) -> tuple[float, _Plan]:
    """The forward pass into the plan's H and O (dL/do when want_grad); returns the loss."""
    U, W, V, b, c = P
    (T, B), (m, K_in), K = x.shape, U.shape, V.shape[0]
    pl = _plan(T, B, m, K_in, K)
    H = pl.H
    if B < BLAS_MIN_STREAMS:
        if not _forward(U, W, b, x, h0, pl.WT, H):
            raise IndexError(f"x has indices outside [0, {K_in})")
    elif NATIVE_GEMM:
        _transpose(U, pl.UT)
        _transpose(W, pl.WT)  # h W^T with W^T contiguous: ~30 % faster in OpenBLAS than a transposed view
        _transpose(V, pl.VT)
        H[0] = h0
        if not _forward_blas(pl.UT, pl.WT, pl.VT, b, x, H, pl.O):
            raise IndexError(f"x has indices outside [0, {K_in})")
    else:
        if not _check_indices(x, K_in):
            raise IndexError(f"x has indices outside [0, {K_in})")
        _transpose(U, pl.UT)
        _transpose(W, pl.WT)
        H[0] = h0
        for t in range(T):
            h = H[t + 1]
            np.dot(H[t], pl.WT, out=h)
            _forward_step(pl.UT, b, x[t], h)
    if B < BLAS_MIN_STREAMS or not NATIVE_GEMM:
        np.dot(pl.H_out, V.T, out=pl.O)
        dO = pl.O
    else:
        dO = pl.G
    loss = _softmax_loss(pl.O, c, y.reshape(-1), B, want_grad, pl.gc if gc is None else gc, dO)
    if loss < 0:
        raise IndexError(f"y has indices outside [0, {K})")
    return float(loss), pl


def _backward_all(W, x, pl: _Plan, gb, gU) -> None:
    """pl.D: V^T dL/do_t on entry, dL/da_t on exit; gb and gU written."""
    T, B = x.shape
    if B < BLAS_MIN_STREAMS:
        _backward(W, x, pl.H, pl.D, pl.carry, gb, gU, pl.gUT)
        return
    H, D, carry = pl.H, pl.D, pl.carry
    for t in range(T - 1, -1, -1):
        d = D[t]
        _backward_step(d, carry, H[t + 1], t == T - 1)
        if t:
            np.dot(d, W, out=carry)
    _input_grads(x, D, gb, gU, pl.gUT)


def _target(grads: Params, name: str, like: np.ndarray) -> np.ndarray:
    """grads[name] when the kernels can write into it, else a fresh array (copied back later)."""
    g = grads.get(name)
    if (type(g) is np.ndarray and g.dtype is _F64 and g.shape == like.shape
            and g.flags.c_contiguous and g.flags.writeable):
        return g
    return np.empty_like(like)


def loss_and_grads(params: Params, x, y, h0, grads: Params | None = None) -> tuple[float, Params, np.ndarray]:
    """As ``a4lib.rnn.loss_and_grads``: the loss summed over time steps (averaged over streams),
    its unclipped gradients (written into ``grads`` when given) and the last hidden state.

    x, y: int arrays (T,) or (T, B); h0: (m,) or (B, m). h_last has the shape of h0.
    """
    P, x, y, h0, single = _prepare(params, x, y, h0)
    W, V = P[1], P[2]
    if grads is None:
        grads = {}
    out = {k: _target(grads, k, p) for k, p in zip(NAMES, P)}

    loss, pl = _forward_loss(P, x, y, h0, True, out["c"])
    if x.shape[1] >= BLAS_MIN_STREAMS and NATIVE_GEMM:
        K = V.shape[0]
        pl.VW[:K] = V
        pl.VW[K:] = W
        _backward_blas(pl.VW, x, pl.H, pl.G, pl.D, out["V"], out["W"], out["b"], out["U"], pl.gUT,
                       x.shape[1] <= FOLD_MAX_STREAMS)
    else:
        dO = pl.O
        np.dot(dO.T, pl.H_out, out=out["V"])
        np.dot(dO, V, out=pl.D2)
        _backward_all(W, x, pl, out["b"], out["U"])
        np.dot(pl.D2.T, pl.H_in, out=out["W"])

    for k, g in out.items():
        if grads.get(k) is not g:
            if k in grads:
                grads[k][...] = g
            else:
                grads[k] = g
    h_last = pl.H[-1]
    return loss, grads, (h_last[0] if single else h_last).copy()


def loss_and_state(params: Params, x, y, h0) -> tuple[float, np.ndarray]:
    """As ``a4lib.rnn.loss_and_state``: the loss and the last hidden state, no gradients."""
    P, x, y, h0, single = _prepare(params, x, y, h0)
    loss, pl = _forward_loss(P, x, y, h0, False, None)
    h_last = pl.H[-1]
    return loss, (h_last[0] if single else h_last).copy()


def loss(params: Params, x, y, h0) -> float:
    """The loss only."""
    return loss_and_state(params, x, y, h0)[0]


def clip_adagrad(w: np.ndarray, dw: np.ndarray, M: np.ndarray, eta: float, eps: float, limit: float) -> None:
    """``optim.clip(dw, limit)`` then ``optim.AdaGrad(eta, eps).update(w, dw, {"M": M})`` in one
    pass over the flat float64 vectors (in place, the same bits; limit <= 0 or inf: no clipping)."""
    if not _built:
        _build()
    if not (w.shape == dw.shape == M.shape and w.ndim == 1 and
            all(a.dtype is _F64 and a.flags.c_contiguous for a in (w, dw, M))):
        raise ValueError("clip_adagrad needs three contiguous float64 vectors of one length")
    _clip_adagrad(w, dw, M, float(eta), float(eps), float(limit) if 0 < limit < math.inf else 0.0)
