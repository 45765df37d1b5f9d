"""fastopt bench: tiny runs end to end (the numbers themselves are not tested here)."""

import csv
import json

import pytest

from fastopt import cli


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bench_update_writes_table_csv_and_settings(tmp_path, capsys):
    out = tmp_path / "u"
    assert cli.main(["bench", "update", "--optimizers", "sgd,adam", "--sizes", "1e3",
                     "--rounds", "1", "--no-torch", "--no-progress", "--out", str(out)]) == 0
    rows = _rows(out / "update.csv")
    assert {r["optimizer"] for r in rows} - {"-"} == {"sgd", "adam"}  # "-": the axpy row
    assert {r["impl"] for r in rows} >= {"fastopt", "numpy"}
    assert all(float(r["seconds"]) > 0 for r in rows)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["status"] == "complete"
    assert settings["arguments"]["sizes"] == [1000]
    assert "median us/step" in capsys.readouterr().out


def test_bench_mlp_rows_per_batch(tmp_path):
    out = tmp_path / "m"
    assert cli.main(["bench", "mlp", "--batch-sizes", "1,4", "--rounds", "1", "--no-torch",
                     "--no-progress", "--out", str(out)]) == 0
    rows = _rows(out / "mlp.csv")
    assert [(r["batch"], r["impl"]) for r in rows] == [
        ("1", "fastopt train_step"), ("1", "numpy GEMMs only"),
        ("4", "fastopt train_step"), ("4", "numpy GEMMs only")]


@pytest.mark.parametrize("argv, match", [
    (["bench", "update", "--target", "cuda"], "--target cuda"),
    (["bench", "mlp", "--seed", "-1"], "--seed"),
    (["bench", "coldstart", "--warm-runs", "0"], "--warm-runs"),
])
def test_bench_bad_arguments(argv, match, tmp_path, capsys):
    assert cli.main(argv + ["--out", str(tmp_path / "x")]) == 2
    assert match in capsys.readouterr().err


def test_bench_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["bench", "mlp", "--out", str(f)]) == 2
    assert "existing file" in capsys.readouterr().err
    assert f.read_text() == "x"


@pytest.mark.skipif(__import__("fastopt.kernels.cuda", fromlist=["x"]).why_unavailable()
                    is None, reason="a GPU (or the simulator) is here")
def test_bench_gpu_without_a_gpu_says_what_is_missing(tmp_path, capsys):
    assert cli.main(["bench", "gpu", "--no-progress", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "bench gpu needs a CUDA GPU" in err and "target=\"cpu\"" in err
