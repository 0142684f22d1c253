"""Checks for a papermill notebook's parameters: a misspelt name or a bad value stops the notebook
with one line that names it (``ParameterError`` shows as that line in IPython, not a traceback);
the premises of a report's drafted answers, kept in the executed notebook where they fail
(``premise_notes``); and ``execute``, papermill with one line on error (``python -m a4lib.notebook
NOTEBOOK OUT -p NAME VALUE``).

A notebook uses it in three cells::

    from a4lib import notebook; notebook.before_parameters()   # a cell before the parameters (tag: remove)
    m = 100 ...                                                  # the cell tagged "parameters"
    config = notebook.train_config(globals(), extra={"run_dir": (str, None), "resume": bool})

``before_parameters`` remembers the names the kernel holds. A name defined after it by the cells
that ran just before the check and only assign constants (the parameters cell and papermill's
injected cell) must be a parameter of the notebook; names that later cells define (when a
JupyterLab user runs the parameters again) are not parameters and are left alone.
"""
from __future__ import annotations

import ast
import contextlib
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, near

_before: set[str] = set()


class ParameterError(ConfigError):
    """A notebook parameter that is unknown or has a bad value (one line)."""


def before_parameters(namespace: Mapping[str, Any] | None = None) -> None:
    """Remember the names defined before the parameters cell (default: the IPython user namespace)."""
    global _before
    if namespace is None:
        from IPython import get_ipython

        ip = get_ipython()
        namespace = ip.user_ns if ip is not None else {}
    _before = set(namespace)


def _constant_assignments(source: str) -> set[str] | None:
    """The names a cell assigns when all it does is assign constants (a parameters cell); None otherwise."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = set()
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets)):
            return None
        try:
            ast.literal_eval(stmt.value)
        except ValueError:
            return None
        names |= {t.id for t in stmt.targets}
    return names


def parameter_cell_names(history: list[str] | None = None) -> set[str] | None:
    """The names assigned by the cells that ran just before the last one of ``history`` (default:
    IPython's ``In``) and only assign constants (the parameters cell, papermill's injected cell);
    None outside IPython."""
    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        ip = get_ipython()
        if ip is None:
            return None
        history = ip.user_ns.get("In", [])
    names: set[str] = set()
    for source in reversed(history[:-1]):
        assigned = _constant_assignments(source)
        if assigned is None:
            break
        names |= assigned
    return names


def check_names(namespace: Mapping[str, Any], valid: Iterable[str], assigned: set[str] | None = None) -> None:
    """A ParameterError for a name defined since ``before_parameters`` by the parameter cells
    (``assigned``, default ``parameter_cell_names()``; outside IPython every new name) that is not
    in ``valid``."""
    valid = set(valid)
    assigned = parameter_cell_names() if assigned is None else assigned
    for name in namespace:
        if name in _before or name in valid or name.startswith("_") or (assigned is not None and name not in assigned):
            continue
        raise ParameterError(f"unknown parameter {name!r}{near(name, valid)}; the parameters are: "
                             + ", ".join(sorted(valid)))


def check_type(name: str, value: Any, kinds: type | tuple, allowed: str | None = None) -> Any:
    """``value`` when it is an instance of ``kinds`` (None allowed when None is in ``kinds``);
    a ParameterError naming the parameter, the value and what is allowed otherwise."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    types = tuple(type(None) if k is None else k for k in kinds)
    if bool not in types and isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join("None" if k is None else k.__name__ for k in kinds)
        raise ParameterError(f"{name} = {value!r} is not allowed: expected {allowed or names}")
    return value


def config_from(namespace: Mapping[str, Any]) -> Config:
    """The Config of the training settings in ``namespace`` (the others at their defaults), checked."""
    try:
        return Config(**{f.name: namespace[f.name] for f in fields(Config) if f.name in namespace}).validate()
    except ConfigError as err:
        raise ParameterError(str(err)) from None


def train_config(namespace: Mapping[str, Any], extra: Mapping[str, type | tuple] | None = None) -> Config:
    """Check a training notebook's parameters: every name is a Config setting or one of ``extra``
    (name -> allowed types), every value is allowed; the Config."""
    extra = dict(extra or {})
    check_names(namespace, [f.name for f in fields(Config)] + list(extra))
    for name, kinds in extra.items():
        if name in namespace:
            check_type(name, namespace[name], kinds)
    return config_from(namespace)


def parameters(namespace: Mapping[str, Any], spec: Mapping[str, type | tuple]) -> None:
    """Check a notebook's parameters against ``spec`` (name -> allowed types): unknown names and
    values of another type stop the notebook with one line."""
    check_names(namespace, spec)
    for name, kinds in spec.items():
        if name in namespace:
            check_type(name, namespace[name], kinds)


# --- the drafted answers' premises (a4lib.display.premise) ----------------------------------------

