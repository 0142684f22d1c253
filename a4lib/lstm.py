"""A character-level LSTM with the interface of ``a4lib.rnn``, batched over time (and over streams).

The rows of W, U and b are four blocks of m, one per gate, in the order i, f, o, g:

    a_t = W h_{t-1} + U x_t + b = [a_i; a_f; a_o; a_g]
    i_t = sigmoid(a_i)   f_t = sigmoid(a_f)   o_t = sigmoid(a_o)   g_t = tanh(a_g)
    c_t = f_t * c_{t-1} + i_t * g_t          h_t = o_t * tanh(c_t)
    s_t = V h_t + c                          p_t = softmax(s_t)     loss = -sum_t log p_t[y_t]

(c without a subscript is the output bias, c_t the memory cell.) Parameters are a dict keyed
``U W V b c``: U (4m, K_in), W (4m, m), V (K_out, m), b (4m,), c (K_out,). As in ``a4lib.rnn``,
inputs are character indices (``U x_t`` is column ``x_t`` of U), only the two recurrences loop
over time, and the output layer, the softmax and every gradient are one product over all steps.

The state carried from one sequence to the next is [h, c_t] concatenated on the last axis:
(2m,) for one stream or (B, 2m) for B streams, with x, y (T,) or (T, B). With B streams the loss
is summed over time and averaged over streams. As in ``a4lib.rnn``, the functions compute in the
parameters' type (float32 or float64).
"""
from __future__ import annotations

import numpy as np

from .rnn import Workspace, _as_batch, _flat_index, float_type, log_softmax

Params = dict[str, np.ndarray]
NAMES = ("U", "W", "V", "b", "c")
FORGET_BIAS = 1.0  # f_t starts near sigmoid(1) = 0.73: the cell keeps its memory from the start


def init_params(K: int, m: int = 100, sig: float = 0.01, rng: np.random.Generator | None = None,
                K_out: int | None = None) -> Params:
    """U (4m, K), W (4m, m), V (K_out, m) drawn from N(0, sig^2); c zero, b zero but FORGET_BIAS
    in the forget-gate block."""
    rng = np.random.default_rng(0) if rng is None else rng
    K_out = K if K_out is None else K_out
    b = np.zeros(4 * m)
    b[m:2 * m] = FORGET_BIAS
    return {
        "U": sig * rng.standard_normal((4 * m, K)),
        "W": sig * rng.standard_normal((4 * m, m)),
        "V": sig * rng.standard_normal((K_out, m)),
        "b": b,
        "c": np.zeros(K_out),
    }


