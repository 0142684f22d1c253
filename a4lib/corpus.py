"""The text a model learns from: characters, the sorted vocabulary, indices, statistics.

A corpus is one of
- a UTF-8 text file (the handout: ``data/goblet_book.txt``);
- a JSON list of tweet objects with a ``text`` field: HTML entities decoded and each tweet
  between end-of-tweet characters ``EOT``; the tweets' offsets are kept so that training can
  reset h at each one;
- ``builtin:python-docs``: the documentation text every Python carries (``pydoc_data.topics``),
  joined in sorted key order, for machines without the course's text.
"""
from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BUILTIN = "builtin:python-docs"
DEFAULT_PATH = Path("data") / "goblet_book.txt"  # in the project folder
EOT = "\x03"  # end of tweet: ASCII "end of text"; never occurs in ordinary prose
TWEET_MAX_CHARS = 280


class CorpusError(ValueError):
    """A corpus that cannot be used; the message names the file and the problem."""


@dataclass
class Corpus:
    """A text, its vocabulary and its characters as indices.

    ``ids`` has shape (n_chars,); ``chars[i]`` is the character of index i; ``starts`` holds the
    offsets where an independent document begins (tweets), ``[0]`` for plain text.
    """

    name: str
    text: str
    sha256: str
    chars: list[str] = field(init=False)
    char_to_ix: dict[str, int] = field(init=False)
    ids: np.ndarray = field(init=False)
    starts: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    is_tweets: bool = False  # a tweet corpus: EOT ends each tweet, h is reset per tweet

    def __post_init__(self) -> None:
        self.chars = sorted(set(self.text))
        self.char_to_ix = {ch: i for i, ch in enumerate(self.chars)}
        self.ids = self.encode(self.text)

    @property
    def K(self) -> int:
        """The number of distinct characters."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.text)

    def encode(self, text: str) -> np.ndarray:
        """Characters to indices; unknown characters raise a CorpusError naming them."""
        unknown = sorted(set(text) - self.char_to_ix.keys())
        if unknown:
            raise CorpusError(f"not in the vocabulary of {self.name}: {''.join(unknown)!r}")
        return np.fromiter((self.char_to_ix[ch] for ch in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        """Indices to characters."""
        return "".join(self.chars[int(i)] for i in ids)

    @classmethod
    def from_vocabulary(cls, chars: list[str], name: str, is_tweets: bool | None = None) -> "Corpus":
        """A corpus that knows only its vocabulary (for synthesis from a saved run); ``is_tweets``
        None: a tweet corpus when EOT is in the vocabulary (checkpoints that do not say)."""
        return cls(name=name, text="".join(chars), sha256="", is_tweets=EOT in chars if is_tweets is None else is_tweets)

    def stats(self, seq_length: int) -> dict:
        """The figures the report shows: characters, K, training sequences, sha256."""
        return {
            "name": self.name,
            "n_chars": len(self.text),
            "K": self.K,
            "n_sequences": (len(self.text) - 1) // seq_length,
            "sha256": self.sha256,
            "n_documents": int(len(self.starts)),
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def builtin_text() -> str:
    """The standard library's documentation topics, joined in sorted key order."""
    from pydoc_data import topics

    return "".join(topics.topics[key] for key in sorted(topics.topics))


def parse_tweets(data: str, name: str) -> list[str]:
    """The tweets' texts from a JSON list of objects with a ``text`` field, entities decoded."""
    try:
        items = json.loads(data)
    except json.JSONDecodeError as err:
        raise CorpusError(f"{name}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(items, list) or not all(isinstance(t, dict) and isinstance(t.get("text"), str) for t in items):
        raise CorpusError(f"{name}: expected a JSON list of objects with a 'text' field")
    tweets = [html.unescape(t["text"]).replace(EOT, "") for t in items]
    return [t for t in tweets if t]


def tweets_corpus(tweets: list[str], name: str, sha256: str) -> Corpus:
    """EOT, then each tweet followed by EOT; ``starts[k]`` is the EOT that opens tweet k.

    Tweet k is trained as the segment text[starts[k] : starts[k + 1] + 1]: from EOT (start) to
    EOT (end), so the model learns both how tweets begin and where they stop.
    """
    if not tweets:
        raise CorpusError(f"{name}: no tweets with text")
    lengths = np.array([len(t) + 1 for t in tweets], dtype=np.int64)
    corpus = Corpus(name=name, text=EOT + "".join(t + EOT for t in tweets), sha256=sha256, is_tweets=True)
    corpus.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return corpus


def load_corpus(source: str | Path | None = None, seq_length: int = 1) -> Corpus:
    """Read a corpus: a path (text or tweet JSON), ``builtin:python-docs``, or None for the default.

    The default is the project's ``data/goblet_book.txt`` when it exists, else ``builtin:python-docs``.
    A path is a tweet corpus when it ends in ``.json``. Raises CorpusError for a missing,
    unreadable, empty or non-UTF-8 file, or one shorter than seq_length + 1.
    """
    name = None if source is None else str(source)
    if source is None:
        from .rundir import project_path

        source, name = (project_path(DEFAULT_PATH), str(DEFAULT_PATH)) if project_path(DEFAULT_PATH).is_file() \
            else (BUILTIN, BUILTIN)
    if str(source) == BUILTIN:
        text = builtin_text()
        corpus = Corpus(name=BUILTIN, text=text, sha256=_sha256(text.encode("utf-8")))
    else:
        path = Path(source)
        if not path.exists():
            raise CorpusError(f"{path}: no such file")
        if not path.is_file():
            raise CorpusError(f"{path}: not a regular file")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise CorpusError(f"{path}: cannot be read ({err.strerror})") from None
        if not data:
            raise CorpusError(f"{path}: the file is empty")
        try:
            text = data.decode("utf-8-sig")  # a leading byte-order mark is not text
        except UnicodeDecodeError as err:
            raise CorpusError(f"{path}: not UTF-8 (invalid byte at offset {err.start})") from None
        if path.suffix.lower() == ".json":
            corpus = tweets_corpus(parse_tweets(text, name), name, _sha256(data))
        else:
            corpus = Corpus(name=name, text=text, sha256=_sha256(data))
    if len(corpus) < seq_length + 1:
        raise CorpusError(
            f"{corpus.name}: {len(corpus)} characters, fewer than seq_length + 1 = {seq_length + 1}"
        )
    return corpus
