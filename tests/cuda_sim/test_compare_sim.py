"""`fastopt compare --target cuda` end to end in Numba's CUDA simulator: the same outputs as
on the CPU, and the same steps and test accuracies within a float32 tolerance (the GPU sums
in another order).

The simulator runs one Python thread per GPU thread (an evaluation of 24 samples took ~6 s),
so the run is kept tiny: the first 32 training and 8 test samples of digits, a 64-8-10
network, batch 8, one epoch (4 steps), evaluated at steps 0, 2 and 4 (--evals 2).
"""

import csv
import dataclasses
import json

import numpy as np
import pytest

from fastopt import datasets
from fastopt.kernels import cuda as gpu
from tests.clitools import cli

pytestmark = pytest.mark.skipif(gpu.why_unavailable() is not None,
                                reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU")

ARGS = ["compare", "--dataset", "digits", "--hidden", "8", "--optimizers", "sgd,adam",
        "--seeds", "1", "--epochs", "1", "--batch-sizes", "8", "--evals", "2", "--no-progress"]
HISTORIES = ["adam_b8_s0.csv", "sgd_b8_s0.csv"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


@pytest.fixture
def tiny_digits(monkeypatch):
    load = datasets.load

    def tiny(name, *args, **kwargs):
        data = load(name, *args, **kwargs)
        return dataclasses.replace(data, X_train=data.X_train[:32], y_train=data.y_train[:32],
                                   X_test=data.X_test[:8], y_test=data.y_test[:8])

    monkeypatch.setattr(datasets, "load", tiny)


def test_compare_on_the_gpu_matches_the_cpu(tmp_path, capsys, tiny_digits,
                                            small_mlp_launches):
    outs = {}
    for target, extra in (("cuda", []), ("cpu", ["--workers", "1"])):
        out = tmp_path / target
        code, stdout, err = cli([*ARGS, *extra, "--target", target, "--out", str(out)],
                                capsys)
        assert code == 0, err
        outs[target] = out
    gpu, cpu = outs["cuda"], outs["cpu"]
    for out in (gpu, cpu):  # the same files either way
        assert sorted(p.name for p in (out / "histories").iterdir()) == HISTORIES
        for name in ("summary.csv", "verdict.txt", "compare_b8.png", "settings.json"):
            assert (out / name).stat().st_size > 0, name
    settings = json.loads((gpu / "settings.json").read_text())
    assert settings["status"] == "complete"
    assert settings["arguments"]["target"] == "cuda"
    assert settings["resolved"]["time_column"] == "wall_time"
    assert settings["resolved"]["workers"] == 1
    assert json.loads((cpu / "settings.json").read_text())["resolved"]["time_column"] \
        == "cpu_time"
    for name in HISTORIES:
        g, c = read_csv(gpu / "histories" / name), read_csv(cpu / "histories" / name)
        assert [r["step"] for r in g] == [r["step"] for r in c] == ["0", "2", "4"]
        for column in ("test_accuracy", "test_loss", "train_loss"):
            np.testing.assert_allclose([float(r[column]) for r in g],
                                       [float(r[column]) for r in c], rtol=1e-4,
                                       atol=1e-5, err_msg=f"{name} {column}")
    g_rows, c_rows = read_csv(gpu / "summary.csv"), read_csv(cpu / "summary.csv")
    assert [r["optimizer"] for r in g_rows] == [r["optimizer"] for r in c_rows]
    for g, c in zip(g_rows, c_rows):
        assert g["steps"] == c["steps"]
        np.testing.assert_allclose(float(g["final_test_accuracy_mean"]),
                                   float(c["final_test_accuracy_mean"]), atol=1e-6)
        # the GPU run's training time is its wall time (chunks end with a device sync)
        history = read_csv(gpu / "histories" / f"{g['optimizer']}_b8_s0.csv")
        np.testing.assert_allclose(float(g["train_seconds"]),
                                   float(history[-1]["wall_time"]), rtol=1e-12)
