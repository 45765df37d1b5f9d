"""``fastopt bench asv-report`` on small synthetic asv results (no asv run needed), and the
asv suite's own invariants (grids, the smoke switch, numbers shared with the report)."""

import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from fastopt import asvreport, cli

STEPS = {cls: f"bench_optim.{cls}.time_step" for cls in
         ("FastoptStep", "FastoptStepCUDA", "CythonStep", "NumpyStep", "TorchStep",
          "TorchFusedStep")}
COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
           "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
           "samples", "profile"]
NAN = float("nan")
PER_STEP = {"fastopt": 10e-6, "cython": 11e-6, "numpy": 30e-6, "torch": 50e-6,
            "torch-fused": 20e-6}


def _params(*lists):
    return [[repr(v) for v in values] for values in lists]


def _step_benchmark(impl, opts, sizes, dtypes=("float32",), skipped=False):
    """(param_names, params, unit, values): one step per call, time grows with N; SGD's
    NumPy step at N = 1e3 failed."""
    values = []
    for name, n, _ in itertools.product(opts, sizes, dtypes):
        if skipped:
            values.append(NAN)
        elif name == "sgd" and impl == "numpy" and n == 1000:
            values.append(None)
        else:
            values.append(PER_STEP[impl] * n / 1000)
    return (["optimizer", "n", "dtype"], _params(opts, sizes, dtypes), "seconds", values)


def _benchmarks():
    """{name: (param_names, params as asv stores them, unit, values in product order)}"""
    opts, sizes = ["sgd", "adam", "lion"], [1000, 1000000]
    update = {
        STEPS["FastoptStep"]: _step_benchmark("fastopt", opts, sizes),
        STEPS["FastoptStepCUDA"]: _step_benchmark("fastopt", opts, [10**6], skipped=True),
        STEPS["CythonStep"]: _step_benchmark("cython", opts, sizes),
        STEPS["NumpyStep"]: _step_benchmark("numpy", opts, sizes),
        STEPS["TorchStep"]: _step_benchmark("torch", ["sgd", "adam"], sizes),  # no Lion
        STEPS["TorchFusedStep"]: _step_benchmark("torch-fused", ["sgd", "adam"], sizes),
    }
    mlp = {}
    for method, base in (("time_train_step", 1e-3), ("time_forward", 2e-4),
                         ("time_forward_backward", 8e-4)):
        for cls, factor in (("FastoptMLP", 1), ("TorchMLP", 2.5), ("FastoptMLPCUDA", NAN)):
            batches = [128] if cls.endswith("CUDA") else [1, 32]
            mlp[f"bench_nn.{cls}.{method}"] = (
                ["batch"], _params(batches), "seconds",
                [base * (1 + b / 32) * factor for b in batches])
    conv = {}
    for cls, skipped in (("ConvergenceDigits", False), ("ConvergenceMNIST", True)):
        for method, values in (("track_test_accuracy", [96.5, 94.0, 97.25, 95.5]),
                               ("track_steps_to_target", [120.0, NAN, 60.0, 250.0]),
                               ("track_seconds_to_target", [0.25, NAN, 0.125, 0.5])):
            conv[f"bench_train.{cls}.{method}"] = (
                ["optimizer", "batch"], _params(["sgd", "adam"], [32, 128]),
                {"track_test_accuracy": "%", "track_steps_to_target": "steps",
                 "track_seconds_to_target": "seconds"}[method],
                [NAN] * 4 if skipped else values)
    instructions = {
        "bench_instructions.UpdateInstructions.track_instructions": (
            ["optimizer"], _params(["sgd", "adam"]), "instructions", [280000.0, 410000.0]),
        "bench_instructions.TrainStepInstructions.track_instructions": (
            ["optimizer", "batch"], _params(["sgd", "adam"], [128]), "instructions",
            [15.8e6, NAN]),
    }
    return {
        **update, **mlp, **conv, **instructions,
        "bench_train.TrainingMemory.peakmem_fit_digits": ([], [], "bytes", [300 * 2**20]),
        "bench_import.ColdStart.track_first_train_step": (
            ["numba_cache"], _params(["empty", "warm"]), "seconds", [21.5, 0.75]),
        "bench_import.Import.timeraw_import": (
            ["module"], _params(["fastopt", "fastopt.nn"]), "seconds", [3e-4, None]),
    }


