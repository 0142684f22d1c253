"""Shared fixtures and helpers: small texts written into tmp_path, a factory for tiny training
configs, random model problems, the networks' equations written out independently of a4lib.model
(``own_forward``) with centred differences of any loss (``own_numerical``), and `python -m a4lib`
as a process (``a4lib_command``, ``start``, ``wait_until``)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import a4lib
from a4lib import Config
from a4lib.model import Network

#: the folder holding the a4lib under test: subprocesses import the same one
PACKAGE_PARENT = Path(a4lib.__file__).resolve().parent.parent

SMALL_ALPHABET = list("abcdefg h.")  # no newline: CLI output can be split on its final "\n"
CELLS = ("rnn", "gru", "lstm")


def random_text(n: int, alphabet=SMALL_ALPHABET, seed: int = 1234) -> str:
    """n characters drawn uniformly from alphabet with a fixed seed."""
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(alphabet, size=n))


@pytest.fixture
def small_text(tmp_path):
    """A 300-character UTF-8 file of 10 distinct ASCII characters; returns its path."""
    path = tmp_path / "small.txt"
    path.write_text(random_text(300), encoding="utf-8")
    return path


def model_problem(cell: str, K: int, m: int, T: int, B: int | None = None, layers: int = 1, seed: int = 0,
                  sig: float | None = None, dtype=np.float64, dropout: float = 0.0, backend: str = "numpy",
                  state_scale: float = 0.5):
    """A Network, its parameters (biases perturbed, so nonzero), indices x, y and a nonzero state.

    B None: one stream, x (T,) and the state (L S,); else x (T, B) and the state (B, L S). sig
    defaults to 1 / sqrt(m) (units in their working range). Everything in ``dtype``."""
    if backend == "numba":
        pytest.importorskip("numba")
    net = Network(cell, K, m, layers=layers, dropout=dropout, backend=backend)
    rng = np.random.default_rng(seed)
    params = net.init_params(rng, 1.0 / np.sqrt(m) if sig is None else sig)
    for name in params:
        if name[0] in "bc":
            params[name] = params[name] + 0.2 * rng.standard_normal(params[name].shape)
    params = {k: v.astype(dtype) for k, v in params.items()}
    shape = (T,) if B is None else (T, B)
    x, y = rng.integers(0, K, shape), rng.integers(0, K, shape)
    S = net.layers * net.S
    state0 = (state_scale * np.tanh(rng.standard_normal((S,) if B is None else (B, S)))).astype(dtype)
    return net, params, x, y, state0


@pytest.fixture
def rnn_problem():
    """Factory (K, m, T, seed=0, sig=0.1, h0_scale=0.5, B=None) -> params, x, y, h0 of the
    handout's one-layer RNN (b, c and h0 nonzero)."""

    def make(K, m, T, seed=0, sig=0.1, h0_scale=0.5, B=None):
        _, params, x, y, h0 = model_problem("rnn", K, m, T, B, seed=seed, sig=sig, state_scale=h0_scale)
        return params, x, y, h0

    return make


@pytest.fixture
def tiny_config():
    """Factory: a Config small enough to train in well under a second; the numpy backend (the
    numba one is compared with it in test_train.py)."""

    def make(corpus, **overrides) -> Config:
        kw = dict(corpus=str(corpus), m=8, seq_length=5, sig=0.1, n_updates=20, n_epochs=None,
                  sample_every=0, sample_length=10, checkpoint_every=10_000,
                  backend="numpy")
        kw.update(overrides)
        return Config(**kw)

    return make


# --- the equations, written out here -----------------------------------------------------------

