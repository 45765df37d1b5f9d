"""``fastopt sensitivity``: how much each optimizer cares about its learning rate.

Every optimizer trains the ReLU MLP (``fastopt compare``'s network) for the same budget
(``--steps`` updates, or ``--seconds`` of training) at each learning rate of a log grid
(``--lr-min`` .. ``--lr-max``, ``--points`` values), once per seed; the final test loss
and accuracy are plotted against the learning rate. A run whose loss becomes NaN or
infinite, or ends more than 10 times the untrained network's test loss (weights blown up,
the loss still finite), is recorded as diverged: accuracy = chance (1 / classes), loss
missing (a cross at the top of the loss panel), and the sweep goes on.

The default data set is ``digits`` (8x8 images, 1,437 training samples), on which the
7 x 13 default runs of 300 steps take well under a minute; ``--dataset mnist`` works the
same (about 0.5 s per run of 300 steps at batch 128).

Results (in the run folder)
    sensitivity.csv   one row per optimizer x lr x seed (columns: CSV_COLUMNS)
    sensitivity.png   final test loss (log) and test accuracy versus lr (log), one line
                      per optimizer (mean over seeds; band: min..max)
    settings.json     see ``fastopt.runs``

``sensitivity.csv`` is rewritten after every run, so an interrupted sweep keeps what it did.
"""

import argparse
import math
from typing import NamedTuple

import numpy as np

from .. import runs
from . import plots, training

DEFAULT_STEPS = 300
CSV_COLUMNS = ["optimizer", "lr", "seed", "steps", "train_seconds", "final_train_loss",
               "final_test_loss", "final_test_accuracy", "diverged", "note"]
#: a learning rate is "good" when its accuracy is within this of the optimizer's best
GOOD_WITHIN = 0.01


class Plan(NamedTuple):
    data: object
    configs: list  # [training.OptimizerConfig] with the default lrs (the grid replaces them)
    lrs: np.ndarray
    batch_size: int
    hidden: list
    seeds: list
    steps: int  # None with --seconds
    seconds: float  # None with --steps
    schedule: str
    target: str = "cpu"  # where the runs train: "cpu" or "cuda" (--target)


class Point(NamedTuple):
    """One run of the sweep."""

    label: str
    lr: float
    seed: int
    steps: int
    train_seconds: float
    final_train_loss: float
    final_test_loss: float  # NaN when diverged
    final_test_accuracy: float  # chance when diverged
    diverged: bool
    note: str


# ---------------------------------------------------------------------------------------
# the command line


def add_parser(sub):
    # longer than a screen on purpose: the command's options read best as one flat list
    p = sub.add_parser(
        "sensitivity", help="learning-rate sensitivity: final test loss and accuracy of each "
                            "optimizer over a log grid of learning rates",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the ReLU MLP with each optimizer at every learning rate of a log "
                    "grid for a fixed budget and plot the final test loss and accuracy "
                    "against the learning rate. Diverged runs are recorded (accuracy = "
                    "chance), not fatal.",
        epilog=f"""\
time: the defaults (digits, 7 optimizers x 13 learning rates x {DEFAULT_STEPS} steps, batch \
128)
  take about half a minute on 2 cores once Numba's kernel cache is warm; on mnist a run of
  {DEFAULT_STEPS} steps takes about half a second.

{training.OPTIMIZER_HELP}
  Here the grid sets lr; the other arguments can be overridden (momentum:momentum=0.8).
  A triangle on the accuracy panel's axis marks each optimizer's default lr in
  fastopt compare.

--schedule NAME[:key=value,...]: a fastopt.schedules schedule starting from each grid lr
  (names: exponential, piecewise, polynomial, inverse_time, cosine, cosine_restarts, warmup,
  constant), e.g.
  --schedule cosine:decay_steps={DEFAULT_STEPS}

sensitivity.csv: optimizer, lr, seed, steps, train_seconds, final_train_loss,
  final_test_loss (empty when diverged), final_test_accuracy (chance when diverged),
  diverged (True/False: the loss became NaN/inf, or ended over 10x the untrained
  network's test loss), note (where and how it diverged)

outputs: sensitivity.csv, sensitivity.png, settings.json""")
    p.add_argument("--dataset", default="digits",
                   help="digits (default: fast) or mnist (needs pip install "
                        "\"fastopt[mnist]\")")
    p.add_argument("--optimizers", default=training.DEFAULT_OPTIMIZERS,
                   help=f"comma-separated names, optional key=value overrides except lr "
                        f"(default {training.DEFAULT_OPTIMIZERS})")
    p.add_argument("--lr-min", type=float, default=1e-5, help="smallest lr (default 1e-5)")
    p.add_argument("--lr-max", type=float, default=10.0, help="largest lr (default 10)")
    p.add_argument("--points", type=int, default=13,
                   help="learning rates, evenly spaced in log(lr) (default 13: half decades "
                        "from 1e-5 to 10)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None,
                        help=f"updates per run (default {DEFAULT_STEPS})")
    budget.add_argument("--seconds", type=float, default=None,
                        help="training seconds per run instead of --steps")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default 128)")
    p.add_argument("--hidden", default=training.DEFAULT_HIDDEN,
                   help=f"hidden layer widths (default {training.DEFAULT_HIDDEN})")
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per optimizer and lr, seeds --seed, --seed+1, ... (default 1)")
    p.add_argument("--schedule", default=None, metavar="SPEC",
                   help="learning-rate schedule starting from each grid lr (default: "
                        "constant)")
    runs.add_common_arguments(p, "sensitivity", seed_help="first seed (default 0): weights "
                                                          "and mini-batch order")
    p.set_defaults(func=run)
    return p


