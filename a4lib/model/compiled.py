"""The cells' recurrences compiled (numba): one compiled path per cell, the contract and the cache
of ``a4lib.model.cells``, equal to the numpy cells to rounding.

Each forward or backward pass over a sequence is one compiled call (``a4lib.model.kernels``): per
step the recurrent product is ``kernels._dot`` (np.dot, i.e. SciPy's BLAS called from compiled code
through its public interface; written out by hand for at most 4 streams) and the gates are
compiled loops. Scratch arrays come from the caller's workspace.
"""
from __future__ import annotations

import numpy as np

from . import cells
from . import kernels as _kernels
from .cells import Workspace


def kernels():
    """The kernels module, built (compiled or loaded from numba's cache)."""
    _kernels.build()
    return _kernels


def _c(a: np.ndarray) -> np.ndarray:
    """``a`` when C-contiguous, else a contiguous copy (the kernels take contiguous arrays)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


class RNN(cells.RNNCell):
    def forward(self, W, A, s0, work: Workspace, tag: str = "") -> dict:
        T, B, m = A.shape
        H = work.get(tag + "H", (T + 1, B, m), A.dtype)
        H[0] = s0
        _kernels._rnn_forward(_c(W), A, H)
        return {"H": H}

    def backward(self, W, cache, dH, work: Workspace, dW, tag: str = "") -> np.ndarray:
        T, B, m = dH.shape
        dA = work.get(tag + "dA", (T, B, m), dH.dtype)
        _kernels._rnn_backward(_c(W), cache["H"], _c(dH), dA, work.get(tag + "carry", (B, m), dH.dtype))
        np.dot(dA.reshape(T * B, m).T, cache["H"][:-1].reshape(T * B, m), out=dW)
        return dA


class GRU(cells.GRUCell):
    def forward(self, W, A, s0, work: Workspace, tag: str = "") -> dict:
        T, B, m3 = A.shape
        m, dt = m3 // 3, A.dtype
        H = work.get(tag + "H", (T + 1, B, m), dt)
        G = work.get(tag + "G", (T, B, m3), dt)
        Qn = work.get(tag + "Qn", (T, B, m), dt)
        H[0] = s0
        _kernels._gru_forward(_c(W), A, H, G, Qn, work.get(tag + "q", (B, m3), dt))
        return {"H": H, "G": G, "Qn": Qn}

    def backward(self, W, cache, dH, work: Workspace, dW, tag: str = "") -> np.ndarray:
        T, B, m = dH.shape
        dt = dH.dtype
        dA = work.get(tag + "dA", (T, B, 3 * m), dt)
        dQ = work.get(tag + "dQ", (T, B, 3 * m), dt)
        _kernels._gru_backward(_c(W), cache["H"], cache["G"], cache["Qn"], _c(dH), dA, dQ,
                               work.get(tag + "carry", (B, m), dt), work.get(tag + "tmp", (B, m), dt),
                               work.get(tag + "dh", (m,), dt))
        np.dot(dQ.reshape(T * B, 3 * m).T, cache["H"][:-1].reshape(T * B, m), out=dW)
        return dA


class LSTM(cells.LSTMCell):
    def forward(self, W, A, s0, work: Workspace, tag: str = "") -> dict:
        T, B, m4 = A.shape
        m, dt = m4 // 4, A.dtype
        H = work.get(tag + "H", (T + 1, B, m), dt)
        C = work.get(tag + "C", (T + 1, B, m), dt)
        G = work.get(tag + "G", (T, B, m4), dt)
        TC = work.get(tag + "TC", (T, B, m), dt)
        H[0], C[0] = s0[:, :m], s0[:, m:]
        _kernels._lstm_forward(_c(W), A, H, C, G, TC)
        return {"H": H, "C": C, "G": G, "TC": TC}

    def backward(self, W, cache, dH, work: Workspace, dW, tag: str = "") -> np.ndarray:
        T, B, m = dH.shape
        dt = dH.dtype
        dA = work.get(tag + "dA", (T, B, 4 * m), dt)
        _kernels._lstm_backward(_c(W), cache["C"], cache["G"], cache["TC"], _c(dH), dA,
                                work.get(tag + "carry", (B, m), dt), work.get(tag + "dc_next", (B, m), dt),
                                work.get(tag + "dh", (m,), dt), work.get(tag + "dc", (m,), dt))
        np.dot(dA.reshape(T * B, 4 * m).T, cache["H"][:-1].reshape(T * B, m), out=dW)
        return dA


CELLS = {cell.name: cell for cell in (RNN, GRU, LSTM)}
