"""fastopt bench: tiny runs end to end (the numbers themselves are not tested here)."""

import csv
import json

import pytest

from fastopt import cli
from fastopt.bench import definitions


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bench_update_writes_table_csv_and_settings(tmp_path, capsys):
    out = tmp_path / "u"
    assert cli.main(["bench", "update", "--optimizers", "sgd,adam", "--sizes", "1e3",
                     "--crossover-sizes", "1e3,2e3", "--rounds", "1", "--no-torch",
                     "--no-progress", "--out", str(out)]) == 0
    rows = _rows(out / "update.csv")
    assert {r["optimizer"] for r in rows} - {"-"} == {"sgd", "adam"}  # "-": the axpy row
    assert {r["impl"] for r in rows} >= {"fastopt", "numpy"}
    assert all(float(r["seconds"]) > 0 for r in rows)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["status"] == "complete"
    assert settings["arguments"]["sizes"] == [1000]
    text = capsys.readouterr().out
    assert "median us/step" in text
    assert "crossover numba sgd" in text and "crossover numba adam" in text  # and cython's,
    assert "numba adam prange speedup by N: 1e+03" in text  # where it can be built


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


# ---------------------------------------------------------------------------------------
# the definitions both front-ends (fastopt bench, the asv suite) measure with


def test_every_optimizer_has_benchmark_facts():
    from fastopt import optim
    from fastopt.bench import definitions

    assert definitions.OPTIMIZERS == tuple(optim.OPTIMIZERS)
    assert set(definitions.TORCH_FUSED) <= set(definitions.TORCH_NAMES)


@pytest.mark.parametrize("name", list(definitions.OPTIMIZERS))
def test_peers_take_the_same_step(name):
    """fastopt, the NumPy reference and torch.optim, as the benchmarks build them, compute
    the same update: the tables compare like with like."""
    import numpy as np

    from fastopt.bench import definitions

    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(64), rng.standard_normal(64) * 1e-3
    ps = {impl: p0.copy() for impl in definitions.UPDATE_IMPLS}
    steps = {"fastopt": definitions.fastopt_step(name, ps["fastopt"], g)[1],
             "numpy": definitions.numpy_step(name, ps["numpy"], g)}
    if name in definitions.TORCH_NAMES:
        torch = pytest.importorskip("torch")
        steps["torch"] = definitions.torch_step(torch, name, ps["torch"], g.copy())
        if name in definitions.TORCH_FUSED:
            steps["torch-fused"] = definitions.torch_step(torch, name, ps["torch-fused"],
                                                          g.copy(), "torch-fused")
    for step in steps.values():
        step()
    assert not np.array_equal(ps["fastopt"], p0)
    for impl in steps:
        np.testing.assert_allclose(ps[impl], ps["fastopt"], rtol=1e-6, atol=1e-12,
                                   err_msg=impl)


def test_torch_mlp_is_the_same_network():
    torch = pytest.importorskip("torch")
    import numpy as np

    from fastopt.bench import definitions

    model, _ = definitions.fastopt_mlp(seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((4, definitions.NETWORK[0]), dtype=np.float32)
    y = rng.integers(0, definitions.NETWORK[-1], 4)
    net = definitions.torch_mlp(torch, X, y)
    assert net.forward().shape == model.forward(X).shape == (4, definitions.NETWORK[-1])
    assert np.isfinite(net.train_step()) and np.isfinite(net.forward_backward().item())


def test_cold_start_program_leaves_both_times():
    """The child program of bench coldstart and asv's ColdStart, run in this process."""
    from benchmarks import bench_import

    from fastopt.bench import definitions

    code = definitions.cold_start_program(batch=4)
    assert bench_import._FIRST_STEP == definitions.cold_start_program()
    namespace = {}
    exec(code, namespace)
    assert namespace["import_seconds"] >= 0 and namespace["first_step_seconds"] > 0


def test_coldstart_child_reports_both_calls_and_its_compilations():
    """bench coldstart's child program (tiny network, this session's Numba cache): one JSON
    line with both optimizers' first-call seconds and a record per compiled specialisation;
    ``summary`` ranks them per scenario and optimizer."""
    import json
    import subprocess
    import sys

    from fastopt.bench import coldstart

    for scenario in coldstart.SCENARIOS:
        code = coldstart.program(scenario, sizes=(6, 5, 3), batch=4, rows=16)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        assert result["first_s"] > 0 and result["next_s"] > 0 and result["import_s"] > 0
        assert result["helpers"] == 0  # tests/conftest.py: FASTOPT_COMPILE_PROCESSES=1
        assert all(r["phase"] in ("Adam", "RMSprop") and r["self_s"] <= r["total_s"] + 1e-9
                   for r in result["specialisations"])
    specs = [dict(scenario="fit", phase="Adam", depth=0, name="run_chunk_x_0123456789",
                  args="", total_s=3.0, self_s=1.0),
             dict(scenario="fit", phase="Adam", depth=1, name="mlp_forward_relu_abcdef0123",
                  args="", total_s=2.0, self_s=2.0)]
    rows = coldstart.summary(specs)
    assert [r["name"] for r in rows] == ["mlp_forward_relu", "run_chunk_x",
                                         "all 2 specialisations"]
    assert rows[-1]["total_s"] == 3.0 and rows[-1]["self_s"] == 3.0
    with pytest.raises(ValueError, match="scenario"):
        coldstart.program("predict")