def check_args(args):
    """Check every argument before any work (loads the data set); returns a Plan."""
    runs.check_common_arguments(args, gpu=training.gpu_missing)
    why = "the learning rate comes from the grid (--lr-min, --lr-max, --points)"
    configs = training.configs_from_text(args.optimizers, forbidden={"lr": why})
    lr_min = runs.check_positive("--lr-min", args.lr_min)
    lr_max = runs.check_positive("--lr-max", args.lr_max)
    points = runs.check_count("--points", args.points)
    if lr_max < lr_min:
        raise ValueError(f"--lr-max ({lr_max:g}) must be at least --lr-min ({lr_min:g})")
    if points > 1 and lr_max == lr_min:
        raise ValueError(f"--points {points} needs --lr-max > --lr-min (both {lr_min:g})")
    if args.seconds is not None:
        seconds, steps = runs.check_positive("--seconds", args.seconds), None
    else:
        seconds = None
        steps = runs.check_count("--steps", DEFAULT_STEPS if args.steps is None
                                 else args.steps)
    runs.check_count("--batch-size", args.batch_size)
    runs.check_count("--seeds", args.seeds)
    hidden = training.parse_sizes("--hidden", args.hidden, "layer widths")
    lrs = np.geomspace(lr_min, lr_max, points) if points > 1 else np.array([lr_min])
    lrs = np.array([float(f"{lr:.6g}") for lr in lrs])  # 3.16228e-05, not 3.1622776601e-05
    for c in configs:  # every grid value must be acceptable to every optimizer
        for lr in (lrs[0], lrs[-1]):
            config = c._replace(kwargs=dict(c.kwargs, lr=float(lr)))
            training.check_schedule(args.schedule, [config])
    data = training.load_data(args.dataset)
    if args.batch_size > data.n_train:
        raise ValueError(f"--batch-size must be at most the {data.n_train} training samples "
                         f"of {args.dataset}, got {args.batch_size}")
    seeds = [args.seed + i for i in range(args.seeds)]
    return Plan(data, configs, lrs, args.batch_size, hidden, seeds, steps, seconds,
                args.schedule, args.target)


# ---------------------------------------------------------------------------------------
# runs


def run_point(plan, config, lr, seed):
    """One run of the sweep; a Point (diverged runs too)."""
    at = config._replace(kwargs=dict(config.kwargs, lr=float(lr)))
    eval_every = plan.steps if plan.steps is not None else 10**12  # start and end only
    result = training.train_run(plan.data, plan.hidden, at, plan.batch_size, seed,
                                schedule=plan.schedule, seconds=plan.seconds,
                                max_steps=plan.steps, eval_every=eval_every,
                                target=plan.target)
    last = result.history.records[-1]
    if result.diverged:
        loss, acc = float("nan"), training.chance(plan.data)
    else:
        loss, acc = last["test_loss"], last["test_accuracy"]
    return Point(config.label, float(lr), seed, int(last["step"]), last["wall_time"],
                 last["train_loss"], loss, acc, result.diverged, result.note)


def rows_of(points):
    return [dict(p._asdict(), optimizer=p.label) for p in points]


def curves(plan, points):
    """{label: (lrs, loss mean/min/max, accuracy mean/min/max, all-diverged flags)}.

    Loss statistics use the seeds that did not diverge (NaN where all diverged); accuracy
    uses every seed (a diverged run counts as chance)."""
    out = {}
    for config in plan.configs:
        mine = [p for p in points if p.label == config.label]
        lrs = sorted({p.lr for p in mine})
        stats = {k: [] for k in ("loss", "loss_lo", "loss_hi", "acc", "acc_lo", "acc_hi",
                                 "diverged")}
        for lr in lrs:
            at = [p for p in mine if p.lr == lr]
            losses = [p.final_test_loss for p in at if not p.diverged]
            accs = [p.final_test_accuracy for p in at]
            stats["loss"].append(np.mean(losses) if losses else np.nan)
            stats["loss_lo"].append(min(losses) if losses else np.nan)
            stats["loss_hi"].append(max(losses) if losses else np.nan)
            stats["acc"].append(np.mean(accs))
            stats["acc_lo"].append(min(accs))
            stats["acc_hi"].append(max(accs))
            stats["diverged"].append(all(p.diverged for p in at))
        out[config.label] = (np.array(lrs), {k: np.array(v) for k, v in stats.items()})
    return out


