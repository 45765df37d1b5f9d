"""What ``fastopt compare`` and ``fastopt sensitivity`` share: the optimizer names and
default learning rates for the MLP, argument checks, one training run that survives
divergence, and the aggregation of curves over seeds.

Optimizer names (``--optimizers``; ``NAME:key=value`` overrides, see
``fastopt.experiments.optspec``) are the presets of the optimizer catalogue
(``fastopt.optim.catalogue``): each optimizer class states its presets and their default
learning rates for the ReLU MLP 784-100-100-100-100-10 on MNIST (batch 128), where each
reaches about 97% test accuracy in 5 seconds of training on 2 cores; ``OPTIMIZER_HELP``
lists them.

Nothing here imports numba or matplotlib at module level.
"""

import math
import textwrap
from typing import NamedTuple

import numpy as np

from ..optim import catalogue
from .. import tables
from ..tables import format_table  # noqa: F401  (the commands' plain-text tables)
from . import optspec

#: name -> (fastopt.optim class, fixed arguments, default learning rate), from the catalogue
OPTIMIZERS = {name: (p.cls, p.fixed, p.lr) for name, p in catalogue.presets().items()}
DEFAULT_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw"
DEFAULT_HIDDEN = "100,100,100,100"
#: a final test loss above this multiple of the untrained network's counts as diverged
DIVERGED_FACTOR = 10

OPTIMIZER_HELP = "\n".join([
    "optimizers (--optimizers NAME[:key=value[,key=value...]][,NAME...]):",
    textwrap.fill("names: " + ", ".join(OPTIMIZERS), 88, initial_indent="  ",
                  subsequent_indent="    "),
    "  momentum = SGD with momentum=0.9, nesterov = SGD with momentum=0.9, nesterov=True.",
    "  key=value items after a name set arguments of its fastopt.optim class (Adam-type",
    "  betas as beta1=, beta2=), e.g.",
    "    --optimizers sgd,adam:lr=3e-4,beta2=0.99,momentum:momentum=0.8",
    textwrap.fill("default learning rates (chosen for the MLP on MNIST, batch 128): "
                  + ", ".join(f"{n} {v[2]:g}" for n, v in OPTIMIZERS.items()), 88,
                  initial_indent="  ", subsequent_indent="    "),
])


class OptimizerConfig(NamedTuple):
    """One optimizer of a command: label (CSV, legend), name, fastopt.optim class, arguments."""

    label: str
    name: str
    cls: str
    kwargs: dict

    @property
    def lr(self):
        return self.kwargs["lr"]


class Run(NamedTuple):
    """One training run: its history (up to the divergence, if any) and what happened."""

    label: str
    batch_size: int
    seed: int
    lr: float
    history: object  # fastopt.train.History
    diverged: bool
    note: str  # "" or why the run ended early


# ---------------------------------------------------------------------------------------
# arguments


def parse_optimizers(text, flag="--optimizers", forbidden=None):
    """``--optimizers`` text -> [(label, name, overrides), ...] (see optspec)."""
    return optspec.parse_optimizers(text, {n: v[0] for n, v in OPTIMIZERS.items()}, flag,
                                    forbidden)


def configure(name, overrides, label=None, lr=None):
    """The arguments of one optimizer: fixed ones, the default (or given) lr, overrides."""
    cls, fixed, default_lr = OPTIMIZERS[name]
    kwargs = optspec.merge(cls, dict(fixed, lr=default_lr if lr is None else lr), overrides)
    return OptimizerConfig(label or name, name, cls, kwargs)


def configs_from_text(text, flag="--optimizers", forbidden=None):
    """Parse and check ``--optimizers``; a list of OptimizerConfig with default lrs."""
    configs = [configure(name, overrides, label)
               for label, name, overrides in parse_optimizers(text, flag, forbidden)]
    for c in configs:
        optspec.check_arguments(c.label, c.cls, c.kwargs, flag)
    return configs


