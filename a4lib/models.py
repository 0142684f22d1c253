"""The models by name. Each is a module with the same functions:

- ``init_params(K, m, sig, rng) -> dict`` of float64 arrays;
- ``loss_and_grads(params, x, y, h0, grads=None) -> (loss, grads, h_last)``, x and y (T,) or (T, B)
  indices, the loss summed over time and averaged over streams, gradients unclipped;
- ``loss_and_state(params, x, y, h0) -> (loss, h_last)`` without gradients, and
  ``loss(params, x, y, h0) -> float``;
- ``step(params, state, ix) -> (state, logits)`` for synthesis, state (B, S), ix (B,);
- ``zero_state(params, batch=None)``: the state a sequence starts from, (S,) or (batch, S).

A backend chooses the implementation: "numpy" (``a4lib.rnn``, ``a4lib.lstm``), "numba"
(``a4lib.fast``, ``a4lib.fast_lstm``: the models compiled, equal to numpy to rounding), or
"auto": numba where it is installed, numpy otherwise. Every implementation computes in the
parameters' type, float64 or float32 (``init_params`` draws float64; the trainer casts them into
one vector of ``Config.dtype``), and ``zero_state`` returns that type.
"""
from __future__ import annotations

from types import ModuleType

from .config import BACKENDS, MODEL_NAMES


def resolve_backend(name: str, backend: str = "auto") -> str:
    """The backend that will run model ``name``: "numpy" or "numba"."""
    from . import fast

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return "numba" if fast.available() else "numpy"
    if backend == "numba" and not fast.available():
        raise ValueError("numba is not installed: pip install 'a4lib[fast]', or use --backend numpy")
    return backend


def get_model(name: str, backend: str = "numpy") -> ModuleType:
    """The module implementing model ``name`` on ``backend`` (see ``resolve_backend``)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODEL_NAMES)})")
    compiled = resolve_backend(name, backend) == "numba"
    if name == "rnn":
        from . import fast, rnn
        return fast if compiled else rnn
    from . import fast_lstm, lstm
    return fast_lstm if compiled else lstm
