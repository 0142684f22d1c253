"""Config is the one source of settings: flags, command lines, checks and notebook parameters."""
from __future__ import annotations

import argparse
from dataclasses import fields

import numpy as np
import pytest

from a4lib import notebook
from a4lib.cli import build_parser
from a4lib.config import FIELDS, Config, ConfigError, add_arguments, check_value, defaults, flag_of, given


def random_config(rng: np.random.Generator) -> Config:
    """A valid Config with a random subset of settings changed from their defaults."""
    choices = {
        "corpus": ["a.txt", "dir with space/b.txt", "builtin:python-docs"], "model": ["lstm", "gru"], "m": [5, 250],
        "layers": [2, 16], "dropout": [0.25, 0.5], "init": ["uniform"], "init_range": [0.1, 1e-3],
        "lr_decay": [0.97, 0.5], "lr_decay_after": [1, 30],
        "eta": [0.05, 1e-3, 0.30000000000000004], "seq_length": [1, 50], "sig": [0.1, 1e-5],
        "optimizer": ["rmsprop", "adam"], "clip": [0.0, 1.5], "n_epochs": [1, 7], "n_updates": [0, 123_456],
        "max_seconds": [0.5, 90.0], "seed": [1, 2**31], "sample_every": [0, 7], "sample_length": [0, 1000],
        "batch_size": [4, 32], "order": ["chunks"], "chunk_length": [2, 5000], "val_fraction": [0.1, 0.5],
        "val_every": [1, 99], "checkpoint_every": [3], "backend": ["numpy", "numba"], "dtype": ["float32"],
        "blas_threads": [2],
    }
    assert set(choices) == set(FIELDS), "every setting is exercised"
    picked = {k: v[rng.integers(len(v))] for k, v in choices.items() if rng.random() < 0.5}
    return Config(**picked)


@pytest.mark.parametrize("seed", range(25))
def test_config_argv_round_trip(seed):
    """Config -> argv -> Config gives the same Config, for random settings."""
    cfg = random_config(np.random.default_rng(seed))
    assert Config.from_argv(cfg.to_argv()) == cfg


def test_default_config_has_no_flags_and_updates_replace_epochs():
    assert Config().to_argv() == []
    cfg = Config(n_updates=300)
    assert cfg.n_epochs is None and cfg.to_argv() == ["--updates", "300"]


