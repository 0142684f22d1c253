"""a4lib.corpus: vocabulary, indices, statistics, encodings, errors, the default corpus, tweets."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from a4lib import BUILTIN, EOT, CorpusError, load_corpus
from a4lib.corpus import parse_tweets

SHARED = Path("/work/shared/data")


def write(path: Path, data) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


# --- vocabulary, indices, statistics ------------------------------------------------------------

def test_vocabulary_is_sorted_unique_characters(tmp_path):
    """chars is the sorted set of the text's characters and char_to_ix its inverse."""
    text = "the quick brown fox, THE LAZY DOG!\n" * 3
    c = load_corpus(write(tmp_path / "t.txt", text))
    assert c.chars == sorted(set(text))
    assert c.K == len(set(text))
    assert all(c.chars[i] == ch for ch, i in c.char_to_ix.items())
    assert len(c) == len(text)


def test_ids_encode_decode_round_trip(tmp_path):
    """ids index chars: decode(ids) is the text, encode(text) is ids, dtype integer."""
    text = "abracadabra, said the wizard.\n"
    c = load_corpus(write(tmp_path / "t.txt", text))
    assert np.issubdtype(c.ids.dtype, np.integer)
    assert c.ids.shape == (len(text),)
    assert [c.chars[i] for i in c.ids] == list(text)
    assert c.decode(c.ids) == text
    assert np.array_equal(c.encode("dab"), [c.char_to_ix[ch] for ch in "dab"])


