"""``fastopt compare``: the same network trained with several optimizers and batch sizes on
a real data set; who wins, against training wall time, steps and epochs.

``--batch-sizes 1,32,full``: ``full`` is the whole training set per update (batch
gradient descent, one step per epoch), 1 pure SGD. Across batch sizes steps are not
comparable work, so the verdict also ranks by epochs (passes over the data, the
history's ``epoch`` column; ``verdict.EPOCHS``) and ``compare_batch_sizes.png`` draws
every optimizer x batch size against time, steps and epochs (``--x`` picks the axes).

Every run builds ``fastopt.nn.MLP([n_features, *hidden, n_classes], activation="relu",
init="he_normal", seed=s)`` and trains it with a ``fastopt.train.Training`` (mini-batches
without replacement, reshuffled every epoch, seeded by ``s``) for ``--seconds`` of training
(the clock excludes evaluation and compilation) or ``--epochs``. Seeds are ``--seed``,
``--seed + 1``, ... (``--seeds`` of them). A run whose loss becomes NaN or infinite, or
ends more than 10 times the untrained network's test loss, is recorded as diverged (its
history up to then is kept); the others go on.

Fair timing: all runs of a comparison (optimizers x batch sizes x seeds) advance in turn,
``SLICE_SECONDS`` of training each, round robin, so a burst of background load lands on
all of them alike; each run's history records its training wall and CPU seconds, and a
``fastopt.experiments.load.LoadMeter`` measures the load the command ran under. When the
machine was busy the command says so, with the numbers, on stdout, in summary.csv and on
the figures. The runs' numbers in steps do not depend on the interleaving (each run has
its own seeds).

Evaluations of the full test set come at log-spaced steps from the first
(``training.LogSpacedEvaluations``: x2, x1.2 on the approach, x1.05 near the target), so the early phase is
drawn and the seconds and steps to the target accuracy, interpolated between the two
evaluations around the crossing (``verdict.crossing``), are known to about 5%;
``--evals N`` spaces N evaluations evenly instead. The verdict (``verdict.decide``): who
reaches the target first by training time and by steps, and each other's margin, and
whether it exceeds the spread over seeds.

Results (in the run folder)
    histories/<optimizer>_b<batch>_s<seed>.csv   fastopt.train.History of each run
    summary.csv           one row per optimizer x batch size (columns: SUMMARY_COLUMNS)
    verdict.txt           first line: the verdict; then every margin
    compare_b<batch>.png  test loss and test accuracy versus training seconds and versus
                          steps (``--x``: any of time, steps, epochs), one line per
                          optimizer (mean over seeds, band: min..max)
    compare_batch_sizes.png  with several batch sizes: one line per optimizer x batch
                          size, versus time, steps and epochs by default (GD vs SGD vs
                          mini-batch: ``--batch-sizes 1,32,full``)
    settings.json         see ``fastopt.runs``

On Ctrl-C the histories so far (``stopped=interrupted``) and their summary are written.
"""

import argparse
import math
from typing import NamedTuple

import numpy as np

from .. import runs, threads
from . import load, parallel, plots, textbook, training, verdict
from .training import OPTIMIZERS

#: the default budget: every run trains the same steps, so which runs reach the target, and
#: in how many steps, is the same on a quiet and on a busy machine
DEFAULT_EPOCHS = 3
DEFAULT_SEEDS = 3
#: training seconds of one run's turn in the round robin
SLICE_SECONDS = 0.15
#: --target-accuracy defaults per data set
TARGET_ACCURACY = {"mnist": 0.97, "digits": 0.95}

SUMMARY_COLUMNS = [
    "optimizer", "batch_size", "settings", "seeds", "diverged",
    "final_test_accuracy_mean", "final_test_accuracy_min", "final_test_accuracy_max",
    "final_test_loss_mean", "best_test_loss",
    "target_accuracy", "reached_target", "seconds_to_target", "steps_to_target",
    "epochs_to_target",
    "train_seconds", "steps", "epochs", "samples_per_s", "compile_seconds", "eval_seconds",
    "target_resolution", "verdict", "cpu_seconds", "cpu_per_wall",
    "load_start", "load_max", "load_end", "other_cores", "machine_busy",
]
SUMMARY_HELP = """\
summary.csv (one row per optimizer x batch size; mean over seeds unless named):
  settings                  the optimizer's arguments (lr, momentum, ...)
  seeds, diverged           runs, and how many of them diverged
  final_test_accuracy_*     after the last step: mean, min, max over seeds (a diverged run
                            counts as chance, 1/classes)
  final_test_loss_mean      over the runs that did not diverge
  best_test_loss            lowest test loss of a run
  reached_target            runs that reached --target-accuracy; seconds_to_target and
                            steps_to_target average those runs (empty if none): training
                            seconds and steps where the test accuracy first reached the
                            target, interpolated between the evaluations around it;
                            epochs_to_target likewise in passes over the training set
                            (across batch sizes the fair measure of work in samples)
  train_seconds, steps, epochs, samples_per_s   training time (without evaluation and
                            compilation), updates, passes over the data, throughput
  compile_seconds, eval_seconds  fit's warm-up (Numba compilation, or loading it from the
                            cache) and time spent evaluating
  target_resolution         the widest gap between the evaluations around a crossing,
                            relative to its steps (0.05: to-target numbers known to 5%)
  verdict                   time: and steps: first, or the ratio to the winner's mean (and
                            the difference), separable when the seeds' ranges do not
                            overlap the winner's (verdict.txt says it in words)
  cpu_seconds, cpu_per_wall training's CPU seconds (all threads), and per wall second:
                            below 1, the runs waited for a core
  load_start, load_max, load_end  the 1-minute load average at the start, its highest
                            sample and at the end (the same on every row)
  other_cores, machine_busy cores other processes kept busy on average (from /proc/stat)
                            and whether the machine counted as busy (yes/no)"""