def test_train_flags_come_from_config():
    """Every setting is a train flag with its help and default; a flag not given is absent."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    flags = {a.dest: a for a in p._actions if a.dest in FIELDS}
    assert set(flags) == set(FIELDS)
    for name, action in flags.items():
        assert action.option_strings == [flag_of(name)]
        assert action.help and "default" in action.help, name
    assert given(p.parse_args([])) == {}
    assert given(p.parse_args(["--eta", "0.05", "--updates", "10"])) == {"eta": 0.05, "n_updates": 10}
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert {a.dest for a in train._actions} >= set(FIELDS)


@pytest.mark.parametrize("name, value", [
    ("m", 0), ("m", "abc"), ("m", 1.5), ("m", True), ("eta", -1), ("eta", float("nan")), ("eta", float("inf")),
    ("sig", 0), ("optimizer", "sgd"), ("order", "random"), ("val_fraction", 1.0), ("dtype", "float16"),
    ("n_updates", -1), ("backend", None), ("corpus", 3),
])
def test_bad_values_name_the_setting_and_the_value(name, value):
    with pytest.raises(ConfigError) as err:
        Config(**{name: value}).validate()
    line = str(err.value)
    assert "\n" not in line and name in line and repr(value) in line


@pytest.mark.parametrize("name, value", [("m", 1), ("eta", 3), ("max_seconds", None), ("corpus", None),
                                         ("clip", 0), ("val_fraction", 0.0)])
def test_good_values_pass(name, value):
    assert check_value(name, value) == value


def test_bad_flags_are_one_line_config_errors():
    for argv in (["--m", "abc"], ["--eta", "-1"], ["--epochs", "1", "--updates", "2"], ["--dtype", "half"]):
        with pytest.raises(ConfigError) as err:
            Config.from_argv(argv)
        assert "\n" not in str(err.value)


def test_config_error_renders_as_one_line_in_ipython():
    err = ConfigError("m = 'abc' is not allowed")
    assert err._render_traceback_() == ["ConfigError: m = 'abc' is not allowed"]


def test_differences_and_dict_round_trip():
    a, b = Config(), Config(eta=0.05, seed=3)
    assert a.differences(b) == ["eta", "seed"] and a.differences(b, ignore=("seed",)) == ["eta"]
    assert Config.from_dict({**b.to_dict(), "K": 65, "format": 2}) == b
    assert set(defaults()) == {f.name for f in fields(Config)}


# --- notebook parameters -------------------------------------------------------------------------

def namespace_after(params: dict, before: dict | None = None) -> dict:
    ns = dict(before or {"In": [], "get_ipython": None})
    notebook.before_parameters(ns)
    ns.update(params)
    return ns


def test_notebook_unknown_parameter_names_the_near_one():
    ns = namespace_after({"m": 100, "eta": 0.1, "run_dir": None, "etta": 0.1})
    with pytest.raises(notebook.ParameterError) as err:
        notebook.train_config(ns, extra={"run_dir": (str, None)})
    assert "'etta'" in str(err.value) and "'eta'" in str(err.value)


@pytest.mark.parametrize("name, value", [("m", "abc"), ("eta", -1), ("run_dir", 3), ("resume", "yes")])
def test_notebook_bad_value_names_parameter_and_value(name, value):
    ns = namespace_after({"m": 100, "eta": 0.1, "run_dir": None, "resume": False, name: value})
    with pytest.raises(notebook.ParameterError) as err:
        notebook.train_config(ns, extra={"run_dir": (str, None), "resume": bool})
    assert name in str(err.value) and repr(value) in str(err.value)


def test_notebook_good_parameters_make_the_config():
    ns = namespace_after({"m": 5, "eta": 0.05, "n_updates": 300, "run_dir": "x"}, before={"unrelated": 1})
    cfg = notebook.train_config(ns, extra={"run_dir": (str, None)})
    assert cfg == Config(m=5, eta=0.05, n_updates=300)


def test_notebook_parameters_spec():
    ns = namespace_after({"length": 10, "temperature": 1})
    notebook.parameters(ns, {"length": int, "temperature": (int, float)})
    ns["temperature"] = "hot"
    with pytest.raises(notebook.ParameterError, match="temperature"):
        notebook.parameters(ns, {"length": int, "temperature": (int, float)})


def test_only_names_of_the_parameter_cells_are_checked():
    """Names that later cells defined (a JupyterLab user re-running the parameters) are not parameters;
    a misspelt name in a constants-only cell (papermill's injected cell) is."""
    history = ["from a4lib import notebook; notebook.before_parameters()", "m = 100\neta = 0.1",
               "from pathlib import Path\nrun = load(Path('x'))", "m = 100\neta = 0.1", "# Parameters\netta = 0.05\n",
               "config = notebook.train_config(globals())"]
    assigned = notebook.parameter_cell_names(history)
    assert assigned == {"m", "eta", "etta"}
    assert notebook.parameter_cell_names(history[:4]) == set()  # the cell before the last is not constants
    ns = namespace_after({"m": 100, "eta": 0.1, "Path": object, "run": 1})
    notebook.check_names(ns, {"m", "eta"}, assigned={"m", "eta"})
    with pytest.raises(notebook.ParameterError, match="etta"):
        notebook.check_names({**ns, "etta": 0.05}, {"m", "eta"}, assigned=assigned)


def test_bench_settings_come_from_config():
    """The bench's training flags are Config's (same flag, help and check), not typed in again."""
    from a4lib import bench
    from a4lib.cli import Parser, UsageError

    p = Parser()
    bench.add_arguments(p)
    ours = {a.dest: a for a in p._actions if a.dest in FIELDS}
    assert set(ours) == set(bench.SETTINGS)
    q = argparse.ArgumentParser()
    add_arguments(q)
    for name, action in ours.items():
        theirs = next(a for a in q._actions if a.dest == name)
        assert (action.option_strings, action.help) == (theirs.option_strings, theirs.help)
    with pytest.raises(UsageError, match="--m"):
        p.parse_args(["--m", "0"])
