"""Seeing inside a trained network (issue 16): what its units and gates compute along a text, which
features of the text single units track, and which characters it predicts better than the n-gram.

Numbers in, numbers out: the colouring lives in ``a4lib.inside_display``, the words in
``notebooks/inside.ipynb``. The tools are those of Karpathy, Johnson and Fei-Fei (2015),
"Visualizing and understanding recurrent networks":

- ``read``: every layer's hidden state h and gates (an LSTM's i, f, o, g and cell state c; a GRU's
  z, r, n) and the next-character probabilities p along a text, the state carried from chunk to chunk;
- ``features``: features computed from the text alone (inside double quotes, position in the line,
  ...), one value per character, meaning the state after reading it; ``search``: the correlation
  of every unit with every feature, the best unit per feature and the share of units with |r| > 0.5;
- ``saturation``: the fraction of time each gate unit spends below 0.1 and above 0.9;
- ``top_predictions``: the k likeliest next characters after each character;
- ``held_out_losses``: the loss of the network and of the n-gram on every held-out character (the
  characters ``train.evaluate`` and ``ngram.held_out_losses`` predict); ``class_losses``: their mean
  per character class and each class's part of the difference; ``by_distance``: the loss of closing
  a quote, a parenthesis or a line as a function of how far back it was opened.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..corpus import Corpus, CorpusError
from ..model import Network

CHUNK = 4096  # characters per call of Network.trace (its caches grow with the length)
LEFT, RIGHT = 0.1, 0.9  # a gate is left-saturated below LEFT, right-saturated above RIGHT (the 2015 paper)
INTERPRETABLE = 0.5  # a unit is "interpretable" when |r| > this for some feature
#: the gates of the 2015 paper's saturation plot (an LSTM's candidate g and a GRU's n are not gates)
GATES = {"lstm": ("i", "f", "o"), "gru": ("z", "r")}
GATE_NAMES = {"i": "input gate", "f": "forget gate", "o": "output gate", "z": "update gate", "r": "reset gate"}

OPEN_QUOTES, CLOSE_QUOTES, STRAIGHT_QUOTE = "“„«", "”»", '"'
QUOTE_MARKS = OPEN_QUOTES + CLOSE_QUOTES + STRAIGHT_QUOTE
SENTENCE_END = ".!?"
#: a straight quote after one of these (or at the start) opens; after anything else it closes
OPENS_AFTER = " \t\n([{—–-"

FEATURES = ("inside quotes", "inside parentheses", "position in line", "position in word", "in a word",
            "start of sentence", "capital next", "space next", "newline next", "in an upper-case word")
#: one class per predicted character (a partition, so that the classes' parts add up to the whole)
CLASSES = ("capital", "word start", "inside word", "space", "newline", "punctuation", "quote mark", "other")
DEPENDENCIES = ("quote", "parenthesis", "line")
DISTANCE_EDGES = (1, 4, 8, 16, 32, 64, 128, 256, 512)  # bins [1, 4), [4, 8), ..., [512, inf)


class InsideError(ValueError):
    """A run, a text or a setting the analysis cannot use (one line, also in a notebook)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


# --- the run ------------------------------------------------------------------------------------

@dataclass
class RunModel:
    """A run's network (numpy backend, no dropout), parameters, vocabulary and the state it had."""

    run_dir: Path
    network: Network
    params: dict
    vocab: Corpus
    meta: dict
    state: np.ndarray  # (L S,) stream 0's state at the parameters' update (zero when not saved)

    @property
    def cell(self) -> str:
        return self.network.name

    @property
    def layers(self) -> int:
        return self.network.layers

    @property
    def val_fraction(self) -> float:
        return float(self.meta["config"].get("val_fraction") or 0.0)

    def start_state(self) -> np.ndarray:
        """The state a text is read from: the run's own for plain text (as its held-out evaluation),
        zero for tweets (each tweet starts from h = 0)."""
        return self.network.zero_state(self.params) if self.vocab.is_tweets else self.state.copy()


