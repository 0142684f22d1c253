"""Files of a run directory, written atomically: a crash or Ctrl-C never leaves half a file.

A checkpoint is one ``.npz``: the arrays a resume needs plus a JSON metadata string under the
key ``meta``. Replacing one file with ``os.replace`` keeps arrays and metadata in step.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint.npz"


def _atomic(path: Path, write) -> None:
    """Call write(binary file) on a temporary file beside path, then rename it over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """JSON, UTF-8, indented, atomically."""
    data = (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    _atomic(path, lambda f: f.write(data))


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
    """An uncompressed .npz of the arrays (and ``meta`` as JSON), atomically."""
    payload = dict(arrays)
    if meta is not None:
        payload["meta"] = np.array(json.dumps(meta))
    _atomic(path, lambda f: np.savez(f, **payload))


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of an .npz and its metadata (empty dict when it has none)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    return arrays, meta


def load_params(run_dir: Path, which: str = "best") -> tuple[dict[str, np.ndarray], dict]:
    """A run's parameters (``best`` or ``last``) as a dict of arrays, and the checkpoint metadata."""
    from .optim import unflatten

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {CHECKPOINT} (not a training run directory?)")
    try:
        with np.load(path, allow_pickle=False) as z:  # only what is asked for: the history can be large
            meta = json.loads(str(z["meta"]))
            flat = z["best_w" if which == "best" else "w"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable a4lib checkpoint ({type(err).__name__})") from None
    like = {k: np.empty(shape) for k, shape in meta["param_shapes"].items()}
    return {k: v.copy() for k, v in unflatten(flat, like).items()}, meta


def load_state(run_dir: Path, which: str = "best") -> np.ndarray | None:
    """The state that goes with ``load_params(run_dir, which)``: stream 0's hidden state after the
    best (or last) update, shape (S,); None for a checkpoint that does not hold it."""
    key = "best_state" if which == "best" else "last_state"
    with np.load(Path(run_dir) / CHECKPOINT, allow_pickle=False) as z:
        return z[key] if key in z.files else None


def load_meta(path: Path) -> dict:
    """The metadata of an .npz written by ``save_arrays``, without reading its arrays."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"])) if "meta" in z.files else {}
