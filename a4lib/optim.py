"""Optimizers behind one contract, on all parameters at once.

``opt.update(w, dw, state)`` changes the flat parameter vector ``w`` in place from its gradient
``dw`` (same shape); ``state`` is the dict of arrays made by ``opt.init_state(w)`` (zeros like w:
its type follows w's, float64 or float32), which a checkpoint stores as it is.
``opt.step(w, dw, state, limit)`` is the training step's end: clip, then update; with ``fused``
(the compiled backend) both in one compiled pass over the vectors, with the same bits (but for
float32 subnormals, which it flushes to zero: ``kernels.subnormals_flushed``).
``flatten`` lays a parameter dict out as views of one vector, so that clipping and the update are
a handful of vector operations whatever the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

State = dict[str, np.ndarray]


def flatten(arrays: dict[str, np.ndarray], dtype=np.float64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Copy the arrays into one vector of ``dtype`` (float64 by default; "float32" or np.float32
    rounds them); return it and views of it with the same keys/shapes."""
    flat = np.concatenate([np.asarray(a).ravel() for a in arrays.values()]).astype(dtype, copy=False)
    return flat, unflatten(flat, arrays)


def unflatten(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Views of ``flat`` shaped like the arrays of ``like``, in its key order."""
    views, offset = {}, 0
    for name, a in like.items():
        views[name] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size
    if offset != flat.size:
        raise ValueError(f"vector of {flat.size} values for arrays of {offset} values")
    return views


def clip(dw: np.ndarray, limit: float) -> np.ndarray:
    """Clip every element to [-limit, limit] in place (limit <= 0 or inf: no clipping)."""
    if 0 < limit < np.inf:
        np.clip(dw, -limit, limit, out=dw)
    return dw


def _limit(limit: float) -> float:
    """The clipping limit as the kernels take it: 0 for no clipping (limit <= 0 or inf)."""
    return float(limit) if 0 < limit < np.inf else 0.0


class Optimizer:
    """What every optimizer shares: ``step`` = ``clip`` then the optimizer's own ``update``, or,
    with ``fused``, the optimizer's ``fused_step`` (the same in one compiled pass; needs numba).
    Its work vector is its own (two optimizers never share one)."""

    fused: bool = False

    def _scratch(self, w: np.ndarray) -> np.ndarray:
        """A reusable work vector the size and type of w (not state: never saved)."""
        buf = self.__dict__.get("_buf")
        if buf is None or buf.shape != w.shape or buf.dtype != w.dtype:
            buf = self.__dict__["_buf"] = np.empty_like(w)
        return buf

    def _compiled(self, *vectors: np.ndarray):
        """The kernels module, built, after checking that the vectors are contiguous, of one length
        and of one type, float64 or float32 (skipped for the same vectors as the last call's: the
        trainer's, every update)."""
        from .model import kernels

        last = self.__dict__.get("_checked", ())
        if len(last) != len(vectors) or any(a is not b for a, b in zip(vectors, last)):
            w = vectors[0]
            if not (w.ndim == 1 and w.dtype in (np.float64, np.float32) and all(
                    a.shape == w.shape and a.dtype == w.dtype and a.flags.c_contiguous for a in vectors)):
                raise ValueError("a fused step needs contiguous float64 or float32 vectors of one length and type")
            kernels.build()
            self.__dict__["_checked"] = vectors
        return kernels

    def step(self, w: np.ndarray, dw: np.ndarray, state: State, limit: float) -> None:
        if self.fused:
            from .model import kernels

            with kernels.subnormals_flushed(w.dtype):
                return self.fused_step(w, dw, state, limit)
        clip(dw, limit)
        self.update(w, dw, state)


@dataclass
class AdaGrad(Optimizer):
    """The handout's: M += g^2; w -= eta g / sqrt(M + eps)."""

    eta: float = 0.1
    eps: float = 1e-8
    fused: bool = False

    def fused_step(self, w: np.ndarray, dw: np.ndarray, state: State, limit: float) -> None:
        kernels, F = self._compiled(w, dw, state["M"]), w.dtype.type
        kernels._clip_adagrad(w, dw, state["M"], F(self.eta), F(self.eps), F(_limit(limit)))

    def init_state(self, w: np.ndarray) -> State:
        return {"M": np.zeros_like(w)}

    def update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        M, tmp = state["M"], self._scratch(w)
        np.multiply(dw, dw, out=tmp)
        M += tmp
        np.add(M, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(dw, tmp, out=tmp)
        tmp *= self.eta
        w -= tmp


@dataclass
class RMSProp(Optimizer):
    """M = gamma M + (1 - gamma) g^2; w -= eta g / sqrt(M + eps)."""

    eta: float = 0.001
    gamma: float = 0.9
    eps: float = 1e-8
    fused: bool = False

    def fused_step(self, w: np.ndarray, dw: np.ndarray, state: State, limit: float) -> None:
        kernels, F = self._compiled(w, dw, state["M"]), w.dtype.type
        kernels._clip_rmsprop(w, dw, state["M"], F(self.eta), F(self.gamma), F(1.0 - self.gamma), F(self.eps),
                              F(_limit(limit)))

    def init_state(self, w: np.ndarray) -> State:
        return {"M": np.zeros_like(w)}

    def update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        M, tmp = state["M"], self._scratch(w)
        np.multiply(dw, dw, out=tmp)
        tmp *= 1.0 - self.gamma
        M *= self.gamma
        M += tmp
        np.add(M, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(dw, tmp, out=tmp)
        tmp *= self.eta
        w -= tmp


@dataclass
class Adam(Optimizer):
    """Bias-corrected first and second moments: w -= eta m_hat / (sqrt(v_hat) + eps)."""

    eta: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    fused: bool = False

    def init_state(self, w: np.ndarray) -> State:
        return {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": np.zeros(())}

    def fused_step(self, w: np.ndarray, dw: np.ndarray, state: State, limit: float) -> None:
        kernels, F = self._compiled(w, dw, state["m"], state["v"]), w.dtype.type
        state["t"] += 1
        t = float(state["t"])
        kernels._clip_adam(w, dw, state["m"], state["v"], F(self.beta1), F(1.0 - self.beta1), F(self.beta2),
                           F(1.0 - self.beta2), F(1.0 - self.beta2 ** t), F(self.eps),
                           F(self.eta / (1.0 - self.beta1 ** t)), F(_limit(limit)))

    def update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        m, v, tmp = state["m"], state["v"], self._scratch(w)
        state["t"] += 1
        t = float(state["t"])
        m *= self.beta1
        m += (1.0 - self.beta1) * dw
        np.multiply(dw, dw, out=tmp)
        tmp *= 1.0 - self.beta2
        v *= self.beta2
        v += tmp
        np.divide(v, 1.0 - self.beta2 ** t, out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= self.eta / (1.0 - self.beta1 ** t)
        w -= tmp


OPTIMIZERS = {"adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam}


def make_optimizer(name: str, eta: float, fused: bool = False):
    """The optimizer called ``name`` with learning rate eta and the defaults above; ``fused``: its
    compiled step (clip and update in one pass; needs numba)."""
    try:
        return OPTIMIZERS[name](eta=eta, fused=fused)
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})") from None
