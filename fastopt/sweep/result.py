"""What a sweep returns: ``SweepResult``, and ``rank_key``, the order of "best"."""

import math
from pathlib import Path

from .triallog import HISTORIES


def rank_key(row):
    """Best first: not diverged, highest final validation accuracy, lowest validation loss,
    lowest index."""
    acc = row["val_accuracy"]
    loss = row["val_loss"]
    return (row["status"] != "ok", -acc if math.isfinite(acc) else math.inf,
            loss if math.isfinite(loss) else math.inf, row["index"])


class SweepResult:
    """What a sweep returns.

    ``trials``: every finished trial of the sweep (this run's and earlier runs' in the same
    ``out``), a dict per trial with TRIAL_COLUMNS, in index order. ``errors``: trials that
    raised in this run (dicts with ERROR_COLUMNS). ``ran``/``skipped``: trials run now and
    found done. ``planned``: the sweep's trial list. ``out``: the folder, or None.
    ``best(k)`` ranks the trials; ``history(trial_id)`` returns one trial's
    ``fastopt.train.History``.
    """

    def __init__(self, planned, trials, errors, ran, skipped, out, histories, seconds,
                 workers):
        self.planned = planned
        self.trials = sorted(trials, key=lambda r: r["index"])
        self.errors = errors
        self.ran = ran
        self.skipped = skipped
        self.out = out
        self._histories = histories
        self.seconds = seconds
        self.workers = workers

    def __repr__(self):
        return (f"SweepResult({len(self.trials)}/{len(self.planned)} trials, ran {self.ran}, "
                f"skipped {self.skipped}, errors {len(self.errors)})")

    @property
    def complete(self):
        return len(self.trials) == len(self.planned)

    def best(self, k=10):
        return sorted(self.trials, key=rank_key)[:k]

    def history(self, trial_id):
        from ..train import History

        if trial_id in self._histories:
            return self._histories[trial_id]
        if self.out is None:
            raise KeyError(f"no history of trial {trial_id!r} in memory and no out folder")
        return History.from_csv(Path(self.out) / HISTORIES / f"{trial_id}.csv")