def load_model(run_dir: str | Path, which: str = "best") -> RunModel:
    """The network of a training run directory with its ``best`` (or ``last``) parameters."""
    from ..checkpoint import CheckpointError, load_params, load_state
    from ..model import make_network

    run_dir = Path(run_dir)
    try:
        params, meta = load_params(run_dir, which)
        state = load_state(run_dir, which)
    except CheckpointError as err:
        raise InsideError(str(err)) from None
    c = meta["corpus"]
    vocab = Corpus.from_vocabulary(c["chars"], c.get("name", str(run_dir)), c.get("is_tweets"))
    network = make_network(meta["config"], vocab.K, backend="numpy")
    if state is None:  # load_state has checked the shape of a saved one
        state = network.zero_state(params)
    return RunModel(run_dir, network, params, vocab, meta, np.asarray(state, params["W"].dtype))


def run_corpus(model: RunModel, corpus: str | Path | None = None) -> Corpus:
    """The text the run trained on: ``corpus`` when given, else where its checkpoint says
    (``rundir.run_text``); its sha256 must be the run's."""
    from ..rundir import RunDirError, checkpoint_texts, run_text

    try:
        return run_text(model.run_dir, model.meta["corpus"].get("sha256"), checkpoint_texts(model.meta), corpus)
    except RunDirError as err:
        raise InsideError(str(err)) from None


def held_out_segments(corpus: Corpus, val_fraction: float) -> list[tuple[int, int]]:
    """The (start, end) segments of the held-out part (``train.split``'s); empty without one."""
    from ..train import split

    _, starts, ends = split(corpus, val_fraction)
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e - s >= 2]


def check_settings(model: RunModel, layer: int | None, name: str | None, **counts: int | None) -> None:
    """An InsideError for a layer the network does not have, units it does not have (h; an LSTM's
    cell state c; None: ``units_searched``'s choice) or a count (``counts``: name -> value; None
    allowed) below 1."""
    if layer is not None and not 1 <= layer <= model.layers:
        raise InsideError(f"layer = {layer} is not allowed: the network has layers 1 .. {model.layers}")
    allowed = ("h", "c") if model.cell == "lstm" else ("h",)
    if name is not None and name not in allowed:
        raise InsideError(f"activation = {name!r} is not allowed: the {model.cell} has {' and '.join(allowed)}")
    for key, value in counts.items():
        if value is not None and value < 1:
            raise InsideError(f"{key} = {value} is not allowed: expected >= 1")


def units_searched(model: RunModel, name: str | None) -> str:
    """The units to search: ``name``, or by default an LSTM's cell states c (the 2015 paper's
    "cells") and every other network's hidden states h."""
    return name if name is not None else "c" if model.cell == "lstm" else "h"


def study_text(model: RunModel, corpus: Corpus, text: str | None, length: int) -> tuple[str, str]:
    """The first ``length`` characters to read and where they come from: ``text`` ("given"), else
    the held-out part ("held-out"), else, for a run that held nothing out, the end of its text
    ("training")."""
    if text is not None:
        encode(model, text)
        return text[:length], "given"
    segments = held_out_segments(corpus, model.val_fraction)
    if segments:
        return corpus.text[segments[0][0]:segments[0][0] + length], "held-out"
    return corpus.text[max(0, len(corpus.text) - length):], "training"


def encode(model: RunModel, text: str) -> np.ndarray:
    """The text as the run's character indices; an InsideError naming characters it never saw."""
    if not text:
        raise InsideError("the text is empty")
    try:
        return model.vocab.encode(text)
    except CorpusError as err:
        raise InsideError(f"the text has characters the run never saw: {str(err).split(': ', 1)[-1]}") from None


# --- reading a text -----------------------------------------------------------------------------

@dataclass
class Reading:
    """What a network computed along a text: per layer its activations (T, m) by name ("h" and the
    gates; an LSTM's cell state "c"), and p (T, K), the next-character probabilities after each
    character."""

    text: str
    layers: list[dict[str, np.ndarray]]
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.text)

    def names(self) -> list[str]:
        """The activations each layer holds: "h", then the cell's gates (and "c")."""
        return ["h"] + [k for k in self.layers[0] if k != "h"]

    def window(self, start: int, end: int) -> "Reading":
        """The reading of text[start:end]."""
        return Reading(self.text[start:end], [{k: v[start:end] for k, v in layer.items()} for layer in self.layers],
                       self.p[start:end])