def parse_sizes(option, text, what="sizes"):
    """Comma-separated positive integers ("100,100"); ValueError naming ``option``."""
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ValueError(f"{option} needs at least one positive integer, got {text!r}")
    sizes = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{option}: {what} must be positive integers separated by commas "
                             f"(e.g. 32,128), got {item!r} in {text!r}")
        sizes.append(value)
    return sizes


def check_schedule(spec, configs, flag="--schedule"):
    """Build the schedule once per optimizer so a bad spec fails before any work."""
    if spec is None:
        return None
    for c in configs:
        make_schedule(spec, c.lr, flag)
    return spec


def make_schedule(spec, lr, flag="--schedule"):
    from .. import schedules

    try:
        return schedules.from_string(spec, lr)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag} {spec}: {exc}") from None


def load_data(name, option="--dataset"):
    """``fastopt.datasets.load(name)``; unknown names and missing extras as ValueError."""
    from .. import datasets

    if name not in datasets.DATASETS:
        raise ValueError(f"{option}: unknown data set {name!r}; valid: "
                         + ", ".join(datasets.DATASETS))
    try:
        return datasets.load(name, dtype="float32")
    except datasets.MissingExtraError as exc:
        hint = "" if "--dataset digits" in str(exc) or name == "digits" else \
            " (or pass --dataset digits)"
        raise ValueError(f"{option} {name}: {exc}{hint}") from None


def network(data, hidden):
    return [data.n_features, *hidden, data.n_classes]


def network_text(data, hidden):
    return "-".join(str(s) for s in network(data, hidden))


def chance(data):
    """Accuracy of guessing: 1 / number of classes."""
    return 1.0 / data.n_classes


# ---------------------------------------------------------------------------------------
# training


def gpu_missing():
    """None if ``--target cuda`` can train here (a GPU, or Numba's simulator with
    NUMBA_ENABLE_CUDASIM=1), else what is missing (``fastopt.kernels.cuda``'s check, the
    one ``nn.MLP(target="cuda")`` raises with); ``runs.check_target``'s ``gpu``."""
    from ..kernels import cuda as gpu

    return gpu.why_unavailable()


def build(data, hidden, config, seed, schedule=None, target="cpu"):
    """A fresh ReLU MLP (He-normal weights from ``seed``, the same on either target) and
    its optimizer; ``target`` "cpu" or "cuda" (parameters and state on the GPU)."""
    from .. import nn, optim

    model = nn.MLP(network(data, hidden), activation="relu", init="he_normal", seed=seed,
                   dtype=data.dtype.name, target=target)
    kwargs = dict(config.kwargs)
    if schedule is not None:
        kwargs["lr"] = make_schedule(schedule, config.lr)
    return model, getattr(optim, config.cls)(model.params, **kwargs)


def train_run(data, hidden, config, batch_size, seed, schedule=None, seconds=None,
              epochs=None, max_steps=None, eval_every=None, eval_at=None, clock="wall",
              target="cpu"):
    """Train one MLP (on ``target``, "cpu" or "cuda"); a Run. Divergence is recorded in the Run, never raised: the training
    loss became NaN or infinite (``TrainingDiverged``), or the final test loss is not
    finite or more than DIVERGED_FACTOR times the untrained network's (blown-up weights
    whose loss stays finite, e.g. when the ReLUs die)."""
    runner = Runner(data, hidden, config, batch_size, seed, schedule=schedule,
                    seconds=seconds, epochs=epochs, max_steps=max_steps,
                    eval_every=eval_every, eval_at=eval_at, clock=clock, target=target)
    runner.advance()
    return runner.result


