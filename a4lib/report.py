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
import json
import os
import platform
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
    if path is None or not Path(path).is_file():
        return default
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
    from .checkpoint import CHECKPOINT, load_arrays

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return []
    _, meta = load_arrays(path)
    return list(meta.get("corpus", {}).get("chars", []))


def gradcheck_method(results: list[dict]) -> HTML:
    """How the gradient check was done, with the values it was done with."""
    if not results:
        return HTML("<p>No gradient-check results.</p>")
    r0 = results[0]
    sigs = ", ".join(f"sig = {r['sig']} for m = {r['m']}" for r in results)
    return HTML(
        f"<p>The analytic gradients (back-propagation through time) are compared with numerical ones "
        f"for every entry of every parameter array (U, W, V, b, c), on the first seq_length = {r0['seq_length']} "
        f"characters of <span class=\"mono\">{esc(r0['corpus'])}</span> (K = {r0['K']}) with h<sub>0</sub> = 0 "
        f"and freshly initialised weights ({esc(sigs)}). The numerical gradient of entry θ<sub>i</sub> is the "
        f"centred difference (L(θ + h e<sub>i</sub>) − L(θ − h e<sub>i</sub>)) / 2h with h = {r0['h']:g}, "
        f"L the loss summed over the sequence, without clipping. Each entry's relative error is "
        f"|g<sub>a</sub> − g<sub>n</sub>| / max(10<sup>−8</sup>, |g<sub>a</sub>| + |g<sub>n</sub>|); "
        f"the tables give its maximum and mean over each array, and the largest absolute difference. "
        f"The check passes when every maximum relative error is at most {r0['tol']:.0e}.</p>"
        + ("<p>For m = 100 the weights are drawn with sig = 0.1 rather than 0.01: with 0.01 many entries "
           "of the gradient of W are around 10<sup>−10</sup>, and their relative errors measure "
           "floating-point round-off rather than mistakes.</p>" if any(r["m"] > 10 and r["sig"] != 0.01 for r in results) else ""))


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
    from .checkpoint import load_params
    from .corpus import Corpus
    from .models import get_model
    from .sample import generate

    params, meta = load_params(run_dir, which)
    vocab = Corpus.from_vocabulary(meta["corpus"]["chars"], meta["corpus"]["name"])
    model = get_model(meta["config"]["model"])
    text = generate(model, params, vocab, length, np.random.default_rng(seed), temperature, top_p, prime)
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
             f'those of <b>update {num(p.update)}</b> ({esc(p.loss_name)} <b>{num(p.loss)}</b>); {how}, {primed}, '
             f'seed {p.seed}.</p>'),
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
