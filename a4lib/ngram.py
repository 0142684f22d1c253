"""The count baseline: an interpolated modified Kneser-Ney character n-gram.

The variant is Chen & Goodman's (1998) interpolated modified Kneser-Ney. The probability of
character w after the context h (the preceding order - 1 characters) is, at each level k =
1 .. order (h_k: the last k - 1 characters of h),

    P_k(w | h_k) = (max(c(h_k w) - D(c(h_k w)), 0) + gamma(h_k) P_{k-1}(w | h_{k-1})) / c(h_k .)
    gamma(h_k)   = D1 N1(h_k .) + D2 N2(h_k .) + D3+ N3+(h_k .),    P_0(w) = 1 / K,

where D(c) is D1, D2 or D3+ for c = 1, 2, >= 3 (0 for c = 0) and N_j(h_k .) counts the characters
w with c(h_k w) = j. At the model's highest order c is the raw count of the k-gram in the training
text; below it, the continuation count: how many distinct characters precede the k-gram there.
A context never seen (c(h_k .) = 0) passes P_{k-1} on unchanged. The three discounts of each
level are set from the count-of-counts n1 .. n4 of the counts that level uses (Chen & Goodman's
estimate): Y = n1 / (n1 + 2 n2), D1 = 1 - 2 Y n2 / n1, D2 = 2 - 3 Y n3 / n2, D3+ = 3 - 4 Y n4 / n3.
Where they cannot (one of n1 .. n4 is zero, as on tiny texts, or a D_j falls outside (0, j]), all
three are plain Kneser-Ney's D = n1 / (n1 + 2 n2) (Ney, Essen & Kneser 1994), or 0.5 when n1 = 0.

One fit of order N holds every lower order's model too (the raw counts and the continuation counts
of every level), so ``char_losses(..., order=k)`` and ``evaluate`` give orders 1 .. N at once.
The k-grams are numbered level by level without hashing: the k-gram ending at t is the pair
(number of the (k-1)-gram ending at t - 1, character t), its key that number * K + the character,
numbered by ``np.unique``; looking a text up is one ``searchsorted`` per level, so any K and any
order fit in int64 keys.

Held-out evaluation predicts the characters ``a4lib train --val-fraction F`` predicts (the split
is ``a4lib.train.split``'s; in each held-out segment (start, end) the characters start + 1 ..
end - 1, as ``train.evaluate``), each from the order - 1 characters before it in the text: at the
start of the held-out text the context reaches back into the training part, and in a tweet corpus
into the tweet before (the network starts each held-out tweet from h = 0).

Measured on ``tinyshakespeare.txt`` (1,115,394 characters, K = 65), order 8, val_fraction 0.1, on
the 2-core machine shared with other work (2026-12-04): the fit 0.9 s, the evaluation of all eight
orders 0.2 s; the whole ``a4lib ngram`` command 1.3-1.5 s wall and 183 MB peak RSS (``/usr/bin/time
-v``); order 20: 4.7 s and 0.96 GB (memory grows about 60 MB per order on this text).

A run directory (``a4lib ngram --out DIR``) holds config.json, summary.json, samples.json,
history.npz (no updates; the held-out loss of the highest order at update 0) and provenance.json.
The counts are not saved: ``a4lib generate DIR`` refits them from the corpus (its sha256 checked).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .config import MAX_SAMPLE_LENGTH
from .config import add_arguments as add_config_arguments
from .corpus import BUILTIN, Corpus, load_corpus
from .sample import check_sampling, draw, end_tweet, nucleus, tweet_frame

DEFAULT_ORDER = 8
#: the highest order: memory grows about 60 MB per order on a 1 M-character text (see above)
MAX_ORDER = 32
DEFAULT_VAL_FRACTION = 0.1
FALLBACK_DISCOUNT = 0.5  # when a level has no singletons
LN2 = math.log(2.0)


class NGramError(ValueError):
    """Bad input to the n-gram baseline (an order, a split, a run directory); one line."""


def check_order(order) -> int:
    """``order`` when it is an integer in [1, MAX_ORDER]; an NGramError otherwise."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= MAX_ORDER:
        raise NGramError(f"the order must be an integer in [1, {MAX_ORDER}], got {order!r}")
    return int(order)


