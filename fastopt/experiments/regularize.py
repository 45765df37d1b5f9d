"""``fastopt regularize``: the textbook's overfitting experiments.

A ReLU network with six hidden layers of 100 units (He initialisation, N(0, 2/n_in)) is
trained on the first 300 training images of MNIST (``--dataset mnist``, default) or of
digits, with plain SGD (lr 0.01) on mini-batches of 100 drawn with replacement (the
textbook's ``np.random.choice(300, 100)``; an epoch is 3 of them), and its accuracy on
those 300 images and on the whole test set is recorded every epoch, for each setting:

    none      no regularisation, 201 epochs: training accuracy reaches ~100%, test stays
              far below (overfitting)
    l2        the weight penalty 0.5 * lambda * sum(W**2) on the weights only, lambda 0.1
              (``nn.MLP(l2=0.1)``), 201 epochs
    dropout   inverted dropout 0.2 after every hidden activation, 301 epochs

Early stopping is *marked*, not applied: the epoch where ``train.EarlyStopping`` on the
test loss with ``--patience`` epochs would have stopped (and the best epoch before it),
computed from the recorded curve by that same class.

Outputs: ``regularize_<setting>.png`` (training and test accuracy per epoch, the gap
shaded, the early-stopping mark), ``curves.csv`` (every setting's curve),
``summary.csv`` (one row per setting: final accuracies and gap, best and early-stopping
epochs and the gap there, training seconds), ``settings.json``.
"""

import argparse
import math
import time

from .. import runs, tables

HIDDEN = (100,) * 6  # the textbook's overfitting network
HE = "he_normal:truncated=false"  # N(0, 2 / n_in), the textbook's "He"
SETTINGS = ("none", "l2", "dropout")
TITLES = {"none": "no regularisation", "l2": "L2 weight penalty", "dropout": "dropout"}
CURVE_COLUMNS = ["setting", "epoch", "step", "train_accuracy", "test_accuracy", "gap",
                 "train_eval_loss", "test_loss", "train_loss"]
SUMMARY_COLUMNS = ["setting", "epochs", "l2", "dropout", "final_train_accuracy",
                   "final_test_accuracy", "final_gap", "best_epoch", "early_stop_epoch",
                   "test_accuracy_at_stop", "gap_at_stop", "train_seconds"]


# ---------------------------------------------------------------------------------------
# the experiment


def setting_options(setting, l2, dropout):
    """The nn.MLP penalty and dropout arguments of one setting."""
    return dict(l2=l2 if setting == "l2" else 0.0,
                dropout=dropout if setting == "dropout" else 0.0)