class Plan(NamedTuple):
    data: object  # fastopt.datasets.Dataset
    configs: list  # [training.OptimizerConfig]
    batch_sizes: list
    hidden: list
    seeds: list
    seconds: float  # None with --epochs
    epochs: int  # None with --seconds
    evals: int
    target_accuracy: float
    schedule: str  # None, or a fastopt.schedules.from_string spec
    workers: int = 1  # processes that train the runs (parallel.py)
    slice_seconds: float = SLICE_SECONDS  # one run's turn in the round robin
    target: str = "cpu"  # where the runs train: "cpu" or "cuda" (--target)
    xs: tuple = None  # the figures' x axes (--x: names of X_AXES); None: figure_axes

    @property
    def clock(self):
        """The history column that times training (verdict, summary, figures): CLOCKS."""
        return CLOCKS[self.target]


# ---------------------------------------------------------------------------------------
# the command line


def add_parser(sub):
    # longer than a screen on purpose: the command's options read best as one flat list
    p = sub.add_parser(
        "compare", help="train one MLP with several optimizers and batch sizes; who wins, "
                        "versus wall time, steps and epochs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the same ReLU MLP with several optimizers (and batch sizes, and "
                    "seeds) on a real data set for a fixed budget of training time or "
                    "epochs; write every history, a summary table and plots of test loss "
                    "and test accuracy versus training wall time and versus steps.",
        epilog=f"""\
time: with the defaults (mnist, {len(training.DEFAULT_OPTIMIZERS.split(','))} optimizers, \
batch 128, {DEFAULT_EPOCHS} epochs (1,407 steps) per run,
  {DEFAULT_SEEDS} seeds: 21 runs, 2 workers on 2 cores) the command takes about 90 s once
  Numba's kernel cache is warm (measured on a quiet machine: 90 s; 91-95 s in
  two other runs). Each run
  costs ~4.3 s of training (3.1 ms per step on one thread) + ~2.5 s of evaluation (~23
  log-spaced evaluations of the 10,000 test images, ~0.11 s each on one thread); the
  workers share the runs; plus ~15 s to start the workers, load MNIST in each, build the
  runs and draw. The first run on a machine also compiles the kernels (about a minute
  more). Total: about 7 s x runs / workers + 15 s.

fairness: every run trains on one thread and is timed in that thread's CPU seconds (the
  history's cpu_time; wall_time beside it), which a neighbour on the other cores inflates
  little, and its steps are bitwise those of a quiet run; the runs are dealt to --workers
  processes (one per physical core), and within each they take turns of \
{SLICE_SECONDS:g} s of
  training, round robin. The load average, the cores other processes used and the CPU
  seconds training got per wall second are printed and written to summary.csv, and a busy
  machine is named on stdout and on the figures. With --target cuda the runs train in one
  process on the GPU, timed in wall seconds.

verdict: who reaches --target-accuracy first by training time and by steps (interpolated
  between log-spaced evaluations, to about 5%), each other's margin (ratio and difference
  of the means over seeds), and whether it exceeds the spread over seeds (separable: the
  seeds' min..max ranges do not overlap), printed and written to verdict.txt.

{training.OPTIMIZER_HELP}

--schedule NAME[:key=value,...] applies a fastopt.schedules schedule to every optimizer,
  starting from that optimizer's lr; names: exponential, piecewise, polynomial,
  inverse_time, cosine, cosine_restarts, warmup, constant. Steps count updates, e.g.
  --schedule cosine:decay_steps=4000,alpha=0.01
  --schedule "warmup:warmup_steps=200,after=cosine,decay_steps=4000"

{SUMMARY_HELP}

outputs: histories/<optimizer>_b<batch>_s<seed>.csv, summary.csv, verdict.txt,
  compare_b<batch>.png, compare_batch_sizes.png (several batch sizes), settings.json

batch sizes: --batch-sizes 1,32,full compares stochastic gradient descent (1), mini-batch
  (32) and batch gradient descent (full: the whole training set per update, one step per
  epoch); the verdict then also ranks by epochs (passes over the data), and the figures
  are drawn against epochs as well (--x time,steps,epochs).""")
    p.add_argument("--dataset", default="mnist",
                   help="mnist (default; needs pip install \"fastopt[mnist]\") or digits "
                        "(8x8 images, scikit-learn)")
    p.add_argument("--optimizers", default=training.DEFAULT_OPTIMIZERS,
                   help=f"comma-separated names with optional key=value overrides, see "
                        f"below (default {training.DEFAULT_OPTIMIZERS})")
    p.add_argument("--batch-sizes", default="128",
                   help="comma-separated mini-batch sizes (default 128); 1 is pure SGD, "
                        f"{FULL} the whole training set per update (batch gradient "
                        "descent), e.g. 1,32,full")
    p.add_argument("--x", default=None, metavar="AXES",
                   help="x axes of the figures, comma-separated from "
                        + ", ".join(X_AXES) + " (epochs: passes over the training set, "
                        "steps x batch / samples; default time,steps, and time,steps,epochs "
                        "on the figure of every batch size, compare_batch_sizes.png)")
    p.add_argument("--hidden", default=training.DEFAULT_HIDDEN,
                   help=f"hidden layer widths (default {training.DEFAULT_HIDDEN})")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=None,
                        help="training CPU seconds per run (one thread), evaluation and "
                             "compilation not counted, instead of --epochs")
    budget.add_argument("--epochs", type=int, default=None,
                        help=f"passes over the training set per run (default "
                             f"{DEFAULT_EPOCHS})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"runs per optimizer and batch size, seeds --seed, --seed+1, ... "
                        f"(default {DEFAULT_SEEDS}; plots show the min..max band)")
    p.add_argument("--evals", type=int, default=None,
                   help="evaluations of the test set per run, evenly spaced (default: "
                        "log-spaced from the first step, x2, x1.05 near the target; "
                        "each costs ~0.03 s on MNIST)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that train the runs, one thread each (default: one per "
                        "physical core this process may use, at most one per run; 1: all in "
                        "this process)")
    p.add_argument("--schedule", default=None, metavar="SPEC",
                   help="learning-rate schedule for every optimizer, see below (default: "
                        "constant lr)")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="test accuracy for the time/steps-to-target columns (default "
                        + ", ".join(f"{v:g} on {k}" for k, v in TARGET_ACCURACY.items())
                        + ")")
    textbook.add_arguments(p)  # --textbook, --iterations: after the options it fixes
    runs.add_common_arguments(p, "compare", seed_help="first seed (default 0): weights and "
                                                      "mini-batch order of each run")
    p.set_defaults(func=run)
    return p


