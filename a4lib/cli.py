"""The command line: ``a4lib train | generate | gradcheck | bench | sweep | runs | ngram`` (also ``python -m a4lib``).

Bad input gets one line on stderr and exit code 2; a diverged run or a failed check exits 1; a
run stopped by a signal exits 128 + its number (Ctrl-C 130, SIGTERM 143, SIGHUP 129; saved,
resumable).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np

from . import bench
from . import ngram
from . import sweep
from . import checkpoint as ckpt
from . import __version__
from .config import MAX_SAMPLE_LENGTH, MODEL_NAMES, Config, add_arguments, given, near
from .corpus import CorpusError, load_corpus
from .gradcheck import MS as GRADCHECK_MS
from .gradcheck import format_table, run_checks
from .model import resolve_backend
from .sample import check_sampling
from .rundir import latest_run, list_runs
from .train import TrainingError, resume_config, train


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default (the train flags say theirs in their help)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or any(action.default is v for v in (None, argparse.SUPPRESS, False)):
            return text
        return text + " (default: %(default)s)"


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
    p.add_argument("--version", action="version", version=f"a4lib {__version__}")
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
    g.add_argument("--length", type=int, default=1000, help=f"characters to generate (at most {MAX_SAMPLE_LENGTH:,})")
    g.add_argument("--temperature", type=float, default=1.0, help="divides the logits (0: always the likeliest)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: the probability mass drawn from")
    g.add_argument("--prime", default="", help="priming text, printed before the generated text (default: a line "
                                               "break, else a space, else the first character; not printed)")
    g.add_argument("--seed", type=int, default=0, help="seeds the sampling")
    g.add_argument("--params", choices=["best", "last"], default="best", help="which parameters of the run")

    c = sub.add_parser("gradcheck", help="analytic against centred-difference gradients", formatter_class=Help)
    c.add_argument("--corpus", help="the text the characters come from (default: as for train)")
    c.add_argument("--model", default="rnn", choices=MODEL_NAMES, help="the recurrence")
    c.add_argument("--layers", type=positive(int), default=1, help="stacked layers")
    c.add_argument("--m", type=positive(int), action="append",
                   help=f"hidden units (repeatable; default {' and '.join(map(str, GRADCHECK_MS))})")
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
    p.commands = sub.choices  # the command's parser, for the flags near an unknown one
    return p


def cmd_train(a) -> int:
    settings = given(a)
    cfg = resume_config(a.out, settings) if a.resume else Config(**settings)
    show = None if a.quiet else (lambda s: print(f"{sample_heading(s)}\n{s['text']}\n", flush=True))
    if cfg.backend == "auto" and resolve_backend("auto") == "numpy":
        print("a4lib: numba or SciPy is not installed: the numpy backend trains (slower; pip install 'a4lib[fast]')",
              file=sys.stderr)
    if cfg.blas_threads > 1 and resolve_backend(cfg.backend) == "numba":
        from .model import kernels
        if not kernels.set_blas_threads(cfg.blas_threads):
            print(f"a4lib: --blas-threads {cfg.blas_threads} has no effect here: compiled code calls "
                  f"{kernels.BLAS}; OPENBLAS_NUM_THREADS decides", file=sys.stderr)
    summary = train(cfg, Path(a.out), resume=a.resume, progress=not a.quiet, on_sample=show)
    try:
        print(summary_line(summary, a.out))
        if summary["status"] == "interrupted":
            print(f"a4lib: stopped by {summary['signal']} at update {summary['updates']:,}; saved: continue with "
                  f"a4lib train --out {a.out} --resume", file=sys.stderr)
    except OSError:  # the terminal or pipe is gone (a hang-up): the run is saved; nothing more is said
        silence()
    if summary["status"] == "interrupted":
        return 128 + signal.Signals[summary["signal"]] if summary["signal"] else 1
    return 0


def silence() -> None:
    """Send stdout and stderr to the null device: what is still buffered for a terminal that is gone
    is dropped there instead of failing at exit."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)


def loss_text(x: float | None) -> str:
    """A loss as every line of the command line shows it: three decimals, or "-" for none."""
    return "-" if x is None else f"{x:,.3f}"


def sample_heading(sample: dict) -> str:
    """The line above a sample: its update and the smooth loss there."""
    if sample["smooth_loss"] is None:
        return f"--- update {sample['update']:,} (before training)"
    return f"--- update {sample['update']:,}, smooth loss {loss_text(sample['smooth_loss'])}"


