"""The three recurrences in numpy, in the handout's notation, batched over time and streams.

A cell is only the recurrence: it takes the input pre-activations ``A`` (T, B, G m), already
``U x_t + b`` for every step (``a4lib.model.network`` computes them: a column gather for the
characters, a product for a lower layer's states), the recurrent matrix W (G m, m) and the state
the sequence starts from; it returns the states. Its backward pass takes dL/dh_t from above (the
output layer or the next layer) for every step and returns dL/dA and dL/dW. The layers, dropout,
the output layer and the loss are composed around any cell by ``Network``.

Vanilla RNN (G = 1), the handout:
    a_t = W h_{t-1} + U x_t + b              h_t = tanh(a_t)
GRU (G = 3, blocks z, r, n; the reset gate applied after the product, as cuDNN and PyTorch do, but
without their second bias inside it: b enters once, through A):
    q_t = W h_{t-1} = [q_z; q_r; q_n]        z_t = sigmoid(A_z + q_z)   r_t = sigmoid(A_r + q_r)
    n_t = tanh(A_n + r_t * q_n)              h_t = (1 - z_t) * n_t + z_t * h_{t-1}
LSTM (G = 4, blocks i, f, o, g):
    a_t = W h_{t-1} + U x_t + b = [a_i; a_f; a_o; a_g]
    i, f, o = sigmoid(a_i, a_f, a_o)  g_t = tanh(a_g)  c_t = f_t * c_{t-1} + i_t * g_t  h_t = o_t * tanh(c_t)

Shapes: A (T, B, G m); W (G m, m); the state s (B, S) with S = m, or [h, c_t] of 2 m for the LSTM.
A forward pass returns a cache (dict) whose "H" is (T + 1, B, m) with H[0] = h_0; arrays live in
the caller's ``Workspace`` (``work``), keyed by ``tag`` so that layers do not share them. The
functions compute in A's type (float32 or float64).
"""
from __future__ import annotations

import numpy as np