def check_args(args):
    """Check every argument before any work (loads the data set); returns a Plan."""
    runs.check_common_arguments(args, gpu=training.gpu_missing)
    configs = training.configs_from_text(args.optimizers)
    batch_tokens = parse_batch_sizes(args.batch_sizes)
    xs = parse_axes(args.x)
    hidden = training.parse_sizes("--hidden", args.hidden, "layer widths")
    epochs = args.epochs
    if args.seconds is None and epochs is None:
        epochs = DEFAULT_EPOCHS
    if epochs is not None:
        runs.check_count("--epochs", epochs)
        seconds = None
    else:
        seconds = runs.check_positive("--seconds", args.seconds)
    runs.check_count("--seeds", args.seeds)
    if args.evals is not None:
        runs.check_count("--evals", args.evals)
    if args.target_accuracy is not None and not 0 < args.target_accuracy <= 1:
        raise ValueError(f"--target-accuracy must be in (0, 1], e.g. 0.97, got "
                         f"{args.target_accuracy!r}")
    schedule = training.check_schedule(args.schedule, configs)
    data = training.load_data(args.dataset)
    batch_sizes = resolve_batch_sizes(batch_tokens, data, args.batch_sizes)
    target = (args.target_accuracy if args.target_accuracy is not None
              else TARGET_ACCURACY.get(args.dataset, 0.9))
    seeds = [args.seed + i for i in range(args.seeds)]
    n_runs = len(configs) * len(batch_sizes) * len(seeds)
    if args.workers is not None:
        runs.check_count("--workers", args.workers)
    if args.target == "cuda" and args.workers not in (None, 1):
        raise ValueError(f"--workers {args.workers}: with --target cuda the runs train in "
                         "one process on the one GPU (timed in wall seconds); drop --workers "
                         "or pass --workers 1")
    if args.target == "cuda":
        workers = 1
    else:
        workers = (min(threads.physical_cores(), n_runs) if args.workers is None
                   else args.workers)
    return Plan(data, configs, batch_sizes, hidden, seeds, seconds, epochs, args.evals,
                target, schedule, min(workers, n_runs), target=args.target, xs=xs)


#: --batch-sizes word for the whole training set per update (batch gradient descent)
FULL = "full"
#: --x names -> the history column of that axis ("time": the plan's clock, Plan.clock)
X_AXES = {"time": "time", "steps": "step", "epochs": "epoch"}


def parse_batch_sizes(text):
    """``--batch-sizes`` text -> [int or FULL]; ValueError naming the option."""
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ValueError(f"--batch-sizes needs at least one size (a positive integer or "
                         f"{FULL}), got {text!r}")
    sizes = []
    for item in items:
        if item.lower() == FULL:
            sizes.append(FULL)
            continue
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"--batch-sizes: batch sizes must be positive integers or {FULL} "
                             f"(the whole training set), separated by commas (e.g. 1,32,"
                             f"{FULL}), got {item!r} in {text!r}")
        sizes.append(value)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--batch-sizes lists a size twice: {text!r}")
    return sizes


def resolve_batch_sizes(tokens, data, text):
    """The batch sizes as integers (FULL: the data's training samples), each at most that
    many and none twice once FULL is resolved; ValueError naming the option."""
    n = data.n_train
    sizes = [n if t == FULL else t for t in tokens]
    too_big = [b for b in sizes if b > n]
    if too_big:
        raise ValueError(f"--batch-sizes: at most the {n} training samples of {data.name} "
                         f"(or {FULL}), got {too_big[0]}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--batch-sizes lists a size twice: {text!r} ({FULL} is {n} on "
                         f"{data.name})")
    return sizes


def parse_axes(text):
    """``--x`` -> a tuple of X_AXES names, or None for the defaults (``figure_axes``)."""
    if text is None:
        return None
    return tuple(runs.split_list("--x", text, choices=X_AXES))


def figure_axes(plan, batch_sizes=False):
    """The x axes of a figure: --x, else time and steps, and epochs on the figure of
    every batch size (``batch_sizes``; within one batch size epochs are steps rescaled)."""
    if plan.xs is not None:
        return plan.xs
    return ("time", "steps") + (("epochs",) if batch_sizes else ())


def batch_text(plan, batch_size):
    """How figures and stdout name a batch size: ``full (1437)`` for the whole set."""
    if batch_size == plan.data.n_train:
        return f"{FULL} ({batch_size})"
    return str(batch_size)


