"""The command line: ``a4lib train | generate | gradcheck | bench`` (also ``python -m a4lib``).

Bad input gets one line on stderr and exit code 2; a diverged run or a failed check exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import bench
from . import checkpoint as ckpt
from .corpus import Corpus, CorpusError, load_corpus
from .gradcheck import format_table, run_checks
from .models import MODEL_NAMES, get_model
from .optim import OPTIMIZERS
from .sample import generate
from .train import ORDERS, Config, Trainer, TrainingError, train


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


def build_parser() -> Parser:
    p = Parser(prog="a4lib", description="Character-level RNN (DD2424 Assignment 4).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a model into a run directory")
    t.add_argument("--corpus", help="text file, tweet JSON, or builtin:python-docs (default: "
                   "data/goblet_book.txt if present, else builtin:python-docs)")
    t.add_argument("--out", required=True, type=Path, help="run directory")
    t.add_argument("--model", default="rnn", help=f"{' | '.join(MODEL_NAMES)}")
    t.add_argument("--m", type=int, default=100, help="hidden units")
    t.add_argument("--eta", type=float, default=0.1, help="learning rate")
    t.add_argument("--seq-length", type=int, default=25)
    t.add_argument("--sig", type=float, default=0.01, help="std of the initial weights")
    t.add_argument("--optimizer", default="adagrad", help=" | ".join(OPTIMIZERS))
    t.add_argument("--clip", type=float, default=5.0, help="element-wise gradient clip (0: none)")
    stop = t.add_mutually_exclusive_group()
    stop.add_argument("--epochs", type=int, help="stop after this many epochs (default 2)")
    stop.add_argument("--updates", type=int, help="stop after this many updates")
    t.add_argument("--max-seconds", type=float, help="also stop after this much training time")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sample-every", type=int, default=10_000, help="updates between samples (0: none)")
    t.add_argument("--sample-length", type=int, default=200)
    t.add_argument("--batch-size", type=int, default=1, help="parallel streams B")
    t.add_argument("--order", default="sequential", help=" | ".join(ORDERS))
    t.add_argument("--chunk-length", type=int, default=1000, help="characters per chunk (--order chunks)")
    t.add_argument("--val-fraction", type=float, default=0.0, help="hold out the final part of the text")
    t.add_argument("--val-every", type=int, default=1000, help="updates between held-out evaluations")
    t.add_argument("--checkpoint-every", type=int, default=10_000)
    t.add_argument("--backend", default="auto", help="auto | numpy | numba (auto: numba where installed, rnn only)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out (optionally to new --updates/--epochs)")
    t.add_argument("--quiet", action="store_true", help="no progress bar, no samples on stdout")

    g = sub.add_parser("generate", help="print text from a trained run")
    g.add_argument("run_dir", type=Path)
    g.add_argument("--length", type=int, default=1000)
    g.add_argument("--temperature", type=float, default=1.0, help="0: argmax")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    g.add_argument("--prime", default="", help="priming text (default: the vocabulary's first character)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--params", choices=["best", "last"], default="best")

    c = sub.add_parser("gradcheck", help="analytic against centred-difference gradients")
    c.add_argument("--corpus")
    c.add_argument("--model", default="rnn", help=" | ".join(MODEL_NAMES))
    c.add_argument("--m", type=int, action="append", help="hidden units (repeatable; default 5 and 100)")
    c.add_argument("--seq-length", type=int, default=25)
    c.add_argument("--sig", type=float, help="default 0.01 for m <= 10, else 0.1")
    c.add_argument("--h", type=float, default=1e-4, help="finite-difference step")
    c.add_argument("--tol", type=float, default=1e-4, help="largest acceptable max relative error")
    c.add_argument("--json", type=Path, help="also write the results to this file")

    bench.add_arguments(sub.add_parser("bench", help="characters/s of the training step against reference.py"))
    return p


# train options a resume may give: where to stop, and how to run. Every other one must be the run's
# own (the corpus is checked by its sha256 instead).
RESUME_MAY_SET = {"command", "out", "resume", "quiet", "epochs", "updates", "max_seconds", "corpus"}


def _check_resume_settings(a, stored: dict) -> None:
    """A setting given with --resume must be the run's own: resuming never changes hyperparameters."""
    defaults = vars(build_parser().parse_args(["train", "--out", "-"]))
    for name, value in vars(a).items():
        if name in RESUME_MAY_SET or value == defaults[name] or stored.get(name, value) == value:
            continue
        raise UsageError(f"{a.out} was trained with {name} = {stored[name]!r}; --resume continues it with its "
                         f"own settings (drop --{name.replace('_', '-')}, or train a new run)")


