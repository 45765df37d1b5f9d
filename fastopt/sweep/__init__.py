"""Hyperparameter sweeps on Dask distributed: many ``fit`` runs, resumable, fault tolerant.

A sweep draws trials from a search space (random search, or a grid) over optimizer, learning
rate, weight decay, momentum, batch size, schedule and seed. Each trial trains a fresh MLP
with ``fastopt.train.fit`` for a budget of steps, training seconds or epochs, and is scored
on a validation split held out of the training set (the test set is never used to choose
hyperparameters).

    >>> from fastopt import sweep
    >>> result = sweep.run("lr=loguniform(1e-4,1) optimizer=choice(sgd,adam)", trials=8,
    ...                    dataset="digits", budget_steps=200, workers=2, out="runs/demo")
    >>> [(t["optimizer"], t["lr"], t["val_accuracy"]) for t in result.best(3)]

The package sits above ``fastopt.experiments`` (whose optimizer names and defaults it uses);
nothing below it imports it. Its modules, each with one job:

- ``engine``: ``run``, which checks and plans a sweep, runs the trials that are not done yet
  and records them; resuming, execution and fault tolerance are described there.
- ``trial``: what runs on a worker: the shared ``Task`` (``make_task``), its data split
  and one trial (``run_trial``, ``warm_up``).
- ``space``: the search-space spec (``parse_space``) and the trial list (``plan_trials``).
- ``triallog``: trials.csv and errors.csv, append-only logs of whole lines (``TrialLog``,
  ``read_trials``, the columns ``TRIAL_COLUMNS``).
- ``result``: ``SweepResult`` and the ranking of trials.
- ``cluster``: the Dask connection (``connect``, the scheduler probe, ``workers_of``).
- ``presets``: ``TEXTBOOK``, the textbook's experiment (``run(**TEXTBOOK)``).
- ``command`` and ``report``: the ``fastopt sweep`` command, its tables and figures.

Dask is an optional dependency: ``pip install "fastopt[dist]"``. Nothing here imports dask,
numba or matplotlib at module level.
"""

from .cluster import DEFAULT_CONNECT_TIMEOUT, MissingDaskError, SchedulerError, connect
from .engine import run
from .presets import TEXTBOOK, TEXTBOOK_TOP
from .result import SweepResult
from .space import parse_space, plan_trials
from .trial import DEFAULT_STEPS, make_task
from .triallog import ERRORS_FILE, HISTORIES, TRIAL_COLUMNS, TRIALS_FILE, read_trials

__all__ = [
    "run", "SweepResult", "make_task", "parse_space", "plan_trials", "read_trials",
    "connect", "TEXTBOOK", "TEXTBOOK_TOP", "TRIAL_COLUMNS", "TRIALS_FILE", "ERRORS_FILE",
    "HISTORIES", "DEFAULT_STEPS", "DEFAULT_CONNECT_TIMEOUT", "MissingDaskError",
    "SchedulerError",
]
