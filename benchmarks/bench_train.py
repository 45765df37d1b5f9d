"""Training (``fastopt.train.fit``): convergence per optimizer and batch size, and peak memory.

Convergence: one fixed, seeded run of ``fit`` per (data set, optimizer, batch size: 128 by
default, 32, 128 and 512 under FASTOPT_ASV_FULL=1; on MNIST SGD and Adam by default) --
He-initialised ReLU MLP ``n_features-100-100-100-100-10`` (the network of ``fastopt
compare``), each optimizer at the learning rate ``fastopt compare`` uses
(``fastopt.experiments.training.OPTIMIZERS``), the weights and the mini-batch order seeded
from ``common.py`` -- so the numbers move only when the code changes them (the seconds also
with the machine). Three tracks per run:

- ``track_test_accuracy``: test accuracy (%) after ``max_steps`` updates;
- ``track_steps_to_target``: updates until the test accuracy first reached the target
  (evaluated every ``eval_every`` steps; NaN, shown as n/a, if it never did);
- ``track_seconds_to_target``: training seconds until then (``History.wall_time``: without
  evaluation and compilation).

The runs happen once per data set, in ``setup_cache``; the tracks only read them.
Digits needs scikit-learn (``fastopt[datasets]``), MNIST ``fastopt[mnist]``; without them
the benchmarks are skipped.
"""

import math

from fastopt.bench import suite

from .common import (CONVERGENCE, CONVERGENCE_BATCH_GRID, CONVERGENCE_OPTIMIZERS, FIT_SEED,
                     MNIST_OPTIMIZERS, MODEL_SEED, PEAKMEM_STEPS, load_dataset)


# each track's unit, as fastopt bench asv-report reads it
_UNIT = {track: unit for track, (_, unit) in suite.CONVERGENCE_TRACKS.items()}


def _train_all(dataset, optimizers):
    """{(optimizer, batch): {"accuracy", "steps", "seconds"}} for every combination, or
    {"skip": why} when the data set is not installed."""
    from fastopt import nn, optim, train
    from fastopt.experiments import training

    try:
        data = load_dataset(dataset)
    except NotImplementedError as exc:
        return {"skip": str(exc)}
    spec = CONVERGENCE[dataset]
    sizes = [data.n_features, *spec["hidden"], data.n_classes]
    runs = {}
    for name in optimizers:
        config = training.configure(name, {})
        for batch_size in CONVERGENCE_BATCH_GRID:
            model = nn.MLP(sizes, activation="relu", init="he_normal", seed=MODEL_SEED)
            opt = getattr(optim, config.cls)(model.params, **config.kwargs)
            try:
                history = train.fit(model, opt, data, batch_size=batch_size,
                                    max_steps=spec["max_steps"], eval_every=spec["eval_every"],
                                    seed=FIT_SEED, progress=False)
            except train.TrainingDiverged as exc:
                history = exc.history
            reached = [r for r in history.records if r["test_accuracy"] >= spec["target"]]
            runs[name, batch_size] = {
                "accuracy": 100.0 * history.records[-1]["test_accuracy"],
                "steps": float(reached[0]["step"]) if reached else math.nan,
                "seconds": reached[0]["wall_time"] if reached else math.nan,
            }
    return runs


class _Convergence:
    """Shared by the per-data-set classes below (each has its own ``setup_cache``)."""

    params = (CONVERGENCE_OPTIMIZERS, CONVERGENCE_BATCH_GRID)
    param_names = list(suite.CONVERGENCE_PARAMS)
    timeout = 120

    def setup(self, runs, name, batch_size):
        if "skip" in runs:
            raise NotImplementedError(runs["skip"])
        self.run = runs[name, batch_size]

    def track_test_accuracy(self, runs, name, batch_size):
        return self.run["accuracy"]

    track_test_accuracy.unit = _UNIT["track_test_accuracy"]

    def track_steps_to_target(self, runs, name, batch_size):
        return self.run["steps"]

    track_steps_to_target.unit = _UNIT["track_steps_to_target"]

    def track_seconds_to_target(self, runs, name, batch_size):
        return self.run["seconds"]

    track_seconds_to_target.unit = _UNIT["track_seconds_to_target"]


class ConvergenceDigits(_Convergence):
    """scikit-learn's 8x8 digits (1,437 training / 360 test images), 300 updates, target
    95% test accuracy (the target of ``fastopt compare --dataset digits``)."""

    def setup_cache(self):
        return _train_all("digits", CONVERGENCE_OPTIMIZERS)

    setup_cache.timeout = 900


class ConvergenceMNIST(_Convergence):
    """MNIST (60,000 / 10,000), 1,500 updates, target 95% test accuracy; SGD and Adam by
    default, every optimizer under FASTOPT_ASV_FULL=1."""

    params = (MNIST_OPTIMIZERS, CONVERGENCE_BATCH_GRID)

    def setup_cache(self):
        return _train_all("mnist", MNIST_OPTIMIZERS)

    setup_cache.timeout = 1800


class TrainingMemory:
    """Peak resident memory of a short training run: ``fit`` on digits, Adam, batch 32,
    300 updates (includes the interpreter, NumPy and Numba: about 200 MB before any work)."""

    timeout = 300

    def setup(self):
        self.data = load_dataset("digits")

    def peakmem_fit_digits(self):
        from fastopt import nn, optim, train

        model = nn.MLP([self.data.n_features, 100, 100, 100, 100, self.data.n_classes],
                       seed=MODEL_SEED)
        opt = optim.Adam(model.params, lr=1e-3)
        train.fit(model, opt, self.data, batch_size=32, max_steps=PEAKMEM_STEPS,
                  eval_every=100, seed=FIT_SEED, progress=False)
