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


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not hold what a run needs (one line)."""


def _umask() -> int:
    """The process's umask: read from /proc where it can be (setting it, even for a moment, would
    race with other threads' files), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: files are readable as the user's umask allows (mkstemp alone would make them private)
FILE_MODE = 0o666 & ~_umask()


def _atomic(path: Path, write) -> None:
    """Call write(binary file) on a temporary file beside path, then rename it over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Bytes to a file, atomically."""
    _atomic(path, lambda f: f.write(data))


def write_json(path: Path, obj) -> None:
    """JSON, UTF-8, indented, atomically."""
    write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
    """An uncompressed .npz of the arrays (and ``meta`` as JSON), atomically."""
    payload = dict(arrays)
    if meta is not None:
        payload["meta"] = np.array(json.dumps(meta))
    _atomic(path, lambda f: np.savez(f, **payload))


def _read(path: Path, read):
    """``read(npz)`` on an opened .npz; a CheckpointError for a missing, empty, truncated or
    otherwise unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return read(z)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable a4lib checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:80] if str(err) else 'empty or truncated'})") from None


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of an .npz and its metadata (empty dict when it has none)."""
    def read(z):
        arrays = {k: z[k] for k in z.files if k != "meta"}
        return arrays, json.loads(str(z["meta"])) if "meta" in z.files else {}
    return _read(path, read)


def load_params(run_dir: Path, which: str = "best") -> tuple[dict[str, np.ndarray], dict]:
    """A run's parameters (``best`` or ``last``) as a dict of arrays, and the checkpoint metadata."""
    from .optim import unflatten

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {CHECKPOINT} (not a training run directory?)")
    # only what is asked for: the history can be large
    meta, flat = _read(path, lambda z: (json.loads(str(z["meta"])), z["best_w" if which == "best" else "w"]))
    check_meta(meta, path)
    like = {k: np.empty(shape) for k, shape in meta["param_shapes"].items()}
    try:
        return {k: v.copy() for k, v in unflatten(flat, like).items()}, meta
    except ValueError as err:
        raise CheckpointError(f"{path}: the parameters do not fit their shapes ({err})") from None


def check_meta(meta: dict, path: Path) -> dict:
    """``meta`` when it holds what a run needs with sensible values; a CheckpointError otherwise."""
    need = {"config": dict, "corpus": dict, "param_shapes": dict, "updates": int, "epoch": int, "group": int,
            "offset": int, "best_update": int}
    for key, kind in need.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{path}: the checkpoint's metadata has no valid {key!r}")
    for key in ("updates", "epoch", "group", "offset", "best_update"):
        if meta[key] < 0:
            raise CheckpointError(f"{path}: the checkpoint says {key} = {meta[key]}, which cannot be")
    if not isinstance(meta["corpus"].get("chars"), list) or not meta["corpus"]["chars"]:
        raise CheckpointError(f"{path}: the checkpoint holds no vocabulary")
    return meta


def load_state(run_dir: Path, which: str = "best") -> np.ndarray | None:
    """The state that goes with ``load_params(run_dir, which)``: stream 0's hidden state after the
    best (or last) update, shape (S,); None for a checkpoint that does not hold it."""
    key = "best_state" if which == "best" else "last_state"
    return _read(Path(run_dir) / CHECKPOINT, lambda z: z[key] if key in z.files else None)


def load_meta(path: Path) -> dict:
    """The metadata of an .npz written by ``save_arrays``, without reading its arrays."""
    return _read(path, lambda z: json.loads(str(z["meta"])) if "meta" in z.files else {})
