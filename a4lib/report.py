"""What the notebooks and the report show: a run directory and the check results, read and
formatted as HTML. No math: every number shown here was computed by training, the gradient
check or the benchmark, and is only read, chosen and formatted.

The formatting functions return ``HTML``, a ``str`` that Jupyter displays as HTML, so a notebook
cell that ends with ``report.data_section(run)`` shows the section; nbconvert keeps it as it is.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import platform
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROVENANCE = "provenance.json"


class HTML(str):
    """A string of HTML that Jupyter (and nbconvert) shows rendered."""

    def _repr_html_(self) -> str:
        return str(self)


def join(*parts: str) -> HTML:
    """Several pieces of HTML as one output."""
    return HTML("\n".join(str(p) for p in parts if p))


# --- where things are -------------------------------------------------------------------------

def project_root(start: str | Path | None = None) -> Path | None:
    """The a4lib project folder (holding pyproject.toml and a4lib/) at or above ``start``
    (default: the working directory), or None outside a checkout."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "a4lib").is_dir():
            return folder
    return None


def enter_project() -> Path:
    """Make the project folder the working directory (a notebook opened from notebooks/ then
    finds data/ and runs/ as the command line does); the working directory."""
    root = project_root()
    if root is not None:
        os.chdir(root)
    return Path.cwd()


def new_run_dir(run_dir: str | Path | None = None, prefix: str = "train", resume: bool = False) -> Path:
    """The directory a training notebook writes: ``run_dir``, or a new runs/<prefix>-<time>.

    A ``run_dir`` that already holds a run is refused unless ``resume`` (and a missing one is
    refused with ``resume``), so a run is never overwritten by accident.
    """
    if run_dir is None:
        if resume:
            raise ValueError("resume=True needs the run_dir of the run to continue")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{prefix}-{stamp}"
        k = 1
        while path.exists():
            k += 1
            path = Path("runs") / f"{prefix}-{stamp}-{k}"
        return path
    path = Path(run_dir)
    has_run = (path / "checkpoint.npz").is_file()
    if has_run and not resume:
        raise ValueError(f"{path} already holds a run: set resume=True to continue it, or choose another run_dir")
    if resume and not has_run:
        raise ValueError(f"{path}: no run to resume (no checkpoint.npz)")
    return path


def latest_run(runs: str | Path = "runs") -> Path:
    """The most recently written run directory (one holding a checkpoint) under ``runs``."""
    found = sorted(Path(runs).glob("*/checkpoint.npz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no training run under {Path(runs).resolve()}: train one first "
                                f"(notebooks/train.ipynb, or `a4lib train --out runs/NAME`)")
    return found[-1].parent


# --- reading -------------------------------------------------------------------------------

def read_json(path: str | Path | None, default=None):
    """A JSON file's content; ``default`` when path is None or the file does not exist."""
    from .checkpoint import read_json as read

    if path is None or not Path(path).is_file():
        return default
    return read(path)


@dataclass
class Run:
    """A training run directory, as the report reads it."""

    path: Path
    config: dict
    summary: dict
    samples: list[dict]
    history: dict[str, np.ndarray]
    provenance: dict = field(default_factory=dict)

    @property
    def corpus(self) -> dict:
        """The corpus statistics: name, n_chars, K, n_sequences, sha256, ..."""
        return self.summary.get("corpus", {})

    @property
    def epoch_starts(self) -> list[int]:
        return [int(s) for s in self.history.get("epoch_starts", [0])]

    def epoch_at(self, update: int) -> int:
        """The epoch (1, 2, ...) that update number ``update`` belongs to (0: the first)."""
        return sum(1 for s in self.epoch_starts if s < max(update, 1))

    def smooth_loss_at(self, update: int) -> float | None:
        """The smooth loss recorded after update ``update`` (None for update 0)."""
        smooth = self.history.get("smooth_loss", [])
        return float(smooth[update - 1]) if 1 <= update <= len(smooth) else None


def load_run(run_dir: str | Path) -> Run:
    """Read a finished (or stopped) training run: config, summary, samples and history."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    missing = [f for f in ("config.json", "summary.json", "samples.json", "history.npz") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: not a finished training run (missing {', '.join(missing)})")
    with np.load(path / "history.npz", allow_pickle=False) as z:
        history = {k: z[k] for k in z.files}
    return Run(path=path, config=read_json(path / "config.json"), summary=read_json(path / "summary.json"),
               samples=read_json(path / "samples.json"), history=history,
               provenance=read_json(path / PROVENANCE, {}))


# --- provenance ----------------------------------------------------------------------------

def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def provenance(extra: dict | None = None) -> dict:
    """Where and with what this process runs: versions, git commit, machine, time."""
    root = project_root(Path(__file__).parent)
    commit = _git(root, "rev-parse", "HEAD") if root else None
    dirty = None
    if commit:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    info = {
        "a4lib": _version("a4lib"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "python_prefix": sys.prefix,
        "numpy": np.__version__,
        "numba": _version("numba"),
        "matplotlib": _version("matplotlib"),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "git_commit": commit,
        "git_dirty": dirty,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    return {**info, **(extra or {})}


def write_provenance(run_dir: str | Path, extra: dict | None = None) -> dict:
    """Record ``provenance()`` in the run directory (provenance.json) right after training."""
    from .checkpoint import write_json

    info = provenance(extra)
    write_json(Path(run_dir) / PROVENANCE, info)
    return info


# --- formatting ----------------------------------------------------------------------------

def visible(text: str) -> str:
    """The text with control characters other than newline and tab shown as their symbols
    (U+2400 + code: ␃ for EOT), so nothing in a sample is silently dropped by a browser."""
    def show(ch: str) -> str:
        o = ord(ch)
        if ch in "\n\t":
            return ch
        if o < 0x20:
            return chr(0x2400 + o)
        if o == 0x7F:
            return "\u2421"
        return ch
    return "".join(show(ch) for ch in text)


def esc(text) -> str:
    """HTML-escaped text, control characters made visible."""
    return html.escape(visible(str(text)), quote=True)


def pre(text: str, cls: str = "sample") -> HTML:
    """Text in a <pre>: monospace, every line break and space kept (the CSS wraps long lines)."""
    return HTML(f'<pre class="{cls}">{esc(text)}</pre>')


def num(x, digits: int = 2) -> str:
    """A number for a table: thousands separated, ``digits`` decimals for floats, '—' for None."""
    if x is None:
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        if x != x:
            return "nan"
        return f"{x:,.{digits}f}"
    return str(x)


def sci(x) -> str:
    return "—" if x is None else f"{x:.2e}"


def table(rows, header=None, cls: str = "kv", align=None) -> HTML:
    """An HTML table of already formatted cells (escaped here). align: per column 'l' or 'r'."""
    def cells(row, tag):
        out = []
        for i, cell in enumerate(row):
            a = f' class="{"num" if align[i] == "r" else "txt"}"' if align else ""
            out.append(f"<{tag}{a}>{cell if isinstance(cell, HTML) else esc(cell)}</{tag}>")
        return "".join(out)
    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>" if header else ""
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return HTML(f'<table class="{cls}">{head}<tbody>{body}</tbody></table>')


def kv_table(pairs, cls: str = "kv") -> HTML:
    """A two-column table: a name (th) and its value."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v if isinstance(v, HTML) else esc(v)}</td></tr>" for k, v in pairs)
    return HTML(f'<table class="{cls}"><tbody>{body}</tbody></table>')