def _sigmoid(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a)) computed as (1 + tanh(a / 2)) / 2, which cannot overflow."""
    np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def _cell(a: np.ndarray, c_prev: np.ndarray, c: np.ndarray, tanh_c: np.ndarray, h: np.ndarray) -> None:
    """One step of the gate equations. a (B, 4m) holds the pre-activations and is overwritten by
    the gates [i, f, o, g]; c_t, tanh(c_t) and h_t are written into c, tanh_c and h (B, m)."""
    m = c.shape[-1]
    _sigmoid(a[:, :3 * m], out=a[:, :3 * m])
    np.tanh(a[:, 3 * m:], out=a[:, 3 * m:])
    i, f, o, g = a[:, :m], a[:, m:2 * m], a[:, 2 * m:3 * m], a[:, 3 * m:]
    np.multiply(f, c_prev, out=c)
    c += i * g
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)


def cell_states(params: Params, x: np.ndarray, state0: np.ndarray, work: Workspace | None = None):
    """The forward recurrence. x (T, B) indices, state0 (B, 2m) -> H, C (T + 1, B, m) with H[0], C[0]
    taken from state0, the gates G (T, B, 4m) and tanh(c_t) as TC (T, B, m)."""
    work = Workspace() if work is None else work
    T, B = x.shape
    m, dt = state0.shape[1] // 2, float_type(params)
    W_T = params["W"].T
    G = np.take(params["U"].T, x, axis=0, out=work.get("G", (T, B, 4 * m), dt))  # U x_t for all steps
    G += params["b"]
    H, C = work.get("H", (T + 1, B, m), dt), work.get("C", (T + 1, B, m), dt)
    H[0], C[0] = state0[:, :m], state0[:, m:]
    TC = work.get("TC", (T, B, m), dt)
    Wh = work.get("Wh", (B, 4 * m), dt)
    for t in range(T):
        G[t] += np.dot(H[t], W_T, out=Wh)
        _cell(G[t], C[t], C[t + 1], TC[t], H[t + 1])
    return H, C, G, TC


def forward(params: Params, x: np.ndarray, y: np.ndarray, state0: np.ndarray,
            work: Workspace | None = None) -> tuple[float, dict]:
    """Loss and the cache for ``backward``. x, y (T, B), state0 (B, 2m).

    The cache holds the arrays of ``cell_states`` and logP (T * B, K_out), the log-probabilities.
    """
    H, C, G, TC = cell_states(params, x, state0, work)
    T, B, m = TC.shape
    logP = log_softmax(H[1:].reshape(T * B, m) @ params["V"].T + params["c"])
    target = _flat_index(y, logP.shape[1])
    loss = -logP.reshape(-1)[target].sum(dtype=np.float64) / B  # -sum_t log p_t[y_t], averaged over B
    return float(loss), {"x": x, "target": target, "H": H, "C": C, "G": G, "TC": TC, "logP": logP}


def backward(params: Params, cache: dict, grads: Params | None = None,
             work: Workspace | None = None) -> Params:
    """Gradients of the loss, unclipped; written into ``grads`` when given (same keys and shapes)."""
    work = Workspace() if work is None else work
    x, H, C, G, TC = cache["x"], cache["H"], cache["C"], cache["G"], cache["TC"]
    T, B, m = TC.shape
    K_in, dt = params["U"].shape[1], TC.dtype
    if grads is None:
        grads = {k: np.empty_like(v) for k, v in params.items()}

    dS = np.exp(cache["logP"])  # p_t ...
    dS.reshape(-1)[cache["target"]] -= 1.0  # ... - y_t (one-hot): dL/ds_t, (T * B, K_out)
    dS /= B
    np.dot(dS.T, H[1:].reshape(T * B, m), out=grads["V"])
    np.sum(dS, axis=0, out=grads["c"])
    dH_out = (dS @ params["V"]).reshape(T, B, m)  # V^T dL/ds_t for all steps

    # The local derivatives of all steps at once: dL/da_t = J_t * [dc_t, dc_t, dh_t, dc_t] gate by
    # gate, with dh_t, dc_t the total derivatives dL/dh_t, dL/dc_t that the loop below computes.
    i, f, o, g = (G[:, :, k * m:(k + 1) * m] for k in range(4))
    J = work.get("J", (T, B, 4, m), dt)
    J[:, :, 0] = g * i * (1 - i)  # dc_t/da_i
    J[:, :, 1] = C[:-1] * f * (1 - f)  # dc_t/da_f
    J[:, :, 2] = TC * o * (1 - o)  # dh_t/da_o
    J[:, :, 3] = i * (1 - g * g)  # dc_t/da_g
    dc_dh = o * (1 - TC * TC)  # dc_t/dh_t

    W = params["W"]
    dA = work.get("dA", (T, B, 4 * m), dt)
    dA4 = dA.reshape(T, B, 4, m)
    dh, dc = work.get("dh", (B, m), dt), work.get("dc", (B, m), dt)
    dh_next = np.zeros((B, m), dt)  # W^T dL/da_{t+1}: the path h_t -> a_{t+1}
    dc_next = np.zeros((B, m), dt)  # f_{t+1} dL/dc_{t+1}: the path c_t -> c_{t+1}
    for t in range(T - 1, -1, -1):
        np.add(dH_out[t], dh_next, out=dh)
        np.multiply(dh, dc_dh[t], out=dc)
        dc += dc_next
        np.multiply(J[t], dc[:, None, :], out=dA4[t])
        np.multiply(J[t, :, 2], dh, out=dA4[t, :, 2])
        if t:  # at t = 0 both would only feed the initial state
            np.multiply(dc, f[t], out=dc_next)
            np.dot(dA[t], W, out=dh_next)

    dA2 = dA.reshape(T * B, 4 * m)
    np.dot(dA2.T, H[:-1].reshape(T * B, m), out=grads["W"])
    np.sum(dA2, axis=0, out=grads["b"])
    # column x_t of dU gathers dL/da_t: a scatter-add over (step, unit), no one-hot product
    cells = x.reshape(-1, 1) * (4 * m) + np.arange(4 * m)
    dU_T = np.bincount(cells.reshape(-1), weights=dA2.reshape(-1), minlength=K_in * 4 * m)
    grads["U"][...] = dU_T.reshape(K_in, 4 * m).T
    return grads


_WORK = Workspace()  # loss_and_grads' own; forward/backward allocate afresh unless given one


def _last_state(cache: dict, single: bool) -> np.ndarray:
    """[h_T, c_T] as a new array: (2m,) for one stream, (B, 2m) for B."""
    state = np.concatenate([cache["H"][-1], cache["C"][-1]], axis=-1)
    return state[0] if single else state


def loss_and_grads(params: Params, x, y, h0, grads: Params | None = None) -> tuple[float, Params, np.ndarray]:
    """The loss summed over time steps, its unclipped gradients, and the last state.

    x, y: int arrays (T,) or (T, B); h0: the state [h, c_t], (2m,) or (B, 2m). The last state has
    the shape of h0.
    """
    x, y, state0, single = _as_batch(x, y, h0, float_type(params))
    loss, cache = forward(params, x, y, state0, _WORK)
    grads = backward(params, cache, grads, _WORK)
    return loss, grads, _last_state(cache, single)


def loss_and_state(params: Params, x, y, h0) -> tuple[float, np.ndarray]:
    """The loss and the last state, without gradients: for evaluation."""
    x, y, state0, single = _as_batch(x, y, h0, float_type(params))
    loss, cache = forward(params, x, y, state0, _WORK)
    return loss, _last_state(cache, single)


def loss(params: Params, x, y, h0) -> float:
    """The loss only: for gradient checks."""
    return loss_and_state(params, x, y, h0)[0]


def step(params: Params, state: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One time step for synthesis. state (B, 2m), ix (B,) -> (next state (B, 2m), logits s (B, K_out))."""
    m = params["W"].shape[1]
    a = state[:, :m] @ params["W"].T + params["U"].T[ix] + params["b"]
    state_next = np.empty(state.shape, a.dtype)
    h, c = state_next[:, :m], state_next[:, m:]
    _cell(a, state[:, m:], c, np.empty_like(c), h)
    return state_next, h @ params["V"].T + params["c"]


def zero_state(params: Params, batch: int | None = None) -> np.ndarray:
    """h = c_t = 0 in the parameters' type: shape (2m,) for one stream, (batch, 2m) for a batch."""
    m = params["W"].shape[1]
    return np.zeros(2 * m if batch is None else (batch, 2 * m), float_type(params))