# ---------------------------------------------------------------------------------------
# runs


def eval_every(plan, batch_size, seconds_per_step=None):
    """Steps between evaluations: about ``plan.evals`` evaluations per run."""
    if plan.epochs is not None:
        total = plan.epochs * math.ceil(plan.data.n_train / batch_size)
        return max(1, total // plan.evals)
    return max(1, round(plan.seconds / plan.evals / seconds_per_step))


def contestant(plan, label, batch_size):
    """How the verdict names an optimizer at a batch size (the batch only when several)."""
    return label if len(plan.batch_sizes) == 1 else f"{label} b{batch_size}"


def groups(plan, results):
    """[(config, batch size, runs)] in plan order, for the combinations that have runs."""
    out = []
    for batch in plan.batch_sizes:
        for config in plan.configs:
            group = [r for r in results if r.label == config.label and r.batch_size == batch]
            if group:
                out.append((config, batch, group))
    return out


#: the history column that times training on the CPU: CPU seconds on one thread
#: (threads.single_thread)
CLOCK = "cpu_time"
#: the history column that times training, per --target (Plan.clock): on the GPU
#: wall seconds (each chunk ends with a device sync; the host's CPU time is not the work)
CLOCKS = {"cpu": CLOCK, "cuda": "wall_time"}
#: Plan.clock -> the clock of fastopt.train.Training
TRAINING_CLOCK = {"cpu_time": "cpu", "wall_time": "wall"}


def metrics(plan):
    """What the verdict ranks on: training time and steps, and epochs when the batch sizes
    differ (a full-batch step is not a batch-1 step)."""
    return verdict.METRICS + ((verdict.EPOCHS,) if len(plan.batch_sizes) > 1 else ())


def decide(plan, results):
    """The verdict.Verdict of the runs: who reaches the target first, by how much."""
    return verdict.decide(
        {contestant(plan, config.label, batch): [verdict.crossing(r.history,
                                                                  plan.target_accuracy,
                                                                  plan.clock)
                                                 for r in group]
         for config, batch, group in groups(plan, results)}, plan.target_accuracy,
        metrics(plan))


def summarize(plan, results, machine=None):
    """Summary rows (dicts with SUMMARY_COLUMNS) of the runs, in plan order; ``machine``:
    the load.Load the runs trained under (its columns empty without it)."""
    decided = decide(plan, results)
    rows = []
    for config, batch, group in groups(plan, results):
        row = _numbers(plan, config, batch, group)
        row["verdict"] = verdict.cell(decided, contestant(plan, config.label, batch))
        if machine is not None:
            row.update(load_start=machine.load_start, load_max=machine.load_max,
                       load_end=machine.load_end, other_cores=machine.other_cores,
                       machine_busy="yes" if machine.busy else "no")
        rows.append(row)
    return rows


def _numbers(plan, config, batch, group):
    """One summary row's numbers from the runs ``group`` of ``config`` at ``batch``."""
    mean = training.mean_or_nan
    finals = [training.chance(plan.data) if r.diverged
              else r.history.records[-1]["test_accuracy"] for r in group]
    clock = plan.clock
    reached = [verdict.crossing(r.history, plan.target_accuracy, clock) for r in group]
    reached = [c for c in reached if c is not None]
    last = [r.history.records[-1] for r in group]
    cpu = [x.get("cpu_time", math.nan) for x in last]
    return dict(
        optimizer=config.label, batch_size=batch,
        settings=training.settings_of(config)
        + (f" schedule={plan.schedule}" if plan.schedule else ""),
        seeds=len(group), diverged=sum(r.diverged for r in group),
        final_test_accuracy_mean=float(np.mean(finals)),
        final_test_accuracy_min=float(min(finals)),
        final_test_accuracy_max=float(max(finals)),
        final_test_loss_mean=mean(
            [rec["test_loss"] for r, rec in zip(group, last) if not r.diverged]),
        best_test_loss=mean(
            [min((x["test_loss"] for x in training.finite_records(r.history)),
                 default=float("nan")) for r in group]),
        target_accuracy=plan.target_accuracy, reached_target=len(reached),
        seconds_to_target=mean([c.seconds for c in reached]),
        steps_to_target=mean([c.steps for c in reached]),
        epochs_to_target=mean([c.epochs for c in reached]),
        train_seconds=mean([x[clock] for x in last]),
        steps=mean([x["step"] for x in last]),
        epochs=mean([x["epoch"] for x in last]),
        samples_per_s=mean([x["epoch"] * plan.data.n_train / x[clock] for x in last
                            if x[clock] > 0]),
        compile_seconds=mean([r.history.compile_time for r in group]),
        eval_seconds=mean([r.history.eval_time for r in group]),
        target_resolution=max((c.resolution for c in reached), default=float("nan")),
        cpu_seconds=mean(cpu),
        cpu_per_wall=(sum(cpu) / sum(x["wall_time"] for x in last)
                      if sum(x["wall_time"] for x in last) > 0 else float("nan")),
    )


def summary_table(rows, target, full=None):
    """The plain-text table printed at the end; ``full``: the training samples (a batch of
    that size is named ``full``). With several batch sizes it adds the epochs to the
    target."""
    table = []
    for r in rows:
        acc = f"{100 * r['final_test_accuracy_mean']:.2f}"
        if r["seeds"] > 1:
            acc += (f" [{100 * r['final_test_accuracy_min']:.2f}, "
                    f"{100 * r['final_test_accuracy_max']:.2f}]")
        reached = r["reached_target"]
        note = ""
        if r["diverged"]:
            note = f"diverged {r['diverged']}/{r['seeds']}"
        table.append(dict(
            optimizer=r["optimizer"],
            batch=FULL if r["batch_size"] == full else str(r["batch_size"]), acc=acc,
            loss=training.fmt(r["best_test_loss"], ".4f"),
            t_target=(training.fmt(r["seconds_to_target"], ".2f")
                      + (f" ({reached}/{r['seeds']})" if 0 < reached < r["seeds"] else "")),
            s_target=training.fmt(r["steps_to_target"], ".0f"),
            e_target=training.fmt(r["epochs_to_target"], ".2f"),
            steps=training.fmt(r["steps"], ".0f"),
            rate=training.fmt(r["samples_per_s"], ",.0f"),
            compile=training.fmt(r["compile_seconds"], ".2f"), note=note))
    pct = f"{100 * target:g}%"
    columns = ["optimizer", "batch", "acc", "loss", "t_target", "s_target", "e_target",
               "steps", "rate", "compile", "note"]
    titles = ["optimizer", "batch", "final test acc %", "best test loss", f"s to {pct}",
              f"steps to {pct}", f"epochs to {pct}", "steps", "samples/s", "compile s", ""]
    if len({r["batch_size"] for r in rows}) < 2:  # epochs to target = steps rescaled
        del columns[6], titles[6]
    return training.format_table(table, columns, titles)


# ---------------------------------------------------------------------------------------
# figures


def _accuracy_scale(ax):
    """Accuracy axis spaced by -log10(1 - accuracy): 90%, 99% and 99.9% equally far apart,
    so the last percent (where optimizers differ) is readable next to the first steps."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    def forward(a):
        return -np.log10(np.clip(1.0 - np.asarray(a, dtype=float) / 100.0, 1e-6, None))

    def inverse(v):
        return 100.0 * (1.0 - 10.0 ** (-np.asarray(v, dtype=float)))

    ax.set_yscale("function", functions=(forward, inverse))
    ax.yaxis.set_major_locator(FixedLocator([0, 50, 80, 90, 95, 96, 97, 98, 99, 99.5, 99.9]))
    ax.yaxis.set_minor_locator(FixedLocator([10, 20, 30, 40, 60, 70, 85, 98.5, 99.8]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _loss_scale(ax, top=None):
    """Log scale up to ``top`` with ticks written as plain numbers: 1-2-5 per decade,
    finer when the range is less than about a decade and a half."""
    ax.set_yscale("log")
    if top:
        ax.set_ylim(top=top)
    low, high = ax.get_ylim()
    fine = 0 < low and high / low < 30
    plots.log_ticks(ax, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if fine else (1.0, 2.0, 5.0))


def _legend_label(config, group, schedule=None, batch=None):
    extras = ([batch] if batch else []) + (
        [] if "lr=" in config.label else [f"lr {config.lr:g}"]) + (
        ["scheduled"] if schedule else [])
    label = config.label + (f" ({', '.join(extras)})" if extras else "")
    diverged = [r for r in group if r.diverged]
    if len(group) == 1 and diverged:
        note = diverged[0].note
        return f"{label}: " + (note.split(" (")[0] if note.startswith("diverged at step")
                               else "diverged (test loss blew up)")
    if diverged:
        return f"{label}: diverged in {len(diverged)}/{len(group)} seeds"
    return label


#: the words of each --x axis in panel titles
_X_WORDS = {"time": "training time", "steps": "steps", "epochs": "epochs"}
#: the x labels, per history column ("cpu_time", "wall_time": the time panels)
_X_LABELS = {
    "cpu_time": "training time (CPU s on one thread; evaluation and compilation not counted)",
    "wall_time": "training time (wall s on the GPU, each chunk up to its device sync; "
                 "evaluation and compilation not counted)",
    "step": "step (mini-batch updates)",
    "epoch": "epoch (passes over the training set: steps x batch / samples)"}


def panels(xs):
    """The panels of a figure, in the order of Figure.axes (a row of loss panels, then a
    row of accuracy panels, one column per --x axis): (x axis, y column, title)."""
    return [(x, y, f"{words} vs {_X_WORDS[x]}")
            for y, words in (("test_loss", "test loss"), ("test_accuracy", "test accuracy"))
            for x in xs]


def _figure(plan, xs, group_lines, title, log_steps=False):
    """A figure of ``panels(xs)`` with one line per ``(label, group)`` of
    ``group_lines``; ``log_steps``: the step axes logarithmic past step 1 (batch sizes
    whose runs take 3 and 4,000 steps side by side). Returns the Figure."""
    from matplotlib.figure import Figure

    chosen = panels(xs)
    fig = Figure(figsize=(4.5 * len(xs) + 4.5 * (len(xs) < 2), 9.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(2, len(xs))).ravel()
    drawn = [(ax, plan.clock if x == "time" else X_AXES[x], y)
             for ax, (x, y, _) in zip(axes, chosen)]
    ranges = _Ranges()
    for i, (label, group) in enumerate(group_lines):
        _draw_optimizer(drawn, i, label, group, ranges)
    for ax, xcol, ycol in drawn:
        _setup_panel(ax, xcol, ycol, plan.target_accuracy, ranges)
        if log_steps and xcol == "step":
            ax.set_xscale("symlog", linthresh=1.0, linscale=0.3)
            ax.set_xlim(left=0)
            ax.set_xlabel(_X_LABELS[xcol] + "; log scale past 1")
    for ax, (_, _, panel_title) in zip(axes, chosen):
        ax.set_title(panel_title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)),
               fontsize="small")
    fig.suptitle(title)
    return fig


def plot_comparison(plan, results, batch_size, title=None, machine=None):
    """Test loss (log) and test accuracy versus each of ``figure_axes(plan)`` (training
    seconds and steps, or --x) at one batch size; one line per optimizer (mean over
    seeds; shaded: min..max over seeds, diverged runs left out unless all diverged; a
    cross marks where a diverged curve ends). Returns a Figure whose axes are
    ``panels(...)``: with the default, loss/time, loss/steps, accuracy/time,
    accuracy/steps. ``machine``: the load.Load of the runs; a busy machine is named in
    the title, with its numbers."""
    lines = []
    for config in plan.configs:
        group = [r for r in results if r.label == config.label and r.batch_size == batch_size]
        if group:
            lines.append((_legend_label(config, group, plan.schedule), group))
    return _figure(plan, figure_axes(plan), lines,
                   title or _suptitle(plan, batch_size, machine))


def plot_batch_sizes(plan, results, title=None, machine=None):
    """The batch sizes against each other (GD vs SGD vs mini-batch): one line per
    optimizer x batch size, versus each of ``figure_axes(plan, True)`` (time, steps and
    epochs, or --x), as ``plot_comparison`` draws
    them; the epoch panels compare the work in samples, the step panels in updates."""
    lines = [(_legend_label(config, group, plan.schedule,
                            f"batch {batch_text(plan, batch)}"), group)
             for config, batch, group in groups(plan, results)]
    return _figure(plan, figure_axes(plan, batch_sizes=True), lines,
                   title or _suptitle(plan, None, machine), log_steps=True)


class _Ranges:
    """The y ranges of the points after the first evaluation (step 0 is the untrained
    network: chance accuracy, loss ~2.3), so that the part where optimizers differ fills
    the panels; the curves enter from outside."""

    def __init__(self):
        self.accuracy_low, self.accuracy_high, self.loss_high = 100.0, 0.0, 0.0


def _draw_optimizer(panels, i, label, group, ranges):
    """The ``i``-th line's curves (runs ``group``, legend ``label``) on every panel;
    widens ``ranges``."""
    ok = [r.history for r in group if not r.diverged]
    histories = ok or [r.history for r in group]
    style = plots.line_style(i, 2.6, 0.2)  # a later line on top of an earlier one
    for ax, xcol, ycol in panels:
        x, mean, low, high = training.seed_band(histories, xcol, ycol)
        scale = 100.0 if ycol == "test_accuracy" else 1.0
        ax.plot(x, scale * mean, label=label, **style)
        if len(histories) > 1:
            plots.band(ax, x, scale * low, scale * high, style["color"])
        if not ok and len(x):
            ax.scatter(x[-1:], scale * mean[-1:], marker="x", s=70, color=style["color"],
                       linewidths=2, zorder=5)
        later = x > 0
        if later.any() and ycol == "test_accuracy":
            ranges.accuracy_low = min(ranges.accuracy_low, float(np.min(scale * low[later])))
            ranges.accuracy_high = max(ranges.accuracy_high,
                                       float(np.max(scale * high[later])))
        elif later.any():
            ranges.loss_high = max(ranges.loss_high, float(np.max(high[later])))


def _setup_panel(ax, xcol, ycol, target, ranges):
    """Grid, labels and scales of one panel, once its curves are drawn."""
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel(_X_LABELS[xcol])
    ax.set_xlim(left=0)
    if ycol == "test_loss":
        _loss_scale(ax, ranges.loss_high * 1.25)
        ax.set_ylabel("test loss (cross-entropy, log scale)")
        return
    _accuracy_scale(ax)
    # top: a bit above the best accuracy seen (or the target)
    top = 100.0 - max(100.0 - max(ranges.accuracy_high, 100 * target), 0.02) / 1.4
    bottom = 100.0 - 1.25 * (100.0 - min(ranges.accuracy_low, 100 * target))
    ax.set_ylim(max(0.0, bottom), top)
    plots.reference_line(ax, 100 * target, "target", f"target {100 * target:g}%", 0.995,
                         ha="right", va="top")
    ax.set_ylabel("test accuracy (%; spacing log(100 - accuracy))")


def _suptitle(plan, batch_size, machine=None):
    """``batch_size`` None: the figure of every batch size."""
    budget = (f"{plan.seconds:g} s of training" if plan.epochs is None
              else f"{plan.epochs} epoch{'s' if plan.epochs > 1 else ''}")
    batches = (f"batch {batch_text(plan, batch_size)}" if batch_size is not None else
               "batch sizes " + ", ".join(batch_text(plan, b) for b in plan.batch_sizes))
    return (f"ReLU MLP {training.network_text(plan.data, plan.hidden)} on {plan.data.name}, "
            f"{batches}, {budget} per run, {training.seeds_text(plan.seeds)}"
            + (f"\nschedule {plan.schedule}" if plan.schedule else "")
            + (f"\nBUSY MACHINE, times are inflated: {machine.text()}"
               if machine is not None and machine.busy else ""))


# ---------------------------------------------------------------------------------------
# the command


def run(args):
    """The ``compare`` command (``args`` from ``add_parser``'s parser); returns the Runs."""
    if args.textbook or args.iterations is not None:  # fastopt.experiments.textbook
        return textbook.run(args)
    plan = check_args(args)
    with runs.command_frame(args, "compare", resolved=_resolved(plan)) as frame:
        return _run(args, plan, frame.out)


def _resolved(plan):
    """The settings.json record of what the arguments resolved to."""
    return {
        "network": training.network(plan.data, plan.hidden),
        "activation": "relu", "init": "he_normal",
        "optimizers": {c.label: {"class": c.cls, **c.kwargs} for c in plan.configs},
        "batch_sizes": plan.batch_sizes, "full_batch": plan.data.n_train,
        "x_axes": list(figure_axes(plan)),
        "x_axes_batch_sizes": list(figure_axes(plan, batch_sizes=True)),
        "seeds": plan.seeds,
        "seconds": plan.seconds, "epochs": plan.epochs,
        "target_accuracy": plan.target_accuracy, "schedule": plan.schedule,
        "target": plan.target, "time_column": plan.clock, "workers": plan.workers,
        "data": {"name": plan.data.name, "train": plan.data.n_train,
                 "test": plan.data.n_test},
        "evaluations": (f"{plan.evals} evenly spaced" if plan.evals is not None else
                        "log-spaced from step 1: x2, x1.2 on the approach, x1.05 near the target"),
        "interleaved": f"round robin, {plan.slice_seconds:g} s of training per turn",
    }


def _run(args, plan, out):
    histories = out / "histories"
    histories.mkdir(exist_ok=True)
    n_runs = len(plan.configs) * len(plan.batch_sizes) * len(plan.seeds)
    print(f"compare: {len(plan.configs)} optimizer(s) x {len(plan.batch_sizes)} batch "
          f"size(s) x {len(plan.seeds)} seed(s) = {n_runs} runs on {plan.data.name}, "
          + (f"{plan.seconds:g} s of training each" if plan.epochs is None
             else f"{plan.epochs} epoch(s) each")
          + f", taking turns of {plan.slice_seconds:g} s", flush=True)
    mode = runs.progress_mode(args.no_progress)
    meter = load.LoadMeter()
    if plan.target == "cuda":  # one process, timed in wall seconds: no thread policy
        return _train(args, plan, out, histories, meter, mode)
    with threads.single_thread():  # training's CPU time is then its work (CLOCK)
        return _train(args, plan, out, histories, meter, mode)


def _train(args, plan, out, histories, meter, mode):
    if plan.workers > 1:
        results = _train_in_workers(args, plan, out, histories, meter, mode)
    else:
        runners = start_runners(plan, out, mode)
        try:
            interleave(plan, runners, histories, meter, mode)
        except KeyboardInterrupt:  # keep what the runs did so far, then stop as asked
            partial = [r.partial() for r in runners]
            for r in partial:
                _write_history(r, histories)
            _interrupted(plan, out, meter, partial)
            raise
        results = [r.result for r in runners]
    machine = meter.result([r.history for r in results])
    _report(args, plan, out, results, machine)
    return results


def _interrupted(plan, out, meter, partial):
    """Ctrl-C: the summary of what the runs did so far."""
    machine = meter.result([r.history for r in partial])
    training.write_rows(summarize(plan, partial, machine), SUMMARY_COLUMNS,
                        out / "summary.csv")


def _jobs(plan, out, bar=None):
    """Every run as (batch, optimizer index, seed, evaluation interval or None), in plan
    order: batch sizes, optimizers, seeds. With --evals the interval of each batch size is
    measured here, once (and recorded in settings.json)."""
    intervals, jobs = {}, []
    for batch in plan.batch_sizes:
        if plan.evals is not None:
            intervals[batch] = _interval(plan, batch, bar)
            runs.update_settings(out, eval_every={str(b): e for b, e in intervals.items()})
        jobs += [(batch, c, seed, intervals.get(batch)) for c in range(len(plan.configs))
                 for seed in plan.seeds]
    return jobs


def _runner(plan, job):
    """The Runner of one job (compiles or loads the kernels, evaluates the untrained
    network) on plan.target; its training time is plan.clock."""
    batch, c, seed, every = job
    when = (dict(eval_every=every) if every is not None
            else dict(eval_at=training.LogSpacedEvaluations(plan.target_accuracy)))
    return training.Runner(plan.data, plan.hidden, plan.configs[c], batch, seed,
                           schedule=plan.schedule, seconds=plan.seconds, epochs=plan.epochs,
                           clock=TRAINING_CLOCK[plan.clock], target=plan.target, **when)


def start_runners(plan, out, mode):
    """Build every run in this process, in plan order (``_jobs``)."""
    bar = runs.Progress(total=len(plan.configs) * len(plan.batch_sizes) * len(plan.seeds),
                        desc="compare: starting", unit="runs", mode=mode)
    runners = []
    try:
        for job in _jobs(plan, out, bar):
            bar.set_postfix_str(f"{plan.configs[job[1]].label} b{job[0]} s{job[2]}")
            runners.append(_runner(plan, job))
            bar.update(1)
    finally:
        bar.close()
    return runners


_WORKER_PLAN = []  # a worker's Plan, built once from the command's arguments


def _worker_runner(args, job):
    """parallel.run_workers' ``build``: a worker's Runner of ``job``."""
    if not _WORKER_PLAN:
        _WORKER_PLAN.append(check_args(args))
    return _runner(_WORKER_PLAN[0], job)


def _train_in_workers(args, plan, out, histories, meter, mode):
    """The runs on plan.workers processes (fastopt.experiments.parallel); the Runs in plan
    order. Progress in training CPU milliseconds (--seconds) or in steps (--epochs)."""
    with threads.single_thread():  # --evals measures the seconds per step like a worker
        jobs = list(enumerate(_jobs(plan, out)))
    n = len(jobs)
    by_time = plan.epochs is None
    if by_time:
        total, unit = round(1e3 * plan.seconds * n), "ms of training"
    else:
        total = sum(plan.epochs * math.ceil(plan.data.n_train / job[0]) for _, job in jobs)
        unit = "steps"
    bar = runs.Progress(total=total, desc=f"compare ({plan.workers} workers)", unit=unit,
                        mode=mode)
    done, got = {}, {}

    def on_message(kind, key, value):
        meter.sample()
        if kind == "progress":
            done[key] = value[0] if by_time else value[1]
            bar.update(min(total, sum(done.values())) - bar.n)
        elif kind == "result":
            got[key] = value
            _write_history(value, histories)
            bar.set_postfix_str(f"{value.label} b{value.batch_size} s{value.seed} ended")

    print(f"compare: {plan.workers} worker processes, one thread each", flush=True)
    try:
        parallel.run_workers(args, jobs, _worker_runner, plan.workers, on_message,
                             plan.slice_seconds)
    except KeyboardInterrupt:
        _interrupted(plan, out, meter, [got[i] for i in sorted(got)])
        raise
    finally:
        bar.close()
    return [got[i] for i, _ in jobs]


def _interval(plan, batch, bar):
    """--evals: steps between evaluations at ``batch`` (with --seconds, from a short run
    that measures the seconds per step)."""
    if plan.epochs is not None:
        return eval_every(plan, batch)
    per_step, compile_s = training.seconds_per_step(plan.data, plan.hidden, plan.configs[0],
                                                    batch, plan.seeds[0], target=plan.target)
    every = eval_every(plan, batch, per_step)
    (print if bar is None else bar.write)(
        f"batch {batch}: {1e3 * per_step:.3g} ms per step measured (after {compile_s:.1f} s "
        f"of compilation/cache loading); evaluating every {every} steps")
    return every


def interleave(plan, runners, histories, meter, mode):
    """Train the runners in turns (``training.interleave``), sampling the load and showing
    the progress in training milliseconds (--seconds) or steps (--epochs); each history
    is written when its run ends. Returns the number of rounds."""
    def done():
        if plan.epochs is None:
            spent = "cpu_time" if plan.clock == "cpu_time" else "train_time"  # Training's
            return int(1e3 * sum(min(getattr(r.training, spent), plan.seconds)
                                 for r in runners))
        return sum(r.training.steps for r in runners)

    if plan.epochs is None:  # in milliseconds: whole units, fine enough for the time left
        total, unit = round(1e3 * plan.seconds * len(runners)), "ms of training"
    else:
        total = sum(plan.epochs * math.ceil(plan.data.n_train / r.batch_size)
                    for r in runners)
        unit = "steps"
    bar = runs.Progress(total=total, desc="compare", unit=unit, mode=mode)
    written = set()

    def after(runner, round_):
        meter.sample()
        if runner.result is not None and id(runner) not in written:
            _write_history(runner.result, histories)
            written.add(id(runner))
        bar.set_postfix_str(f"round {round_}, {runner.label} b{runner.batch_size} "
                            f"s{runner.seed}")
        bar.update(done() - bar.n)

    try:
        return training.interleave(runners, plan.slice_seconds, after)
    finally:
        bar.close()


def _report(args, plan, out, results, machine):
    """The finished comparison: summary, verdict, figures, the table, the load."""
    histories = out / "histories"
    print(f"wrote {histories}/: {len(results)} histories (step, epoch, wall_time, cpu_time, "
          "train_loss, test_loss, test_accuracy, lr)")
    for r in results:
        if r.diverged:
            print(f"note: {r.label}, batch {r.batch_size}, seed {r.seed}: {r.note}; its "
                  "curve stops there")
    rows = summarize(plan, results, machine)
    training.write_rows(rows, SUMMARY_COLUMNS, out / "summary.csv")
    runs.wrote(out / "summary.csv", "one row per optimizer x batch size")
    said = verdict.lines(decide(plan, results))
    (out / "verdict.txt").write_text("\n".join(said) + "\n")
    runs.wrote(out / "verdict.txt", "who reaches the target first, and by how much")
    runs.use_agg()
    versus = " and vs ".join(_X_WORDS[x] for x in figure_axes(plan))
    for batch in plan.batch_sizes:
        fig = plot_comparison(plan, results, batch, machine=machine)
        for path in runs.save_figure(fig, out, f"compare_b{batch}", svg=args.svg):
            runs.wrote(path, f"test loss and accuracy vs {versus}, batch "
                             f"{batch_text(plan, batch)}")
    if len(plan.batch_sizes) > 1:
        fig = plot_batch_sizes(plan, results, machine=machine)
        for path in runs.save_figure(fig, out, "compare_batch_sizes", svg=args.svg):
            runs.wrote(path, "every optimizer x batch size, vs " + " and vs ".join(
                _X_WORDS[x] for x in figure_axes(plan, batch_sizes=True)))
    print()
    print(summary_table(rows, plan.target_accuracy, plan.data.n_train))
    print()
    print(f"load: {machine.text()}")
    if machine.busy and plan.clock == "cpu_time":
        print("note: the machine was busy while the runs trained. Training is timed in CPU "
              "seconds on one thread, which a neighbour inflates little (shared caches and "
              "memory bandwidth), and the steps are bitwise those of a quiet run; the "
              "command took longer in wall time")
    elif machine.busy:
        print("note: the machine was busy while the runs trained: the host waits for the "
              "GPU in wall seconds, which the load can lengthen (the turns spread it over "
              "all runs alike; steps are not affected)")
    print()
    print("verdict: " + "\n".join(said))


def _write_history(result, folder):
    history = result.history
    if result.diverged:
        history.stopped = "diverged"
    return history.to_csv(folder / history_name(result))


def history_name(result):
    return f"{training.slug(result.label)}_b{result.batch_size}_s{result.seed}.csv"