def char_name(ch: str) -> str | None:
    """A name for a character that does not show itself on paper (None: it does)."""
    names = {" ": "space", "\n": "newline", "\t": "tab", "\r": "carriage return", "\x03": "end of text (EOT)"}
    if ch in names:
        return names[ch]
    if ch.isspace() or not ch.isprintable() or unicodedata.category(ch) in ("Cf", "Co", "Cn"):
        return f"U+{ord(ch):04X} {unicodedata.name(ch, '').lower()}".strip()
    return None


def vocabulary(chars: list[str]) -> HTML:
    """Every character of the vocabulary as itself; invisible ones by name (space, newline, ...)."""
    items = []
    for ch in chars:
        name = char_name(ch)
        if name is not None:
            items.append(f'<span class="ch named">{esc(name)}</span>')
        elif unicodedata.category(ch).startswith("M"):  # a combining mark: on a dotted circle
            items.append(f'<span class="ch">\u25cc{esc(ch)}</span>')
        else:
            items.append(f'<span class="ch">{esc(ch)}</span>')
    return HTML(f'<div class="vocab">{" ".join(items)}</div>')


# --- the sections --------------------------------------------------------------------------

def run_title(run: Run) -> HTML:
    """One line under the report's title: the corpus and the length of the run."""
    s = run.summary
    return HTML(f'<p class="subtitle">{esc(run.config.get("model", "rnn").upper())} with m = {num(run.config.get("m"))}, '
                f'{esc(run.config.get("optimizer", ""))}, eta = {run.config.get("eta")}, trained on '
                f'<span class="mono">{esc(run.corpus.get("name", run.config.get("corpus")))}</span> for '
                f'{num(s.get("updates"))} updates ({s.get("epochs")} epochs).</p>')


def data_section(run: Run, chars: list[str] | None = None) -> HTML:
    """1. Data: the corpus, its size, K, the number of sequences of seq_length, its sha256, its
    vocabulary (read from the run's checkpoint when ``chars`` is not given)."""
    c = run.corpus
    seq_length = run.config.get("seq_length")
    if chars is None:
        chars = run_vocabulary(run.path)
    pairs = [
        ("corpus", HTML(f'<span class="mono">{esc(c.get("name"))}</span>')),
        ("characters", num(c.get("n_chars"))),
        ("distinct characters K", num(c.get("K"))),
        (f"sequences of seq_length = {seq_length}", num(c.get("n_sequences"))),
        ("updates per epoch", num(c.get("n_sequences")) if run.config.get("batch_size", 1) == 1
         and run.config.get("order", "sequential") == "sequential" and c.get("n_documents", 1) == 1 else "—"),
        ("sha256", HTML(f'<span class="mono hash">{esc(c.get("sha256"))}</span>')),
    ]
    if c.get("n_documents", 1) > 1:
        pairs.insert(3, ("documents (tweets)", num(c.get("n_documents"))))
    return join(kv_table(pairs),
                HTML(f"<p>The K = {num(c.get('K'))} characters of the vocabulary, in the order of their "
                     f"indices (invisible ones by name):</p>"),
                vocabulary(chars) if chars else "")


def run_vocabulary(run_dir: str | Path) -> list[str]:
    """The vocabulary (index order) stored in a run's checkpoint."""
    from .checkpoint import CHECKPOINT, load_meta

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return []
    meta = load_meta(path)
    return list(meta.get("corpus", {}).get("chars", []))


def gradcheck_method(results: list[dict]) -> HTML:
    """How the gradient check was done, with the values it was done with."""
    if not results:
        return HTML("<p>No gradient-check results.</p>")
    r0 = results[0]
    sigs = ", ".join(f"sig = {r['sig']} for m = {r['m']}" for r in results)
    floors = ", ".join(f"{r['floor']:.1e} for m = {r['m']}" if "floor" in r else f"10^-8 for m = {r['m']}" for r in results)
    return HTML(
        f"<p>The analytic gradients (back-propagation through time) are compared with numerical ones "
        f"for every entry of every parameter array (U, W, V, b, c), on the first seq_length = {r0['seq_length']} "
        f"characters of <span class=\"mono\">{esc(r0['corpus'])}</span> (K = {r0['K']}) with h<sub>0</sub> = 0 "
        f"and freshly initialised weights ({esc(sigs)}). The numerical gradient of entry θ<sub>i</sub> is the "
        f"centred difference (L(θ + h e<sub>i</sub>) − L(θ − h e<sub>i</sub>)) / 2h with h = {r0['h']:g}, "
        f"L the loss summed over the sequence, without clipping. Each entry's relative error is "
        f"|g<sub>a</sub> − g<sub>n</sub>| / max(floor, |g<sub>a</sub>| + |g<sub>n</sub>|), the floor "
        f"({esc(floors)}) being the smallest gradient a centred difference resolves to the tolerance: L "
        f"carries round-off of about ε|L| (ε = 2.2·10<sup>−16</sup>), so g<sub>n</sub> carries about "
        f"10ε·max(1, |L|)/h, and the floor is that over the tolerance; smaller entries are judged by their absolute "
        f"error. The tables give the maximum and mean relative error over each array, and the largest "
        f"absolute difference. "
        f"The check passes when every maximum relative error is at most {r0['tol']:.0e}.</p>"
        + ("<p>For m = 100 the weights are drawn with sig = 0.1 rather than 0.01: with 0.01 most entries "
           "of the gradient of W are around 10<sup>−10</sup>, below the floor, so the relative errors "
           "would test little of W.</p>" if any(r["m"] > 10 and r["sig"] != 0.01 for r in results) else ""))