def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def own_cell_step(cell: str, W, a, s, m: int):
    """One step of ``cell`` for a batch: a (B, G m) = U x_t + b, s (B, S) -> (next state, h)."""
    if cell == "rnn":
        h = np.tanh(s @ W.T + a)
        return h, h
    if cell == "gru":
        q = s @ W.T
        z = _sigmoid(a[:, :m] + q[:, :m])
        r = _sigmoid(a[:, m:2 * m] + q[:, m:2 * m])
        n = np.tanh(a[:, 2 * m:] + r * q[:, 2 * m:])
        h = (1 - z) * n + z * s
        return h, h
    h, c = s[:, :m], s[:, m:]
    a = h @ W.T + a
    i, f, o = _sigmoid(a[:, :m]), _sigmoid(a[:, m:2 * m]), _sigmoid(a[:, 2 * m:3 * m])
    c = f * c + i * np.tanh(a[:, 3 * m:])
    h = o * np.tanh(c)
    return np.concatenate([h, c], axis=1), h


def own_forward(cell: str, params: dict, x, y, state0, layers: int = 1, masks=None):
    """The loss (summed over time, averaged over streams) and the last state of an L-layer
    network, one step at a time: layer 1 reads column x_t of U, layer l + 1 reads layer l's h
    (times its dropout mask), the output o_t = V (mask_L h^L_t) + c. ``masks``: one (T, B, m)
    array per layer, or None (no dropout). x (T,) or (T, B)."""
    x, y = np.asarray(x), np.asarray(y)
    single = x.ndim == 1
    if single:
        x, y, state0 = x[:, None], y[:, None], np.asarray(state0)[None, :]
    T, B = x.shape
    m = params["W"].shape[1]
    S = len(state0[0]) // layers
    states = [np.array(state0[:, l * S:(l + 1) * S], dtype=np.float64) for l in range(layers)]
    total = 0.0
    for t in range(T):
        inp = None
        for l in range(layers):
            sfx = "" if l == 0 else str(l + 1)
            U, W, b = params["U" + sfx], params["W" + sfx], params["b" + sfx]
            a = (U[:, x[t]].T if l == 0 else inp @ U.T) + b
            states[l], h = own_cell_step(cell, W, a, states[l], m)
            inp = h if masks is None else h * masks[l][t]
        o = inp @ params["V"].T + params["c"]
        o = o - o.max(axis=1, keepdims=True)
        total += float(np.sum(np.log(np.exp(o).sum(axis=1)) - o[np.arange(B), y[t]]))
    last = np.concatenate(states, axis=1)
    return total / B, (last[0] if single else last)


def own_masks(rng: np.random.Generator, p: float, layers: int, shape: tuple) -> list[np.ndarray]:
    """Dropout masks as the network's documentation describes them: per layer, in order, each unit
    kept with probability 1 - p (a uniform draw below 1 - p) and scaled by 1 / (1 - p)."""
    keep = 1.0 - p
    return [(rng.random(shape) < keep) / keep for _ in range(layers)]


def own_numerical(loss, params: dict, h: float = 1e-5) -> dict:
    """Centred differences of ``loss(params)`` for every entry, on copies of the parameters."""
    out = {}
    for name in params:
        g = np.zeros(params[name].size)
        for i in range(g.size):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name].reshape(-1)[i] += h
            minus[name].reshape(-1)[i] -= h
            g[i] = (loss(plus) - loss(minus)) / (2 * h)
        out[name] = g.reshape(params[name].shape)
    return out


# --- `python -m a4lib` as a process --------------------------------------------------------------

def a4lib_env() -> dict:
    """The environment of an a4lib process: this a4lib first on its path, one BLAS thread."""
    path = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OPENBLAS_NUM_THREADS": "1"}


def a4lib_command(*args, umask: int | None = None) -> list[str]:
    """The argv of `python -m a4lib ARGS`, under ``umask`` when given."""
    argv = [sys.executable, "-m", "a4lib", *map(str, args)]
    if umask is None:
        return argv
    return ["sh", "-c", f'umask {umask:03o}; exec "$0" "$@"', *argv]


def start(*args) -> subprocess.Popen:
    """`python -m a4lib ARGS` as a process in the background (stdout and stderr piped, as text)."""
    return subprocess.Popen(a4lib_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=a4lib_env())


def wait_until(condition, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Poll ``condition()`` until true; fail when ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) first: {proc.communicate()[1][-500:]}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.02)
