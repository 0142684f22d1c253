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


class RunFileError(ValueError):
    """A file of a run that cannot be read or does not hold what it should: one line naming the
    file and what is wrong."""


class CheckpointError(RunFileError):
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
    """Call write(binary file) on a temporary file beside path, then rename it over path. An
    OSError (a full disk, ...) names ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Bytes to a file, atomically."""
    _atomic(path, lambda f: f.write(data))


def write_json(path: Path, obj) -> None:
    """JSON, UTF-8, indented, atomically; only JSON (no NaN or Infinity)."""
    write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))


def read_json(path: Path):
    """A JSON file's content; a RunFileError (one line naming the file) when it is not UTF-8 JSON."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RunFileError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise RunFileError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise RunFileError(f"{path}: not JSON a4lib writes (nested too deeply)") from None


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
    except RecursionError:
        raise CheckpointError(f"{path}: not a readable a4lib checkpoint (its metadata is nested too deeply)") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable a4lib checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:80] if str(err) else 'empty or truncated'})") from None


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of an .npz and its metadata (empty dict when it has none)."""
    def read(z):
        arrays = {k: z[k] for k in z.files if k != "meta"}
        return arrays, json.loads(str(z["meta"])) if "meta" in z.files else {}
    return _read(path, read)


def load_arrays_of(path: Path, keys: list[str]) -> tuple[dict, list[np.ndarray]]:
    """The metadata of an .npz and only its arrays ``keys`` (a history can be large)."""
    return _read(path, lambda z: (json.loads(str(z["meta"])), [z[k] for k in keys]))


def load_params(run_dir: Path, which: str = "best") -> tuple[dict[str, np.ndarray], dict]:
    """A run's parameters (``best`` or ``last``) as a dict of arrays, and the checkpoint metadata."""
    from .optim import unflatten

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {CHECKPOINT} (not a training run directory?)")
    # only what is asked for: the history can be large
    from .model import make_network

    meta, flat = _read(path, lambda z: (json.loads(str(z["meta"])), z["best_w" if which == "best" else "w"]))
    check_meta(meta, path)
    K = len(meta["corpus"]["chars"])
    expected = make_network(meta["config"], K, backend="numpy").init_params(np.random.default_rng(0))
    if meta["param_shapes"] != {k: list(v.shape) for k, v in expected.items()}:
        raise CheckpointError(f"{path}: its parameter shapes are not those of its network over its vocabulary of {K} "
                              f"characters")
    if flat.ndim != 1 or flat.dtype.kind != "f" or flat.size != sum(v.size for v in expected.values()):
        raise CheckpointError(f"{path}: its {which} parameters ({flat.dtype} {flat.shape}) do not fit their shapes")
    if not np.isfinite(flat).all():
        raise CheckpointError(f"{path}: its {which} parameters are not finite")
    like = {k: np.empty(shape, flat.dtype) for k, shape in meta["param_shapes"].items()}
    return {k: v.copy() for k, v in unflatten(flat, like).items()}, meta


def _number(value, none: bool = True) -> bool:
    return (value is None and none) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_meta(meta, path: Path) -> dict:
    """``meta`` when it holds what a run needs with values of the right kind; a CheckpointError
    (one line naming the file and the key) otherwise."""
    from .config import Config

    def bad(what: str):
        return CheckpointError(f"{path}: the checkpoint's metadata {what}")

    if not isinstance(meta, dict):
        raise bad(f"is a {type(meta).__name__}, not a JSON object")
    for key in ("config", "corpus", "param_shapes", "rng"):
        if not isinstance(meta.get(key), dict):
            raise bad(f"has no valid {key!r}")
    for key in ("updates", "epoch", "group", "offset", "best_update"):
        if not _count(meta.get(key)):
            raise bad(f"says {key} = {meta.get(key)!r}, which cannot be" if key in meta else f"has no valid {key!r}")
    for key in ("smooth_loss", "best_loss", "seconds"):
        if not _number(meta.get(key), none=key != "seconds"):
            raise bad(f"says {key} = {str(meta.get(key))[:40]!r}, not a number")
    try:
        Config.from_dict(meta["config"]).validate()
    except (ValueError, TypeError) as err:
        raise bad(f"holds bad settings ({err})") from None
    chars = meta["corpus"].get("chars")
    if not isinstance(chars, list) or not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars) \
            or len(set(chars)) != len(chars):
        raise CheckpointError(f"{path}: the checkpoint holds no vocabulary of distinct characters")
    if not all(isinstance(v, list) and all(_count(n) for n in v) for v in meta["param_shapes"].values()):
        raise bad("has parameter shapes that are not lists of sizes")
    samples = meta.get("samples")
    if not isinstance(samples, list) or not all(isinstance(s, dict) and _count(s.get("update")) and
                                                isinstance(s.get("text"), str) for s in samples):
        raise bad("has no valid 'samples'")
    return meta


def load_state(run_dir: Path, which: str = "best") -> np.ndarray | None:
    """The state that goes with ``load_params(run_dir, which)``: stream 0's state after the best (or
    last) update, shape (layers x the cell's state size,); None for a checkpoint that does not hold
    it; a CheckpointError naming the file when it is not a finite vector of that length."""
    from .model import make_network

    key = "best_state" if which == "best" else "last_state"
    path = Path(run_dir) / CHECKPOINT
    meta, state = _read(path, lambda z: (json.loads(str(z["meta"])), z[key] if key in z.files else None))
    if state is None:
        return None
    check_meta(meta, path)
    network = make_network(meta["config"], len(meta["corpus"]["chars"]), backend="numpy")
    size = network.layers * network.S
    if state.shape != (size,) or state.dtype.kind != "f" or not np.isfinite(state).all():
        raise CheckpointError(f"{path}: its {key} ({state.dtype} {state.shape}) is not a finite vector of the "
                              f"{size} numbers of its network's state")
    return state


def load_meta(path: Path) -> dict:
    """The metadata of an .npz written by ``save_arrays``, without reading its arrays."""
    return _read(path, lambda z: json.loads(str(z["meta"])) if "meta" in z.files else {})
