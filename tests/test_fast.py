"""a4lib.fast (numba) against a4lib.rnn and the one-hot a4lib.reference.

Agreement criterion everywhere, for the loss, every gradient and h_last: relative to each array's
scale, max |fast - ref| <= 1e-10 max |ref| + 1e-12 elementwise (the 1e-12 floor only matters for
all-zero arrays). Entrywise relative agreement is not asked for: back-propagated through 25
steps, a 1e-16 difference in the order of a sum can reach 1e-11 relative in a small entry. All of
fast's code paths are run on every shape, chosen by forcing ``fast.BLAS_MIN_STREAMS``,
and ``kernels.NATIVE_GEMM``: the all-steps compiled loops with the output layer's products from
compiled code ("loops") or from numpy ("loops-numpy"); the BLAS product per step from compiled
code calling numpy's dgemm directly ("blas"); the BLAS product per step through np.dot from a
Python loop ("blas-numpy", the fallback when numpy's BLAS has no ILP64 cblas_dgemm). float32 is
tested in test_dtype.py.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from a4lib import fast, kernels, reference, rnn  # noqa: E402
from a4lib.optim import flatten  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12
NAMES = ("U", "W", "V", "b", "c")


def assert_close(actual, desired, what=""):
    scale = np.max(np.abs(desired), initial=0.0)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=RTOL * scale + ATOL, err_msg=what)


def problem(m, K_in, K_out, T, B, seed=0, sig=None):
    """Parameters with nonzero biases, indices x, y and a nonzero h0; B=None: one 1-D stream.

    sig defaults to 1 / sqrt(m): W's spectral radius about 1, units in their working range."""
    rng = np.random.default_rng(seed)
    sig = 1.0 / np.sqrt(m) if sig is None else sig
    p = rnn.init_params(K_in, m, sig=sig, rng=rng, K_out=K_out)
    p["b"] = 0.2 * rng.standard_normal(m)
    p["c"] = 0.2 * rng.standard_normal(K_out)
    shape = (T,) if B is None else (T, B)
    x = rng.integers(0, K_in, shape)
    y = rng.integers(0, K_out, shape)
    h0 = np.tanh(rng.standard_normal((m,) if B is None else (B, m)))
    return p, x, y, h0


def assert_same(result, expected, what=""):
    (loss, grads, h), (loss_r, grads_r, h_r) = result, expected
    assert_close(loss, loss_r, f"{what} loss")
    assert set(grads) >= set(NAMES)
    for k in NAMES:
        assert grads[k].shape == grads_r[k].shape, k
        assert_close(grads[k], grads_r[k], f"{what} d{k}")
    assert h.shape == h_r.shape
    assert_close(h, h_r, f"{what} h_last")


@pytest.fixture(params=["loops", "loops-numpy", "blas", "blas-numpy"])
def path(request, monkeypatch):
    kernels.build()  # sets NATIVE_GEMM; monkeypatch restores it afterwards
    monkeypatch.setattr(fast, "BLAS_MIN_STREAMS", 10**9 if request.param.startswith("loops") else 1)
    if not request.param.endswith("numpy") and not kernels.NATIVE_GEMM:
        pytest.skip("numpy's BLAS has no ILP64 cblas_dgemm")
    monkeypatch.setattr(kernels, "NATIVE_GEMM", not request.param.endswith("numpy"))
    return request.param


def test_available():
    assert fast.available() is True


def test_native_gemm_found_with_numpy_wheels_openblas64():
    """numpy's wheels bundle scipy-openblas64: its cblas_dgemm must be found and used."""
    kernels.build()
    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    if "openblas64" not in str(blas.get("lib directory", "")):
        pytest.skip(f"numpy built with {blas.get('name')}")
    assert kernels.NATIVE_GEMM is True
    assert set(kernels._find_gemm()) == {"d", "s"}


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_kernel_matches_numpy_on_views(ta, tb, beta, dtype):
    """kernels._gemm (numpy's dgemm or sgemm from compiled code): transposes, beta, and operands
    and result that are column ranges or row blocks of larger arrays (row stride > columns),
    single rows."""
    kernels.build()
    if not kernels.NATIVE_GEMM:
        pytest.skip("numpy's BLAS has no ILP64 cblas_dgemm")
    numba = pytest.importorskip("numba")
    gemm = numba.njit(lambda ta, tb, A, B, C, beta: kernels._gemm(ta, tb, A, B, C, beta))
    rng = np.random.default_rng(int(ta) + 2 * int(tb))
    tol = 1e-13 if dtype == np.float64 else 1e-5
    for M, N, K in [(7, 5, 3), (1, 4, 6), (5, 1, 2), (32, 65, 100)]:
        Abig = rng.standard_normal((K + 3, M + 4) if ta else (M + 3, K + 4)).astype(dtype)
        Bbig = rng.standard_normal((N + 2, K + 5) if tb else (K + 2, N + 5)).astype(dtype)
        Cbig = rng.standard_normal((M + 2, N + 3)).astype(dtype)
        A = Abig[1:K + 1, 2:M + 2] if ta else Abig[1:M + 1, 2:K + 2]
        B = Bbig[1:N + 1, :K] if tb else Bbig[1:K + 1, :N]
        C = Cbig[1:M + 1, 3:]
        expected = Cbig.copy()
        expected[1:M + 1, 3:] = (A.T if ta else A) @ (B.T if tb else B) + beta * C
        gemm(ta, tb, A, B, C, beta)
        assert Cbig.dtype == dtype
        np.testing.assert_allclose(Cbig, expected, rtol=tol, atol=tol)  # nothing else written