def _legacy_benchmarks():
    """The suite before issue 17: one OptimizerStep class with target and impl parameters,
    steps_per_call(n) steps per call, rows for combinations that never run; one MLP class."""
    opts, sizes = ["sgd", "adam", "lion"], [1000, 1000000]
    targets, impls = ["cpu", "cuda"], ["fastopt", "numpy", "torch", "torch-fused"]
    update = []
    for name, n, target, impl in itertools.product(opts, sizes, targets, impls):
        if target == "cuda" or (name == "lion" and impl.startswith("torch")):
            update.append(NAN)  # skipped
        else:
            update.append(PER_STEP[impl] * n / 1000 * asvreport.steps_per_call(n))
    mlp = {f"bench_nn.MLP.{method}": (
        ["batch", "target", "impl"], _params([32], ["cpu", "cuda"], ["fastopt", "torch"]),
        "seconds", [1e-3, 2.5e-3, NAN, NAN]) for method in ("time_train_step",)}
    return {
        "bench_optim.OptimizerStep.time_step": (
            ["optimizer", "n", "dtype", "target", "impl"],
            _params(opts, sizes, ["float32"], targets, impls), "seconds", update),
        **mlp,
    }


def _write_results(root, machine="testbox", commits=(("a" * 40, 1_700_000_000_000),
                                                     ("b" * 40, 1_800_000_000_000)),
                   bench=None):
    """A results folder as asv 0.6 writes it: benchmarks.json, <machine>/machine.json and
    one file per commit. The older commit's values are 10x the newer's (to tell them apart)."""
    os.makedirs(root / machine, exist_ok=True)
    bench = _benchmarks() if bench is None else bench
    info = {"version": 2}
    for name, (names, params, unit, _) in bench.items():
        info[name] = {"name": name, "param_names": names, "params": params, "unit": unit,
                      "type": name.rsplit(".", 1)[-1].split("_")[0], "version": "1"}
    (root / "benchmarks.json").write_text(json.dumps(info))
    (root / machine / "machine.json").write_text(json.dumps(
        {"machine": machine, "arch": "x86_64", "cpu": "test", "num_cpu": "2", "os": "Linux",
         "ram": "1", "version": 1}))
    for k, (commit, date) in enumerate(commits):
        factor = 10.0 if k < len(commits) - 1 else 1.0
        results = {}
        for name, (names, params, unit, values) in bench.items():
            vals = [v * factor if isinstance(v, float) and not math.isnan(v)
                    and "track_test_accuracy" not in name else v for v in values]
            results[name] = [vals, params, "1", date + 1000 * k, 1.0]
        data = {"commit_hash": commit, "env_name": "existing-py_usr_bin_python3",
                "date": date, "params": {"machine": machine, "python": "3.11"},
                "python": "3.11", "requirements": {}, "env_vars": {},
                "result_columns": COLUMNS, "results": results, "durations": {}, "version": 2}
        (root / machine / f"{commit[:8]}-existing-py_usr_bin_python3.json").write_text(
            json.dumps(data))
    return root


@pytest.fixture
def results(tmp_path):
    return _write_results(tmp_path / "results")


