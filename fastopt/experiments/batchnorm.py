"""``fastopt batchnorm``: the textbook's batch-normalisation experiment.

For each of ``--scales`` weight scales (default 16, log-spaced from 1 to 1e-4), two ReLU
networks ``fastopt.nn.MLP([n_features, 100, 100, 100, 100, 100, n_classes],
init="normal:std=<scale>")`` - weights drawn N(0, scale^2), biases 0 - one without and
one with batch normalisation (``batch_norm=True``: after every hidden layer's affine map,
before the ReLU), are trained with plain SGD (lr 0.01) on the first ``--train-size``
(1,000) training images, batches of 100 drawn with replacement (the textbook's
``np.random.choice``; ``fit(..., replacement=True)``), for ``--epochs`` (20) epochs of
train-size / 100 updates. Both networks of a scale start from the same weight draws and
see the same batches. The training accuracy on those images is measured before training
and after every epoch (``fit`` evaluates its "test" set - here the training images
themselves - once per epoch; with batch norm ``model.evaluate`` uses the running
statistics, as the book's ``train_flg=False`` does).

Results (in the run folder)
    batchnorm.csv          weight_scale, batch_norm, epoch, step, train_accuracy,
                           train_loss (loss on the training images), batch_loss (mean
                           mini-batch loss since the previous epoch), one row per epoch
    batchnorm_summary.csv  per scale: final training accuracy without / with batch norm,
                           their difference, and whether batch norm rescued the training
    batchnorm.png          a grid of panels like the book's (4 x 4 for 16 scales), each one
                           scale: training accuracy per epoch with and without batch norm
    settings.json          see ``fastopt.runs``
"""

import argparse
import math

import numpy as np

from .. import runs
from . import training

HIDDEN = (100, 100, 100, 100, 100)  # the book's five hidden layers of 100
LR = 0.01
BATCH_SIZE = 100
DEFAULT_EPOCHS = 20
DEFAULT_SCALES = 16
DEFAULT_TRAIN_SIZE = 1000
SCALE_RANGE = (1.0, 1e-4)  # --scales N: log-spaced from the first to the second
#: batch norm rescued a scale when its final training accuracy is this much higher
RESCUE_MARGIN = 0.2
CSV_COLUMNS = ["weight_scale", "batch_norm", "epoch", "step", "train_accuracy",
               "train_loss", "batch_loss", "note"]
SUMMARY_COLUMNS = ["weight_scale", "final_accuracy_without", "final_accuracy_with",
                   "difference", "rescued", "note_without", "note_with"]


# ---------------------------------------------------------------------------------------
# arguments