def gradcheck_tables(results: list[dict]) -> HTML:
    """One relative-error table per m (max and mean per parameter), and the verdict."""
    parts = []
    for r in results:
        rows = [(name, sci(row["max_rel"]), sci(row["mean_rel"]), sci(row["max_abs"]))
                for name, row in r["table"].items()]
        verdict = "passed" if r["ok"] else "FAILED"
        parts.append(HTML(f'<h4>{esc(r.get("model", "rnn").upper())}, m = {r["m"]}, sig = {r["sig"]} '
                          f'({num(r["seconds"])} s): <span class="{"ok" if r["ok"] else "bad"}">{verdict}</span></h4>'))
        parts.append(table(rows, ["parameter", "max relative error", "mean relative error", "max absolute error"],
                           cls="grid", align="lrrr"))
    if results:
        ok = all(r["ok"] for r in results)
        worst = max(max(row["max_rel"] for row in r["table"].values()) for r in results)
        ms = " and ".join(f"m = {r['m']}" for r in results)
        tol = results[0]["tol"]
        parts.append(HTML(
            f'<p class="verdict {"ok" if ok else "bad"}"><b>Verdict:</b> '
            + (f"the analytic gradients are correct: for {ms} every relative error is at most "
               f"{worst:.1e}, below the tolerance {tol:.0e}."
               if ok else
               f"the gradients do NOT agree: the largest relative error is {worst:.1e}, above the tolerance {tol:.0e}.")
            + "</p>"))
    return join(*parts)


def gradcheck_section(results: list[dict]) -> HTML:
    """2. Gradient check: the method, the tables, the verdict."""
    return join(gradcheck_method(results), gradcheck_tables(results))


def figure(fig, path: str | Path | None = None, caption: str | None = None, dpi: int = 150) -> HTML:
    """The figure as an embedded PNG (and saved to ``path`` when given), with a caption."""
    from .plots import png_bytes

    data = png_bytes(fig, dpi)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    img = f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(caption or "figure")}">'
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return HTML(f"<figure>{img}{cap}</figure>")


def loss_caption(run: Run) -> str:
    """What the loss figure shows, in words."""
    s = run.summary
    n_epochs = len([e for e in run.epoch_starts if e < s.get("updates", 0)])
    best = s.get("best_smooth_loss")
    return (f"The smooth loss (0.999 · previous + 0.001 · loss of the update, the loss summed over the "
            f"{run.config.get('seq_length')} characters of a sequence) over the {num(s.get('updates'))} updates "
            f"of the run ({s.get('epochs')} epochs; {'dashed lines: the start of each new epoch' if n_epochs > 1 else 'one epoch'}). "
            f"Lowest smooth loss {num(best)}; final {num(s.get('final_smooth_loss'))}.")


def sample_heading(sample: dict, run: Run | None = None) -> str:
    u = sample["update"]
    loss = sample.get("smooth_loss")
    where = "before the first update" if u == 0 else f"update {u:,}"
    if run is not None and u > 0:
        where += f" (epoch {run.epoch_at(u)})"
    return f"{where} · smooth loss {num(loss) if loss is not None else '— (no update yet)'}"


def samples_section(run: Run, until: int | None = None, every: int | None = None) -> HTML:
    """4. The text progression: each sample of the run with its update number and smooth loss.

    until: only samples up to this update; every: only updates that are multiples of it.
    """
    chosen = [s for s in run.samples
              if (until is None or s["update"] <= until) and (every is None or s["update"] % every == 0)]
    if not chosen:
        return HTML("<p>This run recorded no samples (sample_every = 0).</p>")
    n = run.config.get("sample_length")
    intro = HTML(f"<p>{num(n)} characters synthesised from the network as it was at each point "
                 f"(temperature 1, the hidden state and the input character of the training position; "
                 f"every {num(run.config.get('sample_every'))} updates).</p>")
    parts = [intro]
    for s in chosen:
        parts.append(HTML(f'<div class="sample-block"><div class="sample-head">{esc(sample_heading(s, run))}</div>'
                          f"{pre(s['text'])}</div>"))
    return join(*parts)


def print_sample(sample: dict) -> None:
    """Print one sample with its heading (a training callback: the samples as they come)."""
    print(f"--- {sample_heading(sample)}\n{visible(sample['text'])}\n", flush=True)


@dataclass
class Passage:
    text: str
    update: int
    loss: float | None
    loss_name: str
    which: str
    length: int
    temperature: float
    top_p: float
    prime: str
    seed: int


def passage(run_dir: str | Path, length: int = 1000, seed: int = 0, temperature: float = 1.0,
            top_p: float = 1.0, prime: str = "", which: str = "best") -> Passage:
    """Text synthesised from a run's best (or last) parameters, with their update and loss."""
    from .checkpoint import load_params, load_state
    from .corpus import Corpus
    from .models import get_model
    from .sample import generate

    params, meta = load_params(run_dir, which)
    vocab = Corpus.from_vocabulary(meta["corpus"]["chars"], meta["corpus"]["name"])
    model = get_model(meta["config"]["model"])
    text = generate(model, params, vocab, length, np.random.default_rng(seed), temperature, top_p, prime,
                    load_state(run_dir, which))
    has_val = meta["config"].get("val_fraction", 0) > 0
    if which == "best":
        update, loss = meta.get("best_update"), meta.get("best_loss")
        loss_name = "held-out loss per character" if has_val else "smooth loss"
    else:
        update, loss, loss_name = meta.get("updates"), meta.get("smooth_loss"), "smooth loss"
    return Passage(text=text, update=update, loss=loss, loss_name=loss_name, which=which, length=length,
                   temperature=temperature, top_p=top_p, prime=prime, seed=seed)


def passage_section(p: Passage) -> HTML:
    """5. The passage with the update number and loss of the parameters it came from."""
    how = "the handout's sampling (temperature 1)" if p.temperature == 1 and p.top_p == 1 else \
        f"temperature {p.temperature}, top-p {p.top_p}"
    primed = (f'primed with <span class="mono">{esc(repr(p.prime))}</span>' if p.prime else
              "primed with the first character of the vocabulary (shown first)")
    return join(
        HTML(f'<p>{num(p.length)} characters from the {"best" if p.which == "best" else "last"} parameters of the run, '
             f'those of <b>update {num(p.update)}</b> ({esc(p.loss_name)} <b>{num(p.loss)}</b>), starting from the '
             f'hidden state the run had after that update; {how}, {primed}, seed {p.seed}.</p>'),
        pre(p.text, "passage"))


def train_command(config: dict, out: str = "runs/NAME") -> str:
    """The ``a4lib train`` command line that repeats a run from its config.json."""
    import shlex

    c = config
    args = ["a4lib", "train", "--out", out]
    corpus = c.get("corpus")
    if corpus:
        args += ["--corpus", str(corpus)]
    for key in ("model", "m", "eta", "seq_length", "sig", "optimizer", "clip", "seed", "sample_every",
                "sample_length", "batch_size", "order", "chunk_length", "val_fraction", "val_every",
                "checkpoint_every"):
        if key in c and c[key] is not None:
            args += ["--" + key.replace("_", "-"), str(c[key])]
    if c.get("n_updates") is not None:
        args += ["--updates", str(c["n_updates"])]
    elif c.get("n_epochs") is not None:
        args += ["--epochs", str(c["n_epochs"])]
    if c.get("max_seconds") is not None:
        args += ["--max-seconds", str(c["max_seconds"])]
    return shlex.join(args)


