"""Centred-difference gradients for any scalar loss over a dict of arrays, and the error tables.

The numerical gradient of element i is (L(theta + h e_i) - L(theta - h e_i)) / 2h, computed by
perturbing the arrays in place (and restoring them). The relative error of an element is
|g_a - g_n| / max(floor, |g_a| + |g_n|). The floor is the smallest gradient the differences can
measure to the tolerance: L itself carries round-off of about eps |L| (eps = 2.2e-16), so g_n
carries about ``noise`` = 10 eps max(1, |L|) / h, and an entry below noise / tol cannot be resolved to
tol; such entries are judged by their absolute error instead (``check_floor``). Clipping is
never applied here: it would change the function being differentiated.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Arrays = dict[str, np.ndarray]


def numerical_grads(loss: Callable[[Arrays], float], params: Arrays, h: float = 1e-4) -> Arrays:
    """Centred differences of ``loss(params)`` with respect to every element of every array."""
    grads = {}
    for name, theta in params.items():
        g = np.zeros_like(theta)
        flat, gflat = theta.reshape(-1), g.reshape(-1)  # views: perturbations reach params
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            plus = loss(params)
            flat[i] = old - h
            minus = loss(params)
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * h)
        grads[name] = g
    return grads


def relative_errors(analytic: Arrays, numeric: Arrays, floor: float = 1e-8) -> dict[str, dict[str, float]]:
    """Per array: the max and mean element-wise relative error and the max absolute error."""
    table = {}
    for name, ga in analytic.items():
        gn = numeric[name]
        diff = np.abs(ga - gn)
        rel = diff / np.maximum(floor, np.abs(ga) + np.abs(gn))
        table[name] = {"max_rel": float(rel.max()), "mean_rel": float(rel.mean()), "max_abs": float(diff.max())}
    return table


def check_floor(loss: float, h: float, tol: float) -> float:
    """The relative-error floor: the round-off of a centred difference, 10 eps max(1, |L|) / h,
    over tol (never below 1e-8)."""
    noise = 10 * np.finfo(np.float64).eps * max(1.0, abs(loss)) / h
    return max(1e-8, noise / tol)


def check(model, params: Arrays, x, y, h0, h: float = 1e-4, tol: float = 1e-4) -> dict[str, dict[str, float]]:
    """Analytic gradients of ``model.loss_and_grads`` against centred differences of ``model.loss``,
    relative errors with the floor ``check_floor(L, h, tol)``."""
    loss, analytic, _ = model.loss_and_grads(params, x, y, h0)
    analytic = {k: v.copy() for k, v in analytic.items()}
    numeric = numerical_grads(lambda p: model.loss(p, x, y, h0), params, h)
    return relative_errors(analytic, numeric, check_floor(loss, h, tol))


def format_table(table: dict[str, dict[str, float]], title: str = "") -> str:
    """A plain-text table: parameter, max and mean relative error, max absolute error."""
    lines = [title] if title else []
    lines.append(f"{'param':>6} {'max rel':>10} {'mean rel':>10} {'max abs':>10}")
    for name, row in table.items():
        lines.append(f"{name:>6} {row['max_rel']:10.2e} {row['mean_rel']:10.2e} {row['max_abs']:10.2e}")
    return "\n".join(lines)


def default_sig(m: int) -> float:
    """The handout's sig = 0.01 for small m; 0.1 for larger m, where with sig = 0.01 many
    gradient entries of W are ~1e-10 and their relative errors measure round-off, not mistakes."""
    return 0.01 if m <= 10 else 0.1


MS = (5, 100)  # the network sizes m checked unless others are asked for (the handout's m = 5, and m = 100)


def run_checks(corpus, ms=MS, seq_length: int = 25, model_name: str = "rnn", h: float = 1e-4,
               tol: float = 1e-4, sig: float | None = None, seed: int = 0, layers: int = 1) -> list[dict]:
    """The handout's check: the first seq_length characters, h0 = 0, one table per m; any cell
    (``model_name``) and number of layers, numpy in float64.

    Each result: m, sig, h, tol, seconds, the table, and ``ok`` (every max relative error <= tol).
    """
    import time

    from .model import Network

    x, y = corpus.ids[:seq_length], corpus.ids[1:seq_length + 1]
    results = []
    for m in ms:
        model = Network(model_name, corpus.K, m, layers=layers)
        s = default_sig(m) if sig is None else sig
        params = model.init_params(np.random.default_rng(seed), s)
        start = time.perf_counter()
        h0 = model.zero_state(params)
        table = check(model, params, x, y, h0, h, tol)
        floor = check_floor(model.loss(params, x, y, h0), h, tol)
        results.append({
            "model": model_name, "layers": layers, "m": m, "sig": s, "h": h, "tol": tol, "floor": floor,
            "seq_length": seq_length, "K": corpus.K, "corpus": corpus.name,
            "seconds": round(time.perf_counter() - start, 2),
            "table": table, "ok": all(row["max_rel"] <= tol for row in table.values()),
        })
    return results