def add_parser(sub):
    p = sub.add_parser(
        "batchnorm", help="the textbook's batch-norm experiment: training accuracy per "
                          "epoch with and without batch norm, 16 weight scales",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For each weight scale, train the 5 x 100 ReLU MLP with SGD (lr 0.01, "
                    "batches of 100 drawn with replacement) on the first 1,000 training "
                    "images, without and with batch normalisation, and draw the training "
                    "accuracy per epoch, one panel per scale (the textbook's figure).",
        epilog="""\
--scales: a count N (default 16: log-spaced from 1 to 1e-4, the book's
  np.logspace(0, -4, 16)) or comma-separated weight scales (the init std), e.g. 1,0.01.

time: about 30 s on MNIST with the defaults (32 runs of 200 updates of batch 100 and 21
  evaluations of the 1,000 images each) once Numba's kernel cache is warm; the first run
  on a machine also compiles the kernels (about a minute more).

outputs: batchnorm.csv, batchnorm_summary.csv, batchnorm.png, settings.json""")
    p.add_argument("--dataset", default="mnist",
                   help="mnist (default; needs pip install \"fastopt[mnist]\") or digits "
                        "(8x8 images, scikit-learn)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"passes over the training images (default {DEFAULT_EPOCHS})")
    p.add_argument("--scales", default=str(DEFAULT_SCALES),
                   help=f"weight scales: a count, log-spaced from 1 to 1e-4, or a list "
                        f"(default {DEFAULT_SCALES}; see below)")
    p.add_argument("--train-size", type=int, default=DEFAULT_TRAIN_SIZE,
                   help=f"the first this many training images (default "
                        f"{DEFAULT_TRAIN_SIZE}); at least the batch of {BATCH_SIZE}")
    runs.add_common_arguments(p, "batchnorm", seed_help="seed of the weights and of the "
                                                        "mini-batches (default 0)")
    p.set_defaults(func=run)
    return p


def parse_scales(text):
    """``--scales``: a count N -> N scales log-spaced over SCALE_RANGE; or comma-separated
    positive numbers. ValueError naming the option otherwise."""
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    if not items:
        raise ValueError(f"--scales needs a count or weight scales, got {text!r}")
    if len(items) == 1 and items[0].isdigit():
        count = int(items[0])
        if count < 1:
            raise ValueError(f"--scales: a count must be positive, got {text!r}")
        return [float(v) for v in np.logspace(math.log10(SCALE_RANGE[0]),
                                              math.log10(SCALE_RANGE[1]), count)]
    scales = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--scales: weight scales must be positive numbers separated by "
                             f"commas (e.g. 1,0.01,1e-4), or a count (e.g. 16), got "
                             f"{item!r} in {text!r}")
        scales.append(value)
    if len(set(scales)) != len(scales):
        raise ValueError(f"--scales lists a scale twice: {text!r}")
    return scales


def check_args(args):
    """Every argument checked before any work (loads the data set); returns (data,
    scales)."""
    runs.check_common_arguments(args)
    runs.check_count("--epochs", args.epochs)
    scales = parse_scales(args.scales)
    runs.check_count("--train-size", args.train_size, low=BATCH_SIZE)
    data = training.load_data(args.dataset)
    if args.train_size > data.n_train:
        raise ValueError(f"--train-size: at most the {data.n_train} training images of "
                         f"{args.dataset}, got {args.train_size}")
    return data, scales


# ---------------------------------------------------------------------------------------
# training


def train_pair_member(data, n, scale, batch_norm, epochs, seed):
    """One network of a scale, trained; (History, note). The History's test columns are
    the training accuracy and loss on the ``n`` training images, once per epoch."""
    from .. import nn, optim, train

    X, y = data.X_train[:n], data.y_train[:n]
    model = nn.MLP([data.n_features, *HIDDEN, data.n_classes], activation="relu",
                   init=f"normal:std={scale!r}", batch_norm=batch_norm, seed=seed,
                   dtype=data.dtype.name)
    opt = optim.SGD(model.params, lr=LR)
    with np.errstate(all="ignore"):
        try:
            history = train.fit(model, opt, (X, y, X, y), batch_size=BATCH_SIZE,
                                epochs=epochs, replacement=True, seed=seed, progress=False,
                                train_eval_size=0)  # the test set is the training set
        except train.TrainingDiverged as exc:
            return exc.history, f"diverged at step {exc.step}"
    return history, ""


def rows_of(scale, batch_norm, history, note):
    """The batchnorm.csv rows of one run."""
    return [dict(weight_scale=scale, batch_norm="yes" if batch_norm else "no",
                 epoch=r["epoch"], step=r["step"], train_accuracy=r["test_accuracy"],
                 train_loss=r["test_loss"], batch_loss=r["train_loss"], note=note)
            for r in history.records]


def final_accuracy(history, note, chance):
    """The last training accuracy; a diverged run counts as chance."""
    return chance if note else float(history.records[-1]["test_accuracy"])


def summary_row(scale, without, with_bn, chance):
    (h0, n0), (h1, n1) = without, with_bn
    a0, a1 = final_accuracy(h0, n0, chance), final_accuracy(h1, n1, chance)
    return dict(weight_scale=scale, final_accuracy_without=a0, final_accuracy_with=a1,
                difference=a1 - a0, rescued="yes" if a1 - a0 >= RESCUE_MARGIN else "no",
                note_without=n0, note_with=n1)


def run(args):
    data, scales = check_args(args)
    resolved = dict(network=[data.n_features, *HIDDEN, data.n_classes], activation="relu",
                    init="normal:std=<scale> (N(0, scale^2)), biases 0",
                    weight_scales=scales, optimizer=dict(cls="SGD", lr=LR),
                    batch_size=BATCH_SIZE, batches="drawn with replacement",
                    train_images=args.train_size, epochs=args.epochs,
                    steps_per_epoch=math.ceil(args.train_size / BATCH_SIZE),
                    data=dict(name=data.name, train=data.n_train))
    with runs.command_frame(args, "batchnorm", resolved=resolved) as frame:
        return _run(args, data, scales, frame.out)


def _run(args, data, scales, out):
    n = args.train_size
    print(f"batchnorm: {len(scales)} weight scale(s) x (without, with batch norm) = "
          f"{2 * len(scales)} runs of {args.epochs} epoch(s) on the first {n} training "
          f"images of {data.name}", flush=True)
    bar = runs.Progress(total=2 * len(scales), desc="batchnorm", unit="runs",
                        mode=runs.progress_mode(args.no_progress))
    results, rows, summary = [], [], []
    try:
        for scale in scales:  # Ctrl-C: the runs done so far are written, then it stops
            pair = []
            for bn in (False, True):
                bar.set_postfix_str(f"scale {scale:.3g}, batch norm {'on' if bn else 'off'}")
                history, note = train_pair_member(data, n, scale, bn, args.epochs, args.seed)
                pair.append((history, note))
                rows += rows_of(scale, bn, history, note)
                bar.update(1)
            results.append(pair)
            summary.append(summary_row(scale, *pair, training.chance(data)))
    except KeyboardInterrupt:
        _write_tables(rows, summary, out)
        raise
    finally:
        bar.close()
    _write_tables(rows, summary, out)
    runs.use_agg()
    fig = plot_grid(scales, results, data, n, args.epochs)
    for path in runs.save_figure(fig, out, "batchnorm", svg=args.svg):
        runs.wrote(path, "training accuracy per epoch, one panel per weight scale")
    print()
    print(summary_table(summary))
    rescued = [r["weight_scale"] for r in summary if r["rescued"] == "yes"]
    print()
    print("batch norm rescued the training at " + (
        f"{len(rescued)} of {len(summary)} scales: "
        + ", ".join(f"{s:.3g}" for s in rescued) if rescued else "no scale")
          + f" (final training accuracy at least {100 * RESCUE_MARGIN:g} points higher)")
    return summary


def _write_tables(rows, summary, out):
    training.write_rows(rows, CSV_COLUMNS, out / "batchnorm.csv")
    runs.wrote(out / "batchnorm.csv", "training accuracy per epoch, every scale, with and "
                                      "without batch norm")
    training.write_rows(summary, SUMMARY_COLUMNS, out / "batchnorm_summary.csv")
    runs.wrote(out / "batchnorm_summary.csv", "final training accuracy per scale")


def summary_table(summary):
    table = [dict(scale=f"{r['weight_scale']:.3g}",
                  without=f"{100 * r['final_accuracy_without']:.1f}",
                  with_=f"{100 * r['final_accuracy_with']:.1f}",
                  rescued=r["rescued"],
                  note="; ".join(x for x in (r["note_without"], r["note_with"]) if x))
             for r in summary]
    return training.format_table(table, ["scale", "without", "with_", "rescued", "note"],
                                 ["weight scale", "without BN %", "with BN %", "rescued",
                                  ""])


# ---------------------------------------------------------------------------------------
# the figure


def plot_grid(scales, results, data, n, epochs):
    """One panel per scale (a square-ish grid: 4 x 4 for 16), training accuracy per epoch
    with batch norm (solid) and without (dashed), as in the book. Returns a Figure."""
    from matplotlib.figure import Figure

    k = len(scales)
    cols = math.ceil(math.sqrt(k))
    nrows = math.ceil(k / cols)
    fig = Figure(figsize=(3.2 * cols, 2.7 * nrows + 0.8), layout="constrained")
    axes = np.array(fig.subplots(nrows, cols, sharex=True, sharey=True, squeeze=False))
    for i, (scale, pair) in enumerate(zip(scales, results)):
        ax = axes.flat[i]
        for (history, note), bn in zip(pair, (False, True)):
            label = ("with batch norm" if bn else "without batch norm") + (
                f" ({note})" if note else "")
            x, acc = history["epoch"], history["test_accuracy"]
            ax.plot(x, acc, ls="-" if bn else "--", color="C0" if bn else "C1", lw=1.8,
                    label=label)
            if note and len(x):  # where a diverged run stopped
                ax.plot(x[-1:], acc[-1:], "x", color="C0" if bn else "C1", ms=9, mew=2,
                        label="_diverged")
        ax.set_title(f"W: {scale:.3g}", fontsize="medium")
        ax.set_ylim(0, 1.0)
        ax.set_xlim(0, epochs)
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend(fontsize="x-small", loc="lower right")
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epochs")
    for ax in axes[:, 0]:
        ax.set_ylabel("training accuracy")
    fig.suptitle(f"Batch normalisation: ReLU MLP {training.network_text(data, HIDDEN)}, "
                 f"SGD lr {LR:g}, batch {BATCH_SIZE}, first {n} training images of "
                 f"{data.name}; weights N(0, W^2)\nsolid: with batch norm, dashed: without")
    return fig
