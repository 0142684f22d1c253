"""``make best``: the headline run, the configuration that did best within 15 minutes on a 2-core
machine, trained into ``runs/best`` and set beside the Kneser-Ney 8-gram on the same split.

    python -m report.best [--corpus PATH] [--out DIR] [--max-seconds S]

The configuration (``HEADLINE``) was chosen with ``a4lib sweep`` on ``tinyshakespeare.txt``; the
README has the sweep and its table. The run trains with ``--max-seconds 900`` (a time budget: the
number of updates it reaches depends on the machine); a second call resumes an interrupted run and
leaves a finished one as it is. The n-gram (``a4lib ngram``, order 8) is fitted on the run's
training part into ``DIR-ngram``. Prints both held-out losses; the report shows them when
``runs/best`` exists.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from a4lib import ngram
from a4lib.checkpoint import read_json
from a4lib.config import Config
from a4lib.corpus import load_corpus
from a4lib.rundir import RunDirError, project_path, read_json_or, verdict
from a4lib.train import train

#: the headline configuration (see the README's sweep); the corpus and the budget come from the call
HEADLINE = Config(model="gru", layers=2, m=256, dropout=0.1, lr_decay=0.95, lr_decay_after=5, batch_size=32,
                  seq_length=50, optimizer="adam", eta=0.002, dtype="float32", val_fraction=0.1, val_every=200,
                  n_epochs=1000, sample_every=0, max_seconds=900.0)
NGRAM_ORDER = 8


def ngram_dir(out: Path) -> Path:
    """Where the n-gram of the run in ``out`` is fitted."""
    return out.with_name(out.name + "-ngram")


def best(corpus: str | None, out: Path, max_seconds: float) -> dict:
    """Train (or resume, or keep) the headline run and fit the n-gram; both held-out losses."""
    text = load_corpus(corpus)
    spec = None if corpus is None else str(Path(corpus).resolve())
    cfg = HEADLINE.replace(corpus=spec, max_seconds=max_seconds)
    said = verdict(out, cfg, text)  # new, resume or extend: trained; done: kept as it is (train says so)
    if said.kind == "conflict":
        raise RunDirError(said.reason)
    summary = train(cfg, out, resume=said.kind != "new")
    grams = ngram_dir(out)
    fitted = read_json_or(grams / "config.json", {})
    wanted = {"corpus_sha256": text.sha256, "val_fraction": cfg.val_fraction, "ngram_order": NGRAM_ORDER}
    if isinstance(fitted, dict) and all(fitted.get(k) == v for k, v in wanted.items()) \
            and (grams / "summary.json").is_file():
        counts = read_json(grams / "summary.json")
    else:  # none yet, or of another text or split: counted again (about a second)
        shutil.rmtree(grams, ignore_errors=True)
        counts, _ = ngram.run(text, grams, order=NGRAM_ORDER, val_fraction=cfg.val_fraction)
    return {"network": summary["best_val_loss"], "update": summary["best_update"], "seconds": summary["seconds"],
            "ngram": counts["best_val_loss"], "corpus": text.name}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make best", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="default: data/goblet_book.txt of the project if present, else builtin:python-docs")
    p.add_argument("--out", type=Path, default=None, help="default: the project's runs/best")
    p.add_argument("--max-seconds", type=float, default=HEADLINE.max_seconds, help="the training time budget")
    a = p.parse_args(argv)
    out = a.out if a.out is not None else project_path("runs/best")
    try:
        r = best(a.corpus, out, a.max_seconds)
    except (ValueError, OSError) as err:
        print(f"make best: {err}", file=sys.stderr)
        return 2
    gap = r["ngram"] - r["network"]
    print(f"{r['corpus']}: held-out loss {r['network']:.3f} nats/char ({r['network'] / ngram.LN2:.3f} bits) from "
          f"{out} (best at update {r['update']:,}, {r['seconds']:.0f} s); Kneser-Ney {NGRAM_ORDER}-gram "
          f"{r['ngram']:.3f} nats/char: the network is {'better' if gap > 0 else 'worse'} by {abs(gap):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