def _rows(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def test_select_picks_the_latest_commit_and_reads_every_benchmark(results):
    sel = asvreport.select(str(results), use_asv=False)
    assert sel.machine == "testbox" and sel.commit == "b" * 40
    names = {e.name for e in sel.entries}
    assert set(_benchmarks()) == names
    older = asvreport.select(str(results), commit="aaaa", use_asv=False)
    assert older.commit == "a" * 40


def test_update_rows_per_step_times_bandwidth_and_ratios(results):
    rows = asvreport.update_rows(asvreport.select(str(results), use_asv=False).entries)
    adam = _rows(rows, optimizer="adam", n=1000, target="cpu")[0]
    assert adam["fastopt_us"] == pytest.approx(10.0)  # one step per call: as asv reports
    # Adam: 2 state arrays -> (3 + 4) * 4 bytes * 1000 per step in 10 us
    assert adam["fastopt_gbps"] == pytest.approx(7 * 4 * 1000 / 10e-6 / 1e9)
    assert adam["numpy_x"] == pytest.approx(3.0)
    assert adam["cython_us"] == pytest.approx(11.0) and adam["cython_x"] == pytest.approx(1.1)
    assert adam["torch_x"] == pytest.approx(5.0)
    assert adam["torch_fused_x"] == pytest.approx(2.0)
    sgd = _rows(rows, optimizer="sgd", n=1000000)[0]  # SGD with momentum: 1 state array
    assert sgd["fastopt_gbps"] == pytest.approx(5 * 4 * 1e6 / 10e-3 / 1e9)
    failed = _rows(rows, optimizer="sgd", n=1000)[0]
    assert math.isnan(failed["numpy_us"]) and math.isnan(failed["numpy_x"])
    lion = _rows(rows, optimizer="lion", n=1000)[0]  # torch has no Lion: no torch result
    assert math.isnan(lion["torch_x"]) and lion["numpy_x"] == pytest.approx(3.0)
    assert not _rows(rows, target="cuda")  # every cuda combination was skipped
    assert len(rows) == 6  # 3 optimizers x 2 sizes, each peer beside fastopt


def test_results_of_the_suite_before_issue_17_still_report_per_step(tmp_path):
    """The retired OptimizerStep timed steps_per_call(n) steps per call: divided here."""
    root = _write_results(tmp_path / "legacy", bench=_legacy_benchmarks())
    entries = asvreport.select(str(root), use_asv=False).entries
    rows = asvreport.update_rows(entries)
    adam = _rows(rows, optimizer="adam", n=1000, target="cpu")[0]
    assert adam["fastopt_us"] == pytest.approx(10.0)  # 100 steps per call, divided
    assert adam["torch_fused_x"] == pytest.approx(2.0)
    assert _rows(rows, optimizer="adam", n=1000000)[0]["fastopt_us"] == pytest.approx(1e4)
    step = _rows(asvreport.mlp_rows(entries), what="train_step", batch=32)[0]
    assert step["target"] == "cpu" and step["torch_x"] == pytest.approx(2.5)
    (root / "benchmarks.json").unlink()  # parameter names from fastopt.bench.suite.LEGACY
    again = asvreport.update_rows(asvreport.select(str(root), use_asv=False).entries)
    assert repr(again) == repr(rows)  # (repr: NaN == NaN)


def test_mlp_convergence_and_other_rows(results):
    entries = asvreport.select(str(results), use_asv=False).entries
    mlp = asvreport.mlp_rows(entries)
    step = _rows(mlp, what="train_step", batch=32)[0]
    assert step["fastopt_us"] == pytest.approx(2000.0)
    assert step["fastopt_samples_per_s"] == pytest.approx(32 / 2e-3)
    assert step["torch_x"] == pytest.approx(2.5)
    assert [r["what"] for r in mlp[::2]] == ["train_step", "forward", "forward+backward"]
    assert {r["target"] for r in mlp} == {"cpu"}  # the CUDA class was skipped
    instr = asvreport.instruction_rows(entries)
    assert [(r["what"], r["optimizer"]) for r in instr] == [
        ("train_step", "sgd"), ("update", "sgd"), ("update", "adam")]  # Adam's skipped
    update_adam = _rows(instr, what="update", optimizer="adam")[0]
    assert update_adam["size"] == 100000 and update_adam["per_item"] == pytest.approx(4.1)
    assert _rows(instr, what="train_step")[0]["per_item"] == pytest.approx(15.8e6 / 128)
    conv = asvreport.convergence_rows(entries)
    assert {r["dataset"] for r in conv} == {"digits"}  # MNIST skipped entirely
    adam32 = _rows(conv, optimizer="adam", batch=32)[0]
    assert adam32["test_accuracy_pct"] == 97.25 and adam32["steps_to_target"] == 60
    assert adam32["seconds_to_target"] == pytest.approx(0.125)
    assert math.isnan(_rows(conv, optimizer="sgd", batch=128)[0]["steps_to_target"])
    other = {(r["benchmark"].rsplit(".", 2)[-2], r["params"]): r
             for r in asvreport.other_rows(entries)}
    assert other["TrainingMemory", "-"]["value"] == pytest.approx(300.0)
    assert other["TrainingMemory", "-"]["unit"] == "MiB"
    assert other["ColdStart", "numba_cache=empty"]["unit"] == "s"
    assert other["Import", "module=fastopt.nn"]["unit"] == "failed"


def test_asv_reader_and_json_reader_agree(results):
    pytest.importorskip("asv")
    a = asvreport.select(str(results), use_asv=True)
    b = asvreport.select(str(results), use_asv=False)
    assert a.commit == b.commit and len(a.entries) == len(b.entries)
    for x, y in zip(a.entries, b.entries):
        assert (x.name, x.params, x.unit) == (y.name, y.params, y.unit)
        assert (x.value is None) == (y.value is None)
        if x.value is not None:
            assert x.value == y.value or (math.isnan(x.value) and math.isnan(y.value))


def test_json_reader_reads_what_asv_writes(tmp_path):
    """A file written by asv's own Results.save reads the same with both readers."""
    pytest.importorskip("asv")
    from asv.results import Results
    from asv.runner import BenchmarkResult

    params = _params(["adam", "sgd"], [1000, 1000000], ["float32"])
    r = Results({"machine": "box"}, {}, "c" * 40, 1_700_000_000_000, "3.11", "env", {})
    r.add_result({"name": STEPS["FastoptStep"], "version": "1", "params": params},
                 BenchmarkResult(result=[1e-3, NAN, 2e-3, None], samples=[None] * 4,
                                 number=[None] * 4, errcode=0, stderr="", profile=None))
    r.save(str(tmp_path))
    (path,) = (tmp_path / "box").glob("*.json")
    for use_asv in (True, False):
        f = asvreport.read_file(str(path), use_asv)
        assert f.commit == "c" * 40
        got_params, values = f.results[STEPS["FastoptStep"]]
        assert got_params == params
        assert values[0] == 1e-3 and math.isnan(values[1]) and values[3] is None


def test_command_writes_tables_and_figures(results, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["bench", "asv-report", "--results", str(results), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "machine testbox, commit bbbbbbbbbbbb" in text
    assert "update kernels" in text and "convergence" in text and "fused x" in text
    for name in ("asv_update.csv", "asv_mlp.csv", "asv_convergence.csv",
                 "asv_instructions.csv", "asv_other.csv",
                 "asv_update_float32_cpu.png", "asv_mlp_cpu.png", "settings.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "asv_update_float32_cuda.png").exists()
    header = (out / "asv_update.csv").read_text().splitlines()[0]
    assert header.startswith("optimizer,n,dtype,target,fastopt_us,fastopt_gbps")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["status"] == "complete" and settings["resolved"]["commit"] == "b" * 40


@pytest.mark.parametrize("argv, message", [
    (["--results", "{tmp}/nothing"], "no asv results under"),
    (["--machine", "other"], "--machine other: no results for it"),
    (["--commit", "f00"], "--commit f00: no results for it"),
])
def test_command_errors_name_the_problem(results, tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--results" not in argv:
        argv += ["--results", str(results)]
    assert cli.main(["bench", "asv-report", *argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_damaged_file_is_skipped_with_a_note(results):
    (results / "testbox" / "zzzz-broken.json").write_text("{not json")
    sel = asvreport.select(str(results), use_asv=False)
    assert sel.commit == "b" * 40
    assert any("zzzz-broken.json" in n for n in sel.notes)


# ---------------------------------------------------------------------------------------
# the suite's invariants


def test_report_and_suite_share_steps_per_call_and_hyperparameters():
    from benchmarks import common

    from fastopt import optim
    from fastopt.bench import definitions

    # one definition: the suite and the report use the same objects, not copies
    assert common.steps_per_call is definitions.steps_per_call is asvreport.steps_per_call
    assert common.BENCH_HYPER is definitions.BENCH_HYPER
    assert common.TORCH_NAMES is definitions.TORCH_NAMES
    assert common.TORCH_FUSED is definitions.TORCH_FUSED
    for n in (1, 999, 1000, 1001, 100000, 10**7):
        assert common.steps_per_call(n) == max(1, 100000 // n)
    assert set(common.OPTIMIZERS) == set(optim.OPTIMIZERS)
    assert asvreport.state_arrays("sgd") == 1  # momentum 0.9
    assert asvreport.state_arrays("adam") == 2
    assert asvreport.state_arrays("nope") is None


def test_suite_values_are_the_ones_old_results_were_measured_with():
    """asv results stay comparable across commits only if these never change."""
    from benchmarks import common

    assert common.OPTIMIZERS == ["sgd", "adagrad", "rmsprop", "adam", "adamw", "adadelta",
                                 "adamax", "nadam", "radam", "lion"]
    assert common.BENCH_HYPER == {"sgd": {"lr": 1e-3, "momentum": 0.9}}
    assert common.TORCH_NAMES == {
        "sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
        "adamw": "AdamW", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "NAdam",
        "radam": "RAdam"}
    assert set(common.TORCH_FUSED) == {"sgd", "adam", "adamw", "adagrad"}
    assert common.UPDATE_IMPLS == ["fastopt", "numpy", "torch", "torch-fused"]
    assert common.NETWORK == (784, 100, 100, 100, 100, 10) and common.MLP_LR == 0.01
    assert common.MLP_IMPLS == ["fastopt", "torch"]
    assert common.SEED == 20261123
    p, _ = common.arrays(5, "float64")
    assert np.array_equal(p, np.random.default_rng(20261123).standard_normal(5))


def test_suite_matches_the_definitions_the_report_reads():
    """Every benchmark asv discovers is in fastopt.bench.suite with the same parameter
    names and unit, and every one there exists: a renamed benchmark fails here instead of
    dropping out of the report."""
    discovery = pytest.importorskip("asv_runner.discovery")
    from fastopt.bench import suite

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks")
    found = {b.name: (tuple(b.param_names), b.unit)
             for b in discovery.disc_benchmarks(root)}
    assert found == {name: (b.param_names, b.unit) for name, b in suite.BENCHMARKS.items()}


def test_results_without_benchmarks_json_take_names_and_units_from_the_suite(results):
    with_info = asvreport.select(str(results), use_asv=False).entries
    (results / "benchmarks.json").unlink()
    without = asvreport.select(str(results), use_asv=False).entries
    assert [(e.name, e.params, e.unit) for e in without] == \
        [(e.name, e.params, e.unit) for e in with_info]
    assert asvreport.convergence_rows(without) == asvreport.convergence_rows(with_info)


def _grids(env):
    """The suite's grids as ``benchmarks/common.py`` computes them in a new process."""
    code = ("import json; from benchmarks import common as c; print(json.dumps(dict("
            "smoke=c.SMOKE, full=c.FULL, step=[c.STEP_OPTIMIZERS, c.STEP_SIZES, c.STEP_DTYPES], "
            "peer=c.PEER_SIZES, cuda=c.CUDA_SIZES, torch=c.TORCH_STEP_OPTIMIZERS, "
            "fused=c.TORCH_FUSED_OPTIMIZERS, mlp=c.MLP_BATCHES, mlp_cuda=c.MLP_CUDA_BATCHES, "
            "conv=[c.CONVERGENCE_OPTIMIZERS, c.CONVERGENCE_BATCH_GRID], mnist=c.MNIST_OPTIMIZERS, "
            "mnist_steps=c.CONVERGENCE['mnist']['max_steps'], "
            "instr=[c.INSTRUCTION_OPTIMIZERS, c.INSTRUCTION_TRAIN_OPTIMIZERS])))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "FASTOPT_ASV_SMOKE": "", "FASTOPT_ASV_FULL": "", **env}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True)
    return proc if proc.returncode else json.loads(proc.stdout)


def test_default_full_and_smoke_grids():
    default, full, smoke = (_grids({}), _grids({"FASTOPT_ASV_FULL": "1"}),
                            _grids({"FASTOPT_ASV_SMOKE": "1"}))
    assert (default["full"], full["full"], smoke["smoke"]) == (False, True, True)
    everything = ["sgd", "adagrad", "rmsprop", "adam", "adamw", "adadelta", "adamax", "nadam",
                  "radam", "lion"]
    # the full grids are the suite's grids before issue 17
    assert full["step"] == [everything, [1000, 100000, 1000000, 10000000],
                            ["float32", "float64"]]
    assert full["peer"] == full["step"][1] and full["mlp"] == [1, 32, 128, 512]
    assert full["conv"] == [everything, [32, 128, 512]]
    # the default: every optimizer, fewer sizes, float32, peers at both ends
    assert default["step"] == [everything, [1000, 100000, 1000000], ["float32"]]
    assert default["peer"] == [1000, 1000000] and default["conv"] == [everything, [128]]
    assert default["mnist"] == ["sgd", "adam"] and full["mnist"] == everything
    assert default["instr"] == full["instr"] == [everything, ["sgd", "adam"]]
    for grids in (default, full, smoke):
        assert set(grids["peer"]) <= set(grids["step"][1])  # every peer beside fastopt
        # torch rows only for what torch.optim has
        assert grids["torch"] == [n for n in grids["step"][0] if n != "lion"]
        assert set(grids["fused"]) <= {"sgd", "adagrad", "adam", "adamw"}
    for key in ("peer", "cuda", "mlp", "mlp_cuda"):
        assert 1 <= len(smoke[key]) <= len(default[key]) <= len(full[key])
    assert smoke["step"][0] == ["sgd", "adam"] and smoke["mnist_steps"] < full["mnist_steps"]


def test_full_and_smoke_together_are_refused():
    proc = _grids({"FASTOPT_ASV_FULL": "1", "FASTOPT_ASV_SMOKE": "1"})
    assert proc.returncode != 0
    assert "FASTOPT_ASV_FULL and FASTOPT_ASV_SMOKE are both set" in proc.stderr


def test_old_grid_names_keep_their_values():
    """common.py is append-only: the names of the suite before issue 17 keep their values
    (the full grids are built from them)."""
    from benchmarks import common

    if common.SMOKE:
        pytest.skip("FASTOPT_ASV_SMOKE is set in this environment")
    assert common.SIZES == [1000, 100000, 1000000, 10000000]
    assert common.BATCH_SIZES == [1, 32, 128, 512] and common.CONVERGENCE_BATCHES == [32, 128, 512]
    assert common.TARGETS == ["cpu", "cuda"]


def test_one_step_per_call_and_calls_per_sample():
    from benchmarks import common

    assert [common.calls_per_sample(n) for n in (1000, 10000, 100000, 10**7)] == [100, 10, 1, 1]