HYPERPARAMETERS = [  # (config key, what it is)
    ("model", "model"), ("m", "hidden units m"), ("eta", "learning rate eta"),
    ("seq_length", "seq_length"), ("sig", "initial weight std sig"), ("optimizer", "optimizer"),
    ("clip", "element-wise gradient clip"), ("n_updates", "n_updates"), ("n_epochs", "n_epochs"),
    ("seed", "seed"), ("sample_every", "sample_every"), ("sample_length", "sample_length"),
    ("batch_size", "batch_size"), ("order", "order"), ("val_fraction", "val_fraction"),
]


def hyperparameters_table(config: dict) -> HTML:
    """The run's hyperparameters (config.json) under the handout's names."""
    def show(v):
        return "—" if v is None else str(v) if isinstance(v, (float, str)) else num(v)
    return kv_table([(label, show(config.get(key))) for key, label in HYPERPARAMETERS if key in config])


def timings_table(run: Run, bench: dict | None = None, gradcheck: list[dict] | None = None) -> HTML:
    s = run.summary
    pairs = [
        ("training time", f"{num(s.get('seconds'), 1)} s for {num(s.get('updates'))} updates"),
        ("training speed", f"{num(s.get('updates_per_s'), 1)} updates/s"),
    ]
    if bench:
        pairs += [
            ("benchmark (a4lib bench)", f"{esc(bench.get('corpus'))}, m = {bench.get('m')}, seq_length = "
                                        f"{bench.get('seq_length')}, batch {bench.get('batch_size', 1)}"),
            ("a4lib training step", f"{num(bench.get('updates_per_s'), 1)} updates/s"),
            ("reference.py (one-hot, one step at a time)", f"{num(bench.get('reference_updates_per_s'), 1)} updates/s"),
            ("speed-up over the reference", HTML(f"<b>{num(bench.get('speedup'))}×</b>")),
        ]
    for r in gradcheck or []:
        pairs.append((f"gradient check, m = {r['m']}", f"{num(r['seconds'])} s"))
    return kv_table(pairs)


def versions_table(prov: dict) -> HTML:
    if not prov:
        prov = provenance({"note": "recorded when the report was made, not when the run was trained"})
    commit = prov.get("git_commit")
    commit_text = "unknown (not a git checkout)" if not commit else \
        commit + (" (with uncommitted changes)" if prov.get("git_dirty") else "")
    pairs = [
        ("git commit", HTML(f'<span class="mono hash">{esc(commit_text)}</span>')),
        ("a4lib", prov.get("a4lib") or "—"),
        ("Python", prov.get("python") or "—"),
        ("NumPy", prov.get("numpy") or "—"),
        ("Numba", prov.get("numba") or "not installed"),
        ("Matplotlib", prov.get("matplotlib") or "—"),
        ("platform", prov.get("platform") or "—"),
        ("CPU", prov.get("cpu") or "—"),
        ("BLAS threads", prov.get("blas_threads") or "—"),
        ("recorded", prov.get("time") or "—"),
    ]
    if prov.get("note"):
        pairs.append(("note", prov["note"]))
    return kv_table(pairs)


def reproduce_section(run: Run, bench: dict | None = None, gradcheck: list[dict] | None = None) -> HTML:
    """6. Hyperparameters, timings, versions and the commands that repeat the run."""
    prov = run.provenance
    commands = []
    if prov.get("command"):
        commands.append(("the whole report", prov["command"]))
    commands.append(("the training run alone", train_command(run.config)))
    cmd_html = "".join(f'<p>{esc(label)}:</p><pre class="command">{esc(cmd)}</pre>' for label, cmd in commands)
    return join(
        HTML("<h3>Hyperparameters</h3>"), hyperparameters_table(run.config),
        HTML("<h3>Timings</h3>"), timings_table(run, bench, gradcheck),
        HTML("<h3>Versions</h3>"), versions_table(prov),
        HTML("<h3>To reproduce</h3>"), HTML(cmd_html),
        HTML(f'<p>The corpus is identified by its sha256 above; the run directory '
             f'<span class="mono">{esc(run.path.name)}</span> holds config.json, summary.json, samples.json, '
             f'history.npz and checkpoint.npz.</p>'))


def summary_table(summary: dict) -> HTML:
    """A training run's summary.json as a table (for the training notebook)."""
    keys = [("status", "status"), ("updates", "updates"), ("epochs", "epochs"),
            ("best_smooth_loss", "lowest smooth loss"), ("best_update", "best update"),
            ("best_val_loss", "lowest held-out loss"), ("final_smooth_loss", "final smooth loss"),
            ("seconds", "seconds"), ("updates_per_s", "updates/s")]
    return kv_table([(label, num(summary.get(k))) for k, label in keys if summary.get(k) is not None])


# --- beyond the assignment -----------------------------------------------------------------
# The studies of ``a4lib.studies``, run by report/build.py and listed in its beyond.json (the
# "plan"): each section function reads its runs and returns the section's HTML.

def pct(x: float | None, digits: int = 0) -> str:
    """A share 0..1 as a percentage ('—' for None)."""
    return "—" if x is None else f"{100 * x:.{digits}f} %"


class Part:
    """Numbered headings for a part of the report whose sections may each be switched off."""

    def __init__(self, first: int = 7) -> None:
        self.number = first

    def heading(self, title: str) -> HTML:
        """The next section's heading (h2, numbered)."""
        h = HTML(f"<h2>{self.number}. {esc(title)}</h2>")
        self.number += 1
        return h

    def show(self, on: bool, key: str, make, *args, **kwargs) -> HTML | None:
        """Section ``key`` of ``studies.SECTIONS``: its heading and ``make(*args, **kwargs)``;
        None (nothing shown, nothing computed) when it is switched off."""
        from .studies import SECTIONS

        if not on:
            return None
        return join(self.heading(SECTIONS[key]), make(*args, **kwargs))


def commands_block(lines: list[str], label: str = "The commands") -> HTML:
    """Command lines in a block, one a line, under a short label."""
    if not lines:
        return HTML("")
    return HTML(f'<p class="cmd-label">{esc(label)} (from the project folder; <span class="mono">a4lib</span> '
                f'is <span class="mono">python -m a4lib</span>):</p><pre class="command">{esc(chr(10).join(lines))}</pre>')


def _shell(words) -> str:
    """Words as one shell command line (quoted where needed)."""
    return shlex.join(str(w) for w in words)


