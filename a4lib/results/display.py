"""Showing results in a notebook: a sentence, a table, a figure with its caption, a text sample,
command lines. Everything is Markdown (or an image), which JupyterLab renders and nbconvert turns
into the report's HTML; the words themselves are written in the notebooks.
"""
from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from numbers import Integral, Number, Real
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown
from IPython.display import display as show  # noqa: F401  (display.show: several outputs from one cell)

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|$~])")


# --- text ---------------------------------------------------------------------------------------

def visible(text: str) -> str:
    """The text with control characters other than newline and tab shown as their symbols
    (U+2400 + code: ␃ for EOT), so nothing in a sample is silently dropped."""
    def one(ch: str) -> str:
        o = ord(ch)
        if ch in "\n\t":
            return ch
        if o < 0x20:
            return chr(0x2400 + o)
        return "\u2421" if o == 0x7F else ch
    return "".join(one(ch) for ch in text)


def esc(text) -> str:
    """Text for Markdown: the characters Markdown (or the math of nbconvert) would read escaped."""
    return _SPECIAL.sub(r"\\\1", visible(str(text))).replace("\n", " ")


def num(x, digits: int = 2) -> str:
    """A number for a sentence or a table: thousands separated, ``digits`` decimals for
    non-integers, '—' for None."""
    if x is None:
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, Integral):
        return f"{int(x):,}"
    if isinstance(x, Real):
        return "nan" if x != x else f"{float(x):,.{digits}f}"
    return str(x)


def diff(a: float, b: float, digits: int = 2) -> str:
    """a − b as the difference of the two numbers shown with ``digits`` decimals, so that a
    sentence's figures add up (46.18 − 39.09 = 7.09, not the 7.10 of the unrounded values)."""
    return num(float(f"{a:.{digits}f}") - float(f"{b:.{digits}f}"), digits)


def pct(x: float | None, digits: int = 0) -> str:
    """A share 0..1 as a percentage ('—' for None)."""
    return "—" if x is None else f"{100 * x:.{digits}f} %"


