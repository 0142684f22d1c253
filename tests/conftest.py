"""Shared fixtures: small texts written into tmp_path and a factory for tiny training configs."""
from __future__ import annotations

import numpy as np
import pytest

from a4lib import Config

SMALL_ALPHABET = list("abcdefg h.")  # no newline: CLI output can be split on its final "\n"


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


def _rnn_problem(K_in, K_out, m, T, seed=0, sig=0.1, h0_scale=0.5, B=None):
    """Random rnn parameters (b, c nonzero too), inputs x, targets y and a nonzero h0."""
    from a4lib import rnn

    rng = np.random.default_rng(seed)
    params = rnn.init_params(K_in, m, sig, rng, K_out=K_out)
    params["b"] += 0.1 * rng.standard_normal(m)
    params["c"] += 0.1 * rng.standard_normal(K_out)
    shape = (T,) if B is None else (T, B)
    x = rng.integers(0, K_in, shape)
    y = rng.integers(0, K_out, shape)
    h0 = h0_scale * np.tanh(rng.standard_normal((m,) if B is None else (B, m)))
    return params, x, y, h0


@pytest.fixture
def rnn_problem():
    """Factory (K_in, K_out, m, T, seed=0, sig=0.1, h0_scale=0.5, B=None) -> params, x, y, h0."""
    return _rnn_problem


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