def _not_run(what: str) -> HTML:
    return HTML(f"<p>The {esc(what)} study was not run for this report (its results are missing from the "
                f"build's beyond.json); <span class=\"mono\">make report</span> runs it.</p>")


def _load_runs(specs: list[dict]) -> dict[str, Run]:
    return {s["name"]: load_run(s["dir"]) for s in specs}


def _commands(specs: list[dict]) -> list[str]:
    from .studies import RunSpec

    root = Path.cwd()
    return [RunSpec(**s).command(root) for s in specs]


def _ran_with(plan: dict, specs: list[dict]) -> str:
    """How the runs of ``specs`` shared the machine (which ran at the same time), in words."""
    from .studies import groups

    names = {s["name"] for s in specs}
    parts = []
    for group in groups(plan):
        if not names & {r["name"] for r in group}:
            continue
        labels = [r["label"] for r in group]
        parts.append(f"{labels[0]} ran alone" if len(labels) == 1 else f"{' and '.join(labels)} ran at the same time")
    return "; then ".join(parts)


def _backend(run: Run) -> str:
    b = run.summary.get("backend") or run.config.get("backend_used")
    return f", {b} backend" if b else ""


def beyond_intro(plan: dict) -> HTML:
    """What the part beyond the assignment is, how its runs shared the machine, their budget."""
    quick = plan.get("quick")
    cpu = provenance().get("cpu") or "this machine"
    return HTML(
        f"<p>Studies that go beyond the handout, each made by <span class=\"mono\">make report</span> with "
        f"its own training runs (command lines in each section; a run is reused when its command and corpus "
        f"are unchanged). They ran on {esc(cpu)} with {os.cpu_count()} cores, at most two runs at a time, "
        f"while other work may have shared the machine: seconds and characters per second are noisy, "
        f"losses are not (the runs with a fixed number of updates are deterministic). "
        + ("<b>This is the quick report: every study is tiny and its numbers say nothing about the methods.</b>"
           if quick else "") + "</p>")


# 1. mini-batches ------------------------------------------------------------------------------

def batches_section(plan: dict) -> HTML:
    """Characters per second of the training step for several B, against reference.py."""
    data = plan.get("batches") or {}
    benches = [b for b in data.get("benches", []) if b.get("result")]
    if not benches:
        return _not_run("mini-batch")
    rows, speeds = [], []
    for b in benches:
        r = b["result"]
        speeds.append(r["chars_per_s"])
        rows.append([num(r["batch_size"]), num(r["updates"]), num(r["updates_per_s"], 1), num(r["chars_per_s"]),
                     num(r["reference_chars_per_s"]), HTML(f"<b>{num(r['speedup'])}×</b>")])
    r0 = benches[0]["result"]
    first, last = benches[0]["result"], benches[-1]["result"]
    gain = last["chars_per_s"] / first["chars_per_s"] if first["chars_per_s"] else None
    best = max(benches, key=lambda b: b["result"]["chars_per_s"])["result"]
    backend = f" ({r0['backend']} backend)" if r0.get("backend") else ""
    verdict = (f"From B = {first['batch_size']} to B = {last['batch_size']} the characters per second "
               f"{'grow' if gain and gain >= 1 else 'shrink'} {num(gain, 1)}-fold; the fastest here is "
               f"B = {best['batch_size']} with {num(best['chars_per_s'])} characters/s, "
               f"{num(best['speedup'], 1)} times the reference.")
    intro = HTML(
        f"<p>With <span class=\"mono\">--batch-size B</span> an update trains B streams in lockstep (the text "
        f"cut into B parts; the loss summed over the seq_length characters and averaged over the streams), "
        f"so each weight update processes B × seq_length characters. The table times the training step "
        f"(<span class=\"mono\">a4lib bench</span>{esc(backend)}: loss, gradients, clipping, AdaGrad) for "
        f"m = {r0['m']}, seq_length = {r0['seq_length']} on <span class=\"mono\">{esc(r0['corpus'])}</span>, "
        f"each B for about {num(plan['budget']['bench_chars'])} characters, against "
        f"<span class=\"mono\">reference.py</span> (one-hot vectors, one step at a time, B = 1; timed anew "
        f"for every row, {num(r0['reference_updates'])} updates). Each benchmark ran alone.</p>")
    note = HTML("<p>Characters per second are not learning per second: B streams make one update from "
                "B × seq_length characters where B = 1 makes B updates, so a larger B needs a larger eta "
                "or more characters for the same loss.</p>")
    return join(intro,
                table(rows, ["B", "updates timed", "updates/s", "characters/s", "reference characters/s",
                             "speed-up"], cls="grid", align="rrrrrr"),
                HTML(f"<p>{esc(verdict)}</p>"), note,
                commands_block([_shell(["a4lib", *b["args"]]) for b in benches]))


# 2. held-out evaluation ------------------------------------------------------------------------