def kn_discounts(counts: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from the count-of-counts of ``counts`` (the module docstring's rule)."""
    n1, n2, n3, n4 = np.bincount(np.asarray(counts, dtype=np.int64), minlength=5)[1:5].astype(np.float64)
    if min(n1, n2, n3, n4) > 0:
        y = n1 / (n1 + 2 * n2)
        d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
        if np.all((d > 0) & (d <= np.arange(1, 4))):
            return np.concatenate([[0.0], d])
    plain = n1 / (n1 + 2 * n2) if n1 > 0 else FALLBACK_DISCOUNT
    return np.array([0.0, plain, plain, plain])


@dataclass
class _Counts:
    """One kind of count (raw or continuation) of one level: what a probability needs."""

    discounted: np.ndarray  # per k-gram: max(c - D(c), 0)
    total: np.ndarray  # per context: c(h .)
    gamma: np.ndarray  # per context: D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)
    discounts: np.ndarray  # [0, D1, D2, D3+]

    @classmethod
    def of(cls, counts: np.ndarray, contexts: np.ndarray, n_contexts: int) -> "_Counts":
        d = kn_discounts(counts)
        cut = d[np.minimum(counts, 3)]
        return cls(discounted=np.maximum(counts - cut, 0.0),
                   total=np.bincount(contexts, weights=counts, minlength=n_contexts).astype(np.float64),
                   gamma=np.bincount(contexts, weights=cut, minlength=n_contexts), discounts=d)


@dataclass
class _Level:
    """The k-grams of the training text: sorted keys (context number * K + character), their raw
    counts and, below the highest order, their continuation counts."""

    keys: np.ndarray
    raw: _Counts
    cont: _Counts | None


class NGram:
    """An interpolated modified Kneser-Ney character model of orders 1 .. ``order``."""

    def __init__(self, K: int, order: int, levels: list[_Level]) -> None:
        self.K, self.order, self.levels = K, order, levels

    # fitting -----------------------------------------------------------------------------------
    @classmethod
    def fit(cls, ids: np.ndarray, K: int, order: int) -> "NGram":
        """Count the k-grams (k = 1 .. order) of ``ids`` (int indices below K)."""
        x = np.asarray(ids)
        if x.ndim != 1 or x.size < 1 or not np.issubdtype(x.dtype, np.integer):
            raise NGramError("the n-gram needs a non-empty 1-d array of character indices")
        order = check_order(order)
        if not 0 <= x.min() <= x.max() < K:
            raise NGramError(f"character indices must lie in [0, K = {K})")
        x = x.astype(np.int64)
        n = len(x)
        keys, counts, suffixes = [], [], []
        prev = np.zeros(n, dtype=np.int64)  # number of the (k-1)-gram ending at t (-1: none)
        for k in range(1, order + 1):
            pair = x if k == 1 else prev[k - 2:n - 1] * K + x[k - 1:]  # empty when n < k
            uniq, first, inverse, count = np.unique(pair, return_index=True, return_inverse=True, return_counts=True)
            keys.append(uniq)
            counts.append(count)
            # the suffix of each k-gram: the (k-1)-gram ending where it ends (k = 1: the empty one)
            suffixes.append(np.zeros(len(uniq), np.int64) if k == 1 else prev[first + k - 1])
            prev = np.full(n, -1, dtype=np.int64)
            prev[k - 1:] = inverse.reshape(-1)
        levels = []
        for k in range(1, order + 1):
            contexts = keys[k - 1] // K
            n_contexts = 1 if k == 1 else len(keys[k - 2])
            cont = None
            if k < order:
                c = np.bincount(suffixes[k], minlength=len(keys[k - 1]))
                cont = _Counts.of(c, contexts, n_contexts)
            levels.append(_Level(keys[k - 1], _Counts.of(counts[k - 1], contexts, n_contexts), cont))
        return cls(K, order, levels)

    # looking up --------------------------------------------------------------------------------
    def _order(self, order: int | None) -> int:
        order = self.order if order is None else order
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= self.order:
            raise NGramError(f"order must be an integer in [1, {self.order}], got {order!r}")
        return int(order)

    @staticmethod
    def _find(keys: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The index of each key in the sorted ``keys``; -1 where absent or where key < 0."""
        if not len(keys):
            return np.full(len(key), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        return np.where((key >= 0) & (keys[at] == key), at, -1)

    def _numbers(self, x: np.ndarray, longest: int) -> np.ndarray:
        """(longest + 1, len(x)): row j, column t the number of the j-gram x[t-j+1 .. t] among the
        training text's j-grams (row 0: the empty gram, 0); -1 where unseen or t < j - 1."""
        n = len(x)
        out = np.full((longest + 1, n), -1, dtype=np.int64)
        out[0] = 0
        for j in range(1, min(longest, n) + 1):
            prefix = out[j - 1, j - 2:n - 1] if j > 1 else np.zeros(n, np.int64)
            out[j, j - 1:] = self._find(self.levels[j - 1].keys, np.where(prefix >= 0, prefix * self.K + x[j - 1:], -1))
        return out

    @staticmethod
    def _mix(counts: _Counts, h: np.ndarray, g: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """One level: P_k from P_{k-1} (``lower``) for contexts h and k-grams g (-1: unseen)."""
        hs = np.maximum(h, 0)
        total = np.where(h >= 0, counts.total[hs], 0.0) if len(counts.total) else np.zeros(len(h))
        seen = total > 0
        top = np.where(g >= 0, counts.discounted[np.maximum(g, 0)], 0.0) if len(counts.discounted) else 0.0
        gamma = counts.gamma[hs] if len(counts.gamma) else 0.0
        return np.where(seen, (top + gamma * lower) / np.where(seen, total, 1.0), lower)

    def _probs(self, ids: np.ndarray, start: int, end: int, longest: int) -> np.ndarray:
        """(longest, end - start): row k - 1 the probability the order-k model gives ids[t], t in
        [start, end), from the characters before it in ``ids``."""
        x = np.asarray(ids, dtype=np.int64)
        lo = max(0, start - (longest - 1))
        numbers = self._numbers(x[lo:max(lo, end - 1)], longest - 1)
        target = x[start:end]
        before = np.arange(start, end) - 1 - lo  # the column of the context's last character
        has = before >= 0
        p_cont = np.full(end - start, 1.0 / self.K)
        out = np.empty((longest, end - start))
        for k in range(1, longest + 1):
            level = self.levels[k - 1]
            h = np.zeros(end - start, np.int64) if k == 1 else \
                np.where(has, numbers[k - 1, np.maximum(before, 0)] if numbers.shape[1] else -1, -1)
            g = self._find(level.keys, np.where(h >= 0, h * self.K + target, -1))
            out[k - 1] = self._mix(level.raw, h, g, p_cont)
            if k < longest:
                p_cont = self._mix(level.cont, h, g, p_cont)
        return out

    # the public interface ----------------------------------------------------------------------
    def char_losses(self, ids: np.ndarray, start: int, end: int, order: int | None = None) -> np.ndarray:
        """The loss (nats) of predicting ids[t] for t in [start, end) from the order - 1
        characters before it in ``ids`` (fewer near ids' beginning)."""
        order = self._order(order)
        start, end = self._range(ids, start, end)
        return -np.log(self._probs(ids, start, end, order)[order - 1])

    def losses_by_order(self, ids: np.ndarray, start: int, end: int) -> np.ndarray:
        """(order, end - start): row k - 1 ``char_losses(ids, start, end, k)``, in one pass."""
        start, end = self._range(ids, start, end)
        return -np.log(self._probs(ids, start, end, self.order))

    def log_probs(self, context_ids, order: int | None = None) -> np.ndarray:
        """(K,) the log-probabilities of the next character after ``context_ids`` (its last
        order - 1 characters are used)."""
        order = self._order(order)
        x = self._checked(np.asarray(context_ids, dtype=np.int64).reshape(-1))
        x = x[max(0, len(x) - (order - 1)):] if order > 1 else x[:0]
        numbers = self._numbers(x, order - 1)
        p = np.full(self.K, 1.0 / self.K)
        chars = np.arange(self.K)
        for k in range(1, order + 1):
            level = self.levels[k - 1]
            h = np.full(self.K, 0 if k == 1 else (numbers[k - 1, -1] if len(x) >= k - 1 else -1), dtype=np.int64)
            g = self._find(level.keys, np.where(h >= 0, h * self.K + chars, -1))
            p = self._mix(level.raw if k == order else level.cont, h, g, p)
        return np.log(p)

    def generate(self, n: int, rng: np.random.Generator, prime_ids=(), temperature: float = 1.0,
                 top_p: float = 1.0, stop: int | None = None, order: int | None = None) -> np.ndarray:
        """n character indices drawn one by one after ``prime_ids`` (p ** (1 / temperature),
        renormalised; temperature 0: the likeliest; top_p: nucleus), stopping after ``stop``."""
        try:
            check_sampling(temperature, top_p)
        except ValueError as err:
            raise NGramError(str(err)) from None
        if n < 0:
            raise NGramError(f"the length must be >= 0, got {n}")
        order = self._order(order)
        context = [int(i) for i in np.asarray(prime_ids, dtype=np.int64).reshape(-1)]
        out: list[int] = []
        for _ in range(n):
            logp = self.log_probs(context[max(0, len(context) - (order - 1)):], order)
            if temperature == 0:
                ix = int(np.argmax(logp))
            else:
                z = logp / temperature
                p = np.exp(z - z.max())
                ix = draw(nucleus(p / p.sum(), top_p), rng)
            out.append(ix)
            context.append(ix)
            if ix == stop:
                break
        return np.array(out, dtype=np.int64)

    def _checked(self, x: np.ndarray) -> np.ndarray:
        if len(x) and not 0 <= x.min() <= x.max() < self.K:
            raise NGramError(f"character indices must lie in [0, K = {self.K})")
        return x

    def _range(self, ids, start: int, end: int) -> tuple[int, int]:
        n = len(ids)
        if not 0 <= start <= end <= n:
            raise NGramError(f"need 0 <= start <= end <= {n}, got start {start}, end {end}")
        self._checked(np.asarray(ids[max(0, start - self.order):end], dtype=np.int64))
        return int(start), int(end)


# --- the baseline on a corpus: held-out losses, samples, a run directory ---------------------------

def held_out_losses(model: NGram, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(order,) the mean loss (nats/char) of each order 1 .. model.order over the held-out segments
    (start, end): the characters start + 1 .. end - 1 of each, as ``train.evaluate`` predicts them."""
    predicted = [np.arange(int(s) + 1, int(e)) for s, e in zip(starts, ends)]
    t = np.concatenate(predicted) if predicted else np.zeros(0, np.int64)
    if not len(t):
        raise NGramError("the held-out part has no character to predict: raise the val_fraction")
    losses = model.losses_by_order(ids, int(t.min()), int(t.max()) + 1)  # all at once (tweets: one span)
    return losses[:, t - t.min()].mean(axis=1)


def sample_text(model: NGram, corpus: Corpus, length: int, rng: np.random.Generator, temperature: float = 1.0,
                top_p: float = 1.0, prime: str = "") -> str:
    """``prime`` and ``length`` characters after it (from no context when the prime is empty); a
    tweet corpus: a new tweet after the end-of-tweet character, ending at the next one or at 280
    characters, as ``sample.generate``."""
    if not corpus.is_tweets:
        return prime + corpus.decode(model.generate(length, rng, corpus.encode(prime), temperature, top_p))
    stop, limit, draws, prime_ids = tweet_frame(corpus, prime, length)
    return prime + corpus.decode(end_tweet(model.generate(draws, rng, prime_ids, temperature, top_p, stop), stop, limit))


def fit_corpus(corpus: Corpus, order: int, val_fraction: float) -> tuple[NGram, int, np.ndarray, np.ndarray]:
    """The model of the training part ``a4lib train --val-fraction`` uses, with the split
    (n_train, held-out starts, held-out ends)."""
    from .config import check_value
    from .train import split

    check_value("val_fraction", val_fraction)
    n_train, starts, ends = split(corpus, val_fraction)
    return NGram.fit(corpus.ids[:n_train], corpus.K, order), n_train, starts, ends


def corpus_path(corpus: Corpus) -> str | None:
    """Where a refit finds the corpus again: its absolute path (None for the builtin text)."""
    return None if corpus.name == BUILTIN else str(Path(corpus.name).resolve())


def run(corpus: Corpus, out: str | Path, order: int = DEFAULT_ORDER, val_fraction: float = DEFAULT_VAL_FRACTION,
        seed: int = 0, sample_length: int = 200, temperature: float = 1.0) -> tuple[dict, str]:
    """Fit, evaluate every order, sample, and write the run directory ``out`` (locked meanwhile:
    never over a run, nor beside another process writing one); the summary and the sample."""
    from .config import check_value
    from .rundir import NGRAM, RunLock, write_provenance
    from .train import RUN_FORMAT, split

    if str(out).strip() == "":
        raise NGramError("the run directory is an empty path: name one")
    out = Path(out)
    check_order(order)
    if seed < 0 or not 0 <= sample_length <= MAX_SAMPLE_LENGTH or not 0 <= temperature < math.inf:
        raise NGramError(f"need seed >= 0, 0 <= sample length <= {MAX_SAMPLE_LENGTH:,} and temperature >= 0, got "
                         f"{seed}, {sample_length} and {temperature}")
    if not len(split(corpus, check_value("val_fraction", val_fraction))[1]):  # a bad split: nothing is made
        raise NGramError("the n-gram is judged on held-out text: give a val_fraction above 0")
    with RunLock(out):
        if (out / "config.json").exists():
            raise NGramError(f"{out} already holds a run: choose another --out")
        began = time.perf_counter()
        model, n_train, starts, ends = fit_corpus(corpus, order, val_fraction)
        fitted = time.perf_counter()
        nats = held_out_losses(model, corpus.ids, starts, ends)
        evaluated = time.perf_counter()
        text = sample_text(model, corpus, sample_length, np.random.default_rng(seed), temperature)
        ckpt.write_json(out / "config.json", {
            "model": NGRAM, "ngram_order": order, "corpus": corpus.name, "corpus_sha256": corpus.sha256,
            "corpus_path": corpus_path(corpus), "val_fraction": val_fraction, "K": corpus.K, "seed": seed,
            "sample_length": sample_length, "temperature": temperature, "format": RUN_FORMAT,
        })
        write_provenance(out)
        ckpt.write_json(out / "samples.json", [{"update": 0, "smooth_loss": None, "text": text}])
        ckpt.save_arrays(out / "history.npz", {
            "loss": np.zeros(0), "smooth_loss": np.zeros(0), "seconds": np.zeros(0),
            "epoch_starts": np.zeros(1, np.int64), "val_update": np.zeros(1, np.int64), "val_loss": nats[-1:],
        })
        summary = {
            "status": "finished", "signal": None, "format": RUN_FORMAT, "model": NGRAM, "ngram_order": order,
            "updates": 0, "best_smooth_loss": None, "best_val_loss": float(nats[-1]), "best_update": 0,
            "final_smooth_loss": None, "final_val_loss": float(nats[-1]),
            "val_loss_by_order": [float(v) for v in nats], "val_bits_by_order": [float(v / LN2) for v in nats],
            "discounts_by_order": [[float(d) for d in level.raw.discounts[1:]] for level in model.levels],
            "seconds": round(evaluated - began, 3), "fit_seconds": round(fitted - began, 3),
            "eval_seconds": round(evaluated - fitted, 3), "n_train_chars": n_train,
            "n_val_chars": int(sum(int(e) - int(s) - 1 for s, e in zip(starts, ends) if e - s >= 2)),
            "corpus": {k: v for k, v in corpus.stats(seq_length=1).items() if k != "n_sequences"},
        }
        ckpt.write_json(out / "summary.json", summary)
    return summary, text


def read_ngram_config(run_dir: str | Path) -> dict:
    """config.json of an n-gram run, checked: an object with model "ngram", an integer ngram_order
    in [1, MAX_ORDER], a val_fraction, the corpus, its sha256 and (optional) its absolute path; an
    NGramError naming the file otherwise."""
    from .config import check_value
    from .rundir import NGRAM

    path = Path(run_dir) / "config.json"
    try:
        config = ckpt.read_json(path)
    except OSError as err:
        raise NGramError(f"{path}: cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # RunFileError: not JSON, it says so
        raise NGramError(str(err)) from None
    if not isinstance(config, dict) or config.get("model") != NGRAM:
        raise NGramError(f"{path}: not the settings of an n-gram run")
    try:
        check_order(config.get("ngram_order"))
        check_value("val_fraction", config.get("val_fraction"))
    except ValueError as err:
        raise NGramError(f"{path}: {err}") from None
    for key in ("corpus", "corpus_sha256"):
        if not isinstance(config.get(key), str):
            raise NGramError(f"{path}: {key} = {str(config.get(key))[:40]!r} is not a string")
    if not isinstance(config.get("corpus_path"), (str, type(None))):
        raise NGramError(f"{path}: corpus_path = {str(config['corpus_path'])[:40]!r} is not a path")
    return config


def is_ngram_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds an n-gram run (its config.json an object saying model "ngram")."""
    from .rundir import NGRAM, read_json_or

    try:
        config = read_json_or(Path(run_dir) / "config.json")
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model") == NGRAM


def generate_from_run(run_dir: str | Path, length: int, rng: np.random.Generator, temperature: float = 1.0,
                      top_p: float = 1.0, prime: str = "") -> str:
    """Text from an n-gram run: the counts refitted from its corpus (the same sha256) and split."""
    from .rundir import RunDirError, run_text

    config = read_ngram_config(run_dir)
    recorded = [p for p in (config.get("corpus_path"),) if p is not None] + [config["corpus"]]
    try:
        corpus = run_text(run_dir, config["corpus_sha256"], recorded)
    except RunDirError as err:
        raise NGramError(str(err)) from None
    model, _, _, _ = fit_corpus(corpus, config["ngram_order"], config["val_fraction"])
    return sample_text(model, corpus, length, rng, temperature, top_p, prime)


# --- the command line: a4lib ngram -------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, only=("corpus",))
    p.add_argument("--order", type=int, default=DEFAULT_ORDER,
                   help=f"the highest order N (at most {MAX_ORDER}); orders 1 .. N are evaluated")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="the final part of the text held out, as `a4lib train --val-fraction`")
    p.add_argument("--out", required=True, help="the run directory (created; refused if it holds a run)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sample (default: 0)")
    p.add_argument("--sample-length", type=int, default=200, help=f"characters in the sample (at most {MAX_SAMPLE_LENGTH:,})")
    p.add_argument("--temperature", type=float, default=1.0, help="the sample's temperature (0: the likeliest)")


def command(a: argparse.Namespace) -> int:
    """``a4lib ngram``: the table of held-out loss per order, and a sample."""
    corpus = load_corpus(getattr(a, "corpus", None))
    s, text = run(corpus, a.out, a.order, a.val_fraction, a.seed, a.sample_length, a.temperature)
    print(f"{corpus.name}: {s['n_train_chars']:,} training characters, {s['n_val_chars']:,} held out, K = {corpus.K}; "
          f"fit and evaluation {s['seconds']:.1f} s")
    print("order  nats/char  bits/char")
    for k, (nats, bits) in enumerate(zip(s["val_loss_by_order"], s["val_bits_by_order"]), start=1):
        print(f"{k:>5}  {nats:9.4f}  {bits:9.4f}")
    print(f"\n--- sample (order {a.order}, seed {a.seed}, temperature {a.temperature})")
    print(text)
    return 0
