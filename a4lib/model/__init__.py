"""The model layer: the recurrences (``cells``, compiled in ``compiled``), the network composed
around any of them (``network``), and the handout's one-hot loop as the yardstick (``reference``).

``make_network(cfg, K)`` is the one way a run's settings become a network.
"""
from __future__ import annotations

from .cells import CELLS, Workspace
from .network import INITS, Network, float_type, key

MODEL_NAMES = tuple(CELLS)
BACKENDS = ("auto", "numpy", "numba")


def resolve_backend(backend: str = "auto") -> str:
    """The backend that will run: "numba" where numba and SciPy are installed (for "auto"), else "numpy"."""
    from .kernels import available

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return "numba" if available() else "numpy"
    if backend == "numba" and not available():
        raise ValueError("numba and SciPy are not installed: pip install 'a4lib[fast]', or use --backend numpy")
    return backend


def make_network(cfg, K: int, backend: str | None = None) -> Network:
    """The network of a run's settings (a Config, or config.json's dict) over K characters;
    ``backend`` overrides the settings' (e.g. "numpy" for an analysis)."""
    get = cfg.get if isinstance(cfg, dict) else lambda name, default=None: getattr(cfg, name, default)
    return Network(get("model", "rnn"), K, get("m", 100), layers=get("layers", 1) or 1,
                   dropout=get("dropout", 0.0) or 0.0, backend=resolve_backend(backend or get("backend", "auto")))


__all__ = ["CELLS", "MODEL_NAMES", "BACKENDS", "INITS", "Network", "Workspace", "float_type", "key",
           "make_network", "resolve_backend"]