class Runner:
    """One run of a command that advances in slices (``fastopt.train.Training``), so that
    the runs of a comparison can take turns; ``train_run``'s arguments. ``advance(seconds)``
    returns True when the run has ended; ``result`` is its Run then (None before),
    ``partial()`` a Run of what it did so far."""

    def __init__(self, data, hidden, config, batch_size, seed, schedule=None, seconds=None,
                 epochs=None, max_steps=None, eval_every=None, eval_at=None, clock="wall",
                 target="cpu"):
        from .. import train

        self.config, self.batch_size, self.seed = config, batch_size, seed
        self.result = None
        model, opt = build(data, hidden, config, seed, schedule, target)
        with np.errstate(all="ignore"):  # the warm-up steps may overflow too
            self.training = train.Training(
                model, opt, data, batch_size=batch_size, epochs=epochs, max_steps=max_steps,
                time_budget=seconds, eval_every=eval_every, eval_at=eval_at, seed=seed,
                progress=False, clock=clock, train_eval_size=0)  # test columns only

    @property
    def label(self):
        return self.config.label

    def advance(self, seconds=None):
        from .. import train

        if self.result is not None:
            return True
        with np.errstate(all="ignore"):
            try:
                if not self.training.advance(seconds):
                    return False
            except train.TrainingDiverged as exc:
                self.result = self._run(True, f"diverged at step {exc.step} (training loss "
                                              f"{exc.loss})")
                return True
            except OverflowError as exc:  # the lr schedule blew up: so did the run
                self.result = self._run(True, f"diverged: {str(exc).splitlines()[0]}")
                return True
        note = blown_up(self.training.history)
        self.result = self._run(bool(note), note)
        return True

    def partial(self):
        """The Run so far: the result once ended, else the history up to now (its
        ``stopped`` reason "interrupted")."""
        if self.result is not None:
            return self.result
        self.training.history.stopped = "interrupted"
        return self._run(False, "interrupted")

    def _run(self, diverged, note):
        return Run(self.config.label, self.batch_size, self.seed, self.config.lr,
                   self.training.history, diverged, note)


def interleave(runners, seconds, after=None):
    """Advance the ``runners`` in turn, ``seconds`` of training each, round robin, until
    every one has ended, so that a burst of background load lands on all of them alike.
    ``after(runner, round)`` is called after each turn. Returns the number of rounds."""
    active = list(runners)
    rounds = 0
    while active:
        rounds += 1
        for runner in list(active):
            if runner.advance(seconds):
                active.remove(runner)
            if after is not None:
                after(runner, rounds)
    return rounds


class LogSpacedEvaluations:
    """Evaluation steps for ``Training(eval_at=...)``: geometric from the first step, each
    ``ratio`` times the one before (rounded up, at least one step further), ``closer``
    times on the approach to the target and ``fine`` times near it, so that the steps and
    seconds to ``target`` test accuracy, interpolated between the two evaluations around
    the crossing, are known to within ``fine - 1`` of their value at little cost
    (evaluations cost ~0.03-0.05 s each on MNIST).

    Not reached yet, with the error (1 - accuracy) within ``near`` times the target's, or
    a straight line through the last two evaluations in log(error) against log(steps)
    crossing the target before the next step: near; within ``approach`` times: on the
    approach. A noisy jump across the target from further away is not bracketed as
    finely; compare's ``target_resolution`` column shows the gap reached. Picks from the
    records only (never the clock), so a run's evaluation steps are reproducible.
    """

    def __init__(self, target, ratio=2.0, fine=1.05, near=1.25, closer=1.2, approach=2.0):
        self.target, self.ratio, self.fine, self.near = target, ratio, fine, near
        self.closer, self.approach = closer, approach
        self.last = None  # (step, error) of the evaluation before
        self.reached = False

    def __call__(self, record):
        step, error = record["step"], 1.0 - record["test_accuracy"]
        self.reached = self.reached or record["test_accuracy"] >= self.target
        goal = 1.0 - self.target
        ratio = self.ratio
        if not self.reached and step > 0 and error <= self.approach * goal:
            ratio = self.closer
        following = max(step + 1, math.ceil(step * ratio))
        if not self.reached and step > 0 and (
                error <= self.near * goal or self._crosses_by(step, error, following)):
            following = max(step + 1, math.ceil(step * self.fine))
        self.last = (step, error)
        return following

    def _crosses_by(self, step, error, coarse):
        """Whether the trend of the last two evaluations reaches the target by ``coarse``."""
        if self.last is None or self.last[0] <= 0 or error <= 0 or self.last[1] <= error:
            return False
        slope = math.log(error / self.last[1]) / math.log(step / self.last[0])  # < 0
        # in logs: a flat trend puts the crossing far away without overflowing
        return math.log(step) + math.log((1.0 - self.target) / error) / slope \
            <= math.log(coarse)


