"""Issue 11, hard to break: one test per item (lock, stale summary, signals, divergence, corrupt
checkpoints, resume and the corpus, bad --out, umask, JupyterLab, README, the command line, small
ones). Training that must be a real process (locks, signals, umask) runs `python -m a4lib`; the
rest calls a4lib.cli.main in-process."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from a4lib.cli import main

from conftest import a4lib_command, a4lib_env, start, wait_until

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
#: small and fast: the numpy backend (no numba compile in subprocesses), no samples, no progress bar
SMALL = ["--m", "8", "--sample-every", "0", "--quiet", "--backend", "numpy"]
FOREVER = ["--updates", "10000000", "--checkpoint-every", "100"]  # stopped by a signal or --max-seconds
BASE_UPDATES = 300


# --- helpers ---------------------------------------------------------------------------------

def run_main(*argv) -> tuple[int, str, str]:
    """a4lib.cli.main in-process: (exit code, stdout, stderr); argparse's exits count as codes."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def cli(*args, umask: int | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m a4lib ARGS` as a process, to its end."""
    return subprocess.run(a4lib_command(*args, umask=umask), capture_output=True, text=True, timeout=120,
                          env=a4lib_env(), cwd=cwd)


def stop(proc: subprocess.Popen) -> None:
    """End a process this test started, if it still runs."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def assert_one_line(err: str) -> str:
    """stderr is one line, without a traceback; that line."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def checkpoint_meta(run_dir: Path) -> dict | None:
    """The checkpoint's metadata, or None while there is no checkpoint."""
    path = run_dir / "checkpoint.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def train_in_process(corpus: Path, out: Path, *extra) -> dict:
    """A finished run trained through main; its summary.json."""
    code, _, err = run_main("train", "--corpus", corpus, "--out", out, *SMALL, *extra)
    assert code == 0, err
    return read_json(out / "summary.json")


# --- fixtures --------------------------------------------------------------------------------

