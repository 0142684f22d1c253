"""Checks for a papermill notebook's parameters: a misspelt name or a bad value stops the notebook
with one line that names it (``ParameterError`` shows as that line in IPython, not a traceback).

A notebook uses it in three cells::

    from a4lib import notebook; notebook.before_parameters()   # a cell before the parameters (tag: remove)
    m = 100 ...                                                  # the cell tagged "parameters"
    config = notebook.train_config(globals(), extra={"run_dir": (str, None), "resume": bool})

``before_parameters`` remembers the names the kernel holds; every name defined after it (by the
parameters cell and by papermill's injected cell) must be a parameter of the notebook.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from .config import Config, ConfigError, check_value, near

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


def check_names(namespace: Mapping[str, Any], valid: Iterable[str]) -> None:
    """A ParameterError for a name defined since ``before_parameters`` that is not in ``valid``."""
    valid = set(valid)
    for name in namespace:
        if name in _before or name in valid or name.startswith("_"):
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
    values = {}
    for f in fields(Config):
        if f.name in namespace:
            try:
                values[f.name] = check_value(f.name, namespace[f.name])
            except ConfigError as err:
                raise ParameterError(str(err)) from None
    try:
        return Config(**values).validate()
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
