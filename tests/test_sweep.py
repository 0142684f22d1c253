"""The sweep: a grid of runs equal to separate `train` runs, files, skipping and resuming, Ctrl-C
and kill, a real Dask cluster, bad grids, the notebook."""
from __future__ import annotations

import ast
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a4lib import cli, sweep
from a4lib.results import analysis
from a4lib.config import Config, ConfigError
from a4lib.rundir import RunDirError, status
from a4lib.train import train

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = "builtin:python-docs"
TIMES = ("seconds", "updates_per_s")  # the only summary fields allowed to differ between equal runs


def without_times(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMES}


@pytest.fixture
def base():
    """A sweep's base settings: a run of a fraction of a second on the built-in text."""
    return Config(corpus=BUILTIN, m=8, seq_length=10, sig=0.1, n_updates=150, sample_every=50, sample_length=20,
                  backend="numpy")


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.glob("*/*") if p.is_file()}


# --- the grid -----------------------------------------------------------------------------------

def test_parse_grid_parses_with_each_settings_type():
    grid = sweep.parse_grid(["seed=0,1", "eta=0.05, 0.1", "seq-length=5", "updates=100", "max_seconds=none,2",
                             "model=rnn,lstm"])
    assert grid == {"seed": [0, 1], "eta": [0.05, 0.1], "seq_length": [5], "n_updates": [100],
                    "max_seconds": [None, 2.0], "model": ["rnn", "lstm"]}
    assert type(grid["max_seconds"][1]) is float


def test_expand_names_each_run_by_its_sorted_values(base):
    runs = sweep.expand(base, {"seed": [0, 1], "eta": [0.05, 0.1]})
    assert list(runs) == ["eta=0.05,seed=0", "eta=0.1,seed=0", "eta=0.05,seed=1", "eta=0.1,seed=1"]
    overrides, cfg = runs["eta=0.1,seed=1"]
    assert overrides == {"seed": 1, "eta": 0.1}
    assert cfg == base.replace(seed=1, eta=0.1)
    # an epoch budget on the grid replaces the base's budget in updates
    _, cfg = sweep.expand(base, {"n_epochs": [1]})["n_epochs=1"]
    assert (cfg.n_epochs, cfg.n_updates) == (1, None)


@pytest.mark.parametrize("grid, said", [
    (["eta=abc"], "'abc' is not allowed: expected a number > 0"),
    (["etta=1"], "unknown setting (did you mean 'eta'?)"),
    (["eta="], "an empty value"),
    (["eta"], "expected NAME=VALUE1,VALUE2"),
    (["eta=0.1,,0.2"], "an empty value"),
    (["eta=-1"], "eta = -1.0 is not allowed"),
    (["seed=1,1"], "repeats a value"),
    (["seed=1", "seed=2"], "given twice"),
    (["model=cnn"], "model = 'cnn' is not allowed"),
    (["n_epochs=1", "n_updates=5"], "not both"),
])
def test_a_bad_grid_is_one_line_and_exit_2(tmp_path, capsys, grid, said):
    argv = ["sweep", "--out", str(tmp_path / "sw"), "--corpus", BUILTIN, "--updates", "5", "--quiet"]
    for g in grid:
        argv += ["--grid", g]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("a4lib: error: ") and err.count("\n") == 1
    assert said in err
    assert not (tmp_path / "sw").exists()


def test_a_grid_setting_given_as_a_flag_too_is_refused(tmp_path, capsys):
    assert cli.main(["sweep", "--out", str(tmp_path), "--grid", "eta=0.1", "--eta", "0.2"]) == 2
    assert "eta is given both as --eta and on the grid" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [0, -2])
def test_bad_workers_are_refused_by_one_rule_for_the_command_and_the_library(base, tmp_path, capsys, workers):
    """--workers 0 and sweep(workers=0): the same one-line refusal (one check, ``_check_workers``),
    exit 2, nothing made."""
    with pytest.raises(ConfigError) as err:
        sweep.sweep(base, {"seed": [0]}, tmp_path / "sw", workers=workers, progress=False)
    assert cli.main(["sweep", "--out", str(tmp_path / "sw"), "--grid", "seed=0", "--workers", str(workers),
                     "--quiet"]) == 2
    assert capsys.readouterr().err == f"a4lib: error: {err.value}\n"
    assert not (tmp_path / "sw").exists()