def heldout_section(plan: dict, figures_dir: str | Path | None = None) -> HTML:
    """Training and held-out loss per character for the sequential walk and the chunked order."""
    from . import plots
    from .studies import bits, held_out, per_char

    specs = (plan.get("heldout") or {}).get("runs", [])
    if not specs:
        return _not_run("held-out")
    runs = _load_runs(specs)
    labelled = {s["label"]: (runs[s["name"]].history, runs[s["name"]].config["seq_length"]) for s in specs}
    seq, chunks = runs["heldout-sequential"], runs["heldout-chunks"]
    c = seq.config
    rows, stats = [], {}
    for s in specs:
        run = runs[s["name"]]
        val = held_out(run.history)
        train = per_char(run.summary["final_smooth_loss"], run.config["seq_length"])
        i = val.best_index
        stats[s["name"]] = (train, val.best)
        rows.append([s["label"], num(run.summary["updates"]), num(train, 3), num(val.best, 3),
                     num(bits(val.best), 3) if val.best is not None else "—",
                     num(int(val.updates[i])) if i is not None else "—", num(val.final, 3)])
    (t_seq, v_seq), (t_chk, v_chk) = stats["heldout-sequential"], stats["heldout-chunks"]
    lower, higher = ("chunked order", "sequential walk") if v_chk < v_seq else ("sequential walk", "chunked order")
    gap_seq, gap_chk = v_seq - t_seq, v_chk - t_chk
    words = [f"The best held-out loss of the handout's sequential walk is <b>{num(v_seq, 3)} nats "
             f"= {num(bits(v_seq), 3)} bits per character</b>; the chunked order reaches "
             f"{num(v_chk, 3)} nats = {num(bits(v_chk), 3)} bits: the {lower}'s is lower by "
             f"{num(abs(v_seq - v_chk), 3)} nats ({pct(abs(v_seq - v_chk) / max(v_seq, v_chk))} of the {higher}'s)."]
    if gap_seq > 2 * max(gap_chk, 0.05):
        words.append(f"The sequential run's final held-out loss lies {_gap(gap_seq)} its training loss per "
                     f"character, the chunked run's {_gap(gap_chk)}: the sequential walk carries h through the "
                     f"whole text and resets it only at the start of an epoch, so it sees the same text in the "
                     f"same order every epoch; the chunked order shuffles chunks of "
                     f"{num(chunks.config['chunk_length'])} characters and resets h at each.")
    else:
        words.append(f"At the end the held-out loss lies {_gap(gap_seq)} the training loss per character for the "
                     f"sequential walk and {_gap(gap_chk)} it for the chunked order.")
    seq_val, chk_val = held_out(seq.history), held_out(chunks.history)
    if len(seq_val.loss) > 1 and seq_val.loss.max() > 1.5 * v_seq and chk_val.loss.max() < 1.5 * v_chk:
        i = int(np.argmax(seq_val.loss))
        settled = int(seq_val.updates[np.argmax(seq_val.loss < 1.1 * seq_val.final)])
        words.append(f"Earlier, though, the sequential run's held-out loss was far higher ({num(float(seq_val.loss[i]), 2)} "
                     f"nats at update {num(int(seq_val.updates[i]))}; it first came within 10 % of its final value at update "
                     f"{num(settled)}), while the chunked run's never rose above 1.5 times its best.")
    words.append("The studies below train in chunks, the order the 2023–2026 handouts suggest.")
    fig = plots.heldout_curves(labelled)
    caption = (f"Training smooth loss per character (smooth loss / seq_length = {c['seq_length']}; an exponential "
               f"average over about 1,000 updates, so it lags) and held-out loss per character (every "
               f"{num(c['val_every'])} updates, the last {pct(c['val_fraction'])} of the text, h carried from the training state), "
               f"both in nats, for {num(c['n_updates'])} updates of the handout's RNN (m = {c['m']}, "
               f"AdaGrad, eta = {c['eta']}).")
    intro = HTML(
        f"<p>With <span class=\"mono\">--val-fraction {c['val_fraction']}</span> the last "
        f"{pct(c['val_fraction'])} of <span class=\"mono\">{esc(seq.corpus.get('name'))}</span> "
        f"({num(seq.summary.get('n_train_chars'))} training characters) is held out: every "
        f"{num(c['val_every'])} updates the mean loss per character over it is measured, and the best "
        f"parameters become those with the lowest held-out loss. Two runs, at the same time, "
        f"{num(c['n_updates'])} updates each: the handout's walk, and shuffled chunks of "
        f"{num(chunks.config['chunk_length'])} characters with h reset at each chunk "
        f"(<span class=\"mono\">--order chunks</span>).</p>")
    return join(intro,
                figure(fig, Path(figures_dir) / "heldout.png" if figures_dir else None, caption),
                table(rows, ["order", "updates", "final training loss / char", "best held-out (nats)",
                             "best held-out (bits)", "at update", "final held-out (nats)"], cls="grid",
                      align="lrrrrrr"),
                HTML(f"<p>{' '.join(words)}</p>"),
                commands_block(_commands(specs)))


def _gap(g: float) -> str:
    return f"{num(abs(g), 2)} nats {'above' if g >= 0 else 'below'}"


# 3. LSTM against RNN ---------------------------------------------------------------------------

def lstm_section(plan: dict, figures_dir: str | Path | None = None) -> HTML:
    """Held-out loss against seconds for an LSTM and the RNN with the same wall-clock budget."""
    from . import plots
    from .studies import bits, chars_seen, evaluation_share, held_out

    data = plan.get("lstm") or {}
    specs = data.get("runs", [])
    if not specs:
        return _not_run("LSTM")
    runs = _load_runs(specs)
    rows, best = [], {}
    for s in specs:
        run = runs[s["name"]]
        c, val = run.config, held_out(run.history)
        i = val.best_index
        best[s["name"]] = (val.best, float(val.seconds[i]) if i is not None else None)
        rows.append([s["label"], num(run.summary["updates"]), num(chars_seen(c, run.summary["updates"])),
                     num(run.summary.get("seconds"), 0), num(val.best, 3),
                     num(bits(val.best), 3) if val.best is not None else "—",
                     num(best[s["name"]][1], 0), num(val.final, 3)])
    lstm, rnn = runs["race-lstm"], runs["race-rnn"]
    (l_best, l_t), (r_best, r_t) = best["race-lstm"], best["race-rnn"]
    winner, loser = ("LSTM", "RNN") if l_best < r_best else ("RNN", "LSTM")
    lv, rv = held_out(lstm.history), held_out(rnn.history)
    below = [t for t, v in zip(lv.seconds, lv.loss) if v < r_best]
    text = (f"With the same {num(data['seconds'], 0)} s the <b>{winner}</b> reaches the lower held-out loss: "
            f"{num(min(l_best, r_best), 3)} against {num(max(l_best, r_best), 3)} nats per character "
            f"({num(bits(min(l_best, r_best)), 3)} against {num(bits(max(l_best, r_best)), 3)} bits). ")
    if below and l_best < r_best:
        text += f"The LSTM's held-out loss first goes below the RNN's best at {num(below[0], 0)} s. "
    text += (f"In that time the RNN made {num(rnn.summary['updates'])} updates "
             f"({num(chars_seen(rnn.config, rnn.summary['updates']))} characters), the LSTM "
             f"{num(lstm.summary['updates'])} ({num(chars_seen(lstm.config, lstm.summary['updates']))} characters).")
    fig = plots.heldout_vs_seconds({s["label"]: runs[s["name"]].history for s in specs})
    shares = {name: evaluation_share(run.history) for name, run in (("LSTM", lstm), ("RNN", rnn))}
    caption = (f"Held-out loss per character (nats) against training seconds. The seconds include the held-out "
               f"evaluations (LSTM every {num(lstm.config['val_every'])} updates, RNN every "
               f"{num(rnn.config['val_every'])}), which took about "
               + " and ".join(f"{pct(v)} ({k})" for k, v in shares.items()) + " of each run's time. "
               f"Both ran at the same time.")
    intro = HTML(
        f"<p>An LSTM (<span class=\"mono\">--model lstm</span>) and the handout's RNN on the same corpus "
        f"(<span class=\"mono\">{esc(rnn.corpus.get('name'))}</span>, last {pct(rnn.config['val_fraction'])} held "
        f"out), each stopped after {num(data['seconds'], 0)} s of training (<span class=\"mono\">--max-seconds</span>); "
        f"{esc(_ran_with(plan, specs[:1]))}, one core each. The RNN keeps the handout's settings (m = 100, AdaGrad, "
        f"eta = 0.1, B = 1); the LSTM uses m = 128, 16 streams of 50 characters and Adam with eta = 0.003, "
        f"settings that train it well per second. Both train in shuffled chunks "
        f"(<span class=\"mono\">--order chunks</span>, h reset at each chunk). The runs stop on time, so their numbers of updates vary from build to build "
        f"(backends: LSTM {esc(lstm.summary.get('backend') or '—')}, RNN {esc(rnn.summary.get('backend') or '—')}).</p>")
    return join(intro,
                figure(fig, Path(figures_dir) / "lstm_vs_rnn.png" if figures_dir else None, caption),
                table(rows, ["model", "updates", "characters", "seconds", "best held-out (nats)", "(bits)",
                             "best at s", "final held-out"], cls="grid", align="lrrrrrrr"),
                HTML(f"<p>{text}</p>"),
                commands_block(_commands(specs)))