def best_table(plan, points):
    """Per optimizer: best lr (highest mean accuracy, then lowest loss), its numbers, the
    range of lrs within GOOD_WITHIN of that accuracy, and the smallest lr that diverged."""
    rows = []
    for label, (lrs, s) in curves(plan, points).items():
        if not len(lrs):
            continue
        loss_key = np.where(np.isfinite(s["loss"]), s["loss"], np.inf)
        best = min(range(len(lrs)), key=lambda i: (-s["acc"][i], loss_key[i]))
        good = [lr for lr, a in zip(lrs, s["acc"]) if a >= s["acc"][best] - GOOD_WITHIN]
        diverged = [lr for lr, p in zip(lrs, s["diverged"]) if p]
        rows.append(dict(
            optimizer=label, best_lr=training.fmt(lrs[best], ".3g"),
            acc=f"{100 * s['acc'][best]:.2f}", loss=training.fmt(s["loss"][best], ".4f"),
            good=(f"{min(good):.3g} .. {max(good):.3g}" if len(good) > 1
                  else f"only {lrs[best]:.3g}"),
            diverged=training.fmt(min(diverged), ".3g") if diverged else "none"))
    return training.format_table(
        rows, ["optimizer", "best_lr", "acc", "loss", "good", "diverged"],
        ["optimizer", "best lr", "test acc %", "test loss",
         f"lrs within {100 * GOOD_WITHIN:g} pt of best acc", "smallest lr that diverged"])


# ---------------------------------------------------------------------------------------
# figure