@pytest.mark.parametrize("seq_length", [1, 7, 25])
def test_stats(tmp_path, seq_length):
    """stats: n_chars, K, n_sequences = (n - 1) // seq_length and the sha256 of the file's bytes."""
    text = "Ünïcödé • “quoted” text\n" * 11
    path = write(tmp_path / "t.txt", text)
    s = load_corpus(path, seq_length).stats(seq_length)
    assert s["n_chars"] == len(text)
    assert s["K"] == len(set(text))
    assert s["n_sequences"] == (len(text) - 1) // seq_length
    assert s["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert s["name"] == str(path)


def test_multibyte_utf8_characters_are_single_characters(tmp_path):
    """ü, •, curly quotes and an em dash are read as one character each, not as their bytes."""
    text = "ü•“”‘’—ü"
    c = load_corpus(write(tmp_path / "t.txt", text))
    assert len(c) == 8
    assert set(c.chars) == set("ü•“”‘’—")
    assert c.decode(c.ids) == text


def test_byte_order_mark_is_stripped_but_hashed(tmp_path):
    """A leading UTF-8 BOM is not a character of the text; the sha256 still covers the raw bytes."""
    raw = b"\xef\xbb\xbf" + "hello wörld".encode("utf-8")
    path = write(tmp_path / "bom.txt", raw)
    c = load_corpus(path)
    assert c.text == "hello wörld"
    assert "\ufeff" not in c.chars
    assert c.sha256 == hashlib.sha256(raw).hexdigest()


def test_encode_unknown_characters_names_them(tmp_path):
    """encode of characters outside the vocabulary raises CorpusError naming every one of them."""
    c = load_corpus(write(tmp_path / "t.txt", "abcabc"))
    with pytest.raises(CorpusError) as err:
        c.encode("abxyz•")
    listed = str(err.value).rsplit(": ", 1)[-1]
    assert set(listed) - set("'\"") == set("xyz•")  # exactly the unknown ones


# --- errors ---------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    """A missing file: CorpusError naming the file and saying it does not exist."""
    path = tmp_path / "nope.txt"
    with pytest.raises(CorpusError, match="no such file") as err:
        load_corpus(path)
    assert str(path) in str(err.value)


def test_empty_file(tmp_path):
    """An empty file: CorpusError naming the file and saying it is empty."""
    path = write(tmp_path / "empty.txt", b"")
    with pytest.raises(CorpusError, match="empty") as err:
        load_corpus(path)
    assert str(path) in str(err.value)


def test_non_utf8_file(tmp_path):
    """Latin-1 bytes: CorpusError naming the file and the encoding problem, with the byte offset."""
    data = "abc café".encode("latin-1")
    path = write(tmp_path / "latin1.txt", data)
    with pytest.raises(CorpusError, match="UTF-8") as err:
        load_corpus(path)
    assert str(path) in str(err.value)
    assert f"offset {data.index(0xE9)}" in str(err.value)


@pytest.mark.parametrize("n_chars, seq_length", [(1, 1), (5, 5), (25, 25)])
def test_too_short_file(tmp_path, n_chars, seq_length):
    """Fewer than seq_length + 1 characters: CorpusError naming the file and both numbers."""
    path = write(tmp_path / "short.txt", "x" * n_chars)
    with pytest.raises(CorpusError) as err:
        load_corpus(path, seq_length)
    msg = str(err.value)
    assert str(path) in msg and str(n_chars) in msg and str(seq_length + 1) in msg


def test_exactly_seq_length_plus_one_is_enough(tmp_path):
    """seq_length + 1 characters make one training sequence: no error."""
    c = load_corpus(write(tmp_path / "ok.txt", "abcdef"), 5)
    assert c.stats(5)["n_sequences"] == 1


def test_directory_is_not_a_corpus(tmp_path):
    """A directory given as corpus: CorpusError naming it."""
    with pytest.raises(CorpusError) as err:
        load_corpus(tmp_path)
    assert str(tmp_path) in str(err.value)


# --- the default corpus --------------------------------------------------------------------------

def test_default_is_builtin_python_docs_without_the_book(tmp_path, monkeypatch):
    """No data/goblet_book.txt in the project (a project folder without it, whether or not this
    checkout has the book): pydoc_data.topics joined in sorted key order."""
    from pydoc_data import topics

    from a4lib import rundir

    monkeypatch.setattr(rundir, "project_root", lambda: tmp_path)
    expected = "".join(topics.topics[k] for k in sorted(topics.topics))
    c = load_corpus(None, 25)
    assert c.name == BUILTIN
    assert c.text == expected
    assert c.K == len(set(expected))
    assert c.sha256 == hashlib.sha256(expected.encode("utf-8")).hexdigest()
    assert 400_000 < len(c) < 600_000 and 80 < c.K < 130  # ~465,000 chars, ~103 distinct on 3.11
    assert load_corpus(BUILTIN).text == expected


def test_default_is_the_book_when_present(tmp_path, monkeypatch):
    """The project's data/goblet_book.txt is the default when it exists, wherever the user stands."""
    from a4lib import rundir

    monkeypatch.setattr(rundir, "project_root", lambda: tmp_path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "goblet_book.txt", "Harry Potter and the Goblet of Fire\n")
    c = load_corpus(None, 5)
    assert c.text == "Harry Potter and the Goblet of Fire\n"
    assert Path(c.name) == Path("data/goblet_book.txt")


# --- tweets --------------------------------------------------------------------------------------

def test_tweet_json_layout(tmp_path):
    """Tweets: entities decoded; EOT first and after each tweet; starts[k] is the EOT opening tweet k."""
    tweets = ["Fish &amp; chips &lt;3", "Grüße • “hi”", "third &quot;one&quot;"]
    decoded = ["Fish & chips <3", "Grüße • “hi”", 'third "one"']
    path = write(tmp_path / "t.json", json.dumps([{"text": t, "id": i} for i, t in enumerate(tweets)]))
    c = load_corpus(path, 1)
    assert c.is_tweets
    assert c.text == EOT + "".join(t + EOT for t in decoded)
    assert "&amp;" not in c.text and "&" in c.text
    assert len(c.starts) == 3
    for k, t in enumerate(decoded):
        s = int(c.starts[k])
        assert c.text[s] == EOT
        assert c.text[s + 1: s + 1 + len(t)] == t
        assert c.text[s + 1 + len(t)] == EOT
    assert c.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert c.stats(1)["n_documents"] == 3


def test_tweets_drop_empty_texts_and_stray_eot(tmp_path):
    """An EOT inside a tweet is removed; tweets with no text left are dropped."""
    path = write(tmp_path / "t.json", json.dumps([{"text": "a" + EOT + "b"}, {"text": ""}, {"text": "c"}]))
    c = load_corpus(path, 1)
    assert c.text == EOT + "ab" + EOT + "c" + EOT
    assert list(c.starts) == [0, 3]


def test_plain_text_is_not_tweets(small_text):
    """A plain text has one document starting at 0 and no EOT."""
    c = load_corpus(small_text)
    assert not c.is_tweets and list(c.starts) == [0]


@pytest.mark.parametrize("payload, problem", [
    ('[{"text": "a"}, ', "JSON"),
    ('{"text": "not a list"}', "list"),
    ('["just", "strings"]', "text"),
    ('[{"full_text": "no text field"}]', "text"),
    ('[{"text": 42}]', "text"),
    ("[]", "no tweets"),
])
def test_bad_tweet_json(tmp_path, payload, problem):
    """Malformed or wrongly shaped tweet JSON: CorpusError naming the file and the problem."""
    path = write(tmp_path / "bad.json", payload)
    with pytest.raises(CorpusError, match=problem) as err:
        load_corpus(path, 1)
    assert str(path) in str(err.value)


def test_parse_tweets_decodes_entities():
    """parse_tweets decodes HTML entities (named and numeric) in each text."""
    assert parse_tweets('[{"text": "&amp;&#39;&gt;&#8226;"}]', "x") == ["&'>•"]


@pytest.mark.skipif(not (SHARED / "condensed_2018.json").is_file(), reason="shared tweet file absent")
def test_real_tweet_file():
    """The 2018 tweet archive: one document per non-empty tweet, no undecoded &amp; left."""
    path = SHARED / "condensed_2018.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    c = load_corpus(path, 25)
    assert len(c.starts) == sum(1 for t in items if t["text"])
    assert "&amp;" not in c.text
    assert c.text.count(EOT) == len(c.starts) + 1
    assert c.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not (SHARED / "tinyshakespeare.txt").is_file(), reason="shared text absent")
def test_real_text_file():
    """tinyshakespeare: characters and vocabulary as Python counts them."""
    path = SHARED / "tinyshakespeare.txt"
    text = path.read_text(encoding="utf-8")
    c = load_corpus(path, 25)
    assert len(c) == len(text) and c.chars == sorted(set(text))
    assert c.decode(c.ids[:1000]) == text[:1000]
