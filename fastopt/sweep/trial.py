"""One trial of a sweep, as it runs on a worker: the shared ``Task``, its data, the model.

``make_task`` checks what every trial of a sweep shares (data set, split, network, budget,
evaluations) and returns a ``Task``; ``run_trial`` trains a fresh MLP with
``fastopt.train.fit`` for the task's budget with one trial's settings and scores it on the
validation split held out of the training set (the test set is never used to choose
hyperparameters); ``warm_up`` compiles a trial's kernels (or loads them from Numba's disk
cache) with two steps of a tiny network. These functions are what the engine sends to the
Dask workers (or calls in its own process with ``workers=0``); they write no files.

Nothing here imports dask, numba or matplotlib at module level.
"""

import datetime
import functools
import math
import os
import sys
import time
from typing import NamedTuple

import numpy as np

from .. import _checks, runs
from . import space as _space

DEFAULT_STEPS = 300

#: Test seam, None in normal use: a callable given each Trial as the trial starts on its
#: worker, before any work. The tests' ``crash_trial`` fixture sets it in the Dask worker
#: processes to kill a worker in the middle of a sweep.
_on_trial_start = None


class Task(NamedTuple):
    """What every trial of a sweep shares: data, network, budget, evaluation."""

    dataset: str  # a fastopt.datasets name, or the name of a Dataset given to run()
    train_samples: int  # the first this many training samples (None: all)
    val_fraction: float  # held out of those for validation, after a seeded shuffle
    split_seed: int
    hidden: tuple
    activation: str
    init: str
    budget_steps: int  # exactly one of budget_steps, budget_seconds, epochs
    budget_seconds: float
    epochs: int
    evals: int  # evaluations of the validation split per trial (steps and epochs budgets)
    replacement: bool  # mini-batches drawn with replacement (the textbook's sampling)


# ---------------------------------------------------------------------------------------
# the task


def _check_budget(budget_steps, budget_seconds, epochs):
    given = [(n, v) for n, v in (("budget_steps", budget_steps),
                                 ("budget_seconds", budget_seconds), ("epochs", epochs))
             if v is not None]
    if len(given) > 1:
        raise ValueError("give one budget: budget_steps, budget_seconds or epochs, not "
                         + " and ".join(n for n, _ in given))
    if not given:
        return DEFAULT_STEPS, None, None
    if budget_seconds is not None:
        return None, runs.check_positive("budget_seconds", budget_seconds), None
    if budget_steps is not None:
        return runs.check_count("budget_steps", budget_steps), None, None
    return None, None, runs.check_count("epochs", epochs)


def make_task(dataset="digits", budget_steps=None, budget_seconds=None, epochs=None,
              hidden=(100, 100, 100, 100), train_samples=None, val_fraction=0.2, evals=10,
              replacement=False, init="he_normal", activation="relu", seed=0):
    """Check the shared settings of a sweep; a Task (no data loaded)."""
    steps, seconds, epochs = _check_budget(budget_steps, budget_seconds, epochs)
    hidden = _checks.widths("hidden", hidden)
    if train_samples is not None:
        runs.check_count("train_samples", train_samples, low=2)
    val_fraction = _checks.fraction("val_fraction", val_fraction, example=0.2)
    runs.check_count("evals", evals)
    from .. import init as initializers

    initializers.get(init)
    return Task(dataset, train_samples, val_fraction, int(seed), hidden, activation,
                init, steps, seconds, epochs, int(evals), bool(replacement))