def plot_sensitivity(plan, points, title=None):
    """Final test loss (log) and test accuracy versus lr (log), one line per optimizer
    (mean over seeds; band: min..max when there are several). Diverged points: a cross at
    the top of the loss panel and at chance on the accuracy panel. Returns a Figure with
    two axes: loss, accuracy."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 5.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2, sharex=True)
    finite, any_diverged = _draw_optimizers(plan, points, ax_loss, ax_acc)
    chance = 100 * training.chance(plan.data)
    plots.reference_line(ax_acc, chance, "chance", f"chance {chance:g}%", 0.5, ha="center",
                         va="bottom", color="0.4", text_y=chance + 0.5)
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)" + (" at step 0" if plan.schedule else ""))
        ax.grid(True, which="major", alpha=0.3)
    _setup_loss_axis(ax_loss, plan.data.n_classes, finite, any_diverged)
    ax_acc.set_ylim(0, 100)
    ax_acc.set_ylabel("final test accuracy (%)")
    ax_acc.set_title("final test accuracy  (x: diverged, counted as chance; "
                     "triangle: default lr of fastopt compare)", fontsize="medium")
    ax_acc.legend(title="optimizer", fontsize="small", loc="upper left")
    fig.suptitle(title or _suptitle(plan))
    return fig


def _draw_optimizers(plan, points, ax_loss, ax_acc):
    """Every optimizer's lines, bands, diverged crosses and default-lr triangle; returns
    the finite mean losses drawn and whether any point diverged."""
    from matplotlib.transforms import blended_transform_factory

    top_of_loss = blended_transform_factory(ax_loss.transData, ax_loss.transAxes)
    bottom_of_acc = blended_transform_factory(ax_acc.transData, ax_acc.transAxes)
    finite, defaults = [], []
    any_diverged = False
    for i, (label, (lrs, s)) in enumerate(curves(plan, points).items()):
        if not len(lrs):
            continue
        # earlier lines wider, so one that a later one follows (momentum and nesterov,
        # adam and adamw at small lrs) stays visible beneath it
        style = plots.line_style(i, 3.2, 0.35, marker="o", ms=4)
        color = style["color"]
        ax_loss.plot(lrs, s["loss"], label=label, **style)
        ax_acc.plot(lrs, 100 * s["acc"], label=label, **style)
        if len(plan.seeds) > 1:
            plots.band(ax_loss, lrs, s["loss_lo"], s["loss_hi"], color)
            plots.band(ax_acc, lrs, 100 * s["acc_lo"], 100 * s["acc_hi"], color)
        gone = s["diverged"]
        if gone.any():
            any_diverged = True
            ax_loss.scatter(lrs[gone], np.full(gone.sum(), 0.97 - 0.025 * (i % 10)),
                            transform=top_of_loss, marker="x", s=50, linewidths=2,
                            color=color, zorder=5, clip_on=False)
            ax_acc.scatter(lrs[gone], 100 * s["acc"][gone], marker="x", s=60, linewidths=2,
                           color=color, zorder=5)
        default_lr = training.OPTIMIZERS[plan.configs[i].name][2]
        stacked = defaults.count(default_lr)  # several optimizers share 1e-3: stack them
        defaults.append(default_lr)
        ax_acc.scatter([default_lr], [0.02 + 0.033 * stacked], transform=bottom_of_acc,
                       marker="^", s=60, color=color, edgecolors="black",
                       linewidths=0.6, zorder=6, clip_on=False)
        finite += [v for v in s["loss"] if np.isfinite(v)]
    return finite, any_diverged


def _setup_loss_axis(ax, n_classes, finite, any_diverged):
    """Log scale over the ``finite`` losses drawn, capped; labels and title."""
    ax.set_yscale("log")
    if finite:
        low, high = min(finite), max(finite)
        # top: a few times the loss of guessing (ln classes); larger losses run off the top
        cap = 4 * math.log(n_classes)
        ax.set_ylim(low / 1.3, max(min(high * 1.3, cap), low * 2))
    plots.log_ticks(ax)
    ax.set_ylabel("final test loss (cross-entropy, log scale)")
    ax.set_title("final test loss" + ("  (x at the top: diverged)" if any_diverged
                                      else "") + "; larger losses run off the top",
                 fontsize="medium")


def _suptitle(plan):
    budget = (f"{plan.steps} steps" if plan.steps is not None
              else f"{plan.seconds:g} s of training")
    return (f"Learning-rate sensitivity: ReLU MLP "
            f"{training.network_text(plan.data, plan.hidden)} on {plan.data.name}, batch "
            f"{plan.batch_size}, {budget} per run, {training.seeds_text(plan.seeds)}"
            + (f", schedule {plan.schedule}" if plan.schedule else ""))


# ---------------------------------------------------------------------------------------
# the command


def run(args):
    """The ``sensitivity`` command (``args`` from ``add_parser``'s parser); the Points."""
    plan = check_args(args)
    with runs.command_frame(args, "sensitivity", resolved=_resolved(plan)) as frame:
        return _run(args, plan, frame.out)


def _resolved(plan):
    """The settings.json record of what the arguments resolved to."""
    return {
        "network": training.network(plan.data, plan.hidden),
        "activation": "relu", "init": "he_normal",
        "lrs": plan.lrs.tolist(),
        "optimizers": {c.label: {"class": c.cls,
                                 **{k: v for k, v in c.kwargs.items() if k != "lr"}}
                       for c in plan.configs},
        "seeds": plan.seeds, "steps": plan.steps, "seconds": plan.seconds,
        "schedule": plan.schedule,
        "data": {"name": plan.data.name, "train": plan.data.n_train,
                 "test": plan.data.n_test},
    }


def _run(args, plan, out):
    jobs = [(c, lr, seed) for c in plan.configs for lr in plan.lrs for seed in plan.seeds]
    budget = (f"{plan.steps} steps" if plan.steps is not None
              else f"{plan.seconds:g} s of training")
    print(f"sensitivity: {len(plan.configs)} optimizer(s) x {len(plan.lrs)} learning rates "
          f"({plan.lrs[0]:g} .. {plan.lrs[-1]:g}) x {len(plan.seeds)} seed(s) = {len(jobs)} "
          f"runs of {budget} on {plan.data.name}", flush=True)
    points = []
    path = out / "sensitivity.csv"
    bar = runs.Progress(total=len(jobs), desc="sensitivity", unit="runs",
                        mode=runs.progress_mode(args.no_progress))
    try:
        for config, lr, seed in jobs:
            bar.set_postfix_str(f"{config.label} lr {lr:.3g} seed {seed}")
            points.append(run_point(plan, config, lr, seed))
            training.write_rows(rows_of(points), CSV_COLUMNS, path)
            bar.update(1)
    finally:
        bar.close()
    runs.wrote(path, f"{len(points)} runs: final test loss and accuracy per optimizer, lr, "
                     "seed")
    diverged = [p for p in points if p.diverged]
    if diverged:
        by = {}
        for p in diverged:
            by.setdefault(p.label, []).append(p.lr)
        print("note: diverged (recorded as chance accuracy): " + "; ".join(
            f"{label} at {len(lrs)} lr(s), the smallest {min(lrs):.3g}"
            for label, lrs in by.items()))
    runs.use_agg()
    for fig_path in runs.save_figure(plot_sensitivity(plan, points), out, "sensitivity",
                                     svg=args.svg):
        runs.wrote(fig_path, "final test loss and accuracy vs learning rate")
    print()
    print(best_table(plan, points))
    return points
