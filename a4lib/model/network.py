"""A character-level network: L layers of one cell, dropout between them, the output layer, the loss.

    layer 1:  A^1_t = U x_t + b          (column x_t of U: characters are indices, never one-hot)
    layer l:  A^l_t = U^l d(h^{l-1}_t) + b^l       h^l = cell(W^l, A^l, s^l_0)
    output:   o_t = V d(h^L_t) + c       p_t = softmax(o_t)       loss = -sum_t log p_t[y_t]

d() is dropout (Zaremba et al. 2014, as char-rnn): in training each unit of a connection between
layers and of the output layer's input is kept with probability 1 - p and scaled by 1 / (1 - p);
the masks are drawn from the generator the caller passes (the run's), so a resumed run draws
what the uninterrupted one would. Without a generator (evaluation, sampling) there is no dropout.
With L = 1, p = 0 and the vanilla cell this is exactly the handout.

Parameters are a dict keyed by the handout's names: U, W, b for layer 1, U2, W2, b2 for layer 2,
...; V (K, m) and c (K,). Shapes: U (G m, K) in layer 1 and (G m, m) above, W (G m, m), b (G m,),
with G the cell's number of gate blocks (RNN 1, GRU 3, LSTM 4). The state carried from one
sequence to the next is every layer's state side by side: (B, L S) with S the cell's state size.
x, y are (T,) or (T, B) indices; a state (L S,) or (B, L S). With B streams the loss is summed
over time and averaged over streams. Everything computes in the type of the parameters (float32
or float64); gradients come back unclipped, with the parameters' keys and shapes.

The recurrences are the cells' (``a4lib.model.cells`` in numpy, ``a4lib.model.compiled`` compiled
with numba); everything else is here, written once, in numpy products over all steps at once.
Scratch arrays live in the network's own ``Workspace``: two networks never share one, so two
trainings in two threads of one process give the results each gives alone.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .cells import CELLS, Workspace

Params = dict[str, np.ndarray]
FORGET_BIAS = 1.0  # an LSTM's f_t starts near sigmoid(1) = 0.73: the cell keeps its memory from the start
INITS = ("normal", "uniform")


def key(name: str, layer: int) -> str:
    """The parameter name of ``name`` (U, W or b) in layer ``layer`` (1-based): U, U2, U3, ..."""
    return name if layer == 1 else f"{name}{layer}"


def float_type(params: Params) -> np.dtype:
    """The type a network computes in: W's when it is float32 or float64, else float64."""
    dtype = np.asarray(params["W"]).dtype
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