def cmd_train(a) -> int:
    cfg = Config(corpus=a.corpus, model=a.model, m=a.m, eta=a.eta, seq_length=a.seq_length, sig=a.sig,
                 optimizer=a.optimizer, clip=a.clip, n_epochs=a.epochs, n_updates=a.updates, max_seconds=a.max_seconds, seed=a.seed,
                 sample_every=a.sample_every, sample_length=a.sample_length, batch_size=a.batch_size,
                 order=a.order, chunk_length=a.chunk_length, val_fraction=a.val_fraction,
                 val_every=a.val_every, checkpoint_every=a.checkpoint_every, backend=a.backend)
    if cfg.n_epochs is None and cfg.n_updates is None and not a.resume:
        cfg.n_epochs = 2
    if a.resume:
        if not (a.out / ckpt.CHECKPOINT).is_file():
            raise UsageError(f"{a.out}: no run to resume (no {ckpt.CHECKPOINT})")
        _check_resume_settings(a, ckpt.load_meta(a.out / ckpt.CHECKPOINT)["config"])
    else:
        cfg.validate()
        if (a.out / ckpt.CHECKPOINT).exists():
            raise UsageError(f"{a.out} already holds a run: pass --resume, or choose another --out")
    show = None if a.quiet else (lambda s: print(f"--- update {s['update']}, smooth loss "
                                                 f"{s['smooth_loss'] if s['smooth_loss'] is None else round(s['smooth_loss'], 3)}\n"
                                                 f"{s['text']}\n", flush=True))
    summary = train(cfg, a.out, resume=a.resume, progress=not a.quiet, on_sample=show)
    print(json.dumps({k: summary[k] for k in ("status", "updates", "epochs", "best_smooth_loss", "best_val_loss",
                                               "best_update", "seconds", "updates_per_s")}))
    return 0


def cmd_generate(a) -> int:
    if not a.run_dir.is_dir():
        raise UsageError(f"{a.run_dir}: no such run directory")
    params, meta = ckpt.load_params(a.run_dir, a.params)
    vocab = Corpus.from_vocabulary(meta["corpus"]["chars"], meta["corpus"]["name"])
    model = get_model(meta["config"]["model"])
    text = generate(model, params, vocab, a.length, np.random.default_rng(a.seed), a.temperature, a.top_p, a.prime,
                    ckpt.load_state(a.run_dir, a.params))
    sys.stdout.write(text + "\n")
    return 0


def cmd_gradcheck(a) -> int:
    corpus = load_corpus(a.corpus, a.seq_length)
    if a.seq_length < 1 or any(m < 1 for m in a.m or []) or a.h <= 0:
        raise UsageError("need --seq-length >= 1, --m >= 1 and --h > 0")
    results = run_checks(corpus, a.m or [5, 100], a.seq_length, a.model, a.h, a.tol, a.sig)
    for r in results:
        title = (f"{r['model']} m={r['m']} sig={r['sig']} seq_length={r['seq_length']} K={r['K']} h={r['h']} "
                 f"({r['seconds']} s): {'ok' if r['ok'] else 'FAILED'} (tolerance {r['tol']:.0e}, floor {r['floor']:.1e})")
        print(format_table(r["table"], title) + "\n")
    if a.json:
        ckpt.write_json(a.json, results)
    return 0 if all(r["ok"] for r in results) else 1


COMMANDS = {"train": cmd_train, "generate": cmd_generate, "gradcheck": cmd_gradcheck, "bench": bench.command}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, CorpusError, ValueError, FileNotFoundError) as err:
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 2
    except (TrainingError, OSError) as err:
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:
        print("a4lib: error: out of memory (try a smaller --m or --batch-size)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