def train_setting(data, setting, epochs, l2, dropout, lr, batch_size, seed, progress):
    """Train the textbook network for one setting; returns (History, training seconds).
    ``progress``: a ``runs.progress_mode``."""
    from .. import nn, optim, train

    model = nn.MLP([data.n_features, *HIDDEN, data.n_classes], activation="relu", init=HE,
                   seed=seed, dtype=data.dtype.name, **setting_options(setting, l2, dropout))
    opt = optim.SGD(model.params, lr=lr)
    run = train.Training(model, opt, data, batch_size=batch_size, epochs=epochs, seed=seed,
                         progress=False, replacement=True)
    per_epoch = run.planner.limits.steps_per_epoch
    bar = runs.Progress(total=epochs, desc=f"regularize: {setting}", unit="epochs",
                        mode=progress)
    try:
        while not run.advance(steps=per_epoch):
            bar.update(run.steps // per_epoch - bar.n)
            last = run.history.records[-1]
            bar.set_postfix_str(f"train {last['train_accuracy']:.3f}, test "
                                f"{last['test_accuracy']:.3f}")
        bar.update(run.steps // per_epoch - bar.n)
    finally:
        bar.close()
    return run.history, run.train_time


def early_stop(history, patience):
    """(best epoch, stopping epoch or None) of ``train.EarlyStopping(patience)`` on the test
    loss, fed the recorded evaluations after the first (as fit feeds it)."""
    from ..train import EarlyStopping

    rule = EarlyStopping(patience=patience, restore_best=False, monitor="test_loss")
    for rec in history.records[1:]:
        if rule.update(rec, None):
            return _epoch(history, rule.best_step), rec["epoch"]
    return (None if rule.best_step is None else _epoch(history, rule.best_step)), None


def _epoch(history, step):
    return next(r["epoch"] for r in history.records if r["step"] == step)


def curve_rows(setting, history):
    return [dict(setting=setting, epoch=r["epoch"], step=r["step"],
                 train_accuracy=r["train_accuracy"], test_accuracy=r["test_accuracy"],
                 gap=r["train_accuracy"] - r["test_accuracy"],
                 train_eval_loss=r["train_eval_loss"], test_loss=r["test_loss"],
                 train_loss=r["train_loss"]) for r in history.records]


def summary_row(setting, history, epochs, options, stop, seconds):
    last = history.records[-1]
    best, stopped = stop
    at = next((r for r in history.records if r["epoch"] == stopped), None)
    return dict(setting=setting, epochs=epochs, l2=options["l2"], dropout=options["dropout"],
                final_train_accuracy=last["train_accuracy"],
                final_test_accuracy=last["test_accuracy"],
                final_gap=last["train_accuracy"] - last["test_accuracy"],
                best_epoch=best, early_stop_epoch=stopped,
                test_accuracy_at_stop=None if at is None else at["test_accuracy"],
                gap_at_stop=None if at is None else at["train_accuracy"] - at["test_accuracy"],
                train_seconds=seconds)


def plot_setting(setting, history, stop, title, n_train):
    """Training and test accuracy per epoch, the gap shaded, early stopping marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    epoch = history["epoch"]
    tr, te = 100 * history["train_accuracy"], 100 * history["test_accuracy"]
    ax.plot(epoch, tr, color="C0", lw=1.6, label=f"train (the {n_train} training images)")
    ax.plot(epoch, te, color="C1", lw=1.6, label="test")
    ax.fill_between(epoch, te, tr, color="C7", alpha=0.15,
                    label=f"gap, final {tr[-1] - te[-1]:.1f} points")
    best, stopped = stop
    if stopped is not None:
        ax.axvline(stopped, color="C3", ls="--", lw=1.2,
                   label=f"early stopping would stop (epoch {stopped:g}; best {best:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------
# the command


def add_parser(sub):
    p = sub.add_parser(
        "regularize", help="overfitting: train/test accuracy without regularisation, with "
                           "L2 and with dropout",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The textbook's overfitting experiments: a ReLU MLP with six hidden "
                    "layers of 100 (He init) trained with SGD on the first 300 training "
                    "images; training and test accuracy every epoch without "
                    "regularisation, with an L2 penalty on the weights and with dropout, "
                    "early stopping marked where it would stop.",
        epilog="""\
settings (--settings): none (201 epochs), l2 (0.5*lambda*sum W^2 on the weights only,
lambda --l2, 201 epochs), dropout (--dropout, 301 epochs); --epochs N runs every setting
for N epochs.

outputs: regularize_<setting>.png, curves.csv, summary.csv, settings.json""")
    p.add_argument("--dataset", default="mnist",
                   help="mnist (default; needs fastopt[mnist]) or digits (8x8, quicker)")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"comma-separated (default all: {','.join(SETTINGS)})")
    p.add_argument("--train-size", type=int, default=300,
                   help="the first this many training images (default 300)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every setting (default: 201, dropout 301)")
    p.add_argument("--l2", type=float, default=0.1,
                   help="lambda of the L2 setting, 0.5*lambda*sum(W^2) (default 0.1)")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="dropout rate of the dropout setting (default 0.2)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=100,
                   help="mini-batch size, drawn with replacement (default 100)")
    p.add_argument("--patience", type=int, default=10,
                   help="early stopping's patience in epochs, on the test loss (default 10)")
    runs.add_common_arguments(p, "regularize")
    p.set_defaults(func=run)
    return p


def epochs_of(setting, args):
    if args.epochs is not None:
        return args.epochs
    return 301 if setting == "dropout" else 201


def check_args(args):
    """Check every argument before any work; returns (settings, data)."""
    from .. import datasets
    from .weight_init import load_data

    runs.check_common_arguments(args)
    for option in ("train_size", "batch_size", "patience"):
        runs.check_count("--" + option.replace("_", "-"), getattr(args, option))
    if args.epochs is not None:
        runs.check_count("--epochs", args.epochs)
    runs.check_positive("--lr", args.lr)
    runs.check_positive("--l2", args.l2)
    if not 0 < args.dropout < 1:
        raise ValueError(f"--dropout must be in (0, 1), got {args.dropout}")
    settings = runs.split_list("--settings", args.settings, choices=list(SETTINGS))
    full = load_data(args.dataset)
    if args.train_size > full.n_train:
        raise ValueError(f"--train-size must be at most the {full.n_train} training images "
                         f"of {args.dataset}, got {args.train_size}")
    if args.batch_size > args.train_size:
        raise ValueError(f"--batch-size must be at most --train-size ({args.train_size}), "
                         f"got {args.batch_size}")
    n = args.train_size
    data = datasets.Dataset(full.name, full.X_train[:n], full.y_train[:n], full.X_test,
                            full.y_test, full.n_classes)
    return settings, data


def run(args):
    """The ``regularize`` command (``args`` from ``add_parser``'s parser)."""
    settings, data = check_args(args)
    network = [data.n_features, *HIDDEN, data.n_classes]
    resolved = {"network": network, "init": HE, "train_images": data.n_train,
                "test_images": data.n_test,
                "epochs": {s: epochs_of(s, args) for s in settings},
                "steps_per_epoch": math.ceil(data.n_train / args.batch_size),
                "batches": "drawn with replacement (the textbook's np.random.choice)",
                "l2_penalty": "0.5 * l2 * sum(W**2) over the weight matrices (nn.MLP(l2=))",
                "early_stopping": f"marked only: EarlyStopping(patience={args.patience}, "
                                  "monitor='test_loss') on the per-epoch records"}
    with runs.command_frame(args, "regularize", resolved=resolved) as frame:
        runs.use_agg()
        _experiments(args, settings, data, frame.out)
    return frame.out


def _experiments(args, settings, data, out):
    progress = runs.progress_mode(args.no_progress)
    curves, summary = [], []
    sizes = "-".join(str(s) for s in [data.n_features, *HIDDEN, data.n_classes])
    t_all = time.perf_counter()
    for i, setting in enumerate(settings, 1):
        epochs = epochs_of(setting, args)
        options = setting_options(setting, args.l2, args.dropout)
        print(f"regularize: {setting} ({i}/{len(settings)}): {epochs} epochs on the first "
              f"{data.n_train} {args.dataset} training images", flush=True)
        history, seconds = train_setting(data, setting, epochs, args.l2, args.dropout,
                                         args.lr, args.batch_size, args.seed, progress)
        stop = early_stop(history, args.patience)
        curves += curve_rows(setting, history)
        row = summary_row(setting, history, epochs, options, stop, seconds)
        summary.append(row)
        print(f"regularize: {setting}: final train accuracy {row['final_train_accuracy']:.3f}"
              f", test {row['final_test_accuracy']:.3f}, gap {row['final_gap']:.3f}", flush=True)
        what = {"none": "", "l2": f", lambda {args.l2:g}",
                "dropout": f", rate {args.dropout:g}"}[setting]
        title = (f"{TITLES[setting]}{what}: ReLU MLP {sizes}, {data.n_train} {args.dataset} "
                 f"images, SGD lr {args.lr:g}, batch {args.batch_size}")
        fig = plot_setting(setting, history, stop, title, data.n_train)
        for p in runs.save_figure(fig, out, f"regularize_{setting}", svg=args.svg):
            runs.wrote(p, f"{setting}: training and test accuracy per epoch")
    path = out / "curves.csv"
    _write_rows(curves, CURVE_COLUMNS, path)
    runs.wrote(path, "training and test accuracy and loss per epoch, every setting")
    path = out / "summary.csv"
    _write_rows(summary, SUMMARY_COLUMNS, path)
    runs.wrote(path, "final train/test gap and the early-stopping epoch per setting")
    print(f"regularize: {len(settings)} settings in {time.perf_counter() - t_all:.1f} s",
          flush=True)


def _write_rows(rows, columns, path):
    rows = [{c: r[c] for c in columns} for r in rows]
    return tables.write_csv(rows, path, cell=lambda v: repr(v) if isinstance(v, float)
                            else ("" if v is None else v))
