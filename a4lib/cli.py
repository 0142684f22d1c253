"""The command line: ``a4lib train | generate | gradcheck | bench | sweep | runs | ngram`` (also ``python -m a4lib``).

Bad input gets one line on stderr and exit code 2; a diverged run or a failed check exits 1; a
run stopped by Ctrl-C exits 130, by SIGTERM 143 (saved, resumable).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from . import bench
from . import ngram
from . import sweep
from . import checkpoint as ckpt
from .config import MODEL_NAMES, Config, add_arguments, given
from .corpus import Corpus, CorpusError, load_corpus
from .gradcheck import format_table, run_checks
from .model import make_network, resolve_backend
from .rundir import latest_run, list_runs
from .sample import generate
from .train import TrainingError, train

EXIT_BY_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default (the train flags say theirs in their help)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, argparse.SUPPRESS, False):
            return text
        return text + " (default: %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("a4lib")
    except PackageNotFoundError:
        return "unknown"


def positive(kind):
    """An argparse type: a finite number of ``kind`` above 0."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: expected a number > 0")
        return value
    return convert


def build_parser() -> Parser:
    p = Parser(prog="a4lib", description="Character-level RNN (DD2424 Assignment 4).", formatter_class=Help)
    p.add_argument("--version", action="version", version=f"a4lib {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a model into a run directory", formatter_class=Help,
                       description="Train into a run directory (each setting's default in its help).")
    t.add_argument("--out", required=True, help="the run directory (created; refused if it holds a run "
                                                "unless --resume)")
    add_arguments(t)
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out; only --updates/--epochs/--max-seconds and --corpus (the same "
                        "text) may be given anew")
    t.add_argument("--quiet", action="store_true", help="no progress bar, no samples on stdout")

    g = sub.add_parser("generate", help="print text from a trained run", formatter_class=Help)
    g.add_argument("run_dir", nargs="?", help="a run directory (default: the latest run under the project's runs/)")
    g.add_argument("--length", type=int, default=1000, help="characters to generate")
    g.add_argument("--temperature", type=float, default=1.0, help="divides the logits (0: always the likeliest)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: the probability mass drawn from")
    g.add_argument("--prime", default="", help="priming text (default: the vocabulary's first character)")
    g.add_argument("--seed", type=int, default=0, help="seeds the sampling")
    g.add_argument("--params", choices=["best", "last"], default="best", help="which parameters of the run")

    c = sub.add_parser("gradcheck", help="analytic against centred-difference gradients", formatter_class=Help)
    c.add_argument("--corpus", help="the text the characters come from (default: as for train)")
    c.add_argument("--model", default="rnn", choices=MODEL_NAMES, help="the recurrence")
    c.add_argument("--layers", type=positive(int), default=1, help="stacked layers")
    c.add_argument("--m", type=positive(int), action="append", help="hidden units (repeatable; default 5 and 100)")
    c.add_argument("--seq-length", type=positive(int), default=25, help="characters in the checked sequence")
    c.add_argument("--sig", type=positive(float), help="std of the initial weights (default 0.01 for m <= 10, else 0.1)")
    c.add_argument("--h", type=positive(float), default=1e-4, help="finite-difference step")
    c.add_argument("--tol", type=positive(float), default=1e-4, help="largest acceptable max relative error")
    c.add_argument("--json", type=Path, help="also write the results to this file")

    bench.add_arguments(sub.add_parser("bench", help="characters/s of the training step against reference.py",
                                       formatter_class=Help))

    sweep.add_arguments(sub.add_parser("sweep", help="a grid of training runs, on local processes or a Dask cluster",
                                       formatter_class=Help))

    r = sub.add_parser("runs", help="a table of the runs under a folder", formatter_class=Help)
    r.add_argument("folder", nargs="?", default=None, help="where to look (default: the project's runs/)")
    r.add_argument("--json", action="store_true", help="one JSON list instead of the table")

    ngram.add_arguments(sub.add_parser("ngram", help="the Kneser-Ney character n-gram baseline into a run directory",
                                       formatter_class=Help))
    return p


