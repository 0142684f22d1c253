"""The command line: a4lib.cli.main in-process, and `python -m a4lib` as a real process."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from a4lib import checkpoint as ckpt
from a4lib.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join("abcdefg h."[(i * 7 + i // 3) % 10] for i in range(400))  # 10 characters, no newline
TRAIN = ["--m", "8", "--seq-length", "5", "--updates", "30", "--sample-every", "10", "--sample-length", "15"]


def quiet_main(argv):
    """main(argv) with stdout and stderr captured: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished run (module-wide): (corpus path, run directory)."""
    base = tmp_path_factory.mktemp("cli")
    corpus = base / "text.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = base / "run"
    code, out, err = quiet_main(["train", "--corpus", corpus, "--out", run, *TRAIN, "--quiet"])
    assert code == 0, err
    return corpus, run


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_train_prints_one_summary_line_when_quiet(corpus_file, tmp_path, capsys):
    """train --quiet: exit 0, stdout is one line holding the summary's figures as they are shown
    (losses with three decimals, no 14-digit numbers), the run files exist."""
    code = main(["train", "--corpus", str(corpus_file), "--out", str(tmp_path / "r"), *TRAIN, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    summary = ckpt.read_json(tmp_path / "r" / "summary.json")
    assert summary["status"] == "finished" and summary["updates"] == 30
    numbers = re.findall(r"\d[\d,]*\.?\d*", lines[0].split(str(tmp_path))[0])
    assert f"{summary['best_smooth_loss']:.3f}" in numbers and "30" in numbers
    assert all(len(n.split(".")[-1]) <= 3 for n in numbers if "." in n)
    for name in (ckpt.CHECKPOINT, "config.json", "summary.json", "history.npz", "samples.json"):
        assert (tmp_path / "r" / name).is_file(), name
    assert err == ""


def test_train_shows_samples(corpus_file, tmp_path, capsys):
    """train without --quiet prints each sample with its update number, then the summary line."""
    code = main(["train", "--corpus", str(corpus_file), "--out", str(tmp_path / "r"), *TRAIN])
    out, _ = capsys.readouterr()
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("--- update ")]
    samples = ckpt.read_json(tmp_path / "r" / "samples.json")
    assert [int(h.split()[2].strip(",")) for h in headings] == [s["update"] for s in samples] == [0, 10, 20, 30]
    assert "None" not in out
    for h, s in zip(headings[1:], samples[1:]):  # the smooth loss with three decimals
        assert h.endswith(f"{s['smooth_loss']:.3f}")
    for s in samples:
        assert s["text"] in out


def test_train_resume_continues(corpus_file, tmp_path, capsys):
    """train --resume --updates 45 continues a finished 30-update run to 45 updates."""
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(corpus_file), "--out", str(run), *TRAIN, "--quiet"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--updates", "45", "--quiet"]) == 0
    assert ckpt.read_json(run / "summary.json")["updates"] == 45


def test_resume_keeps_the_runs_settings(corpus_file, tmp_path, capsys):
    """--resume with a setting the run does not have: exit 2, one line naming it, the run untouched;
    a setting equal to the run's own is accepted."""
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(corpus_file), "--out", str(run), *TRAIN, "--quiet"]) == 0
    before = (run / ckpt.CHECKPOINT).read_bytes()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--updates", "40", "--eta", "0.05", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "eta" in err and "--eta" in err
    assert (run / ckpt.CHECKPOINT).read_bytes() == before
    m = ckpt.read_json(run / "config.json")["m"]
    assert main(["train", "--out", str(run), "--resume", "--updates", "40", "--m", str(m), "--quiet"]) == 0