# 4. sampling -----------------------------------------------------------------------------------

def sampling_study(run_dir: str | Path, corpus: str | None, temperatures=(0.5, 0.8, 1.2), top_ps=(0.5, 0.8, 0.95),
                   length: int = 300, seed: int = 0) -> dict:
    """Passages from a run's best parameters at several temperatures (top-p 1) and several top-p
    (temperature 1), same seed, each with the share of its words that occur in the training corpus
    and its number of distinct characters."""
    from .corpus import load_corpus
    from .studies import distinct_chars, vocabulary_of, word_share, words

    text = load_corpus(corpus).text
    known = vocabulary_of(text)
    rows = []
    for kind, values in (("temperature", temperatures), ("top_p", top_ps)):
        for v in values:
            t, p = (v, 1.0) if kind == "temperature" else (1.0, v)
            psg = passage(run_dir, length, seed, t, p)
            ws = words(psg.text)
            rows.append({"kind": kind, "value": v, "temperature": t, "top_p": p, "passage": psg,
                         "word_share": word_share(psg.text, known), "n_words": len(ws),
                         "distinct_chars": distinct_chars(psg.text),
                         "invented": sorted({w for w in ws if w not in known})})
    return {"rows": rows, "corpus": corpus, "length": length, "seed": seed, "n_known": len(known),
            "run_dir": str(run_dir)}


def _trend_words(name: str, measure: list, fmt) -> str:
    """'NAME rises (a, b, c)', 'falls', or 'does not change steadily', as the values do."""
    from .studies import trend

    direction = trend(measure)
    listed = ", ".join(fmt(m) for m in measure)
    verb = "rises" if direction > 0 else "falls" if direction < 0 else "does not change steadily"
    return f"{name} {verb} ({listed})"


def sampling_section(plan: dict, run_dir: str | Path, seed: int | None = None) -> HTML:
    """The sampling study with the settings of the plan (``plan["sampling"]``), from the best
    parameters of ``run_dir``; ``seed`` (default: the plan's) seeds every passage."""
    settings = dict(plan.get("sampling") or {})
    if not settings:
        return _not_run("sampling")
    if seed is not None:
        settings["seed"] = seed
    return sampling_html(sampling_study(run_dir, plan.get("corpus"), **settings))


def _sampling_trend(label: str, group: list[dict]) -> str:
    """One sentence: how the distinct characters and the share of corpus words change along the
    values of one sampling setting (passages without words said as such)."""
    if len(group) < 2:
        return ""
    vals = [r["value"] for r in group]
    chars = _trend_words("the number of distinct characters", [r["distinct_chars"] for r in group], num)
    have = [r for r in group if r["word_share"] is not None]
    if len(have) == len(group):
        share = _trend_words("the share of corpus words", [r["word_share"] for r in group], pct)
    elif len(have) >= 2:
        at = ", ".join(str(r["value"]) for r in have)
        share = _trend_words(f"the share of corpus words (at {at})", [r["word_share"] for r in have], pct)
    elif have:
        share = f"only the passage at {have[0]['value']} has words ({pct(have[0]['word_share'])} in the corpus)"
    else:
        share = "no passage has words"
    empty = [str(r["value"]) for r in group if r["word_share"] is None]
    tail = (f"; at {label} {' and '.join(empty)} the passage holds no word of two or more letters" if empty and have
            else "")
    return f"As the {label} goes from {vals[0]} to {vals[-1]}, {chars} and {share}{tail}."


def sampling_html(study: dict) -> HTML:
    """The passages, a table of what was measured in each, and the measured trends in words."""
    rows = study["rows"]
    if not rows:
        return HTML("<p>No passages.</p>")
    p0 = rows[0]["passage"]
    table_rows = [[f"temperature {r['temperature']}" if r["kind"] == "temperature" else f"top-p {r['top_p']}",
                   num(r["n_words"]), pct(r["word_share"]), num(r["distinct_chars"]),
                   ", ".join(r["invented"][:4]) + (" …" if len(r["invented"]) > 4 else "") or "—"]
                  for r in rows]
    sentences = [_sampling_trend(label, [r for r in rows if r["kind"] == kind])
                 for kind, label in (("temperature", "temperature"), ("top_p", "top-p"))]
    intro = HTML(
        f"<p>{num(study['length'])} characters each from the best parameters of the main run (update "
        f"{num(p0.update)}, {esc(p0.loss_name)} {num(p0.loss)}), all with seed {study['seed']}: three temperatures "
        f"(softmax(o / T); top-p 1) and three top-p values (only the most probable characters that together "
        f"reach probability p are drawn from; T = 1). To see what changes, the table counts each passage's "
        f"words (runs of two or more letters), the share of them that occur as words in the training corpus "
        f"(<span class=\"mono\">{esc(study['corpus'])}</span>, {num(study['n_known'])} distinct words), and its "
        f"distinct characters; the last column lists words the model made up.</p>")
    parts = [intro,
             table(table_rows, ["sampling", "words", "in the corpus", "distinct characters", "made-up words"],
                   cls="grid", align="lrrrl"),
             HTML("<p>" + esc(" ".join(sentences)) + " A lower temperature or top-p keeps to the likeliest "
                  "characters, a higher one draws more of the unlikely ones.</p>")]
    for r in rows:
        head = (f"temperature {r['temperature']}" if r["kind"] == "temperature" else f"top-p {r['top_p']}") + \
            f" · {pct(r['word_share'])} corpus words · {r['distinct_chars']} distinct characters"
        parts.append(HTML(f'<div class="sample-block"><div class="sample-head">{esc(head)}</div>'
                          f"{pre(r['passage'].text)}</div>"))
    run = _short_path(study.get("run_dir", "runs/NAME"))
    parts.append(commands_block(
        [_shell(["a4lib", "generate", run, "--length", study["length"], "--temperature", r["temperature"],
                     "--top-p", r["top_p"], "--seed", study["seed"]]) for r in rows],
        "The same passages from the command line"))
    return join(*parts)


