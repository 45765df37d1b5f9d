"""The asv suite's benchmarks as their results name them: names, parameter names, units.

The classes in benchmarks/ take their parameter names from here, ``fastopt bench
asv-report`` finds its benchmarks by these names and falls back on these parameter names and
units for results without asv's ``benchmarks.json``; tests/test_asvreport.py checks that
the suite asv discovers matches this table.
"""

from typing import NamedTuple


class Benchmark(NamedTuple):
    """One benchmark of the suite, as asv's results describe it."""

    param_names: tuple
    unit: str  # "seconds" for time_/timeraw_, "bytes" for peakmem_, a track's own unit


UPDATE_PARAMS = ("optimizer", "n", "dtype", "target", "impl")  # the retired OptimizerStep's
STEP_PARAMS = ("optimizer", "n", "dtype")
MLP_PARAMS = ("batch", "target", "impl")  # the retired MLP class's
MLP_BATCH_PARAMS = ("batch",)
CONVERGENCE_PARAMS = ("optimizer", "batch")
COLD_START_PARAMS = ("numba_cache",)
IMPORT_PARAMS = ("module",)
INSTRUCTION_UPDATE_PARAMS = ("optimizer",)
INSTRUCTION_TRAIN_PARAMS = ("optimizer", "batch")

#: the optimizer step, one class per implementation and target (only combinations that can
#: run somewhere; what this machine lacks is skipped): benchmark -> (impl, target). One
#: ``opt.step(g)`` per call; asv's ``number`` calls per sample, its time per call is the
#: time per step.
UPDATE_STEPS = {
    "bench_optim.FastoptStep.time_step": ("fastopt", "cpu"),
    "bench_optim.FastoptStepCUDA.time_step": ("fastopt", "cuda"),
    "bench_optim.CythonStep.time_step": ("cython", "cpu"),  # fastopt, backend="cython"
    "bench_optim.NumpyStep.time_step": ("numpy", "cpu"),
    "bench_optim.TorchStep.time_step": ("torch", "cpu"),
    "bench_optim.TorchFusedStep.time_step": ("torch-fused", "cpu"),
    "bench_optim.TorchStepCUDA.time_step": ("torch", "cuda"),
    "bench_optim.TorchFusedStepCUDA.time_step": ("torch-fused", "cuda"),
}
#: the MLP, one class per implementation and target: class prefix -> (impl, target);
#: method -> the timing's name in the report
MLP_CLASSES = {"bench_nn.FastoptMLP.": ("fastopt", "cpu"),
               "bench_nn.FastoptMLPCUDA.": ("fastopt", "cuda"),
               "bench_nn.TorchMLP.": ("torch", "cpu"),
               "bench_nn.TorchMLPCUDA.": ("torch", "cuda")}
MLP_TIMINGS = {"time_train_step": "train_step", "time_forward": "forward",
               "time_forward_backward": "forward+backward"}
#: one class per data set: "bench_train.Convergence" + data set + "." + track
CONVERGENCE_PREFIX = "bench_train.Convergence"
CONVERGENCE_DATASETS = ("Digits", "MNIST")
#: track -> (the report's column, unit)
CONVERGENCE_TRACKS = {"track_test_accuracy": ("test_accuracy_pct", "%"),
                      "track_steps_to_target": ("steps_to_target", "steps"),
                      "track_seconds_to_target": ("seconds_to_target", "seconds")}
#: instructions per step under callgrind (``fastopt.bench.instructions``): benchmark -> kind
INSTRUCTION_UNIT = "instructions"
INSTRUCTIONS = {"bench_instructions.UpdateInstructions.track_instructions": "update",
                "bench_instructions.TrainStepInstructions.track_instructions": "train_step"}
#: the update's instructions with backend="cython" (not in the report's instruction table:
#: it has one row per optimizer and kind)
CYTHON_INSTRUCTIONS = ("bench_instructions.CythonUpdateInstructions.track_instructions",)

#: every benchmark of the suite
BENCHMARKS = {
    **{name: Benchmark(STEP_PARAMS, "seconds") for name in UPDATE_STEPS},
    **{prefix + method: Benchmark(MLP_BATCH_PARAMS, "seconds")
       for prefix in MLP_CLASSES for method in MLP_TIMINGS},
    **{f"{CONVERGENCE_PREFIX}{dataset}.{track}": Benchmark(CONVERGENCE_PARAMS, unit)
       for dataset in CONVERGENCE_DATASETS
       for track, (_, unit) in CONVERGENCE_TRACKS.items()},
    "bench_train.TrainingMemory.peakmem_fit_digits": Benchmark((), "bytes"),
    "bench_import.Import.timeraw_import": Benchmark(IMPORT_PARAMS, "seconds"),
    "bench_import.ColdStart.timeraw_import_and_first_step": Benchmark(COLD_START_PARAMS,
                                                                      "seconds"),
    "bench_import.ColdStart.track_first_train_step": Benchmark(COLD_START_PARAMS, "seconds"),
    **{name: Benchmark(INSTRUCTION_UPDATE_PARAMS if kind == "update"
                       else INSTRUCTION_TRAIN_PARAMS, INSTRUCTION_UNIT)
       for name, kind in INSTRUCTIONS.items()},
    **{name: Benchmark(INSTRUCTION_UPDATE_PARAMS, INSTRUCTION_UNIT)
       for name in CYTHON_INSTRUCTIONS},
}

#: benchmarks of earlier commits' suites, still read by the report. Before issue 17 one
#: class timed every implementation and target, ``steps_per_call(n)`` steps per call (the
#: report divides by it), with rows for combinations that could never run.
LEGACY_UPDATE = "bench_optim.OptimizerStep.time_step"
LEGACY_MLP_PREFIX = "bench_nn.MLP."
LEGACY = {
    LEGACY_UPDATE: Benchmark(UPDATE_PARAMS, "seconds"),
    **{LEGACY_MLP_PREFIX + method: Benchmark(MLP_PARAMS, "seconds") for method in MLP_TIMINGS},
}


def known(name):
    """The ``Benchmark`` of a current or retired benchmark name, else None."""
    return BENCHMARKS.get(name) or LEGACY.get(name)
