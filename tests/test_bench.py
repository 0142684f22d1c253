"""a4lib bench: the JSON of one benchmark, the scaling table, the FLOP count (speed is never asserted)."""
from __future__ import annotations

import json

import pytest

from a4lib import bench
from a4lib.cli import main


def test_flop_per_char_counts_the_products():
    """RNN: W h, V h forward; V^T dL/do, dV, W^T dL/da, dW backward. m = 100, K = 80: 108,000
    (the issue's figure); the LSTM's W has 4m rows."""
    assert bench.flop_per_char("rnn", 100, 80) == 108_000
    assert bench.flop_per_char("lstm", 128, 65) == 24 * 128 ** 2 + 6 * 65 * 128


def test_bench_json_has_the_report_keys_and_the_new_ones(capsys):
    """The keys report/build.py reads, plus model, dtype, optimizer, repeat and GFLOP/s."""
    assert main(["bench", "--corpus", "builtin:python-docs", "--model", "lstm", "--m", "8", "--batch-size", "2",
                 "--dtype", "float32", "--optimizer", "adam", "--updates", "6", "--reference-updates", "2",
                 "--repeat", "2", "--backend", "numpy", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("corpus", "K", "m", "seq_length", "batch_size", "backend", "updates", "reference_updates",
                "updates_per_s", "reference_updates_per_s", "chars_per_s", "reference_chars_per_s", "speedup"):
        assert key in r, key
    assert (r["model"], r["dtype"], r["optimizer"], r["repeat"], r["batch_size"]) == ("lstm", "float32", "adam", 2, 2)
    assert r["chars_per_s"] == pytest.approx(r["updates_per_s"] * 25 * 2, rel=1e-3)
    assert r["gflop_per_s"] == pytest.approx(r["chars_per_s"] * bench.flop_per_char("lstm", 8, r["K"]) / 1e9, rel=1e-2,
                                         abs=0.005)  # rounded to 2 decimals


def test_scaling_rows_and_table():
    """Every (dtype, m, B) once, its GFLOP/s from its chars/s, the fraction of that type's peak, and
    the speed-up over the reference at its m; the text table shows every m and B."""
    r = bench.scaling("builtin:python-docs", ms=(4, 6), batch_sizes=(1, 3), repeat=1, reference_updates=2,
                      backend="numpy")
    assert [(x["dtype"], x["m"], x["batch_size"]) for x in r["rows"]] == [
        (dt, m, B) for dt in ("float64", "float32") for m in (4, 6) for B in (1, 3)]
    for x in r["rows"]:
        gflops = x["chars_per_s"] * bench.flop_per_char("rnn", x["m"], r["K"]) / 1e9
        assert x["gflop_per_s"] == pytest.approx(gflops, rel=1e-2, abs=0.01)
        # from the unrounded GFLOP/s: the rounded one is off by up to 0.005, over 1e-4 of a small fraction
        assert x["peak_fraction"] == pytest.approx(gflops / r["peak_gflop_per_s"][x["dtype"]], rel=1e-2, abs=1e-4)
        assert x["speedup"] == pytest.approx(x["chars_per_s"] / r["reference_chars_per_s"][str(x["m"])], rel=1e-2,
                                             abs=0.005)  # rounded to 2 decimals
    assert set(r["peak_gflop_per_s"]) == {"float64", "float32"} and all(v > 0 for v in r["peak_gflop_per_s"].values())
    table = bench.scaling_table(r)
    assert "float32: peak" in table and "B = 3" in table and table.count("\n     4 ") == 2


def test_bad_repeat_is_one_line_exit_2(capsys):
    assert main(["bench", "--corpus", "builtin:python-docs", "--repeat", "0"]) == 2
    err = capsys.readouterr().err
    assert "--repeat" in err and len(err.strip().splitlines()) == 1
