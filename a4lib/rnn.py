"""The vanilla RNN of the handout, batched over time (and over streams).

    a_t = W h_{t-1} + U x_t + b      h_t = tanh(a_t)
    o_t = V h_t + c                  p_t = softmax(o_t)      loss = -sum_t log p_t[y_t]

Parameters are a dict keyed ``U W V b c``: U (m, K_in), W (m, m), V (K_out, m), b (m,), c (K_out,);
the char-RNN has K_in = K_out = K. Inputs are character indices, never one-hot vectors: ``U x_t``
is column ``x_t`` of U. Only the two recurrences (h forward, dh backward) loop over time; the
input and output layers, the softmax and every gradient are one product over all steps.

Shapes: x, y are (T,) for one stream or (T, B) for B parallel streams, h0 is (m,) or (B, m). With
B streams the loss is summed over time and averaged over streams, so B = 1 is the handout exactly.

Types: ``init_params`` draws float64; the functions compute in the parameters' type (float32 or
float64: W's), h0 is cast to it, and states and gradients come back in it.
"""
from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]
NAMES = ("U", "W", "V", "b", "c")


def init_params(K: int, m: int = 100, sig: float = 0.01, rng: np.random.Generator | None = None,
                K_out: int | None = None) -> Params:
    """b, c zero; U (m, K), W (m, m), V (K_out, m) drawn from N(0, sig^2)."""
    rng = np.random.default_rng(0) if rng is None else rng
    K_out = K if K_out is None else K_out
    return {
        "U": sig * rng.standard_normal((m, K)),
        "W": sig * rng.standard_normal((m, m)),
        "V": sig * rng.standard_normal((K_out, m)),
        "b": np.zeros(m),
        "c": np.zeros(K_out),
    }


def float_type(params: Params) -> np.dtype:
    """The type a model computes in: W's when it is float32 or float64, else float64."""
    dtype = np.asarray(params["W"]).dtype
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _as_batch(x: np.ndarray, y: np.ndarray | None, h0: np.ndarray, dtype=np.float64):
    """(T,) and (m,) to (T, 1) and (1, m); batched inputs pass through; h0 as ``dtype``."""
    x = np.asarray(x)
    single = x.ndim == 1
    if single:
        x = x[:, None]
        y = None if y is None else np.asarray(y)[:, None]
        h0 = np.asarray(h0)[None, :]
    return x, y, np.asarray(h0, dtype=dtype), single