def test_resume_after_time_budget_runs_to_the_new_target(corpus_file, tmp_path, capsys):
    """A run stopped by --max-seconds, resumed with --updates N, trains to N (the old budget is
    replaced by the new target)."""
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(corpus_file), "--out", str(run), "--m", "8", "--seq-length", "5",
                 "--updates", "100000", "--max-seconds", "0.2", "--sample-every", "0", "--quiet"]) == 0
    stopped = ckpt.read_json(run / "summary.json")["updates"]
    assert 0 < stopped < 100000
    assert main(["train", "--out", str(run), "--resume", "--updates", str(stopped + 7), "--quiet"]) == 0
    assert ckpt.read_json(run / "summary.json")["updates"] == stopped + 7


def test_generate_text_of_requested_length(trained, capsys):
    """generate --length 40: 40 generated vocabulary characters (the default prime is not
    printed), then a newline."""
    corpus, run = trained
    assert main(["generate", str(run), "--length", "40", "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and "\n" not in out[:-1]
    text = out[:-1]
    assert len(text) == 40
    assert set(text) <= set(TEXT)
    assert err == ""


def test_generate_with_prime(trained, capsys):
    """generate --prime 'ab' --length 25: 'ab' then 25 characters."""
    _, run = trained
    assert main(["generate", str(run), "--length", "25", "--prime", "ab"]) == 0
    text = capsys.readouterr().out[:-1]
    assert text.startswith("ab") and len(text) == 27


def test_generate_same_seed_same_text(trained):
    """The same seed prints the same text, another seed another text; temperature 0 ignores the seed."""
    _, run = trained
    gen = lambda *extra: quiet_main(["generate", run, "--length", "60", *extra])[1]  # noqa: E731
    assert gen("--seed", "5") == gen("--seed", "5")
    assert gen("--seed", "5") != gen("--seed", "6")
    assert gen("--seed", "5", "--temperature", "0") == gen("--seed", "6", "--temperature", "0")
    assert gen("--seed", "5", "--params", "last") == gen("--seed", "5", "--params", "last")


def test_bench_json(tmp_path, monkeypatch, capsys):
    """bench --updates 20 --reference-updates 5 --json: one JSON line with the speed figures as numbers."""
    monkeypatch.chdir(tmp_path)  # default corpus: builtin:python-docs
    assert main(["bench", "--updates", "20", "--reference-updates", "5", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    for key in ("updates_per_s", "reference_updates_per_s", "speedup"):
        assert isinstance(r[key], (int, float)) and r[key] > 0, key
    assert r["updates"] == 20 and r["reference_updates"] == 5
    assert not (tmp_path / "unused").exists()  # bench writes no run directory


def test_gradcheck_table(tmp_path, monkeypatch, capsys):
    """gradcheck --m 5 --seq-length 5 exits 0 and prints a table: header and a row per parameter."""
    monkeypatch.chdir(tmp_path)
    assert main(["gradcheck", "--m", "5", "--seq-length", "5", "--json", "g.json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "m=5" in lines[0] and "ok" in lines[0]
    assert lines[1].split() == ["param", "max", "rel", "mean", "rel", "max", "abs"]
    rows = [ln.split() for ln in lines[2:7]]
    assert [r[0] for r in rows] == ["U", "W", "V", "b", "c"]
    for r in rows:
        assert float(r[1]) < 1e-4
    results = json.loads((tmp_path / "g.json").read_text())
    assert results[0]["ok"] and results[0]["m"] == 5


def test_gradcheck_fails_with_exit_1_when_over_tolerance(corpus_file, capsys):
    """A tolerance no real check meets (1e-30): exit code 1 and FAILED in the table title."""
    assert main(["gradcheck", "--corpus", str(corpus_file), "--m", "5", "--seq-length", "5", "--tol", "1e-30"]) == 1
    assert "FAILED" in capsys.readouterr().out


# --- bad input: exit 2, one line on stderr, no traceback --------------------------------------------

def bad_cases(base: Path, run: Path):
    ok = base / "ok.txt"
    ok.write_text(TEXT, encoding="utf-8")
    (base / "latin1.txt").write_bytes("caf\xe9 au lait, s'il vous pla\xeet".encode("latin-1"))
    (base / "empty.txt").write_bytes(b"")
    (base / "short.txt").write_text("abc", encoding="utf-8")
    (base / "no_checkpoint").mkdir(exist_ok=True)
    (base / "corrupt").mkdir(exist_ok=True)
    (base / "corrupt" / "checkpoint.npz").write_bytes(b"not a zip file")
    new = base / "new_run"
    train = ["train", "--corpus", ok, "--out", new, "--updates", "5", "--quiet"]
    return {
        "negative eta": (train + ["--eta", "-0.1"], "eta"),
        "m < 1": (train + ["--m", "0"], "--m"),
        "m not a number": (train + ["--m", "abc"], "abc"),
        "negative seq-length": (train + ["--seq-length", "-1"], "--seq-length"),
        "negative sample length": (train + ["--sample-length", "-3"], "--sample-length"),
        "negative updates": (train + ["--updates", "-1"], "--updates"),
        "unknown optimizer": (train + ["--optimizer", "sgd"], "sgd"),
        "epochs and updates": (train + ["--epochs", "1"], "--epochs"),
        "missing --out": (["train", "--corpus", ok], "--out"),
        "unknown command": (["frobnicate"], "frobnicate"),
        "missing corpus": (["train", "--corpus", base / "missing.txt", "--out", new], "missing.txt"),
        "non-UTF-8 corpus": (["train", "--corpus", base / "latin1.txt", "--out", new], "UTF-8"),
        "empty corpus": (["train", "--corpus", base / "empty.txt", "--out", new], "empty"),
        "too short corpus": (["train", "--corpus", base / "short.txt", "--out", new], "short.txt"),
        "out holds a run": (["train", "--corpus", ok, "--out", run, "--updates", "5"], "resume"),
        "resume without checkpoint": (["train", "--out", base / "no_checkpoint", "--resume"], "no_checkpoint"),
        "resume, no directory": (["train", "--out", base / "nowhere", "--resume"], "nowhere"),
        "generate: no run directory": (["generate", base / "no_such_run"], "no_such_run"),
        "generate: no checkpoint": (["generate", base / "no_checkpoint"], "no_checkpoint"),
        "generate: negative length": (["generate", run, "--length", "-5"], "length"),
        "generate: negative temperature": (["generate", run, "--temperature", "-1"], "temperature"),
        "generate: top-p 0": (["generate", run, "--top-p", "0"], "top-p"),
        "generate: unknown prime": (["generate", run, "--prime", "Z§"], "Z§"),
        "gradcheck: missing corpus": (["gradcheck", "--corpus", base / "missing.txt"], "missing.txt"),
        "gradcheck: m < 1": (["gradcheck", "--corpus", ok, "--m", "0", "--seq-length", "5"], "--m"),
        "bench: m < 1": (["bench", "--corpus", ok, "--m", "0"], "--m"),
        "unknown backend": (["train", "--corpus", ok, "--out", new, "--backend", "cuda"], "cuda"),
        "bench: unknown backend": (["bench", "--corpus", ok, "--backend", "cuda"], "cuda"),
        "generate: corrupt checkpoint": (["generate", base / "corrupt"], "checkpoint"),
        "generate: temperature nan": (["generate", run, "--temperature", "nan"], "temperature"),
        "batch size too large": (train + ["--batch-size", "100000000"], "batch_size"),
        "one held-out character": (train + ["--val-fraction", "0.004"], "val_fraction"),  # 1 of 400: none to predict
    }


BAD = [
    "negative eta", "m < 1", "m not a number", "negative seq-length", "negative sample length",
    "negative updates", "unknown optimizer", "epochs and updates", "missing --out", "unknown command",
    "missing corpus", "non-UTF-8 corpus", "empty corpus", "too short corpus", "out holds a run",
    "resume without checkpoint", "resume, no directory", "generate: no run directory",
    "generate: no checkpoint", "generate: negative length", "generate: negative temperature",
    "generate: top-p 0", "generate: unknown prime", "gradcheck: missing corpus", "gradcheck: m < 1",
    "bench: m < 1", "unknown backend", "bench: unknown backend",
    "generate: corrupt checkpoint", "generate: temperature nan", "batch size too large", "one held-out character",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exit_2_one_line(case, trained, tmp_path, capsys):
    """Bad input: exit code 2, exactly one line on stderr naming the problem, no traceback, nothing on
    stdout, no new run directory."""
    _, run = trained
    before = sorted(p.name for p in run.iterdir())
    argv, needle = bad_cases(tmp_path, run)[case]
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert "Traceback" not in err and needle in lines[0]
    assert out == ""
    assert not (tmp_path / "new_run").exists()
    assert sorted(p.name for p in run.iterdir()) == before  # the existing run is untouched


def test_bad_cases_cover_the_list(tmp_path, trained):
    """The parametrized list names exactly the cases that bad_cases builds."""
    assert sorted(bad_cases(tmp_path, trained[1])) == sorted(BAD)


# --- real processes -------------------------------------------------------------------------------

def run_module(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "a4lib", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_m_a4lib_train_and_generate(corpus_file, tmp_path):
    """`python -m a4lib train` then `generate` in real processes: exit 0, the summary line, and the same
    text as generate in-process for the same seed."""
    p = run_module("train", "--corpus", corpus_file, "--out", tmp_path / "r", *TRAIN, "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 1 and ckpt.read_json(tmp_path / "r" / "summary.json")["updates"] == 30
    g = run_module("generate", tmp_path / "r", "--length", "50", "--seed", "7", cwd=tmp_path)
    assert g.returncode == 0, g.stderr
    assert len(g.stdout[:-1]) == 50
    assert g.stdout == quiet_main(["generate", tmp_path / "r", "--length", "50", "--seed", "7"])[1]


def test_python_m_a4lib_bad_input(tmp_path):
    """A missing corpus in a real process: exit 2, one stderr line, no traceback."""
    p = run_module("train", "--corpus", tmp_path / "missing.txt", "--out", tmp_path / "r", cwd=tmp_path)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "missing.txt" in p.stderr


# --- issue 18 item 14: what the command line prints ----------------------------------------------

def test_a_resumed_run_does_not_show_its_last_sample_again(corpus_file, tmp_path, capsys):
    """A run of 30 updates shows its samples of 0, 10, 20 and 30; resumed to 45 it shows those of
    40 and 45 only (its sample of 30 is drawn again on the record, the same text, not shown)."""
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(corpus_file), "--out", str(run), *TRAIN]) == 0
    first = capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--updates", "45"]) == 0
    second = capsys.readouterr().out
    heading = re.compile(r"^--- update (\d[\d,]*\d|\d)", re.M)
    assert [int(u.replace(",", "")) for u in heading.findall(first)] == [0, 10, 20, 30]
    assert [int(u.replace(",", "")) for u in heading.findall(second)] == [40, 45]
    assert [s["update"] for s in ckpt.read_json(run / "samples.json")] == [0, 10, 20, 30, 40, 45]


def test_help_shows_every_default_even_zero():
    """`generate --help` states --seed's default 0 (a 0 was taken for "no default")."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["generate", "--help"])
    help_text = " ".join(out.getvalue().split())
    assert re.search(r"--seed SEED seeds the sampling \(default: 0\)", help_text)


@pytest.mark.parametrize("argv, near", [
    (["train", "--out", "r", "--etta", "0.1"], "--eta"),
    (["generate", "--lenght", "5"], "--length"),
    (["sweep", "--out", "s", "--grid", "seed=0", "--sed-length", "5"], "--seq-length"),
])
def test_a_misspelt_flag_names_the_near_one(argv, near, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"'{near}'" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_the_package_says_its_version():
    from importlib.metadata import version

    import a4lib

    assert a4lib.__version__ == version("a4lib")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--version"])
    assert out.getvalue().split() == ["a4lib", a4lib.__version__]