def eval_every(task, n_train, batch_size):
    """Steps between evaluations: about ``task.evals`` per trial; once per epoch with a
    time budget."""
    per_epoch = math.ceil(n_train / batch_size)
    if task.budget_seconds is not None:
        return per_epoch
    total = task.budget_steps if task.budget_steps is not None else task.epochs * per_epoch
    return max(1, total // task.evals)


# ---------------------------------------------------------------------------------------
# data


def split_validation(X, y, train_samples, val_fraction, seed):
    """(X_train, y_train, X_val, y_val): the first ``train_samples`` rows (all if None),
    shuffled with ``default_rng(seed)``; the first ``int(n * val_fraction)`` of the shuffled
    rows are the validation split (the textbook's ``shuffle_dataset`` and slicing)."""
    if train_samples is not None:
        X, y = X[:train_samples], y[:train_samples]
    n = len(X)
    n_val = int(n * val_fraction)
    order = np.random.default_rng(seed).permutation(n)
    X, y = X[order], y[order]
    return X[n_val:], y[n_val:], X[:n_val], y[:n_val]


@functools.lru_cache(maxsize=2)
def _named_split(name, train_samples, val_fraction, seed):
    from .. import datasets

    data = datasets.load(name, dtype="float32")
    return (*split_validation(data.X_train, data.y_train, train_samples, val_fraction, seed),
            data.n_classes)


def task_data(task, data=None):
    """The task's (X_train, y_train, X_val, y_val, n_classes); ``data``: a Dataset given to
    run() (else the named data set, loaded once per process)."""
    if data is None:
        return _named_split(task.dataset, task.train_samples, task.val_fraction,
                            task.split_seed)
    return (*split_validation(data.X_train, data.y_train, task.train_samples,
                              task.val_fraction, task.split_seed), data.n_classes)


# ---------------------------------------------------------------------------------------
# one trial


def where():
    """(worker address, pid): the Dask worker running this, or ``local``."""
    address = "local"
    if "distributed" in sys.modules:
        try:
            address = sys.modules["distributed"].get_worker().address
        except ValueError:  # not inside a worker
            pass
    return address, os.getpid()


def build(task, settings, n_features, n_classes):
    """The trial's MLP and optimizer."""
    from .. import nn, optim
    from ..experiments import training

    model = nn.MLP([n_features, *task.hidden, n_classes], activation=task.activation,
                   init=task.init, seed=settings["seed"], dtype="float32")
    cls, kwargs = _space.optimizer_kwargs(settings)
    if settings["schedule"]:
        kwargs["lr"] = training.make_schedule(settings["schedule"], settings["lr"],
                                              flag="schedule")
    return model, getattr(optim, cls)(model.params, **kwargs)


def run_trial(task, trial, data=None):
    """Train and score one trial; a dict of METRICS plus ``history`` (the fit records),
    ``compile_time``, ``eval_time`` and ``stopped``. Divergence is a result, not an error."""
    t0 = time.perf_counter()
    if _on_trial_start is not None:
        _on_trial_start(trial)
    from .. import train
    from ..experiments import training

    X, y, X_val, y_val, n_classes = task_data(task, data)
    settings = trial.settings
    model, opt = build(task, settings, X.shape[1], n_classes)
    batch = min(settings["batch_size"], len(X))
    note = ""
    with np.errstate(all="ignore"):
        try:
            history = train.fit(model, opt, (X, y, X_val, y_val), batch_size=batch,
                                epochs=task.epochs, max_steps=task.budget_steps,
                                time_budget=task.budget_seconds,
                                eval_every=eval_every(task, len(X), batch),
                                seed=settings["seed"], progress=False,
                                replacement=task.replacement,
                                train_eval_size=0)  # scored on the validation rows
            note = training.blown_up(history)
        except train.TrainingDiverged as exc:
            history = exc.history
            note = f"diverged at step {exc.step} (training loss {exc.loss})"
    return _scores(history, note, t0)


def _scores(history, note, t0):
    """run_trial's dict, from the trial's History and why it diverged ("" if it did not)."""
    records = history.records
    last = records[-1]
    finite = [r for r in records if math.isfinite(r["test_loss"])]
    train_losses = [r["train_loss"] for r in records if math.isfinite(r["train_loss"])]
    worker, pid = where()
    return dict(
        status="diverged" if note else "ok",
        val_accuracy=float(last["test_accuracy"]), val_loss=float(last["test_loss"]),
        best_val_accuracy=max((r["test_accuracy"] for r in finite), default=float("nan")),
        best_val_loss=min((r["test_loss"] for r in finite), default=float("nan")),
        train_loss=train_losses[-1] if train_losses else float("nan"),
        steps=int(last["step"]), epochs=float(last["epoch"]),
        train_seconds=float(last["wall_time"]), compile_seconds=history.compile_time,
        trial_seconds=time.perf_counter() - t0, worker=worker, pid=pid,
        finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        note=note, history=records, compile_time=history.compile_time,
        eval_time=history.eval_time, stopped="diverged" if note else history.stopped)


def warm_up(task, settings, data=None):
    """Compile (or load from Numba's cache) the kernels of the trial ``settings`` (one per
    optimizer class) with two steps of a tiny network; returns the seconds spent."""
    from .. import train

    t0 = time.perf_counter()
    X, y, _, _, n_classes = task_data(task, data)
    settings = dict(settings, schedule=None, lr=1e-6)
    model, opt = build(task._replace(hidden=(2,)), settings, X.shape[1], n_classes)
    with np.errstate(all="ignore"):
        try:
            train.fit(model, opt, (X[:8], y[:8], X[:8], y[:8]), batch_size=4, max_steps=2,
                      progress=False, replacement=task.replacement)
        except train.TrainingDiverged:
            pass
    return time.perf_counter() - t0
