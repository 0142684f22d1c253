"""Synthesis: the handout's inverse-CDF sampling, with temperature, nucleus (top-p) and argmax.

At every step p = softmax(o / temperature); with top_p < 1 only the smallest set of characters
whose probabilities reach top_p keeps its mass (renormalised); then the handout's draw: the
first index whose cumulative probability exceeds a uniform number. temperature = 0 is argmax.
With temperature 1 and top_p 1 this is exactly the handout's sampling.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .model import float_type


def softmax(o: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(o / temperature) of a vector."""
    z = (o - o.max()) / temperature
    e = np.exp(z)
    return e / e.sum()


def nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of largest probabilities whose sum reaches top_p; renormalise."""
    if top_p >= 1.0:
        return p
    order = np.argsort(-p, kind="stable")
    mass = np.cumsum(p[order])
    n_keep = int(np.searchsorted(mass, top_p * mass[-1])) + 1  # first prefix whose mass reaches top_p
    kept = np.zeros_like(p)
    kept[order[:n_keep]] = p[order[:n_keep]]
    return kept / kept.sum()


def draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """The handout's draw: cp = cumsum(p), a ~ U(0, 1), the first index with cp > a."""
    cp = np.cumsum(p)
    return min(int(np.searchsorted(cp, rng.random() * cp[-1], side="right")), len(p) - 1)


def check_sampling(temperature: float, top_p: float) -> None:
    """ValueError unless 0 <= temperature < inf and 0 < top_p <= 1 (NaN fails both): the one rule
    for every sampler (the networks', the n-gram's, the command line's)."""
    if not (0 <= temperature < math.inf and 0 < top_p <= 1):
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature} and {top_p}")


def next_index(o: np.ndarray, rng: np.random.Generator, temperature: float = 1.0, top_p: float = 1.0) -> int:
    """One character index from the logits o (K,)."""
    if temperature == 0:
        return int(np.argmax(o))
    return draw(nucleus(softmax(o, temperature), top_p), rng)


def synthesize(model, params: dict, state: np.ndarray, x0: int, n: int, rng: np.random.Generator,
               temperature: float = 1.0, top_p: float = 1.0, stop: int | None = None,
               cancelled: Callable[[], bool] | None = None) -> list[int]:
    """n indices generated from ``state`` (S,) with first input x0; stops early after index ``stop``,
    or (fewer indices) once ``cancelled()`` is true (asked before each step)."""
    check_sampling(temperature, top_p)
    state = np.asarray(state, dtype=float_type(params))[None, :]
    ix, out = x0, []
    for _ in range(n):
        if cancelled is not None and cancelled():
            break
        state, o = model.step(params, state, np.array([ix]))
        ix = next_index(o[0], rng, temperature, top_p)
        out.append(ix)
        if ix == stop:
            break
    return out


def warm_up(model, params: dict, state: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Run the priming indices through the model; the state after the last but one.

    The last priming index is the first input of the synthesis that follows.
    """
    state = np.asarray(state, dtype=float_type(params))[None, :]
    for ix in ids[:-1]:
        state, _ = model.step(params, state, np.array([ix]))
    return state[0]


def tweet_frame(corpus, prime: str, length: int) -> tuple[int, int, int, np.ndarray]:
    """How a new tweet is drawn, for any model: (the end-of-tweet index that ends it, the most
    characters it may have after the prime so that the whole fits in 280, the draws to make (one
    more than that, to see whether the tweet ends there), the priming indices: EOT, then the prime)."""
    from .corpus import EOT, TWEET_MAX_CHARS

    stop = corpus.char_to_ix[EOT]
    limit = max(0, TWEET_MAX_CHARS - len(prime))
    return stop, limit, min(length, limit + 1), np.concatenate([[stop], corpus.encode(prime)]).astype(np.int64)


def end_tweet(ids, stop: int, limit: int):
    """A drawn tweet's indices without the end-of-tweet character, at most ``limit`` of them."""
    if len(ids) and ids[-1] == stop:
        ids = ids[:-1]
    return ids[:limit]


def primer(corpus, prime: str | None = None) -> str:
    """The priming text of generated text: ``prime`` when given; else nothing for a tweet corpus
    (a tweet starts after its end mark), and a line break for prose (the text begins a new line),
    else a space, else the vocabulary's first character."""
    if prime is not None:
        return prime
    if corpus.is_tweets:
        return ""
    return next((ch for ch in ("\n", " ") if ch in corpus.char_to_ix), corpus.chars[0])


def generate(model, params: dict, corpus, length: int = 1000, rng: np.random.Generator | None = None,
             temperature: float = 1.0, top_p: float = 1.0, prime: str | None = None,
             state: np.ndarray | None = None) -> str:
    """Text from a trained model: primed with ``prime`` (default: ``primer``'s), from ``state`` (default h = 0; a run's saved state suits a model trained with h carried, which
    can predict badly from h = 0).

    The returned text starts with the priming text. For a tweet corpus, generation starts a new
    tweet (input EOT, h = 0) and stops at the end-of-tweet character or after 280 characters.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    stop, prime = None, primer(corpus, prime)
    if corpus.is_tweets:
        stop, limit, length, prime_ids = tweet_frame(corpus, prime, length)
    else:
        prime_ids = corpus.encode(prime or primer(corpus))
    start = model.zero_state(params) if state is None or corpus.is_tweets else state
    state = warm_up(model, params, start, prime_ids)
    ids = synthesize(model, params, state, int(prime_ids[-1]), length, rng, temperature, top_p, stop)
    if corpus.is_tweets:
        return prime + corpus.decode(end_tweet(ids, stop, limit))
    return corpus.decode(prime_ids) + corpus.decode(ids)