def _short_path(path: str | Path) -> str:
    """A path relative to the working directory (the project folder) when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# 5. optimizers ---------------------------------------------------------------------------------

def optimizers_section(plan: dict, figures_dir: str | Path | None = None) -> HTML:
    """AdaGrad, RMSProp and Adam with the same number of updates: curves and held-out losses."""
    from . import plots
    from .studies import bits, held_out, per_char

    data = plan.get("optimizers") or {}
    specs = data.get("runs", [])
    if not specs:
        return _not_run("optimizer")
    runs = _load_runs(specs)
    rows, results = [], []
    for s in specs:
        run = runs[s["name"]]
        val = held_out(run.history)
        results.append((val.best, s["label"]))
        rows.append([s["label"], num(run.summary["updates"]), num(run.summary.get("seconds"), 0),
                     num(per_char(run.summary["final_smooth_loss"], run.config["seq_length"]), 3),
                     num(val.best, 3), num(bits(val.best), 3) if val.best is not None else "—", num(val.final, 3)])
    ranked = sorted(results)
    c = runs[specs[0]["name"]].config
    text = (f"Lowest held-out loss: <b>{esc(ranked[0][1])}</b> ({num(ranked[0][0], 3)} nats per character), then "
            + ", then ".join(f"{esc(label)} ({num(v, 3)})" for v, label in ranked[1:]) + ". ")
    falling, past = [], []
    for s in specs:
        val = held_out(runs[s["name"]].history)
        if val.final is not None and val.final > val.best * 1.005:
            past.append(f"{s['label']} (best at update {num(int(val.updates[val.best_index]))}, final "
                        f"{num(val.final, 3)})")
        else:
            falling.append(s["label"])
    if falling:
        text += f"At the last evaluation the held-out loss was at its lowest for {esc(' and '.join(falling))}"
        text += f"; it had risen from its best for {esc('; '.join(past))}." if past else "."
    else:
        text += f"Every held-out loss had risen from its best by the end: {esc('; '.join(past))}."
    fig = plots.compare_updates_seconds({s["label"]: (runs[s["name"]].history, runs[s["name"]].config["seq_length"])
                                         for s in specs})
    caption = (f"Smooth loss per character (nats; smooth loss / {c['seq_length']}) against the update (left) and "
               f"the training seconds (right; held-out evaluations every {num(c['val_every'])} updates included).")
    intro = HTML(
        f"<p>The handout's RNN (m = {c['m']}, seq_length = {c['seq_length']}, B = 1, clip {c['clip']}) trained "
        f"with each optimizer for {num(data['updates'])} updates on <span class=\"mono\">"
        f"{esc(runs[specs[0]['name']].corpus.get('name'))}</span>, the last {pct(c['val_fraction'])} held out, in "
        f"shuffled chunks of {num(c['chunk_length'])} characters. AdaGrad keeps the handout's eta = 0.1. RMSProp "
        f"(γ = 0.9) and Adam (β₁ = 0.9, β₂ = 0.999) divide by a running average of g² rather than its growing sum, "
        f"so their steps do not shrink over time and need a smaller eta: 0.001 and 0.002, picked by a short pilot "
        f"(40,000 updates on builtin:python-docs; held-out loss 3.14 with RMSProp at eta 0.01, 1.96 at 0.003, "
        f"1.83 at 0.001; Adam 1.84 at 0.003, 1.71 at 0.002). The same number of updates for each makes the "
        f"losses comparable and repeatable; {esc(_ran_with(plan, specs))}.</p>")
    return join(intro,
                figure(fig, Path(figures_dir) / "optimizers.png" if figures_dir else None, caption),
                table(rows, ["optimizer", "updates", "seconds", "final smooth loss / char", "best held-out (nats)",
                             "(bits)", "final held-out"], cls="grid", align="lrrrrrr"),
                HTML(f"<p>{text}</p>"),
                commands_block(_commands(specs)))


# 6. tweets -------------------------------------------------------------------------------------

NO_TWEETS = ("No tweet corpus was available for this report: to include this section, give one with "
             "make report TWEETS=path/to/tweets.json (a JSON list of objects with a \"text\" field, "
             "e.g. condensed_2018.json of the Trump Twitter Archive).")


def tweets_section(plan: dict, n_tweets: int = 5, seed: int = 0) -> HTML:
    """Generated tweets at several stages of a tweet run, and a few from its best parameters;
    one sentence on how to switch the section on when there is no tweet corpus."""
    from .studies import pick_stages

    specs = (plan.get("tweets") or {}).get("runs", [])
    if not specs:
        return HTML(f"<p>{esc(NO_TWEETS)}</p>")
    spec = specs[0]
    run = load_run(spec["dir"])
    c, s, corpus = run.config, run.summary, run.corpus
    intro = HTML(
        f"<p>The handout's RNN (m = {c['m']}, AdaGrad, eta = {c['eta']}, seq_length = {c['seq_length']}) trained "
        f"for {num(s['updates'])} updates ({s['epochs']} epochs{_backend(run)}, {num(s.get('seconds'), 0)} s) on "
        f"<span class=\"mono\">{esc(corpus.get('name'))}</span>: {num(corpus.get('n_documents'))} tweets, "
        f"{num(corpus.get('n_chars'))} characters, K = {num(corpus.get('K'))}. Each tweet is a segment of its own "
        f"(h = 0 at its start) between end-of-tweet characters (EOT, U+0003), so the model learns how tweets "
        f"begin and end; generation starts a new tweet and stops at EOT or after 280 characters. "
        f"{esc(_ran_with(plan, specs)[:1].upper() + _ran_with(plan, specs)[1:])}.</p>")
    stages = pick_stages(run.samples, 3)
    parts = [intro, HTML("<h3>During training</h3>")]
    for smp in stages:
        parts.append(HTML(f'<div class="sample-block"><div class="sample-head">{esc(sample_heading(smp, run))}'
                          f" · {len(smp['text'])} characters</div>{pre(smp['text'])}</div>"))
    parts.append(HTML(f"<h3>From the best parameters</h3><p>{n_tweets} tweets generated by "
                      f"<span class=\"mono\">a4lib.sample.generate</span> (temperature 1, seeds {seed} to "
                      f"{seed + n_tweets - 1}) from the parameters of update {num(s.get('best_update'))} "
                      f"(lowest smooth loss, {num(s.get('best_smooth_loss'))}):</p>"))
    for k in range(n_tweets):
        p = passage(spec["dir"], 280, seed + k)
        parts.append(HTML(f'<div class="sample-block"><div class="sample-head">seed {seed + k} · '
                          f"{len(p.text)} characters</div>{pre(p.text)}</div>"))
    parts.append(commands_block(_commands(specs)))
    return join(*parts)