def path(p: str | Path) -> str:
    """A file's path as the report shows it: relative to the project folder when it is inside it
    (``data/goblet_book.txt``), or to the folder above (``../texts/x.txt``); otherwise as it is."""
    from ..rundir import project_root

    root, p = project_root(), Path(str(p))
    if root is None or not p.is_absolute():
        return str(p)
    for base, prefix in ((root, ""), (root.parent, "../")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return str(p)


def code(text) -> str:
    """Text in code type (a file name, a setting) for a Markdown sentence."""
    text = visible(str(text)).replace("\n", " ")
    fence = "`" * (1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{fence} {text} {fence}" if "`" in text else f"`{text}`"


def md(*parts) -> Markdown:
    """Markdown of the parts (strings or Markdown), one paragraph each; empty parts left out."""
    return Markdown("\n\n".join(p.data if isinstance(p, Markdown) else str(p) for p in parts if p))


# --- tables -------------------------------------------------------------------------------------

def table(rows: Iterable[Sequence], header: Sequence[str], align: str | None = None, digits: int = 2,
          fmt: Sequence[str | None] | None = None) -> Markdown:
    """A Markdown table. Cells: numbers (``fmt``'s format for their column, else ``num``), None
    ('—') or Markdown text. align: 'l' or 'r' per column (default: numbers right, text left)."""
    rows = [list(r) for r in rows]
    fmt = list(fmt or [None] * len(header))

    def cell(v, spec) -> str:
        if v is None or isinstance(v, (Number, np.bool_)):
            return format(v, spec) if spec and v is not None else num(v, digits)
        text = v.data if isinstance(v, Markdown) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    if align is None:
        align = "".join("r" if rows and all(isinstance(r[i], Number) or r[i] is None for r in rows) else "l"
                        for i in range(len(header)))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(cell(v, spec) for v, spec in zip(r, fmt)) + " |" for r in rows]
    return Markdown("\n".join(lines))


def pairs(items: Iterable[tuple[str, object]], header=("", "")) -> Markdown:
    """A two-column table of names and values (pairs whose value is None left out)."""
    return table([(k, v) for k, v in items if v is not None], header, align="ll")


# --- figures ------------------------------------------------------------------------------------

def figure(fig, path: str | Path | None = None, caption: str | None = None, dpi: int = 150) -> None:
    """Show a matplotlib figure (saved as PNG to ``path`` when given) and its caption below it."""
    from .plots import png_bytes, save

    data = png_bytes(fig, dpi) if path is None else save(fig, path, dpi).read_bytes()
    show(Image(data=data, format="png"))
    if caption:
        show(Markdown(caption))


# --- samples and commands -----------------------------------------------------------------------

def block(text: str, language: str = "text") -> str:
    """Text as a fenced Markdown block: every character, space and line break kept."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{fence}{language}\n{visible(text)}\n{fence}"


def sample(text: str, head: str | None = None) -> Markdown:
    """A sample of text under a bold heading."""
    return md(f"**{esc(head)}**" if head else "", block(text))


FIRST_SAMPLE = "before the first update"  # where a sample drawn at update 0 stands


def sample_heading(sample: dict, epoch: int | None = None) -> str:
    """'update 10,000 (epoch 1) · smooth loss 55.20' (FIRST_SAMPLE for update 0)."""
    u, loss = sample["update"], sample.get("smooth_loss")
    where = FIRST_SAMPLE if u == 0 else f"update {u:,}" + (f" (epoch {epoch})" if epoch else "")
    return f"{where} · smooth loss {num(loss) if loss is not None else '— (no update yet)'}"


def print_sample(sample: dict) -> None:
    """Print one sample with its heading (a training callback: the samples as they come)."""
    print(f"--- {sample_heading(sample)}\n{visible(sample['text'])}\n", flush=True)


def _quote(word: str) -> str:
    """A word quoted for the shell (bash's $'...' when it holds a line break or another control character)."""
    if not any(ord(ch) < 0x20 for ch in word):
        return shlex.quote(word)
    named = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t"}
    return "$'" + "".join(named.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x20 else ch) for ch in word) + "'"


def command_text(words: Sequence, width: int = 80) -> str:
    """One command line, quoted for the shell and broken between its options (an option stays on
    one line with its values; `` \\`` continues the line), so that it wraps between arguments,
    never inside one, and copies as it is. Absolute paths are shown as ``path`` shows them."""
    words = [path(w) if str(w).startswith("/") else str(w) for w in words]
    groups: list[str] = []
    for w in words:
        if w.startswith("--") or not groups:
            groups.append(_quote(w))
        else:
            groups[-1] += " " + _quote(w)
    lines = [groups[0]]
    for group in groups[1:]:
        if len(lines[-1]) + len(group) + 3 <= width - (4 if len(lines) > 1 else 0):
            lines[-1] += " " + group
        else:
            lines.append(group)
    return " \\\n    ".join(lines)


def activation() -> str | None:
    """The shell line that puts this environment's ``a4lib`` and ``papermill`` on PATH, from the project
    folder (``. .venv/bin/activate``; ``conda activate NAME`` in a conda environment); None when
    neither applies."""
    import os
    import sys

    from ..rundir import project_root

    root, prefix = project_root(), Path(sys.prefix)
    if os.environ.get("CONDA_DEFAULT_ENV") and (prefix / "conda-meta").is_dir():
        return f"conda activate {os.environ['CONDA_DEFAULT_ENV']}"
    if root is not None and (prefix / "bin" / "activate").is_file():
        try:
            return f". {prefix.relative_to(root)}/bin/activate"
        except ValueError:
            return None
    return None


def commands(lines: Iterable[Sequence | str]) -> Markdown:
    """Command lines (each a list of words, or a string split as the shell would), one shell block
    each (so that a page breaks between commands, never inside one); when a4lib's commands are
    among them, the first block begins with the line that activates its environment
    (``activation``), so that they run as written, in order, in the project folder."""
    words = [shlex.split(c) if isinstance(c, str) else [str(w) for w in c] for c in lines]
    first = activation() if any(w and w[0] in ("a4lib", "papermill") for w in words) else None
    texts = [command_text(w) for w in words]
    if first and texts:
        texts[0] = f"{first}\n{texts[0]}"
    return Markdown("\n\n".join(block(t, "bash") for t in texts))


# --- the drafted answers' premises --------------------------------------------------------------

def premise(name: str, holds: bool, assumed: str, observed: str) -> None:
    """Show what the drafted answer that follows assumes (``assumed``) against what the run shows
    (``observed``). The answer cell declares it with the marker ``<!-- premise: NAME -->``; the
    build keeps the note (and warns) only where the premise fails and the marker is still there
    (``a4lib.notebook.premise_notes``), so a rewritten answer without the marker builds clean."""
    said = (f"**Rewrite the answer below:** it assumes {assumed}, but the run shows {observed}." if not holds else
            f"The answer below assumes {assumed}; the run agrees ({observed}).")
    from ..notebook import PREMISE

    show(Markdown(said, metadata={PREMISE: {"name": name, "holds": bool(holds), "assumed": assumed,
                                            "observed": observed}}))


# --- the vocabulary -----------------------------------------------------------------------------

def char_name(ch: str) -> str | None:
    """A name for a character that does not show itself on paper (None: it does)."""
    names = {" ": "space", "\n": "newline", "\t": "tab", "\r": "carriage return", "\x03": "end of text (EOT)"}
    if ch in names:
        return names[ch]
    if ch.isspace() or not ch.isprintable() or unicodedata.category(ch) in ("Cf", "Co", "Cn"):
        return f"U+{ord(ch):04X} {unicodedata.name(ch, '').lower()}".strip()
    return None


def vocabulary(chars: Sequence[str]) -> Markdown:
    """Every character as itself in code type, invisible ones by name (space, newline, ...),
    combining marks on a dotted circle."""
    items = []
    for ch in chars:
        name = char_name(ch)
        if name is not None:
            items.append(f"*{esc(name)}*")
        else:
            shown = "\u25cc" + ch if unicodedata.category(ch).startswith("M") else ch
            items.append(f"`` {shown} ``" if "`" in shown else f"`{shown}`")
    return Markdown(" ".join(items))