class Workspace:
    """Arrays reused from call to call, by name; owned by one caller (a Network), never global.
    What a call returns in its cache lives here until the next call with the same workspace."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype)
        return a


def sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-a)) computed as (1 + tanh(a / 2)) / 2, which cannot overflow."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class RNNCell:
    """The handout's vanilla recurrence h_t = tanh(W h_{t-1} + A_t)."""

    name, gates, gate_names = "rnn", 1, ("a",)

    def state_size(self, m: int) -> int:
        return m

    def forward(self, W: np.ndarray, A: np.ndarray, s0: np.ndarray, work: Workspace, tag: str = "") -> dict:
        T, B, m = A.shape
        H = work.get(tag + "H", (T + 1, B, m), A.dtype)
        H[0] = s0
        a = work.get(tag + "a", (B, m), A.dtype)
        for t in range(T):
            np.dot(H[t], W.T, out=a)
            a += A[t]
            np.tanh(a, out=H[t + 1])
        return {"H": H}

    def backward(self, W: np.ndarray, cache: dict, dH: np.ndarray, work: Workspace, dW: np.ndarray,
                 tag: str = "") -> np.ndarray:
        """dH (T, B, m): dL/dh_t from above (overwritten). Returns dL/dA (T, B, m); dL/dW is
        written into dW (G m, m)."""
        H = cache["H"]
        T, B, m = dH.shape
        dA = work.get(tag + "dA", (T, B, m), dH.dtype)
        carry = work.get(tag + "carry", (B, m), dH.dtype)  # W^T dL/da_{t+1}
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                dH[t] += carry
            np.multiply(dH[t], 1.0 - H[t + 1] * H[t + 1], out=dA[t])  # tanh' = 1 - h_t^2
            if t:  # W^T dL/da_0 would only feed h_0
                np.dot(dA[t], W, out=carry)
        np.dot(dA.reshape(T * B, m).T, H[:-1].reshape(T * B, m), out=dW)
        return dA

    def last_state(self, cache: dict) -> np.ndarray:
        return cache["H"][-1].copy()

    def step(self, W: np.ndarray, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        """One step for synthesis: a (B, m) = U x_t + b, s (B, m) -> the next state."""
        return np.tanh(s @ W.T + a)

    def activations(self, cache: dict) -> dict[str, np.ndarray]:
        """What the cell computed, (T, B, m) each: the hidden state."""
        return {"h": cache["H"][1:]}


class GRUCell:
    """The gated recurrent unit: update gate z, reset gate r, candidate n (see the module)."""

    name, gates, gate_names = "gru", 3, ("z", "r", "n")

    def state_size(self, m: int) -> int:
        return m

    def forward(self, W: np.ndarray, A: np.ndarray, s0: np.ndarray, work: Workspace, tag: str = "") -> dict:
        T, B, m3 = A.shape
        m = m3 // 3
        H = work.get(tag + "H", (T + 1, B, m), A.dtype)
        G = work.get(tag + "G", (T, B, 3 * m), A.dtype)  # [z, r, n] per step
        Qn = work.get(tag + "Qn", (T, B, m), A.dtype)  # q_n = W_n h_{t-1}, which dL/dr needs
        q = work.get(tag + "q", (B, 3 * m), A.dtype)
        H[0] = s0
        for t in range(T):
            np.dot(H[t], W.T, out=q)
            z, r, n = G[t, :, :m], G[t, :, m:2 * m], G[t, :, 2 * m:]
            sigmoid(A[t, :, :2 * m] + q[:, :2 * m], out=G[t, :, :2 * m])
            Qn[t] = q[:, 2 * m:]
            np.tanh(A[t, :, 2 * m:] + r * Qn[t], out=n)
            H[t + 1] = (1.0 - z) * n + z * H[t]
        return {"H": H, "G": G, "Qn": Qn}

    def backward(self, W: np.ndarray, cache: dict, dH: np.ndarray, work: Workspace, dW: np.ndarray,
                 tag: str = "") -> np.ndarray:
        H, G, Qn = cache["H"], cache["G"], cache["Qn"]
        T, B, m = dH.shape
        dA = work.get(tag + "dA", (T, B, 3 * m), dH.dtype)
        dQ = work.get(tag + "dQ", (T, B, 3 * m), dH.dtype)  # dL/dq_t
        carry = work.get(tag + "carry", (B, m), dH.dtype)  # dL/dh_t through h_{t+1}
        for t in range(T - 1, -1, -1):
            z, r, n = G[t, :, :m], G[t, :, m:2 * m], G[t, :, 2 * m:]
            dh = dH[t]
            if t < T - 1:
                dh += carry
            da_n = dh * (1.0 - z) * (1.0 - n * n)
            dA[t, :, :m] = dh * (H[t] - n) * z * (1.0 - z)  # dL/da_z
            dA[t, :, m:2 * m] = da_n * Qn[t] * r * (1.0 - r)  # dL/da_r
            dA[t, :, 2 * m:] = da_n
            dQ[t, :, :2 * m] = dA[t, :, :2 * m]
            dQ[t, :, 2 * m:] = da_n * r
            if t:
                np.multiply(dh, z, out=carry)
                carry += dQ[t] @ W
        np.dot(dQ.reshape(T * B, 3 * m).T, H[:-1].reshape(T * B, m), out=dW)
        return dA

    def last_state(self, cache: dict) -> np.ndarray:
        return cache["H"][-1].copy()

    def step(self, W: np.ndarray, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        m = s.shape[-1]
        q = s @ W.T
        zr = sigmoid(a[:, :2 * m] + q[:, :2 * m])
        z, r = zr[:, :m], zr[:, m:]
        n = np.tanh(a[:, 2 * m:] + r * q[:, 2 * m:])
        return (1.0 - z) * n + z * s

    def activations(self, cache: dict) -> dict[str, np.ndarray]:
        G, m = cache["G"], cache["H"].shape[-1]
        return {"z": G[..., :m], "r": G[..., m:2 * m], "n": G[..., 2 * m:], "h": cache["H"][1:]}


class LSTMCell:
    """The long short-term memory: gates i, f, o and candidate g; the state is [h, c_t]."""

    name, gates, gate_names = "lstm", 4, ("i", "f", "o", "g")

    def state_size(self, m: int) -> int:
        return 2 * m

    def forward(self, W: np.ndarray, A: np.ndarray, s0: np.ndarray, work: Workspace, tag: str = "") -> dict:
        T, B, m4 = A.shape
        m = m4 // 4
        H = work.get(tag + "H", (T + 1, B, m), A.dtype)
        C = work.get(tag + "C", (T + 1, B, m), A.dtype)
        G = work.get(tag + "G", (T, B, 4 * m), A.dtype)  # the gates [i, f, o, g] per step
        TC = work.get(tag + "TC", (T, B, m), A.dtype)  # tanh(c_t)
        H[0], C[0] = s0[:, :m], s0[:, m:]
        for t in range(T):
            np.dot(H[t], W.T, out=G[t])
            G[t] += A[t]
            sigmoid(G[t, :, :3 * m], out=G[t, :, :3 * m])
            np.tanh(G[t, :, 3 * m:], out=G[t, :, 3 * m:])
            i, f, o, g = (G[t, :, k * m:(k + 1) * m] for k in range(4))
            np.multiply(f, C[t], out=C[t + 1])
            C[t + 1] += i * g
            np.tanh(C[t + 1], out=TC[t])
            np.multiply(o, TC[t], out=H[t + 1])
        return {"H": H, "C": C, "G": G, "TC": TC}

    def backward(self, W: np.ndarray, cache: dict, dH: np.ndarray, work: Workspace, dW: np.ndarray,
                 tag: str = "") -> np.ndarray:
        H, C, G, TC = cache["H"], cache["C"], cache["G"], cache["TC"]
        T, B, m = dH.shape
        dA = work.get(tag + "dA", (T, B, 4 * m), dH.dtype)
        carry = work.get(tag + "carry", (B, m), dH.dtype)  # W^T dL/da_{t+1}: the path h_t -> a_{t+1}
        dc_next = work.get(tag + "dc_next", (B, m), dH.dtype)  # f_{t+1} dL/dc_{t+1}: the path c_t -> c_{t+1}
        for t in range(T - 1, -1, -1):
            i, f, o, g = (G[t, :, k * m:(k + 1) * m] for k in range(4))
            dh = dH[t]
            if t < T - 1:
                dh += carry
            dc = dh * o * (1.0 - TC[t] * TC[t])
            if t < T - 1:
                dc += dc_next
            dA[t, :, :m] = dc * g * i * (1.0 - i)
            dA[t, :, m:2 * m] = dc * C[t] * f * (1.0 - f)
            dA[t, :, 2 * m:3 * m] = dh * TC[t] * o * (1.0 - o)
            dA[t, :, 3 * m:] = dc * i * (1.0 - g * g)
            if t:  # at t = 0 both would only feed the initial state
                np.multiply(dc, f, out=dc_next)
                np.dot(dA[t], W, out=carry)
        np.dot(dA.reshape(T * B, 4 * m).T, H[:-1].reshape(T * B, m), out=dW)
        return dA

    def last_state(self, cache: dict) -> np.ndarray:
        return np.concatenate([cache["H"][-1], cache["C"][-1]], axis=-1)

    def step(self, W: np.ndarray, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        m = W.shape[1]
        a = s[:, :m] @ W.T + a
        i, f, o = (sigmoid(a[:, k * m:(k + 1) * m]) for k in range(3))
        c = f * s[:, m:] + i * np.tanh(a[:, 3 * m:])
        return np.concatenate([o * np.tanh(c), c], axis=-1)

    def activations(self, cache: dict) -> dict[str, np.ndarray]:
        G, m = cache["G"], cache["H"].shape[-1]
        gates = {name: G[..., k * m:(k + 1) * m] for k, name in enumerate(self.gate_names)}
        return {**gates, "c": cache["C"][1:], "h": cache["H"][1:]}


CELLS = {cell.name: cell for cell in (RNNCell, GRUCell, LSTMCell)}