def test_python_grids_are_checked(base, tmp_path):
    for grid, said in [({"etta": [1.0]}, "did you mean 'eta'"), ({"eta": []}, "non-empty list"),
                       ({"eta": "0.1"}, "non-empty list"), ({"eta": ["x"]}, "eta = 'x' is not allowed"), ({}, "empty")]:
        with pytest.raises(ConfigError, match=said.replace("(", r"\(")):
            sweep.sweep(base, grid, tmp_path / "sw", progress=False)
    with pytest.raises(ConfigError, match="cannot name a run's folder"):
        sweep.run_many({"a/b": base}, tmp_path / "sw")


# --- the runs ---------------------------------------------------------------------------------

def test_a_sweep_equals_separate_train_runs_and_writes_its_files(base, tmp_path):
    grid = {"seed": [0, 1], "eta": [0.05, 0.2]}
    entries = sweep.sweep(base, grid, tmp_path / "sw", workers=2, progress=False)
    assert [e["name"] for e in entries] == list(sweep.expand(base, grid))
    for e in entries:
        alone = train(base.replace(**e["overrides"]), tmp_path / "alone" / e["name"], progress=False)
        assert without_times(e["summary"]) == without_times(alone)
        assert e["summary"]["status"] == "finished"
        with np.load(tmp_path / "sw" / e["name"] / "history.npz") as a, \
                np.load(tmp_path / "alone" / e["name"] / "history.npz") as b:
            assert np.array_equal(a["smooth_loss"], b["smooth_loss"])
    assert len({e["summary"]["best_smooth_loss"] for e in entries}) == 4  # the grid's values matter
    # the files: sweep.json as returned, sweep.csv the same as a table, the curves
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text()) == entries
    rows = list(csv.DictReader((tmp_path / "sw" / "sweep.csv").open()))
    assert [r["name"] for r in rows] == [e["name"] for e in entries]
    assert [float(r["best_smooth_loss"]) for r in rows] == [e["summary"]["best_smooth_loss"] for e in entries]
    assert [(int(r["seed"]), float(r["eta"])) for r in rows] == [(e["overrides"]["seed"], e["overrides"]["eta"])
                                                                  for e in entries]
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # the table: ranked by the best smooth loss
    table = analysis.sweep_table(entries).splitlines()
    best_first = sorted(entries, key=lambda e: e["summary"]["best_smooth_loss"])
    assert table[0] == "ranked by best smooth loss"
    assert [line.split()[1] for line in table[2:]] == [e["name"] for e in best_first]


def test_a_second_call_skips_finished_runs_and_a_larger_budget_continues_them(base, tmp_path):
    grid = {"seed": [0, 1]}
    first = sweep.sweep(base, grid, tmp_path / "sw", workers=2, progress=False)
    before = mtimes(tmp_path / "sw")
    again = sweep.sweep(base, grid, tmp_path / "sw", workers=2, progress=False)
    assert again == first
    assert mtimes(tmp_path / "sw") == before  # no run was touched
    # a larger budget resumes the finished runs: the same as runs trained to it at once
    longer = sweep.sweep(base.replace(n_updates=250), grid, tmp_path / "sw", workers=2, progress=False)
    for e in longer:
        alone = train(base.replace(n_updates=250, **e["overrides"]), tmp_path / "alone" / e["name"], progress=False)
        assert without_times(e["summary"]) == without_times(alone)