def cmd_train(a) -> int:
    settings = given(a)
    if a.resume:
        meta = ckpt.load_meta(Path(a.out) / ckpt.CHECKPOINT) if (Path(a.out) / ckpt.CHECKPOINT).is_file() else None
        if meta is None:
            raise UsageError(f"{a.out}: no run to resume (no {ckpt.CHECKPOINT})")
        ckpt.check_meta(meta, Path(a.out) / ckpt.CHECKPOINT)
        own = Config.from_dict(meta["config"])
        if ("n_updates" in settings or "n_epochs" in settings) and "max_seconds" not in settings:
            settings["max_seconds"] = None  # a new target replaces the old time budget
        if "n_epochs" in settings:
            settings.setdefault("n_updates", None)
        cfg = own.replace(**settings)
    else:
        cfg = Config(**settings)
    show = None if a.quiet else (lambda s: print(f"--- update {s['update']}, smooth loss "
                                                 f"{s['smooth_loss'] if s['smooth_loss'] is None else round(s['smooth_loss'], 3)}\n"
                                                 f"{s['text']}\n", flush=True))
    if cfg.backend == "auto" and resolve_backend("auto") == "numpy":
        print("a4lib: numba or SciPy is not installed: the numpy backend trains (slower; pip install 'a4lib[fast]')",
              file=sys.stderr)
    summary = train(cfg, Path(a.out), resume=a.resume, progress=not a.quiet, on_sample=show)
    print(json.dumps({k: summary[k] for k in ("status", "updates", "epochs", "best_smooth_loss", "best_val_loss",
                                               "best_update", "seconds", "updates_per_s")}))
    if summary["status"] == "interrupted":
        print(f"a4lib: stopped by {summary['signal']} at update {summary['updates']:,}; saved: continue with "
              f"a4lib train --out {a.out} --resume", file=sys.stderr)
        return EXIT_BY_SIGNAL.get(summary["signal"], 1)
    return 0


def cmd_generate(a) -> int:
    run_dir = Path(a.run_dir) if a.run_dir is not None else latest_run()
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if a.length < 0 or not math.isfinite(a.temperature) or a.temperature < 0 or not 0 < a.top_p <= 1:
        raise UsageError("need --length >= 0, --temperature >= 0 and 0 < --top-p <= 1")
    if ngram.is_ngram_run(run_dir):  # the counts are refitted from the run's corpus
        text = ngram.generate_from_run(run_dir, a.length, np.random.default_rng(a.seed), a.temperature, a.top_p, a.prime)
        sys.stdout.write(text + "\n")
        return 0
    params, meta = ckpt.load_params(run_dir, a.params)
    if not all(np.isfinite(v).all() for v in params.values()):
        raise ckpt.CheckpointError(f"{run_dir}: the {a.params} parameters are not finite")
    corpus = meta["corpus"]
    vocab = Corpus.from_vocabulary(corpus["chars"], corpus["name"], corpus.get("is_tweets"))
    model = make_network(meta["config"], vocab.K, backend="numpy")
    text = generate(model, params, vocab, a.length, np.random.default_rng(a.seed), a.temperature, a.top_p, a.prime,
                    ckpt.load_state(run_dir, a.params))
    sys.stdout.write(text + "\n")
    return 0


def cmd_gradcheck(a) -> int:
    corpus = load_corpus(a.corpus, a.seq_length)
    results = run_checks(corpus, a.m or [5, 100], a.seq_length, a.model, a.h, a.tol, a.sig, layers=a.layers)
    for r in results:
        title = (f"{r['model']} layers={r['layers']} m={r['m']} sig={r['sig']} seq_length={r['seq_length']} K={r['K']} h={r['h']} "
                 f"({r['seconds']} s): {'ok' if r['ok'] else 'FAILED'} (tolerance {r['tol']:.0e}, floor {r['floor']:.1e})")
        print(format_table(r["table"], title) + "\n")
    if a.json:
        ckpt.write_json(a.json, results)
    return 0 if all(r["ok"] for r in results) else 1


def _loss(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def cmd_runs(a) -> int:
    from .rundir import project_path

    folder = Path(a.folder) if a.folder is not None else project_path("runs")
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    rows = list_runs(folder)
    if a.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "mtime"} for r in rows]))
        return 0
    if not rows:
        print(f"no runs under {folder}")
        return 0
    header = ("name", "model", "corpus", "updates", "best smooth", "best held-out", "status", "date")
    table = [header] + [(r["name"], r["model"] or "—", Path(str(r["corpus"] or "default")).name,
                         "—" if r["updates"] is None else f"{r['updates']:,}", _loss(r["best_smooth_loss"]),
                         _loss(r["best_val_loss"]), r["status"], r["date"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "gradcheck": cmd_gradcheck, "bench": bench.command,
            "runs": cmd_runs, "sweep": sweep.command, "ngram": ngram.command}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, CorpusError, ValueError, FileNotFoundError) as err:  # ConfigError, RunDirError, ...
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:
        print("a4lib: error: out of memory (try a smaller --m or --batch-size)", file=sys.stderr)
        return 1
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"a4lib: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("a4lib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
