"""Checks for a papermill notebook's parameters: a misspelt name or a bad value stops the notebook
with one line that names it (``ParameterError`` shows as that line in IPython, not a traceback).

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
from collections.abc import Iterable, Mapping
from dataclasses import fields
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