def test_a_folder_holding_other_settings_is_refused(base, tmp_path, capsys):
    sweep.sweep(base, {"seed": [0]}, tmp_path / "sw", workers=1, progress=False)
    with pytest.raises(RunDirError, match="holds a run with m = 8, not 9"):
        sweep.sweep(base.replace(m=9), {"seed": [0]}, tmp_path / "sw", workers=1, progress=False)
    with pytest.raises(RunDirError, match="trained further"):
        sweep.sweep(base.replace(n_updates=100), {"seed": [0]}, tmp_path / "sw", workers=1, progress=False)
    argv = ["sweep", "--out", str(tmp_path / "sw"), "--grid", "seed=0", "--corpus", BUILTIN, "--m", "9", "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("a4lib: error: ") and err.count("\n") == 1


def test_a_diverged_run_is_a_result_and_is_not_trained_again(base, tmp_path, capsys):
    grid = {"eta": [0.1, 1000.0]}
    entries = {e["name"]: e["summary"] for e in sweep.sweep(base, grid, tmp_path / "sw", workers=2, progress=False)}
    assert entries["eta=0.1"]["status"] == "finished"
    assert entries["eta=1000.0"]["status"] == "diverged" and "diverged" in entries["eta=1000.0"]["error"]
    before = mtimes(tmp_path / "sw")
    argv = ["sweep", "--out", str(tmp_path / "sw"), "--grid", "eta=0.1,1000", "--quiet", *base.to_argv()]
    assert cli.main(argv) == 0  # a diverged run is an outcome of the grid, not an error
    assert "eta=1000.0  diverged" in capsys.readouterr().out
    assert mtimes(tmp_path / "sw") == before


def test_the_ranking_uses_the_held_out_loss_when_every_run_has_one(base, tmp_path):
    entries = sweep.sweep(base.replace(val_fraction=0.1, val_every=50), {"seed": [0, 1, 2]}, tmp_path / "sw",
                          workers=2, progress=False)
    what, ranked = analysis.sweep_ranking(entries)
    assert what == "best held-out loss per character"
    assert [v for _, v in ranked] == sorted(e["summary"]["best_val_loss"] for e in entries)


# --- Ctrl-C and kill: the CLI in a process group of its own -------------------------------------

LONG = ["--corpus", BUILTIN, "--m", "32", "--seq-length", "25", "--updates", "6000", "--sample-every", "2000",
        "--checkpoint-every", "500", "--backend", "numpy"]


def start_sweep(out: Path, seeds: str = "seed=0,1") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "a4lib", "sweep", "--out", str(out), "--grid", seeds, "--workers", "2",
           "--quiet", *LONG]
    return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The two runs of start_sweep trained without interruption: name -> summary."""
    out = tmp_path_factory.mktemp("uninterrupted")
    r = subprocess.run([sys.executable, "-m", "a4lib", "sweep", "--out", str(out), "--grid", "seed=0,1", "--quiet",
                        *LONG], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {e["name"]: e["summary"] for e in sweep.load(out)}


def finish_and_compare(out: Path, uninterrupted: dict) -> None:
    r = subprocess.run([sys.executable, "-m", "a4lib", "sweep", "--out", str(out), "--grid", "seed=0,1", "--quiet",
                        *LONG], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    resumed = {e["name"]: e["summary"] for e in sweep.load(out) if e["name"] in uninterrupted}
    assert {k: without_times(s) for k, s in resumed.items()} == {k: without_times(s) for k, s in uninterrupted.items()}


def test_ctrl_c_saves_every_run_and_the_same_command_completes_them(tmp_path, uninterrupted):
    out = tmp_path / "sw"
    proc = start_sweep(out)
    # both runs train (their first checkpoint is written) before Ctrl-C reaches the whole group
    wait_for(lambda: len(list(out.glob("*/checkpoint.npz"))) == 2, "both runs to train")
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "every run is saved" in stderr and "Traceback" not in stderr
    stopped = {e["name"]: e["summary"] for e in sweep.load(out)}
    assert {s["status"] for s in stopped.values()} == {"interrupted"}
    assert all(0 < s["updates"] < 6000 for s in stopped.values())
    assert all(status(out / name) == "interrupted" for name in stopped)
    finish_and_compare(out, uninterrupted)


def test_a_killed_sweep_resumes_to_the_same_runs(tmp_path, uninterrupted):
    out = tmp_path / "sw"
    proc = start_sweep(out)
    wait_for(lambda: len(list(out.glob("*/checkpoint.npz"))) == 2, "both runs to checkpoint")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert sorted(status(d) for d in out.iterdir() if d.is_dir()) == ["killed", "killed"]
    finish_and_compare(out, uninterrupted)


def test_sigterm_to_the_group_saves_every_run_and_exits_143(tmp_path):
    out = tmp_path / "sw"
    proc = start_sweep(out)
    wait_for(lambda: len(list(out.glob("*/checkpoint.npz"))) == 2, "both runs to train")
    os.killpg(proc.pid, signal.SIGTERM)  # as `timeout` or a service manager stops a job
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    stopped = {e["name"]: e["summary"] for e in sweep.load(out)}
    assert {s["status"] for s in stopped.values()} == {"interrupted"}
    assert all(status(out / name) == "interrupted" for name in stopped)


def test_a_killed_worker_fails_its_run_only_and_the_others_go_on(tmp_path, uninterrupted):
    """Issue 19 item 5: seed=0's worker killed while seed=1 trains and seed=2 waits (2 workers):
    seed=0 is reported failed, seed=1 (stopped by the broken pool, saved) and seed=2 go on in a
    fresh pool and finish as uninterrupted runs do; the same command then completes seed=0."""
    out = tmp_path / "sw"
    proc = start_sweep(out, "seed=0,1,2")
    wait_for(lambda: len(list(out.glob("*/checkpoint.npz"))) == 2, "both runs to checkpoint")
    os.kill(int((out / "seed=0" / ".lock").read_text()), signal.SIGKILL)  # the pid of the worker training it
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "1 of 3 runs could not train" in stderr and "Traceback" not in stderr
    stopped = {e["name"]: e["summary"] for e in sweep.load(out)}
    assert {k: s["status"] for k, s in stopped.items()} == {"seed=0": "failed", "seed=1": "finished",
                                                           "seed=2": "finished"}
    assert without_times(stopped["seed=1"]) == without_times(uninterrupted["seed=1"])
    finish_and_compare(out, uninterrupted)


# --- a Dask cluster -----------------------------------------------------------------------------

def test_a_dask_cluster_gives_the_same_runs_as_the_local_pool(base, tmp_path):
    distributed = pytest.importorskip("distributed")
    grid = {"seed": [0, 1], "eta": [0.05, 0.2]}
    local = sweep.sweep(base, grid, tmp_path / "local", workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = sweep.sweep(base, grid, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
        assert [without_times(e["summary"]) for e in on_dask] == [without_times(e["summary"]) for e in local]
        before = mtimes(tmp_path / "dask")
        assert sweep.sweep(base, grid, tmp_path / "dask", scheduler=cluster.scheduler_address,
                           progress=False) == on_dask
        assert mtimes(tmp_path / "dask") == before


# --- the notebook -------------------------------------------------------------------------------

def test_the_notebook_is_stored_clean_and_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    nb = nbformat.read(ROOT / "notebooks" / "sweep.ipynb", as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    [params] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names = {t.id for node in ast.parse(params.source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert names == {"grid", "corpus", "n_updates", "n_epochs", "settings", "out", "workers", "scheduler", "progress"}
    assert "remove" in nb.cells[1].metadata.get("tags", []) and "before_parameters" in nb.cells[1].source
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "papermill", "notebooks/sweep.ipynb", str(tmp_path / "out.ipynb"), "-k", "python3",
           "--no-progress-bar", "-p", "out", str(out), "-p", "n_updates", "100", "-p", "progress", "False",
           "-y", "{grid: {seed: [0, 1]}, settings: {m: 8, seq_length: 10, backend: numpy}}"]
    # the kernel is this interpreter: its environment's kernelspec first on the path
    env = {**os.environ, "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"), "JUPYTER_PLATFORM_DIRS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = [o for c in executed.cells for o in c.get("outputs", [])]
    text = "\n".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    entries = sweep.load(out)
    assert [e["summary"]["status"] for e in entries] == ["finished", "finished"]
    assert "Ranked by the best smooth loss" in text
    best = min(entries, key=lambda e: e["summary"]["best_smooth_loss"])
    assert f"| 1 | {best['name']} | finished |" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
    # a misspelt setting stops the notebook with one line naming the near one
    cmd[cmd.index("-y") + 1] = "{grid: {seed: [0]}, settings: {etta: 0.1}}"
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "did you mean 'eta'" in r.stderr