SHAPES = [  # m, K_in, K_out, T
    (5, 7, 4, 1),
    (5, 7, 4, 5),
    (5, 6, 9, 25),
    (100, 80, 80, 25),
    (100, 65, 70, 5),
    (100, 90, 60, 1),
]


@pytest.mark.parametrize("m, K_in, K_out, T", SHAPES)
def test_single_stream_matches_rnn_and_reference(m, K_in, K_out, T, path):
    p, x, y, h0 = problem(m, K_in, K_out, T, None, seed=m + T)
    got = fast.loss_and_grads(p, x, y, h0)
    assert got[2].shape == (m,)
    assert_same(got, rnn.loss_and_grads(p, x, y, h0), "vs rnn")
    assert_same(got, reference.loss_and_grads(p, x, y, h0), "vs reference")


@pytest.mark.parametrize("m, K_in, K_out, T", SHAPES)
@pytest.mark.parametrize("B", [4, 7])
def test_batched_matches_rnn_and_reference_per_stream(m, K_in, K_out, T, B, path):
    p, x, y, h0 = problem(m, K_in, K_out, T, B, seed=m + T + B)
    got = fast.loss_and_grads(p, x, y, h0)
    assert got[2].shape == (B, m)
    assert_same(got, rnn.loss_and_grads(p, x, y, h0), "vs rnn")
    # the batched loss and gradients are the means over streams of the one-stream ones
    refs = [reference.loss_and_grads(p, x[:, s], y[:, s], h0[s]) for s in range(B)]
    expected = (np.mean([r[0] for r in refs]),
                {k: np.mean([r[1][k] for r in refs], axis=0) for k in NAMES},
                np.stack([r[2] for r in refs]))
    assert_same(got, expected, "vs reference")


@pytest.mark.parametrize("B", [None, 3])
def test_loss_and_state_matches_rnn(B, path):
    p, x, y, h0 = problem(100, 80, 80, 25, B, seed=5)
    loss, h = fast.loss_and_state(p, x, y, h0)
    loss_r, h_r = rnn.loss_and_state(p, x, y, h0)
    assert_close(loss, loss_r)
    assert h.shape == h_r.shape
    assert_close(h, h_r)
    assert_close(fast.loss(p, x, y, h0), loss_r)


@pytest.mark.parametrize("B", [None, 4])
def test_grads_written_in_place_into_flat_vector_views(B, path):
    p, x, y, h0 = problem(100, 70, 70, 25, B, seed=11)
    w, params = flatten(p)  # parameters as views of one vector, as the trainer keeps them
    flat, views = flatten({k: np.zeros_like(v) for k, v in p.items()})
    flat[:] = np.nan  # stale contents must be overwritten, not accumulated into
    loss, grads, h = fast.loss_and_grads(params, x, y, h0, grads=views)
    assert grads is views
    for k in NAMES:
        assert np.shares_memory(grads[k], flat), k
    expected = rnn.loss_and_grads(p, x, y, h0)
    assert_same((loss, grads, h), expected)
    assert_close(flat, np.concatenate([expected[1][k].ravel() for k in NAMES]), "flat vector")


def test_grads_dict_of_unusual_arrays_is_filled(path):
    """Arrays the kernels cannot write into directly (float32, non-contiguous) still get the values."""
    p, x, y, h0 = problem(5, 6, 6, 5, 2, seed=3)
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    grads["W"] = np.zeros((5, 5)).T  # Fortran order
    grads["c"] = np.zeros(6, dtype=np.float32)
    out = fast.loss_and_grads(p, x, y, h0, grads=grads)
    assert out[1] is grads and grads["c"].dtype == np.float32
    expected = rnn.loss_and_grads(p, x, y, h0)
    assert_close(grads["W"], expected[1]["W"])
    np.testing.assert_allclose(grads["c"], expected[1]["c"], rtol=1e-6, atol=1e-7)