class Workspace:
    """Arrays reused from call to call, by name. Large temporaries allocated afresh on every
    update cost page faults (they come from mmap); reusing them is much faster for B > 1.
    What a call returns in its cache lives here until the next call with the same workspace."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype)
        return a


_WORK = Workspace()  # loss_and_grads' own; forward/backward allocate afresh unless given one


def hidden_states(params: Params, x: np.ndarray, h0: np.ndarray, work: Workspace | None = None) -> np.ndarray:
    """The forward recurrence. x (T, B) indices, h0 (B, m) -> H (T + 1, B, m) with H[0] = h0."""
    work = Workspace() if work is None else work
    T, (B, m), dt = x.shape[0], h0.shape, float_type(params)
    W_T = params["W"].T
    A = np.take(params["U"].T, x, axis=0, out=work.get("A", (T, B, m), dt))  # U x_t for all steps
    A += params["b"]
    H = work.get("H", (T + 1, B, m), dt)
    H[0] = h0
    a = work.get("a", (B, m), dt)
    for t in range(T):
        np.dot(H[t], W_T, out=a)
        a += A[t]
        np.tanh(a, out=H[t + 1])
    return H


def log_softmax(o: np.ndarray) -> np.ndarray:
    """log softmax over the last axis."""
    o = o - o.max(axis=-1, keepdims=True)
    return o - np.log(np.exp(o).sum(axis=-1, keepdims=True))


def _flat_index(y: np.ndarray, K: int) -> np.ndarray:
    """Positions of entries [t, b, y[t, b]] in a flattened (T, B, K) array."""
    return np.arange(0, y.size * K, K) + y.reshape(-1)


def forward(params: Params, x: np.ndarray, y: np.ndarray, h0: np.ndarray,
            work: Workspace | None = None) -> tuple[float, dict]:
    """Loss and the cache for ``backward``. x, y (T, B), h0 (B, m).

    The cache holds H (T + 1, B, m) and P (T, B, K_out), the softmax outputs p_t.
    """
    work = Workspace() if work is None else work
    H = hidden_states(params, x, h0, work)
    T, B, m = H.shape[0] - 1, H.shape[1], H.shape[2]
    K, dt = params["V"].shape[0], H.dtype
    O = work.get("O", (T, B, K), dt)
    np.dot(H[1:].reshape(T * B, m), params["V"].T, out=O.reshape(T * B, K))
    O += params["c"]
    O -= O.max(axis=-1, keepdims=True)  # softmax is shift-invariant: no overflow in exp
    P = np.exp(O, out=work.get("P", (T, B, K), dt))
    Z = P.sum(axis=-1, keepdims=True)
    P /= Z
    target = _flat_index(y, K)
    # -sum_t log p_t[y_t], over B; summed in float64
    loss = (np.log(Z).sum(dtype=np.float64) - O.reshape(-1)[target].sum(dtype=np.float64)) / B
    return float(loss), {"x": x, "y": y, "target": target, "H": H, "P": P}


def backward(params: Params, cache: dict, grads: Params | None = None,
             work: Workspace | None = None) -> Params:
    """Gradients of the loss, unclipped; written into ``grads`` when given (same keys and shapes).

    Overwrites cache["P"] (it becomes dL/do).
    """
    work = Workspace() if work is None else work
    x, y, H = cache["x"], cache["y"], cache["H"]
    K_in = params["U"].shape[1]
    T, B = y.shape
    m = H.shape[-1]
    if grads is None:
        grads = {k: np.empty_like(v) for k, v in params.items()}

    dO = cache["P"]  # p_t ...
    dO.reshape(-1)[cache["target"]] -= 1.0  # ... - y_t (one-hot): dL/do_t
    if B > 1:
        dO /= B
    Hs = H[1:].reshape(T * B, m)
    dO2 = dO.reshape(T * B, -1)
    np.dot(dO2.T, Hs, out=grads["V"])
    np.sum(dO2, axis=0, out=grads["c"])

    dt = H.dtype
    dH_out = work.get("dH_out", (T, B, m), dt)  # V^T dL/do_t for all steps
    np.dot(dO2, params["V"], out=dH_out.reshape(T * B, m))
    dtanh = np.square(H[1:], out=work.get("dtanh", (T, B, m), dt))  # becomes 1 - h_t^2
    np.subtract(1.0, dtanh, out=dtanh)
    dA = work.get("dA", (T, B, m), dt)
    W = params["W"]
    carry = work.get("carry", (B, m), dt)  # W^T dL/da_{t+1}
    carry.fill(0.0)
    dh = work.get("dh", (B, m), dt)
    for t in range(T - 1, -1, -1):
        np.add(dH_out[t], carry, out=dh)
        np.multiply(dh, dtanh[t], out=dA[t])
        if t:  # W^T dL/da_0 would only feed h0
            np.dot(dA[t], W, out=carry)

    dA2 = dA.reshape(T * B, m)
    np.dot(dA2.T, H[:-1].reshape(T * B, m), out=grads["W"])
    np.sum(dA2, axis=0, out=grads["b"])
    # column x_t of dU gathers dL/da_t: a scatter-add over (step, unit), no one-hot product
    cells = work.get("cells", (T * B, m), np.int64)
    np.add((x.reshape(-1, 1) * m), np.arange(m), out=cells)
    dU_T = np.bincount(cells.reshape(-1), weights=dA2.reshape(-1), minlength=K_in * m)
    grads["U"][...] = dU_T.reshape(K_in, m).T
    return grads


def loss_and_grads(params: Params, x, y, h0, grads: Params | None = None) -> tuple[float, Params, np.ndarray]:
    """The loss summed over time steps, its unclipped gradients, and the last hidden state.

    x, y: int arrays (T,) or (T, B); h0: (m,) or (B, m). h_last has the shape of h0.
    """
    x, y, h0, single = _as_batch(x, y, h0, float_type(params))
    loss, cache = forward(params, x, y, h0, _WORK)
    grads = backward(params, cache, grads, _WORK)
    h_last = cache["H"][-1]
    return loss, grads, (h_last[0] if single else h_last).copy()


def loss_and_state(params: Params, x, y, h0) -> tuple[float, np.ndarray]:
    """The loss and the last hidden state, without gradients: for evaluation."""
    x, y, h0, single = _as_batch(x, y, h0, float_type(params))
    loss, cache = forward(params, x, y, h0, _WORK)
    h_last = cache["H"][-1]
    return loss, (h_last[0] if single else h_last).copy()


def loss(params: Params, x, y, h0) -> float:
    """The loss only: for gradient checks."""
    return loss_and_state(params, x, y, h0)[0]


def step(params: Params, h: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One time step for synthesis. h (B, m), ix (B,) -> (h_next (B, m), logits o (B, K_out))."""
    h = np.tanh(h @ params["W"].T + params["U"].T[ix] + params["b"])
    return h, h @ params["V"].T + params["c"]


def zero_state(params: Params, batch: int | None = None) -> np.ndarray:
    """h = 0 in the parameters' type: shape (m,) for one stream, (batch, m) for a batch."""
    m = params["W"].shape[0]
    return np.zeros(m if batch is None else (batch, m), float_type(params))