def _last_state(layers: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The state after the last step of a trace: each layer's [h] ([h, c] for an LSTM) side by
    side, the layout ``Network`` carries."""
    return np.concatenate([np.concatenate([layer["h"][-1], layer["c"][-1]]) if "c" in layer else layer["h"][-1]
                           for layer in layers])


def _traces(model: RunModel, ids: np.ndarray, state0: np.ndarray, chunk: int = CHUNK):
    """``Network.trace`` over ``ids`` in chunks, the state carried: each chunk's trace in turn."""
    state = state0
    for a in range(0, len(ids), chunk):
        trace = model.network.trace(model.params, ids[a:a + chunk], state)
        state = _last_state(trace["layers"])
        yield trace


def read(model: RunModel, text: str, state0: np.ndarray | None = None, chunk: int = CHUNK) -> Reading:
    """Everything the network computes along ``text`` from ``state0`` (default: ``start_state``)."""
    ids = encode(model, text)
    traces = list(_traces(model, ids, model.start_state() if state0 is None else state0, chunk))
    layers = [{k: np.concatenate([t["layers"][l][k] for t in traces]) for k in traces[0]["layers"][l]}
              for l in range(model.layers)]
    return Reading(text, layers, np.concatenate([t["p"] for t in traces]))


def activation(reading: Reading, name: str, layer: int) -> np.ndarray:
    """(T, m) activations ``name`` of ``layer`` (1-based) in the range they are coloured over: h in
    [-1, 1], the gates in [0, 1] (tanh's candidates g and n in [-1, 1]) and an LSTM's cell state c
    as tanh(c), which is what its output gate reads."""
    if not 1 <= layer <= len(reading.layers):
        raise InsideError(f"layer must be in [1, {len(reading.layers)}], got {layer}")
    acts = reading.layers[layer - 1]
    if name not in acts:
        raise InsideError(f"this network has no {name!r} (it has {', '.join(reading.names())})")
    return np.tanh(acts[name]) if name == "c" else acts[name]


def value_range(name: str) -> tuple[float, float]:
    """The range an activation is coloured over: the sigmoid gates [0, 1], the rest [-1, 1]."""
    return (0.0, 1.0) if name in GATE_NAMES else (-1.0, 1.0)


# --- features of the text -----------------------------------------------------------------------

def features(text: str) -> dict[str, np.ndarray]:
    """Each feature of ``FEATURES`` for every character of ``text``: (T,) floats, each the state after
    reading that character (the "next" ones: what the following character is).

    inside quotes: 1 from an opening double quote (“, or a straight " at the start or after a space,
    a line break or an opening bracket) to the character before its closing one (”, or any other ");
    a blank line closes an open quote. inside parentheses: 1 while more ( than ) have been read.
    position in line: characters since the last line break (0 on it). position in word: the
    letters read since the last non-letter (0 on a non-letter); in a word: 1 on a letter. start of
    sentence: 1 from a sentence's end (. ! ?) and at the start, until the next letter. in an
    upper-case word: 1 when the word read so far has two or more letters, all capitals.
    """
    T = len(text)
    out = {name: np.zeros(T) for name in FEATURES}
    quote = depth = line = word = upper = 0
    sentence = 1
    prev = ""
    for t, ch in enumerate(text):
        if ch in OPEN_QUOTES or (ch == STRAIGHT_QUOTE and (prev == "" or prev in OPENS_AFTER)):
            quote = 1
        elif ch in CLOSE_QUOTES or ch == STRAIGHT_QUOTE or (ch == "\n" and prev == "\n"):
            quote = 0
        depth = depth + 1 if ch == "(" else max(0, depth - 1) if ch == ")" else depth
        line = 0 if ch == "\n" else line + 1
        if ch.isalpha():
            word += 1
            upper = upper + 1 if ch.isupper() and upper == word - 1 else 0
            sentence = 0
        else:
            word = upper = 0
            if ch in SENTENCE_END:
                sentence = 1
        nxt = text[t + 1] if t + 1 < T else ""
        for name, value in (("inside quotes", quote), ("inside parentheses", depth > 0), ("position in line", line),
                            ("position in word", word), ("in a word", word > 0), ("start of sentence", sentence),
                            ("capital next", nxt.isupper()), ("space next", nxt == " "),
                            ("newline next", nxt == "\n"), ("in an upper-case word", upper >= 2)):
            out[name][t] = value
        prev = ch
    return out


def correlations(acts: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """(N, F) Pearson r of each column of ``acts`` (T, N) with each column of ``feats`` (T, F);
    NaN where either is constant."""
    a = np.asarray(acts, np.float64)
    f = np.asarray(feats, np.float64)
    a = a - a.mean(axis=0)
    f = f - f.mean(axis=0)
    na, nf = np.sqrt((a * a).sum(axis=0)), np.sqrt((f * f).sum(axis=0))
    scale = np.outer(na, nf)
    small = scale <= 1e-12 * max(1.0, len(a))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a.T @ f) / np.where(small, 1.0, scale)
    r[small] = np.nan
    return np.clip(r, -1.0, 1.0)


@dataclass(frozen=True)
class BestUnit:
    """The unit that tracks a feature best: its layer (1-based), index, r, and how often the
    feature is on (its mean over the text; for a count such as the position in the line, its mean)."""

    feature: str
    layer: int
    unit: int
    r: float
    feature_mean: float


@dataclass
class UnitSearch:
    """Every unit's correlation with every feature over a text of n characters."""

    name: str  # the activation searched: "h" or "c"
    feature_names: list[str]
    units: list[tuple[int, int]]  # (layer, unit) of each row of r
    r: np.ndarray  # (N, F), NaN for a feature constant over the text
    feature_means: np.ndarray  # (F,)
    n: int

    @property
    def present(self) -> list[str]:
        """The features that vary over the text (the others have no correlation)."""
        return [f for j, f in enumerate(self.feature_names) if not np.all(np.isnan(self.r[:, j]))]

    @property
    def absent(self) -> list[str]:
        return [f for f in self.feature_names if f not in self.present]

    def best(self) -> list[BestUnit]:
        """The unit with the largest |r| for each present feature, the largest |r| first."""
        rows = []
        for j, f in enumerate(self.feature_names):
            col = np.abs(self.r[:, j])
            if np.all(np.isnan(col)):
                continue
            i = int(np.nanargmax(col))
            layer, unit = self.units[i]
            rows.append(BestUnit(f, layer, unit, float(self.r[i, j]), float(self.feature_means[j])))
        return sorted(rows, key=lambda b: -abs(b.r))

    def _abs_r(self) -> np.ndarray:
        """(N, F) |r|, 0 where r is NaN (a feature or a unit constant over the text)."""
        return np.nan_to_num(np.abs(self.r), nan=0.0)

    def max_abs_r(self) -> np.ndarray:
        """(N,) each unit's largest |r| over the features (0 for a unit constant over the text)."""
        return self._abs_r().max(axis=1) if self.r.size else np.zeros(len(self.units))

    def interpretable_share(self, threshold: float = INTERPRETABLE) -> float:
        """The share of units with |r| > threshold for some feature."""
        return float(np.mean(self.max_abs_r() > threshold))

    def top_units(self, n: int) -> list[tuple[int, int, str, float]]:
        """The n units with the largest |r| for some feature: (layer, unit, feature, r); units that
        correlate with no feature (constant ones, or no feature present) are left out."""
        best = self.max_abs_r()
        rows = []
        for i in np.argsort(-best, kind="stable")[:n]:
            if best[i] == 0:
                break
            j = int(np.argmax(self._abs_r()[i]))
            rows.append((self.units[i][0], self.units[i][1], self.feature_names[j], float(self.r[i, j])))
        return rows


def search(reading: Reading, name: str = "h", layer: int | None = None) -> UnitSearch:
    """Correlate the units ``name`` of ``layer`` (None: every layer) with ``features(reading.text)``."""
    layers = range(1, len(reading.layers) + 1) if layer is None else [layer]
    acts, units = [], []
    for l in layers:
        a = activation(reading, name, l)
        acts.append(a)
        units += [(l, u) for u in range(a.shape[1])]
    feats = features(reading.text)
    F = np.stack([feats[f] for f in FEATURES], axis=1)
    return UnitSearch(name, list(FEATURES), units, correlations(np.concatenate(acts, axis=1), F), F.mean(axis=0),
                      len(reading))


# --- gates ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateSaturation:
    """One gate of one layer: per unit the fraction of time it is below LEFT and above RIGHT."""

    layer: int
    gate: str
    left: np.ndarray  # (m,)
    right: np.ndarray  # (m,)

    @property
    def mean_left(self) -> float:
        return float(self.left.mean())

    @property
    def mean_right(self) -> float:
        return float(self.right.mean())

    def n_mostly(self, side: str, share: float = 0.5) -> int:
        """How many units spend more than ``share`` of the time saturated on ``side`` (left | right)."""
        return int(np.sum((self.left if side == "left" else self.right) > share))

    @property
    def n_never(self) -> int:
        """Units saturated less than 10 % of the time on either side (working in the middle)."""
        return int(np.sum(self.left + self.right < 0.1))


def saturation(reading: Reading, cell: str) -> list[GateSaturation]:
    """Every gate (``GATES[cell]``) of every layer; empty for the vanilla RNN."""
    return [GateSaturation(l, g, (layer[g] < LEFT).mean(axis=0), (layer[g] > RIGHT).mean(axis=0))
            for l, layer in enumerate(reading.layers, start=1) for g in GATES.get(cell, ())]


# --- predictions ----------------------------------------------------------------------------------

def top_predictions(p: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(T, k) the indices of the k likeliest next characters after each character, likeliest
    first, and (T, k) their probabilities."""
    k = min(k, p.shape[1])
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(p, ids, axis=1)


# --- the network against the n-gram on the held-out part ------------------------------------------

def ngram_model(corpus: Corpus, val_fraction: float, ngram_run: str | Path | None = None, order: int | None = None):
    """The n-gram of the training part of the run's split: an ``a4lib ngram`` run's order (its text
    and split must be the run's), else ``order`` (default ``ngram.DEFAULT_ORDER``), fitted here."""
    from .. import ngram
    from ..train import split

    if ngram_run is not None:
        try:
            config = ngram.read_ngram_config(ngram_run)
        except ngram.NGramError as err:
            raise InsideError(str(err)) from None
        if config.get("corpus_sha256") != corpus.sha256:
            raise InsideError(f"{ngram_run} counted another text than {corpus.name}")
        if not math.isclose(float(config.get("val_fraction", -1)), val_fraction):
            raise InsideError(f"{ngram_run} held out {config.get('val_fraction')} of the text, the network "
                              f"{val_fraction}: not the same held-out part")
        order = int(config["ngram_order"]) if order is None else order
    order = ngram.DEFAULT_ORDER if order is None else order
    n_train, _, _ = split(corpus, val_fraction)
    try:
        return ngram.NGram.fit(corpus.ids[:n_train], corpus.K, order)
    except ngram.NGramError as err:
        raise InsideError(str(err)) from None


@dataclass
class HeldOutLosses:
    """The loss (nats) of each model on each character of a stretch of the text: text[i] is the
    corpus's character start + i; a loss is NaN where it is not predicted (a segment's first)."""

    start: int
    text: str
    net: np.ndarray
    ngram: np.ndarray
    ngram_order: int

    @property
    def predicted(self) -> np.ndarray:
        return ~np.isnan(self.net)

    @property
    def n(self) -> int:
        return int(self.predicted.sum())

    def means(self) -> tuple[float, float]:
        """Mean loss per predicted character: network, n-gram."""
        ok = self.predicted
        return float(self.net[ok].mean()), float(self.ngram[ok].mean())


def network_losses(model: RunModel, ids: np.ndarray, start: int, end: int,
                   state0: np.ndarray | None = None) -> np.ndarray:
    """(end - start - 1,) the network's loss on ids[start + 1 .. end - 1], each predicted from the
    characters from ``start`` on, read from ``state0`` (default: ``start_state``)."""
    x, y = ids[start:end - 1], ids[start + 1:end]
    out, a = np.empty(len(y)), 0
    for trace in _traces(model, x, model.start_state() if state0 is None else state0):
        p = trace["p"]
        picked = p[np.arange(len(p)), y[a:a + len(p)]].astype(np.float64)
        out[a:a + len(p)] = -np.log(np.maximum(picked, np.finfo(np.float64).tiny))
        a += len(p)
    return out


def held_out_losses(model: RunModel, corpus: Corpus, ngram, max_chars: int | None = None) -> HeldOutLosses:
    """Both models' losses on the held-out characters the run's evaluation predicts (each segment's
    characters after its first), the network reading each segment as one stream (plain text from
    the run's state, tweets from zero; the run's own evaluation cuts plain text into several streams,
    so its mean differs slightly); the first ``max_chars`` of them only when given."""
    segments = held_out_segments(corpus, model.val_fraction)
    if not segments:
        raise InsideError(f"{model.run_dir} held nothing out (val_fraction {model.val_fraction}): no error analysis")
    if max_chars is not None:
        kept, left = [], max_chars
        for s, e in segments:
            if left <= 0:
                break
            kept.append((s, min(e, s + 1 + left)))
            left -= kept[-1][1] - kept[-1][0] - 1
        segments = [(s, e) for s, e in kept if e - s >= 2]
    lo, hi = segments[0][0], segments[-1][1]
    net = np.full(hi - lo, np.nan)
    for s, e in segments:
        net[s + 1 - lo:e - lo] = network_losses(model, corpus.ids, s, e)
    ng = np.full(hi - lo, np.nan)
    ng[1:] = ngram.char_losses(corpus.ids, lo + 1, hi)  # contexts from the text before, as ngram.held_out_losses
    ng[np.isnan(net)] = np.nan
    return HeldOutLosses(lo, corpus.text[lo:hi], net, ng, ngram.order)


def char_classes(text: str) -> np.ndarray:
    """(T,) the index in ``CLASSES`` of each character: an upper-case letter is a capital; another
    letter starts a word after a non-letter, else is inside one; a line break is a newline, other
    white space a space; double quotes are quote marks; other punctuation (Unicode P*) punctuation;
    the rest (digits, symbols, control characters) other."""
    out = np.empty(len(text), np.int64)
    prev = ""
    index = {c: i for i, c in enumerate(CLASSES)}
    for t, ch in enumerate(text):
        if ch.isalpha():
            kind = "capital" if ch.isupper() else "inside word" if prev.isalpha() else "word start"
        elif ch == "\n":
            kind = "newline"
        elif ch.isspace():
            kind = "space"
        elif ch in QUOTE_MARKS:
            kind = "quote mark"
        elif unicodedata.category(ch).startswith("P"):
            kind = "punctuation"
        else:
            kind = "other"
        out[t] = index[kind]
        prev = ch
    return out


@dataclass(frozen=True)
class ClassLoss:
    """One class of characters: how many, each model's mean loss, and its part of the difference."""

    name: str
    count: int
    share: float  # of the predicted characters
    net: float | None
    ngram: float | None

    @property
    def advantage(self) -> float | None:
        """How much lower the network's mean loss is than the n-gram's (nats/char; < 0: higher)."""
        return None if self.count == 0 else self.ngram - self.net

    @property
    def contribution(self) -> float:
        """This class's part of the overall advantage: share x advantage (the parts add up to it)."""
        return 0.0 if self.count == 0 else self.share * self.advantage


@dataclass
class ClassLosses:
    rows: list[ClassLoss]
    net: float  # mean loss per character over all classes
    ngram: float

    @property
    def advantage(self) -> float:
        """The network's overall advantage (n-gram minus network, nats/char; < 0: the n-gram is better)."""
        return self.ngram - self.net

    def ranked(self) -> list[ClassLoss]:
        """The classes with characters, the largest part of the overall difference (in its direction) first."""
        sign = 1.0 if self.advantage >= 0 else -1.0
        return sorted((r for r in self.rows if r.count), key=lambda r: -sign * r.contribution)

    def part(self, name: str) -> float | None:
        """The share of the overall difference that class ``name`` accounts for (None without one)."""
        if self.advantage == 0:
            return None
        return next(r.contribution for r in self.rows if r.name == name) / self.advantage


def class_losses(losses: HeldOutLosses) -> ClassLosses:
    """Both models' mean loss per class of the predicted character (``char_classes``)."""
    ok = losses.predicted
    classes = char_classes(losses.text)[ok]
    net, ng = losses.net[ok], losses.ngram[ok]
    rows = []
    for i, name in enumerate(CLASSES):
        sel = classes == i
        n = int(sel.sum())
        rows.append(ClassLoss(name, n, n / len(net), float(net[sel].mean()) if n else None,
                              float(ng[sel].mean()) if n else None))
    return ClassLosses(rows, float(net.mean()), float(ng.mean()))


def dependency_events(text: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Where a long-range dependency closes and how far back it opened: (positions, distances).

    quote: each closing double quote (as ``features`` reads them) and the distance from its opening
    one; parenthesis: each ) and the distance from the ( it closes; line: each line break and the
    characters since the line began (the previous line break; the text's first line is left out).
    """
    if kind not in DEPENDENCIES:
        raise InsideError(f"unknown dependency {kind!r} (choose from {', '.join(DEPENDENCIES)})")
    pos, dist = [], []
    if kind == "line":
        breaks = [t for t, ch in enumerate(text) if ch == "\n"]
        pos = breaks[1:]
        dist = [b - a for a, b in zip(breaks, breaks[1:])]
    elif kind == "parenthesis":
        stack: list[int] = []
        for t, ch in enumerate(text):
            if ch == "(":
                stack.append(t)
            elif ch == ")" and stack:
                pos.append(t)
                dist.append(t - stack.pop())
    else:
        inside = features(text)["inside quotes"]
        opened = None
        for t, ch in enumerate(text):
            if inside[t] and ch in QUOTE_MARKS:  # an opening mark (also one that reopens a quote)
                opened = t
            elif ch in QUOTE_MARKS and not inside[t] and t and inside[t - 1] and opened is not None:
                pos.append(t)
                dist.append(t - opened)
                opened = None
    return np.asarray(pos, np.int64), np.asarray(dist, np.int64)


@dataclass(frozen=True)
class DistanceBin:
    lo: int
    hi: float  # math.inf for the last bin
    count: int
    net: float
    ngram: float


def by_distance(losses: HeldOutLosses, kind: str, edges=DISTANCE_EDGES) -> list[DistanceBin]:
    """The mean loss of each model on the closing character of a dependency (``dependency_events``),
    binned by its distance; bins without events left out."""
    pos, dist = dependency_events(losses.text, kind)
    ok = losses.predicted[pos] if len(pos) else np.zeros(0, bool)
    pos, dist = pos[ok], dist[ok]
    bounds = list(edges) + [math.inf]
    rows = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sel = (dist >= lo) & (dist < hi)
        if sel.any():
            rows.append(DistanceBin(int(lo), hi, int(sel.sum()), float(losses.net[pos[sel]].mean()),
                                    float(losses.ngram[pos[sel]].mean())))
    return rows


@dataclass(frozen=True)
class Closings:
    """Closings of one kind in one range of distances: how many, each model's mean loss, and the
    network's edge (n-gram minus network, mean over the closings) with its standard error."""

    count: int
    net: float | None
    ngram: float | None
    edge: float | None
    edge_se: float | None


def _closings(losses: HeldOutLosses, pos: np.ndarray) -> Closings:
    if not len(pos):
        return Closings(0, None, None, None, None)
    net, ng = losses.net[pos], losses.ngram[pos]
    gap = ng - net
    se = float(gap.std(ddof=1) / math.sqrt(len(gap))) if len(gap) > 1 else None
    return Closings(len(pos), float(net.mean()), float(ng.mean()), float(gap.mean()), se)


@dataclass(frozen=True)
class Reach:
    """Closing a dependency within the n-gram's context (the opening less than ``order`` characters
    back, so in its context) and beyond it."""

    kind: str
    order: int
    near: Closings
    far: Closings

    def far_edge_larger(self, z: float = 2.0) -> bool | None:
        """Whether the network's edge beyond the n-gram's context exceeds its edge within it by more
        than ``z`` standard errors of the difference (None: too few closings on a side to tell)."""
        if self.near.edge_se is None or self.far.edge_se is None:
            return None
        return self.far.edge - self.near.edge > z * math.hypot(self.near.edge_se, self.far.edge_se)


def reach(losses: HeldOutLosses, kind: str) -> Reach:
    """Both models' losses on the closings that the n-gram's context can still see (the opening at
    most order - 1 characters back) and on those it cannot."""
    pos, dist = dependency_events(losses.text, kind)
    ok = losses.predicted[pos] if len(pos) else np.zeros(0, bool)
    pos, dist = pos[ok], dist[ok]
    near = dist < losses.ngram_order
    return Reach(kind, losses.ngram_order, _closings(losses, pos[near]), _closings(losses, pos[~near]))


def longest_dependency(losses: HeldOutLosses, min_events: int = 20) -> str | None:
    """The dependency to study: quotes, else parentheses, else lines, the first with at least
    ``min_events`` closings beyond the n-gram's context (None: none has)."""
    for kind in DEPENDENCIES:
        if reach(losses, kind).far.count >= min_events:
            return kind
    return None