PREMISE = "a4lib_premise"  # the key of a premise in its output's metadata (a4lib.display.premise writes it)
PREMISE_MARKER = re.compile(r"<!--\s*premise:\s*([\w-]+)\s*-->")
SECTION = re.compile(r"^#{1,3} (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class FailedPremise:
    """A drafted answer whose premise the run contradicts (its note stays in the report)."""

    name: str
    section: str  # the heading above the answer
    assumed: str
    observed: str

    def warning(self) -> str:
        return f"the drafted answer in {self.section!r} assumes {self.assumed}, but the run shows {self.observed}: rewrite it"


def premise_notes(nb) -> list[FailedPremise]:
    """Keep, in an executed notebook (nbformat's dict), the premise notes of drafted answers whose
    premise fails and whose answer still carries its marker ``<!-- premise: NAME -->``; remove every
    other premise output (the premise holds, or the student rewrote the answer and removed the
    marker); the markers themselves are taken out of the answers. The premises kept, each with the
    heading it is under."""
    marked = {name for c in nb["cells"] if c["cell_type"] == "markdown" for name in PREMISE_MARKER.findall(c["source"])}
    failed, section = [], ""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            headings = SECTION.findall(cell["source"])
            section = headings[-1].strip() if headings else section
            cell["source"] = PREMISE_MARKER.sub("", cell["source"]).lstrip("\n")
            continue
        keep = []
        for out in cell.get("outputs", []):
            p = out.get("metadata", {}).get("text/markdown", {}).get(PREMISE)
            if p is None:
                keep.append(out)
            elif not p["holds"] and p["name"] in marked:
                keep.append(out)
                failed.append(FailedPremise(p["name"], section, p["assumed"], p["observed"]))
        cell["outputs"] = keep
    return failed


# --- running a notebook (papermill) ----------------------------------------------------------------

class NotebookError(Exception):
    """A notebook that stopped: one line (the cell and its error), not a traceback."""


@contextlib.contextmanager
def _stderr_into(path: Path):
    """Send this process's stderr, and so a kernel's it starts, into ``path`` (the kernel's log lines
    are not the user's business unless the notebook fails)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _kernel_setup():
    """The kernel is this interpreter (its environment's kernelspec first on JUPYTER_PATH), with
    CurveZMQ keys where jupyter_client and zmq support them; papermill's configuration for that."""
    from jupyter_client import KernelManager
    from traitlets.config import Config as TraitletsConfig

    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                                os.environ.get("JUPYTER_PATH")]))
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    c = TraitletsConfig()
    try:
        import zmq
        if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
            c.KernelManager.transport_encryption = "auto"
    except ImportError:
        pass
    return c


def execute(notebook: str | Path, out: str | Path, parameters: Mapping[str, Any] | None = None,
            cwd: str | Path | None = None) -> Path:
    """Execute ``notebook`` with ``parameters`` into ``out`` (papermill, this interpreter's kernel, in
    ``cwd``: default the notebook's folder, as JupyterLab). A NotebookError of one line when a cell
    fails; the kernel's log lines are kept out of sight."""
    import tempfile

    import papermill
    from papermill.exceptions import PapermillException, PapermillExecutionError

    notebook, out = Path(notebook), Path(out)
    config = _kernel_setup()
    with tempfile.TemporaryDirectory(prefix="a4lib-kernel-") as tmp:
        log = Path(tmp) / "stderr.log"
        try:
            with _stderr_into(log):
                papermill.execute_notebook(str(notebook), str(out), parameters=dict(parameters or {}),
                                           kernel_name="python3", cwd=str(cwd or notebook.parent), progress_bar=False,
                                           log_output=False, config=config)
        except PapermillExecutionError as err:
            raise NotebookError(f"{notebook.name} stopped in cell {err.exec_count}: {err.ename}: {err.evalue}") from None
        except (PapermillException, RuntimeError, OSError, ValueError) as err:  # no kernel, a dead kernel, a bad file
            said = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            raise NotebookError(f"{notebook.name} could not run: {type(err).__name__}: {err}"
                                + (f" (the kernel said: {said[-1][:200]})" if said else "")) from None
    return out


def _parse_value(text: str) -> Any:
    """A ``-p`` value as papermill reads it: True, False, None, an int, a float, else the text."""
    named = {"True": True, "False": False, "None": None}
    if text in named:
        return named[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    """``python -m a4lib.notebook NOTEBOOK OUT [-p NAME VALUE]...``: papermill with one line on error."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m a4lib.notebook",
                                description="Run a notebook as papermill does (-p NAME VALUE sets a parameter); an "
                                            "error is one line, the kernel's log stays out of sight.")
    p.add_argument("notebook")
    p.add_argument("out")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    a = p.parse_args(argv)
    try:
        execute(a.notebook, a.out, {name: _parse_value(value) for name, value in a.parameter}, cwd=Path.cwd())
    except NotebookError as err:
        print(f"a4lib: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