def test_buffers_reused_across_shapes_without_stale_data(path):
    """T = 25, 7, 25 and B = 1, 4, 1 in turn, new parameters each time: every call matches numpy,
    and nothing returned earlier is overwritten by a later call."""
    kept = []
    for i, (T, B) in enumerate([(25, None), (7, None), (25, None), (25, 4), (7, 4), (25, None)]):
        p, x, y, h0 = problem(100, 80, 80, T, B, seed=100 + i)
        got = fast.loss_and_grads(p, x, y, h0)
        expected = rnn.loss_and_grads(p, x, y, h0)
        assert_same(got, expected, f"call {i} (T={T}, B={B})")
        loss, h = fast.loss_and_state(p, x, y, h0)
        assert_close(loss, expected[0])
        assert_close(h, expected[2])
        kept.append((got, expected))
    for i, (got, expected) in enumerate(kept):
        assert_same(got, expected, f"call {i} after later calls")


def test_index_dtypes_and_noncontiguous_inputs(path):
    p, x, y, h0 = problem(5, 9, 9, 6, 3, seed=8)
    expected = rnn.loss_and_grads(p, x, y, h0)
    p2 = {k: np.asfortranarray(v) for k, v in p.items()}
    xx = np.asfortranarray(x.astype(np.int32))
    yy = y.astype(np.uint8)
    assert_same(fast.loss_and_grads(p2, xx, yy, np.asfortranarray(h0)), expected)


def test_saturated_units_and_extreme_logits(path):
    """Units in saturation (tanh rounds to +-1, past the polynomial's clamp at +-20) and logits
    spread over more than 745 (exp(o - max o) underflows to 0): still agrees with numpy."""
    p, x, y, h0 = problem(20, 10, 12, 8, 2, seed=4, sig=5.0)
    p["V"] *= 100.0
    H = rnn.hidden_states(p, x, h0)[1:]
    assert np.mean(np.abs(H) == 1.0) > 0.2
    assert np.ptp(H @ p["V"].T, axis=-1).max() > 745
    assert_same(fast.loss_and_grads(p, x, y, h0), rnn.loss_and_grads(p, x, y, h0))


def test_tanh_and_exp_kernels_within_a_few_ulp():
    kernels.build()
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.standard_normal(5000) * s for s in (1e-12, 1e-3, 0.3, 1, 5, 30)]
                       + [np.array([0.0, -0.0, 19.99, 20.01, -20.01, 700.0, np.inf, -np.inf])])
    t = a.copy()
    kernels._tanh_inplace(t)
    np.testing.assert_allclose(t, np.tanh(a), rtol=1e-15, atol=0)
    z = np.concatenate([-np.abs(a[np.isfinite(a)]), [-707.5, -708.5, -720.0, -745.2, -800.0, -np.inf]])
    e = z.copy()
    kernels._exp_nonpos_inplace(e)
    # below -708 (e^-708 ~ 3e-308) the kernel returns 0 where numpy returns a subnormal
    np.testing.assert_allclose(e, np.exp(z), rtol=1e-15, atol=1e-307)
    nan = np.array([np.nan])
    kernels._tanh_inplace(nan)
    assert np.isnan(nan[0])


def test_bad_inputs_raise(path):
    p, x, y, h0 = problem(5, 6, 4, 5, 2, seed=1)
    with pytest.raises(IndexError):
        fast.loss_and_grads(p, np.where(x == x[0, 0], 6, x), y, h0)
    with pytest.raises(IndexError):
        fast.loss_and_grads(p, x, np.where(y == y[0, 0], -1, y), h0)
    with pytest.raises(IndexError):
        fast.loss_and_state(p, x, np.full_like(y, 4), h0)
    with pytest.raises(ValueError):
        fast.loss_and_grads(p, x, y[:-1], h0)
    with pytest.raises(ValueError):
        fast.loss_and_grads(p, x, y, h0[0])
    with pytest.raises(ValueError):
        fast.loss_and_grads(p, x.astype(float), y, h0)
    with pytest.raises(ValueError):
        fast.loss_and_grads({**p, "b": p["b"][:-1]}, x, y, h0)


def test_without_numba_import_works_and_calls_raise():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import a4lib.fast as f\n"
            "assert f.available() is False\n"
            "import numpy as np\n"
            "p = {'U': np.zeros((2, 3)), 'W': np.zeros((2, 2)), 'V': np.zeros((3, 2)),\n"
            "     'b': np.zeros(2), 'c': np.zeros(3)}\n"
            "try:\n"
            "    f.loss_and_grads(p, np.array([0]), np.array([1]), np.zeros(2))\n"
            "except RuntimeError as e:\n"
            "    assert 'numba' in str(e)\n"
            "else:\n"
            "    raise SystemExit('no RuntimeError')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