class Network:
    """``cell`` (rnn | gru | lstm) in ``layers`` layers of m units over a vocabulary of K characters.

    ``backend`` "numpy" runs the cells' numpy recurrences; "numba" their compiled ones (equal to
    rounding). ``dropout`` p applies only when ``loss_and_grads`` is given a generator.
    """

    def __init__(self, cell: str, K: int, m: int, layers: int = 1, dropout: float = 0.0,
                 backend: str = "numpy") -> None:
        if cell not in CELLS:
            raise ValueError(f"unknown model {cell!r} (choose from {', '.join(CELLS)})")
        if K < 1 or m < 1 or layers < 1 or not 0 <= dropout < 1:
            raise ValueError(f"need K, m, layers >= 1 and 0 <= dropout < 1, got K={K}, m={m}, layers={layers}, "
                             f"dropout={dropout}")
        if backend == "numba":
            from . import compiled
            self.cell = compiled.CELLS[cell]()
            self._k = compiled.kernels()
        elif backend == "numpy":
            self.cell, self._k = CELLS[cell](), None
        else:
            raise ValueError(f"unknown backend {backend!r}")
        self.name, self.K, self.m, self.layers, self.dropout, self.backend = cell, K, m, layers, dropout, backend
        self.G = self.cell.gates
        self.S = self.cell.state_size(m)
        self.work = Workspace()

    def __repr__(self) -> str:
        return (f"Network({self.name!r}, K={self.K}, m={self.m}, layers={self.layers}, dropout={self.dropout}, "
                f"backend={self.backend!r})")

    # parameters and states ----------------------------------------------------------------------
    def init_params(self, rng: np.random.Generator, sig: float = 0.01, init: str = "normal",
                    init_range: float = 0.08) -> Params:
        """float64 parameters: the matrices from N(0, sig^2) (the handout), or with ``init``
        "uniform" from U(-init_range, init_range) (char-rnn's range; char-rnn draws its biases
        too, here they stay as below); biases zero but an LSTM's forget gates (FORGET_BIAS).
        Drawn in the order of the dict: U, W of each layer, then V."""
        if init not in INITS:
            raise ValueError(f"unknown init {init!r} (choose from {', '.join(INITS)})")
        Gm, m, K = self.G * self.m, self.m, self.K

        def draw(shape):
            if init == "normal":
                return sig * rng.standard_normal(shape)
            return rng.uniform(-init_range, init_range, shape)

        params: Params = {}
        for l in range(1, self.layers + 1):
            params[key("U", l)] = draw((Gm, K if l == 1 else m))
            params[key("W", l)] = draw((Gm, m))
        params["V"] = draw((K, m))
        for l in range(1, self.layers + 1):
            b = np.zeros(Gm)
            if self.name == "lstm":
                b[m:2 * m] = FORGET_BIAS
            params[key("b", l)] = b
        params["c"] = np.zeros(K)
        return params

    def zero_state(self, params: Params, batch: int | None = None) -> np.ndarray:
        """Every layer's state zero, in the parameters' type: (L S,) or (batch, L S)."""
        n = self.layers * self.S
        return np.zeros(n if batch is None else (batch, n), float_type(params))

    def _layer_state(self, state: np.ndarray, l: int) -> np.ndarray:
        return state[:, (l - 1) * self.S:l * self.S]

    # the passes -------------------------------------------------------------------------------
    def _prepare(self, params: Params, x, y, state0):
        dt = float_type(params)
        x = np.asarray(x)
        single = x.ndim == 1
        if single:
            x = x[:, None]
            y = None if y is None else np.asarray(y)[:, None]
            state0 = np.asarray(state0)[None, :]
        state0 = np.asarray(state0, dtype=dt)
        if x.ndim != 2 or (y is not None and np.shape(y) != x.shape):
            raise ValueError(f"x and y must be (T,) or (T, B) of one shape, got {x.shape} and {np.shape(y)}")
        if state0.shape != (x.shape[1], self.layers * self.S):
            raise ValueError(f"the state must be ({x.shape[1]}, {self.layers * self.S}), got {state0.shape}")
        for ids in (x, y):
            if ids is not None and not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"character indices must be integers, got {ids.dtype}")
        if self._k is None:  # the compiled gather and softmax check their indices themselves
            for ids in (x, y):
                if ids is not None and ids.size and (ids.min() < 0 or ids.max() >= self.K):
                    raise ValueError(f"character indices must be in [0, {self.K})")
        return x, (None if y is None else np.asarray(y)), state0, single, dt

    def _mask(self, name: str, shape: tuple, dt, rng: np.random.Generator | None) -> np.ndarray | None:
        """A dropout mask of 0 and 1 / (1 - p), or None without dropout."""
        if rng is None or self.dropout <= 0:
            return None
        keep = 1.0 - self.dropout
        mask = self.work.get(name, shape, dt)
        np.multiply(rng.random(shape) < keep, 1.0 / keep, out=mask, casting="unsafe")
        return mask

    def _forward(self, params: Params, x: np.ndarray, state0: np.ndarray, dt, rng=None) -> list[dict]:
        """Every layer's cache; the last holds "X_out", the output layer's input (T B, m)."""
        T, B = x.shape
        m, work = self.m, self.work
        caches = []
        X = None
        for l in range(1, self.layers + 1):
            U, W, b = params[key("U", l)], params[key("W", l)], params[key("b", l)]
            A = work.get(f"A{l}", (T, B, self.G * m), dt)
            if l == 1:
                self._gather(U, b, x, A)
            else:
                np.dot(X.reshape(T * B, m), U.T, out=A.reshape(T * B, -1))
                A += b
            cache = self.cell.forward(W, A, self._layer_state(state0, l), work, tag=f"L{l}")
            cache["X"] = X
            H = cache["H"][1:]
            mask = self._mask(f"mask{l}", (T, B, m), dt, rng)
            if mask is not None:
                X = np.multiply(H, mask, out=work.get(f"X{l}", (T, B, m), dt))
            else:
                X = H
            cache["mask"] = mask
            caches.append(cache)
        caches[-1]["X_out"] = X.reshape(T * B, m)
        return caches

    def _gather(self, U: np.ndarray, b: np.ndarray, x: np.ndarray, A: np.ndarray) -> None:
        """A[t, s] = U[:, x[t, s]] + b: the first layer's input by indices."""
        if self._k is not None:
            self._k._gather_input(np.ascontiguousarray(U.T), b, x, A)
        else:
            np.take(U.T, x, axis=0, out=A)
            A += b

    def _outputs(self, params: Params, X_out: np.ndarray, y: np.ndarray, B: int, want_grad: bool):
        """The loss (summed over time, averaged over streams) and, with ``want_grad``, dL/do
        (T B, K) in the workspace and dL/dc."""
        R, K, dt = X_out.shape[0], self.K, X_out.dtype
        O = self.work.get("O", (R, K), dt)
        np.dot(X_out, params["V"].T, out=O)
        gc = self.work.get("gc", (K,), dt)
        target = y.reshape(-1)
        if self._k is not None:
            loss = self._k._softmax_loss(O, params["c"], target, B, want_grad, gc, O)
            return float(loss), O, gc
        O += params["c"]
        O -= O.max(axis=1, keepdims=True)  # softmax is shift-invariant: no overflow in exp
        rows = np.arange(R)
        picked = O[rows, target].sum(dtype=np.float64)
        np.exp(O, out=O)
        Z = O.sum(axis=1, keepdims=True)
        loss = (np.log(Z).sum(dtype=np.float64) - picked) / B
        if want_grad:
            O /= Z
            O[rows, target] -= 1.0  # p_t - onehot(y_t): dL/do_t
            O /= B
            np.sum(O, axis=0, out=gc)
        return float(loss), O, gc

    def _backward(self, params: Params, x: np.ndarray, caches: list[dict], dO: np.ndarray, gc: np.ndarray,
                  grads: Params) -> None:
        T, B = x.shape
        m, dt = self.m, dO.dtype
        X_out = caches[-1]["X_out"]
        np.dot(dO.T, X_out, out=grads["V"])
        grads["c"][...] = gc
        dX = self.work.get("dX", (T, B, m), dt)
        np.dot(dO, params["V"], out=dX.reshape(T * B, m))
        for l in range(self.layers, 0, -1):
            cache = caches[l - 1]
            if cache["mask"] is not None:
                dX *= cache["mask"]
            dA = self.cell.backward(params[key("W", l)], cache, dX, self.work, grads[key("W", l)], tag=f"L{l}")
            dA2 = dA.reshape(T * B, -1)
            if l == 1:
                self._scatter(x, dA, grads["U"], grads["b"])
            else:
                X_in = cache["X"].reshape(T * B, m)
                np.dot(dA2.T, X_in, out=grads[key("U", l)])
                np.sum(dA2, axis=0, out=grads[key("b", l)])
                dX = self.work.get("dX", (T, B, m), dt)
                np.dot(dA2, params[key("U", l)], out=dX.reshape(T * B, m))

    def _scatter(self, x: np.ndarray, dA: np.ndarray, gU: np.ndarray, gb: np.ndarray) -> None:
        """Column x_t of dU gathers dL/dA_t (a scatter-add, no one-hot product); db = sum_t dL/dA_t."""
        T, B, n = dA.shape
        if self._k is not None:
            gUT = self.work.get("gUT", (self.K, n), dA.dtype)
            self._k._input_grads(x, dA, gb, gU, gUT)
            return
        cells = x.reshape(-1, 1) * n + np.arange(n)
        gU[...] = np.bincount(cells.reshape(-1), weights=dA.reshape(-1), minlength=self.K * n).reshape(self.K, n).T
        np.sum(dA.reshape(T * B, n), axis=0, out=gb)

    def _last_state(self, caches: list[dict], single: bool) -> np.ndarray:
        state = np.concatenate([self.cell.last_state(c) for c in caches], axis=-1)
        return state[0] if single else state

    # the contract the trainer, the gradient check, evaluation and sampling use ------------------
    def loss_and_grads(self, params: Params, x, y, state0, grads: Params | None = None,
                       rng: np.random.Generator | None = None) -> tuple[float, Params, np.ndarray]:
        """The loss, its unclipped gradients (into ``grads`` when given) and the last state (shaped
        like state0). With ``rng`` and dropout > 0, dropout masks are drawn from it."""
        x, y, state0, single, dt = self._prepare(params, x, y, state0)
        if grads is None:
            grads = {k: np.empty(v.shape, dt) for k, v in params.items()}
        with self._fp_mode(dt):
            caches = self._forward(params, x, state0, dt, rng)
            loss, dO, gc = self._outputs(params, caches[-1]["X_out"], y, x.shape[1], True)
            state = self._last_state(caches, single)
            self._backward(params, x, caches, dO, gc, grads)
        return loss, grads, state

    def loss_and_state(self, params: Params, x, y, state0) -> tuple[float, np.ndarray]:
        """The loss and the last state, without gradients or dropout: for evaluation."""
        x, y, state0, single, dt = self._prepare(params, x, y, state0)
        with self._fp_mode(dt):
            caches = self._forward(params, x, state0, dt)
            loss, _, _ = self._outputs(params, caches[-1]["X_out"], y, x.shape[1], False)
        return loss, self._last_state(caches, single)

    def _fp_mode(self, dt):
        """The compiled backend's float32 passes flush subnormals (``kernels.subnormals_flushed``)."""
        return self._k.subnormals_flushed(dt) if self._k is not None else contextlib.nullcontext()

    def loss(self, params: Params, x, y, state0) -> float:
        """The loss only: for gradient checks."""
        return self.loss_and_state(params, x, y, state0)[0]

    def step(self, params: Params, state: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One time step for synthesis: state (B, L S), ix (B,) -> (next state, logits (B, K))."""
        nxt = np.empty_like(state)
        h = None
        for l in range(1, self.layers + 1):
            U, W, b = params[key("U", l)], params[key("W", l)], params[key("b", l)]
            a = (U.T[ix] if l == 1 else h @ U.T) + b
            s = self.cell.step(W, a, self._layer_state(state, l))
            nxt[:, (l - 1) * self.S:l * self.S] = s
            h = s[:, :self.m]
        return nxt, h @ params["V"].T + params["c"]

    def trace(self, params: Params, x, state0=None) -> dict:
        """What the network computes along one stream x (T,), without dropout, in numpy:
        {"layers": [per layer {"h": (T, m), gates...: (T, m)}], "p": (T, K) the next-character
        probabilities}."""
        numpy_net = self if self._k is None else Network(self.name, self.K, self.m, self.layers, 0.0, "numpy")
        state0 = numpy_net.zero_state(params) if state0 is None else state0
        x, _, state0, _, dt = numpy_net._prepare(params, x, None, state0)
        caches = numpy_net._forward(params, x, state0, dt)
        layers = [{k: np.array(v[:, 0]) for k, v in numpy_net.cell.activations(c).items()} for c in caches]
        o = caches[-1]["X_out"] @ params["V"].T + params["c"]
        o -= o.max(axis=1, keepdims=True)
        p = np.exp(o)
        return {"layers": layers, "p": p / p.sum(axis=1, keepdims=True)}