def summary_line(summary: dict, out) -> str:
    """The last line ``a4lib train`` prints: where the run stands and its losses (summary.json in
    ``out`` holds them all)."""
    line = (f"{summary['status']}: {summary['updates']:,} updates ({summary['epochs']:.2f} epochs) in "
            f"{summary['seconds']:,.1f} s")
    if summary.get("updates_per_s"):
        line += f" ({summary['updates_per_s']:,.0f} updates/s)"
    line += f"; best smooth loss {loss_text(summary['best_smooth_loss'])}"
    if summary.get("best_val_loss") is not None:
        line += f", best held-out loss {loss_text(summary['best_val_loss'])} nats/char"
    return f"{line} (the parameters after {summary['best_update']:,} updates kept as the best); {out}/summary.json"


def cmd_generate(a) -> int:
    from .results.analysis import passage

    if a.run_dir is None:
        run_dir = latest_run()
        print(f"a4lib: generating from {run_dir} (the latest run)", file=sys.stderr)
    else:
        run_dir = Path(a.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not 0 <= a.length <= MAX_SAMPLE_LENGTH:
        raise UsageError(f"need 0 <= --length <= {MAX_SAMPLE_LENGTH:,}, got {a.length}")
    try:
        check_sampling(a.temperature, a.top_p)
    except ValueError as err:
        raise UsageError(str(err).replace("temperature", "--temperature").replace("top_p", "--top-p")) from None
    if ngram.is_ngram_run(run_dir):  # the counts are refitted from the run's corpus
        text = ngram.generate_from_run(run_dir, a.length, np.random.default_rng(a.seed), a.temperature, a.top_p, a.prime)
        sys.stdout.write(text + "\n")
        return 0
    text = passage(run_dir, a.length, a.seed, a.temperature, a.top_p, a.prime or None, a.params)
    sys.stdout.write((text.text if a.prime else text.text[len(text.prime):]) + "\n")
    return 0


def cmd_gradcheck(a) -> int:
    corpus = load_corpus(a.corpus, a.seq_length)
    results = run_checks(corpus, a.m or GRADCHECK_MS, a.seq_length, a.model, a.h, a.tol, a.sig, layers=a.layers)
    for r in results:
        title = (f"{r['model']} layers={r['layers']} m={r['m']} sig={r['sig']} seq_length={r['seq_length']} K={r['K']} h={r['h']} "
                 f"({r['seconds']} s): {'ok' if r['ok'] else 'FAILED'} (tolerance {r['tol']:.0e}, floor {r['floor']:.1e})")
        print(format_table(r["table"], title) + "\n")
    if a.json:
        ckpt.write_json(a.json, results)
    return 0 if all(r["ok"] for r in results) else 1


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
    table = [header] + [(r["name"], r["model"] or "-", Path(str(r["corpus"] or "default")).name,
                         "-" if r["updates"] is None else f"{r['updates']:,}", loss_text(r["best_smooth_loss"]),
                         loss_text(r["best_val_loss"]), r["status"], r["date"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in rows:
        if r["problem"]:
            print(f"a4lib: {r['name']} is unreadable: {r['problem']}", file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "gradcheck": cmd_gradcheck, "bench": bench.command,
            "runs": cmd_runs, "sweep": sweep.command, "ngram": ngram.command}


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line's namespace; a UsageError (one line) for an argument that is not UTF-8 (a4lib
    writes its paths into JSON) or not known (with the near flag of the command, as the sweep's
    --grid and the notebooks' parameters say)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{os.fsencode(arg)!r} is not UTF-8: a4lib writes its paths and values into JSON "
                             f"files; rename it") from None
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [s for a in parser.commands[args.command]._actions for s in a.option_strings]
        word = next((u.split("=")[0] for u in unknown if u.startswith("-")), unknown[0])
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)}{near(word, flags)}")
    return args


#: what each command's memory grows with: named when it runs out
SMALLER = {"train": "--m or --batch-size", "sweep": "--m or --batch-size", "bench": "--m", "gradcheck": "--m",
           "ngram": "--order", "generate": "--length"}


def main(argv: list[str] | None = None) -> int:
    command = None
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        command = args.command
        return COMMANDS[command](args)
    except (UsageError, CorpusError, ValueError, FileNotFoundError) as err:  # ConfigError, RunDirError, ...
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:
        hint = f" (try a smaller {SMALLER[command]})" if command in SMALLER else ""
        print(f"a4lib: error: out of memory{hint}", file=sys.stderr)
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