def _some_text(n: int) -> str:
    """n characters of English (Shakespeare where the shared data is, else seeded words)."""
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")[:n]
    words = "the king and his men shall come to the gate of the town at night with fire".split()
    rng = np.random.default_rng(0)
    return " ".join(rng.choice(words, size=n // 3))[:n]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """A 20,000-character plain text file."""
    path = tmp_path_factory.mktemp("text") / "s.txt"
    path.write_text(_some_text(20_000), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, text) -> Path:
    """A finished run of BASE_UPDATES updates (checkpoint every 100); copy it before changing it."""
    out = tmp_path_factory.mktemp("base") / "run"
    train_in_process(text, out, "--updates", BASE_UPDATES, "--checkpoint-every", 100, "--seed", 5)
    return out


@pytest.fixture
def run_copy(base_run, tmp_path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run"))


# --- 1. a lock on the run directory ----------------------------------------------------------

def test_a_second_training_into_a_busy_run_directory_is_refused(text, tmp_path):
    """While one process trains into DIR, a new training and a --resume into DIR exit 2 with one
    "in use" line; the first finishes with its own config and checkpoint."""
    from a4lib import rundir

    out = tmp_path / "run"
    first = start("train", "--corpus", text, "--out", out, "--seed", 1, *SMALL, *FOREVER, "--max-seconds", 4)
    try:
        wait_until(lambda: rundir.is_locked(out) and checkpoint_meta(out) is not None, first)
        second = start("train", "--corpus", text, "--out", out, "--seed", 2, "--updates", 50, *SMALL)
        again = start("train", "--out", out, "--resume", "--updates", 20_000_000, "--quiet")
        for proc in (second, again):
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 2, err
            assert "in use" in assert_one_line(err)
        _, err = first.communicate(timeout=60)
    finally:
        stop(first)
    assert first.returncode == 0, err
    summary = read_json(out / "summary.json")
    meta = checkpoint_meta(out)
    assert summary["status"] == "finished"
    assert read_json(out / "config.json")["seed"] == 1 and meta["config"]["seed"] == 1
    assert meta["updates"] == summary["updates"] > 0
    assert meta["config"]["n_updates"] == 10_000_000


# --- 2. a killed run never looks finished ----------------------------------------------------

def test_a_killed_resume_leaves_status_running_and_reads_as_killed(run_copy):
    """SIGKILL during a resume: summary.json says "running" (not the old "finished"), and
    rundir.status says "killed"."""
    resume = start("train", "--out", run_copy, "--resume", "--updates", 10_000_000, "--max-seconds", 60, "--quiet")
    try:
        wait_until(lambda: checkpoint_meta(run_copy)["updates"] > BASE_UPDATES, resume)
        resume.send_signal(signal.SIGKILL)
        resume.wait(timeout=30)
    finally:
        stop(resume)
    assert read_json(run_copy / "summary.json")["status"] == "running"
    from a4lib import rundir

    assert rundir.status(run_copy) == "killed"


# --- 3. SIGTERM and Ctrl-C -------------------------------------------------------------------

@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_run_and_resume_continues_exactly(text, tmp_path, signum, exit_code):
    """SIGTERM (Ctrl-C): exit 143 (130), summary "interrupted" with the signal's name at the
    checkpoint's update; a resume to N updates reaches the parameters of an uninterrupted N-update
    run with the same seed."""
    out = tmp_path / "run"
    proc = start("train", "--corpus", text, "--out", out, "--seed", 3, *SMALL, *FOREVER, "--max-seconds", 60)
    try:
        wait_until(lambda: (checkpoint_meta(out) or {}).get("updates", 0) >= 100, proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == exit_code, err
    summary, meta = read_json(out / "summary.json"), checkpoint_meta(out)
    assert summary["status"] == "interrupted"
    assert summary["signal"] == signum.name
    assert summary["updates"] == meta["updates"] >= 100

    n = meta["updates"] + 150
    code, _, err = run_main("train", "--out", out, "--resume", "--updates", n, "--quiet")
    assert code == 0, err
    whole = tmp_path / "whole"
    train_in_process(text, whole, "--seed", 3, "--updates", n, "--checkpoint-every", 100)
    resumed, uninterrupted = npz_arrays(out / "checkpoint.npz"), npz_arrays(whole / "checkpoint.npz")
    assert checkpoint_meta(out)["updates"] == n
    assert np.array_equal(resumed["w"], uninterrupted["w"])


def test_a_second_ctrl_c_during_the_final_save_does_not_lose_it(text, tmp_path, monkeypatch):
    """Ctrl-C at update 10, and another as the final save starts: train() still returns its
    summary ("interrupted" at 10) and leaves a loadable checkpoint."""
    assert threading.current_thread() is threading.main_thread()  # only there can signals be caught
    from a4lib import Config
    from a4lib import checkpoint as ckpt
    from a4lib.train import Trainer, train

    real_step, real_save = Trainer.train_step, Trainer.save

    def step(self):
        loss = real_step(self)
        if self.updates == 9:  # the 10th update: the first Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    def save(self):  # checkpoint_every is large: the final save is the only one
        os.kill(os.getpid(), signal.SIGINT)
        real_save(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    monkeypatch.setattr(Trainer, "save", save)
    handler = signal.getsignal(signal.SIGINT)
    cfg = Config(corpus=str(text), m=8, n_updates=1000, sample_every=0, checkpoint_every=100_000, backend="numpy")
    out = tmp_path / "run"
    try:
        summary = train(cfg, out, progress=False)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C interrupted the final save (KeyboardInterrupt escaped train())")
    assert signal.getsignal(signal.SIGINT) == handler
    assert summary["status"] == "interrupted" and summary["updates"] == 10
    params, meta = ckpt.load_params(out, "last")
    assert meta["updates"] == 10 and all(np.isfinite(v).all() for v in params.values())
    assert read_json(out / "summary.json")["status"] == "interrupted"


# --- 4. divergence ---------------------------------------------------------------------------

def test_a_diverging_run_stops_at_3_times_its_first_loss_with_finite_files(text, tmp_path):
    """--eta 1e6: exit 1, one line naming the 3 times, summary "diverged", every float array
    saved finite; generate then works (exit 0)."""
    from a4lib.train import DIVERGENCE

    assert DIVERGENCE == 3.0
    out = tmp_path / "run"
    code, _, err = run_main("train", "--corpus", text, "--out", out, "--eta", "1e6", "--updates", 2000, *SMALL)
    assert code == 1, err
    assert "3 times" in assert_one_line(err)
    assert read_json(out / "summary.json")["status"] == "diverged"
    for name in ("checkpoint.npz", "history.npz"):
        for key, value in npz_arrays(out / name).items():
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), f"{name}: {key} is not finite"
    code, _, err = run_main("generate", out, "--length", 50)
    assert code == 0, err


# --- 5. corrupt checkpoints (and 12: a negative update count) ---------------------------------

def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _rewrite(path: Path, drop: str | None = None, **meta_changes) -> None:
    """Write the checkpoint again without array ``drop`` and with ``meta_changes`` (None: removed)."""
    arrays = npz_arrays(path)
    meta = json.loads(str(arrays.pop("meta")))
    for key, value in meta_changes.items():
        meta.pop(key) if value is None else meta.__setitem__(key, value)
    arrays.pop(drop, None)
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))


def assert_resume_and_generate_refuse(run_dir: Path, generate_args=()) -> None:
    """`train --resume` and `generate` of run_dir: exit 2 and one line each."""
    code, _, err = run_main("train", "--out", run_dir, "--resume", "--updates", BASE_UPDATES + 50, "--quiet")
    assert code == 2, err
    assert_one_line(err)
    code, _, err = run_main("generate", run_dir, "--length", 20, *generate_args)
    assert code == 2, err
    assert_one_line(err)


@pytest.mark.parametrize("corrupt, generate_args", [
    (_truncate, ()),
    (_empty, ()),
    (lambda p: _rewrite(p, drop="w"), ("--params", "last")),
    (lambda p: _rewrite(p, drop="best_w"), ()),
    (lambda p: _rewrite(p, updates=None), ()),
], ids=["truncated", "empty", "no-w", "no-best_w", "meta-without-updates"])
def test_a_corrupt_checkpoint_gets_one_line_and_exit_2(run_copy, corrupt, generate_args):
    corrupt(run_copy / "checkpoint.npz")
    assert_resume_and_generate_refuse(run_copy, generate_args)


def test_a_checkpoint_with_negative_updates_is_refused(run_copy):
    """Item 12: metadata "updates": -100 is refused by resume and generate."""
    _rewrite(run_copy / "checkpoint.npz", updates=-100)
    assert_resume_and_generate_refuse(run_copy)


# --- 6. --resume and the corpus; flags equal to their default -----------------------------------

def test_resume_accepts_the_same_text_under_another_path_and_refuses_another_text(run_copy, text, tmp_path):
    """The run's own corpus file gone: --corpus naming a copy of it resumes (exit 0); --corpus
    naming a different text exits 2."""
    moved = tmp_path / "moved" / "copy.txt"
    moved.parent.mkdir()
    other = tmp_path / "other.txt"
    other.write_text(text.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    code, _, err = run_main("train", "--out", run_copy, "--resume", "--updates", BASE_UPDATES + 20, "--quiet",
                            "--corpus", other)
    assert code == 2, err
    assert_one_line(err)
    shutil.copy(text, moved)
    hidden = text.with_name("hidden.txt")
    text.rename(hidden)  # the run's own path no longer holds the text: only --corpus can find it
    try:
        code, _, err = run_main("train", "--out", run_copy, "--resume", "--updates", BASE_UPDATES + 20, "--quiet",
                                "--corpus", moved)
    finally:
        hidden.rename(text)
    assert code == 0, err
    assert checkpoint_meta(run_copy)["updates"] == BASE_UPDATES + 20


@pytest.fixture
def relative_run(text, tmp_path, monkeypatch) -> Path:
    """A run trained in folder a with --corpus s.txt --out run (50 updates); the working
    directory is then folder b, beside a. Returns a/run."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(text, a / "s.txt")
    monkeypatch.chdir(a)
    train_in_process(Path("s.txt"), Path("run"), "--updates", 50)
    monkeypatch.chdir(b)
    return a / "run"


def test_a_run_from_a_relative_corpus_path_resumes_from_another_folder(relative_run):
    """Without --corpus: the checkpoint's absolute path finds the text."""
    code, _, err = run_main("train", "--out", "../a/run", "--resume", "--updates", 60, "--quiet")
    assert code == 0, err
    assert checkpoint_meta(relative_run)["updates"] == 60


def test_a_run_from_a_relative_corpus_path_resumes_with_corpus_from_another_folder(relative_run):
    """With --corpus naming the same file from the other folder."""
    code, _, err = run_main("train", "--out", "../a/run", "--resume", "--updates", 70, "--quiet",
                            "--corpus", "../a/s.txt")
    assert code == 0, err
    assert checkpoint_meta(relative_run)["updates"] == 70


def test_the_run_s_text_is_found_and_checked_alike_for_resume_inside_and_ngram(text, tmp_path, monkeypatch):
    """One rule (``rundir.run_text``): the recorded absolute path, else the corpus as the run's
    settings name it, each checked by its sha256. Trained from folder a with s.txt, the text then
    moved to folder b: from b, resume, the inside analysis and n-gram generation all find it (the
    n-gram tried only the absolute path); another text there: all three refuse."""
    from a4lib import load_corpus, ngram
    from a4lib.results import inside
    from a4lib.train import Trainer

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(text, a / "s.txt")
    monkeypatch.chdir(a)
    train_in_process(Path("s.txt"), Path("rnn"), "--updates", 20)
    ngram.run(load_corpus("s.txt"), "ng", order=2, val_fraction=0.1, sample_length=5)
    (a / "s.txt").rename(b / "s.txt")
    monkeypatch.chdir(b)
    sha = load_corpus("s.txt").sha256
    finds = {
        "resume": lambda: Trainer.resume(a / "rnn").corpus.sha256,
        "inside": lambda: inside.run_corpus(inside.load_model(a / "rnn")).sha256,
        "ngram": lambda: len(ngram.generate_from_run(a / "ng", 5, np.random.default_rng(0))) == 5 and sha,
    }
    assert {k: find() for k, find in finds.items()} == dict.fromkeys(finds, sha)
    (b / "s.txt").write_text(text.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    for name, find in finds.items():
        with pytest.raises(ValueError) as err:
            find()
        assert len(str(err.value).splitlines()) == 1, name


def test_run_text_tries_the_recorded_texts_in_order(tmp_path):
    """Unreadable and other texts are passed over; ``given`` replaces the recorded ones; the error
    says a text differs (when one loaded) or none was found."""
    from a4lib.corpus import load_corpus
    from a4lib.rundir import RunDirError, run_text

    right, other = tmp_path / "right.txt", tmp_path / "other.txt"
    right.write_text("the right text, long enough", encoding="utf-8")
    other.write_text("another text, long enough!!", encoding="utf-8")
    sha = load_corpus(right).sha256
    assert run_text(tmp_path, sha, [str(tmp_path / "gone.txt"), str(other), str(right)]).name == str(right)
    assert run_text(tmp_path, None, [str(tmp_path / "gone.txt"), str(other), str(right)]).name == str(other)
    for recorded, given in (([str(right)], other), ([str(other)], None), ([str(tmp_path / "gone.txt")], None),
                            ([str(right)], tmp_path / "gone.txt")):
        with pytest.raises(RunDirError):
            run_text(tmp_path, sha, recorded, given)


def test_resume_refuses_a_flag_set_to_its_default_that_is_not_the_runs_own(text, tmp_path):
    """Trained with --eta 0.05; --resume --eta 0.1 (the default) is refused, exit 2."""
    out = tmp_path / "run"
    train_in_process(text, out, "--eta", 0.05, "--updates", 30)
    code, _, err = run_main("train", "--out", out, "--resume", "--updates", 40, "--eta", 0.1, "--quiet")
    assert code == 2, err
    assert "eta" in assert_one_line(err)
    assert checkpoint_meta(out)["updates"] == 30


# --- 7. --out ----------------------------------------------------------------------------------

def test_an_empty_out_is_refused(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the old code trained into
    code, _, err = run_main("train", "--corpus", text, "--out", "", "--updates", 10, *SMALL)
    assert code == 2, err
    assert_one_line(err)
    assert not (tmp_path / "checkpoint.npz").exists()


def test_an_unwritable_out_gets_one_clear_line_and_exit_2(text, tmp_path):
    """--out under a regular file (root ignores chmod, so not a read-only folder)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = run_main("train", "--corpus", text, "--out", afile / "run", "--updates", 10, *SMALL)
    assert code == 2, err
    assert "[Errno" not in assert_one_line(err)


def test_resume_removes_temporary_files_left_by_a_killed_save(run_copy):
    for name in (".checkpoint.npz.k1ll3d.tmp", ".summary.json.x9y8z7.tmp"):
        (run_copy / name).write_bytes(b"half a file")
    code, _, err = run_main("train", "--out", run_copy, "--resume", "--updates", BASE_UPDATES + 10, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in run_copy.glob(".*.tmp")) == []


# --- 8. the umask --------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)], ids=["umask-022", "umask-027"])
def test_run_files_honour_the_umask(text, tmp_path, umask, mode):
    out = tmp_path / "run"
    done = cli("train", "--corpus", text, "--out", out, "--updates", 20, *SMALL, umask=umask)
    assert done.returncode == 0, done.stderr
    files = sorted(p for p in out.iterdir() if p.is_file())
    assert {"checkpoint.npz", "summary.json", "config.json"} <= {p.name for p in files}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


# --- 9. JupyterLab ---------------------------------------------------------------------------------

def test_jupyterlab_is_a_dependency_and_answers():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["notebooks"]
    assert any(re.match(r"jupyterlab\b", req) for req in extra), extra
    assert re.search(r"^\s*-\s*jupyterlab\b", (ROOT / "environment.yml").read_text(), re.M)
    exe = Path(sys.executable).parent / "jupyter-lab"
    argv = [str(exe), "--version"] if exe.is_file() else [sys.executable, "-m", "jupyterlab", "--version"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\d+\.\d+\S*", done.stdout.strip()), done.stdout


# --- 10. README ----------------------------------------------------------------------------------

def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_does_not_point_outside_the_repository():
    assert "../shared" not in readme()


# --- 11. the command line --------------------------------------------------------------------------

def train_help_entries() -> dict[str, tuple[bool, str]]:
    """`a4lib train --help` as {flag: (takes a value, help text with whitespace collapsed)}."""
    code, out, _ = run_main("train", "--help")
    assert code == 0
    options = out.split("options:", 1)[1]
    entries = {}
    for entry in re.split(r"\n(?=  -)", options.strip("\n")):
        lines = entry.splitlines()
        head = re.split(r"\s{2,}", lines[0].strip(), maxsplit=1)
        invocation = head[0].split(", ")[-1]
        flag, *metavar = invocation.split()
        entries[flag] = (bool(metavar), " ".join(" ".join(head[1:] + lines[1:]).split()))
    return entries


def test_train_help_describes_every_option_and_shows_its_default():
    entries = train_help_entries()
    assert {"--seq-length", "--seed", "--sample-length", "--eta", "--resume"} <= set(entries)
    for flag, (takes_value, help_text) in entries.items():
        assert help_text, f"{flag} has no help"
        if takes_value and flag != "--out":  # --out is required
            assert "(default:" in help_text, f"{flag}: {help_text}"


def test_train_help_states_each_default_once():
    for flag, (_, help_text) in train_help_entries().items():
        assert help_text.count("(default") <= 1, f"{flag}: {help_text}"


def test_version():
    from importlib.metadata import version

    code, out, _ = run_main("--version")
    assert code == 0
    assert out.strip() == f"a4lib {version('a4lib')}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder whose runs/ holds two runs: alpha (letters abcd), then beta (wxyz)."""
    root = tmp_path_factory.mktemp("project")
    rng = np.random.default_rng(0)
    for name, letters in (("alpha", "abcd"), ("beta", "wxyz")):
        corpus = root / f"{name}.txt"
        corpus.write_text("".join(rng.choice(list(letters), size=400)), encoding="utf-8")
        train_in_process(corpus, root / "runs" / name, "--seq-length", 5, "--updates", 40)
    old = time.time() - 3600
    for path in (root / "runs" / "alpha").iterdir():
        os.utime(path, (old, old))
    return root


def test_generate_without_a_run_directory_uses_the_latest_run(project, monkeypatch):
    """... and says which run it picked (issue 18 item 14), in one line on stderr."""
    monkeypatch.setattr("a4lib.rundir.project_root", lambda: project)
    code, out, err = run_main("generate", "--length", 200)
    assert code == 0, err
    assert set(out.strip()) <= set("wxyz") and len(out.strip()) == 200
    assert str(project / "runs" / "beta") in assert_one_line(err)


def test_runs_lists_each_run(project):
    code, out, err = run_main("runs", project / "runs")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3  # a header and two runs
    for name in ("alpha", "beta"):
        summary = read_json(project / "runs" / name / "summary.json")
        row = next(line for line in lines if line.split()[0] == name)
        cells = row.split()
        for cell in ("rnn", str(summary["updates"]), f"{summary['best_smooth_loss']:.3f}", "finished"):
            assert cell in cells, (cell, row)
    code, out, err = run_main("runs", project / "runs", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    assert sorted((r["name"], r["model"], r["updates"], r["status"]) for r in rows) == \
        [("alpha", "rnn", 40, "finished"), ("beta", "rnn", 40, "finished")]


# --- 12. smaller ones --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content", [
    ("notes.txt", '[{"text": "a tweet?"}, {"text": "no: a .txt file"}] is how tweet JSON begins.\n'),
    ("prose.txt", "plain prose with one stray control character \x03 in the middle of it.\n"),
], ids=["starts like tweet JSON", "one end-of-text character"])
def test_a_txt_file_is_plain_text(tmp_path, name, content):
    """Only a .json file is a tweet corpus: a text that starts like JSON or holds one EOT is prose."""
    from a4lib.corpus import load_corpus

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    corpus = load_corpus(path)
    assert not corpus.is_tweets
    assert corpus.text == content


@pytest.mark.parametrize("flags", [["--h", "nan"], ["--tol", "nan"], ["--sig", "-1"]],
                         ids=["h-nan", "tol-nan", "sig-negative"])
def test_gradcheck_refuses_nonsense_numbers(text, flags):
    code, _, err = run_main("gradcheck", "--corpus", text, "--m", 5, "--seq-length", 5, *flags)
    assert code == 2, err
    assert_one_line(err)


def test_the_readme_papermill_output_is_ignored_by_git():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "out.ipynb"], capture_output=True)
    assert done.returncode == 0


def test_the_readme_lists_provenance_among_the_run_files():
    paragraphs = readme().split("\n\n")
    assert any("run directory" in p and "provenance.json" in p for p in paragraphs)


# --- found in review -------------------------------------------------------------------------------

def test_runs_lists_a_run_with_a_corrupt_summary_as_unreadable(run_copy, tmp_path):
    from a4lib.rundir import list_runs

    (run_copy / "summary.json").write_text("{", encoding="utf-8")
    rows = list_runs(tmp_path)
    assert [(r["name"], r["status"]) for r in rows] == [("run", "unreadable")]
    code, out, err = run_main("runs", str(tmp_path))
    assert code == 0 and "unreadable" in out


def test_a_plain_text_with_an_end_of_text_character_generates_prose(tmp_path):
    """The report's passage (analysis.passage) knows a plain text with one EOT is no tweet corpus."""
    from a4lib.results import analysis

    path = tmp_path / "prose.txt"
    path.write_text(_some_text(3000) + "\x03" + _some_text(3000), encoding="utf-8")
    train_in_process(path, tmp_path / "run", "--updates", 30)
    passage = analysis.passage(tmp_path / "run", 400)
    assert len(passage.text) == 401  # the priming character and 400 more: no stop at EOT, no 280 limit


def test_a_dask_worker_with_two_threads_trains_two_runs_as_each_alone(tmp_path, text):
    """No run shares scratch arrays with another: two runs in two threads of one worker give the
    parameters each gives alone."""
    distributed = pytest.importorskip("distributed")
    import numpy as np

    from a4lib import Config
    from a4lib.checkpoint import load_params
    from a4lib.sweep import run_many

    configs = {"gru": Config(corpus=str(text), model="gru", m=8, n_updates=40, batch_size=3, sample_every=0),
               "lstm": Config(corpus=str(text), model="lstm", layers=2, dropout=0.2, m=8, n_updates=40,
                              sample_every=0)}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        run_many(configs, tmp_path / "threads", scheduler=cluster.scheduler_address)
    for name, cfg in configs.items():
        run_many({name: cfg}, tmp_path / "alone", workers=1)
        together, _ = load_params(tmp_path / "threads" / name, "last")
        alone, _ = load_params(tmp_path / "alone" / name, "last")
        assert all(np.array_equal(together[k], alone[k]) for k in alone)
