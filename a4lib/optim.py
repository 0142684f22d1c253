"""Optimizers behind one contract, on all parameters at once.

``opt.update(w, dw, state)`` changes the flat parameter vector ``w`` in place from its gradient
``dw`` (same shape); ``state`` is the dict of arrays made by ``opt.init_state(w)``, which a
checkpoint stores as it is. ``opt.step(w, dw, state, limit)`` is the training step's end: clip,
then update. ``flatten`` lays a parameter dict out as views of one vector, so
that clipping and the update are a handful of vector operations whatever the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

State = dict[str, np.ndarray]


def flatten(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Copy the arrays into one float64 vector; return it and views of it with the same keys/shapes."""
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays.values()])
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


_buffers: dict[tuple, np.ndarray] = {}


def _scratch(w: np.ndarray) -> np.ndarray:
    """A reusable work vector the size of w (not state: never saved)."""
    buf = _buffers.get(w.shape)
    if buf is None:
        buf = _buffers[w.shape] = np.empty_like(w)
    return buf


class Optimizer:
    """What every optimizer shares: ``step`` = ``clip`` then the optimizer's own ``update``."""

    def step(self, w: np.ndarray, dw: np.ndarray, state: State, limit: float) -> None:
        clip(dw, limit)
        self.update(w, dw, state)


@dataclass
class AdaGrad(Optimizer):
    """The handout's: M += g^2; w -= eta g / sqrt(M + eps). With ``fused`` (the numba backend),
    ``step`` clips and updates in one compiled pass, with the same bits."""

    eta: float = 0.1
    eps: float = 1e-8
    fused: bool = False

    def step(self, w: np.ndarray, dw: np.ndarray, state: State, limit: float) -> None:
        if not self.fused:
            return super().step(w, dw, state, limit)
        from .fast import clip_adagrad
        clip_adagrad(w, dw, state["M"], self.eta, self.eps, limit)

    def init_state(self, w: np.ndarray) -> State:
        return {"M": np.zeros_like(w)}

    def update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        M, tmp = state["M"], _scratch(w)
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

    def init_state(self, w: np.ndarray) -> State:
        return {"M": np.zeros_like(w)}

    def update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        M, tmp = state["M"], _scratch(w)
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

    def init_state(self, w: np.ndarray) -> State:
        return {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": np.zeros(())}

    def update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        m, v, tmp = state["m"], state["v"], _scratch(w)
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
    compiled step where it has one (AdaGrad; needs numba)."""
    try:
        cls = OPTIMIZERS[name]
        return cls(eta=eta, fused=True) if fused and cls is AdaGrad else cls(eta=eta)
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})") from None
