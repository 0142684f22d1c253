"""The models by name. Each is a module with the same functions:

- ``init_params(K, m, sig, rng) -> dict`` of float64 arrays;
- ``loss_and_grads(params, x, y, h0, grads=None) -> (loss, grads, h_last)``, x and y (T,) or (T, B)
  indices, the loss summed over time and averaged over streams, gradients unclipped;
- ``loss_and_state(params, x, y, h0) -> (loss, h_last)`` without gradients, and
  ``loss(params, x, y, h0) -> float``;
- ``step(params, state, ix) -> (state, logits)`` for synthesis, state (B, S), ix (B,);
- ``zero_state(params, batch=None)``: the state a sequence starts from, (S,) or (batch, S).
"""
from __future__ import annotations

from types import ModuleType

MODEL_NAMES = ("rnn", "lstm")


def get_model(name: str) -> ModuleType:
    """The module implementing model ``name``."""
    if name == "rnn":
        from . import rnn
        return rnn
    if name == "lstm":
        from . import lstm
        return lstm
    raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODEL_NAMES)})")
