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


UPDATE_PARAMS = ("optimizer", "n", "dtype", "target", "impl")
MLP_PARAMS = ("batch", "target", "impl")
CONVERGENCE_PARAMS = ("optimizer", "batch")
COLD_START_PARAMS = ("numba_cache",)
IMPORT_PARAMS = ("module",)

#: fastopt's and its peers' optimizer step (``fastopt.bench.definitions``), ``steps_per_call``
#: steps per call
UPDATE = "bench_optim.OptimizerStep.time_step"
#: the MLP benchmarks: "bench_nn.MLP." + method; method -> the timing's name in the report
MLP_PREFIX = "bench_nn.MLP."
MLP_TIMINGS = {"time_train_step": "train_step", "time_forward": "forward",
               "time_forward_backward": "forward+backward"}
#: one class per data set: "bench_train.Convergence" + data set + "." + track
CONVERGENCE_PREFIX = "bench_train.Convergence"
CONVERGENCE_DATASETS = ("Digits", "MNIST")
#: track -> (the report's column, unit)
CONVERGENCE_TRACKS = {"track_test_accuracy": ("test_accuracy_pct", "%"),
                      "track_steps_to_target": ("steps_to_target", "steps"),
                      "track_seconds_to_target": ("seconds_to_target", "seconds")}

#: every benchmark of the suite
BENCHMARKS = {
    UPDATE: Benchmark(UPDATE_PARAMS, "seconds"),
    **{MLP_PREFIX + method: Benchmark(MLP_PARAMS, "seconds") for method in MLP_TIMINGS},
    **{f"{CONVERGENCE_PREFIX}{dataset}.{track}": Benchmark(CONVERGENCE_PARAMS, unit)
       for dataset in CONVERGENCE_DATASETS
       for track, (_, unit) in CONVERGENCE_TRACKS.items()},
    "bench_train.TrainingMemory.peakmem_fit_digits": Benchmark((), "bytes"),
    "bench_import.Import.timeraw_import": Benchmark(IMPORT_PARAMS, "seconds"),
    "bench_import.ColdStart.timeraw_import_and_first_step": Benchmark(COLD_START_PARAMS,
                                                                      "seconds"),
    "bench_import.ColdStart.track_first_train_step": Benchmark(COLD_START_PARAMS, "seconds"),
}