def blown_up(history):
    """Why a finished history counts as diverged, or "" (see ``train_run``)."""
    first, last = history.records[0], history.records[-1]
    if not math.isfinite(last["test_loss"]):
        return f"diverged: test loss {last['test_loss']} at step {last['step']}"
    if last["test_loss"] > DIVERGED_FACTOR * first["test_loss"]:
        return (f"diverged: test loss {last['test_loss']:.3g} at step {last['step']}, over "
                f"{DIVERGED_FACTOR}x the untrained network's {first['test_loss']:.3g}")
    return ""


def seconds_per_step(data, hidden, config, batch_size, seed, steps=40, target="cpu"):
    """Training seconds per step of ``config`` at ``batch_size`` on ``target``, measured on
    a short run (evaluated on 64 test samples only); also compiles the kernels. Returns
    (seconds per step, compile seconds)."""
    from .. import train

    small = (data.X_train, data.y_train, data.X_test[:64], data.y_test[:64])
    model, opt = build(data, hidden, config, seed, target=target)
    with np.errstate(all="ignore"):
        try:
            history = train.fit(model, opt, small, batch_size=batch_size, max_steps=steps,
                                eval_every=steps, seed=seed, progress=False,
                                train_eval_size=0)
        except train.TrainingDiverged as exc:
            history = exc.history
    last = history.records[-1]
    if last["step"] < 1 or last["wall_time"] <= 0:
        return 1e-3, history.compile_time  # diverged at once: a guess is good enough
    return last["wall_time"] / last["step"], history.compile_time


# ---------------------------------------------------------------------------------------
# numbers from runs


def finite_records(history):
    """The records whose test loss is finite (a diverged run's last record is not)."""
    return [r for r in history.records if math.isfinite(r["test_loss"])]


def first_reaching(history, target):
    """The first record with test accuracy >= target, or None."""
    for r in history.records:
        if math.isfinite(r["test_loss"]) and r["test_accuracy"] >= target:
            return r
    return None


def seed_band(histories, x_column, y_column):
    """Mean, min and max over seeds of one curve, on a common x grid.

    Each history contributes its records with finite x and y. One history: its own points
    (min = max = mean). Several: the union of their x values up to the shortest curve's
    end, each curve linearly interpolated there. Returns (x, mean, low, high) arrays.
    """
    curves = []
    for h in histories:
        x, y = h[x_column], h[y_column]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            curves.append((x[ok], y[ok]))
    if not curves:
        empty = np.array([])
        return empty, empty, empty, empty
    if len(curves) == 1:
        x, y = curves[0]
        return x, y, y, y
    end = min(cx[-1] for cx, _ in curves)
    grid = np.unique(np.concatenate([cx[cx <= end] for cx, _ in curves]))
    ys = np.array([np.interp(grid, cx, cy) for cx, cy in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def mean_or_nan(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------
# files and tables


def slug(label):
    """A file-name-safe form of an optimizer label (``adam:lr=3e-4`` -> ``adam_lr3e-4``)."""
    out = label.replace("=", "").replace(":", "_").replace(",", "_")
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in out)


def cell(value):
    """CSV cell: empty for None/NaN, repr for floats (round trip), str otherwise."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def write_rows(rows, columns, path):
    """Write dict rows (missing keys and NaN as empty cells), whole or not at all; returns
    the path."""
    return tables.write_csv(rows, path, columns, cell=cell)


def fmt(value, spec=".3g", empty="-"):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return empty
    return format(value, spec)


def settings_of(config):
    """``lr=0.02 momentum=0.9`` for tables and CSV files."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in config.kwargs.items())


def seeds_text(seeds):
    """How a figure title names the seeds it shows."""
    if len(seeds) > 1:
        return f"mean of {len(seeds)} seeds, band: min..max"
    return f"seed {seeds[0]}"
