"""``fastopt compare --textbook``: the textbook's optimizer comparison on MNIST.

Saito, "Deep Learning from Scratch", ch. 6 (``ch06/optimizer_compare_mnist.py``), with
fastopt's kernels: a ReLU MLP 784-100-100-100-100-10 with He-normal weights
(``randn * sqrt(2 / n_in)``: ``init="he_normal:truncated=false"``) and zero biases, trained
with SGD (lr 0.01), Momentum (lr 0.01, momentum 0.9), AdaGrad (lr 0.01) and Adam (lr 0.001)
in the textbook's own formulas (``fastopt.optim.catalogue.textbook``, as ``fastopt paths
--book`` uses them), for 2,000 iterations. Each iteration draws one mini-batch of 128 with
replacement (the textbook's ``np.random.choice(train_size, 128)``: ``fastopt.train.
epoch_batches(..., replacement=True)``, so the batches are those of ``fit(...,
replacement=True, seed=seed)``) and every optimizer takes a step on that same batch, one
after the other, as in the book. All four networks start from the same weights (the book
draws each network's afresh).

The recorded loss is the book's: the cross-entropy of the iteration's mini-batch after the
update. It is computed outside the clock; ``train_seconds`` sums the ``train_step`` calls
only (forward, backward and update). The figure smooths the losses as the book does
(``smooth_curve``). Differences from the book's NumPy code: float32 arithmetic (the book's
runs in float64) and an exact log-softmax (the book adds 1e-7 inside the log).

Results (in the run folder)
    textbook.csv    iteration (updates done, 1..N), optimizer, loss, smoothed_loss,
                    train_seconds (cumulative training seconds of that optimizer)
    textbook.png    smoothed loss vs iterations (the book's figure) and vs training seconds
    settings.json   see ``fastopt.runs``
"""

import time
from typing import NamedTuple

import numpy as np

from .. import runs
from ..optim import catalogue
from . import plots, training

ITERATIONS = 2000
BATCH_SIZE = 128
HIDDEN = [100, 100, 100, 100]
INIT = "he_normal:truncated=false"  # the textbook's randn * sqrt(2 / n_in)
#: the book's smoothing: a Kaiser window of 11 taps, beta 2
SMOOTH_TAPS = 11
SMOOTH_BETA = 2.0
CSV_COLUMNS = ["iteration", "optimizer", "loss", "smoothed_loss", "train_seconds"]

#: compare's options that --textbook fixes: (flag, dest); given with --textbook they are
#: refused (defaults are read from the parser, see add_arguments)
FIXED_OPTIONS = [("--optimizers", "optimizers"), ("--batch-sizes", "batch_sizes"),
                 ("--hidden", "hidden"), ("--seconds", "seconds"), ("--epochs", "epochs"),
                 ("--seeds", "seeds"), ("--evals", "evals"), ("--schedule", "schedule"),
                 ("--target-accuracy", "target_accuracy"), ("--x", "x")]


class BookOptimizer(NamedTuple):
    """One optimizer of the book's figure: name, fastopt.optim class, arguments, marker."""

    label: str
    cls: str
    kwargs: dict
    marker: str  # the book's marker for this optimizer


#: The book's four optimizers, in its order, with its learning rates and formulas.
OPTIMIZERS = (
    BookOptimizer("SGD", "SGD", dict(lr=0.01, **catalogue.textbook("sgd")), "o"),
    BookOptimizer("Momentum", "SGD",
                  dict(lr=0.01, momentum=0.9, **catalogue.textbook("sgd")), "x"),
    BookOptimizer("AdaGrad", "Adagrad", dict(lr=0.01, **catalogue.textbook("adagrad")), "s"),
    BookOptimizer("Adam", "Adam", dict(lr=0.001, **catalogue.textbook("adam")), "D"),
)


class Plan(NamedTuple):
    data: object  # fastopt.datasets.Dataset
    iterations: int
    seed: int
    target: str


class Curve(NamedTuple):
    """One optimizer's run: per-iteration loss, smoothed loss, cumulative training seconds."""

    optimizer: BookOptimizer
    loss: np.ndarray  # (iterations,) float64
    smoothed: np.ndarray  # (iterations,) float64
    seconds: np.ndarray  # (iterations,) float64, training seconds up to and incl. each


# ---------------------------------------------------------------------------------------
# the command line (options added to compare's parser)


def add_arguments(p):
    """``--textbook`` and ``--iterations`` on compare's parser ``p``; call it after
    compare's own options, so that their defaults can be recorded: --textbook refuses an
    option of FIXED_OPTIONS whose value is not its default."""
    p.add_argument("--textbook", action="store_true",
                   help="the textbook's optimizer comparison (Saito, Deep Learning from "
                        "Scratch, ch. 6): SGD, Momentum, AdaGrad and Adam on a 784-100-100-"
                        "100-100-10 ReLU MLP, batch 128 drawn with replacement; smoothed "
                        "training loss vs iterations and vs training seconds (textbook.csv, "
                        "textbook.png); takes --dataset, --iterations and the run options")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"with --textbook: iterations (mini-batches) per optimizer "
                        f"(default {ITERATIONS}, at least {SMOOTH_TAPS})")
    p.set_defaults(_textbook_defaults={dest: p.get_default(dest)
                                       for _, dest in FIXED_OPTIONS})


def check_args(args):
    """Check every argument before any work (loads the data set); returns a Plan."""
    if not args.textbook:
        raise ValueError("--iterations applies to --textbook only; a comparison's budget is "
                         "--seconds or --epochs")
    runs.check_common_arguments(args, gpu=training.gpu_missing)
    defaults = getattr(args, "_textbook_defaults", {})
    for flag, dest in FIXED_OPTIONS:
        if getattr(args, dest, None) != defaults.get(dest):
            raise ValueError(f"{flag} does not apply to --textbook (it fixes the optimizers, "
                             f"the network, batch {BATCH_SIZE} and the budget); drop {flag}, "
                             "or drop --textbook")
    iterations = ITERATIONS if args.iterations is None else args.iterations
    runs.check_count("--iterations", iterations, low=SMOOTH_TAPS)
    return Plan(training.load_data(args.dataset), iterations, args.seed, args.target)


# ---------------------------------------------------------------------------------------
# smoothing


def smooth_curve(values, taps=SMOOTH_TAPS, beta=SMOOTH_BETA):
    """The textbook's smoothing of a loss curve: a moving average weighted by a Kaiser
    window (``numpy.kaiser(taps, beta)``, normalised), centred on each point.

    Near the ends the window reaches past the data; the book fills in mirror images, and
    not the same way at both ends: before the first point the values after it, reflected
    (``x[k], ..., x[1]``: the first point is not repeated), after the last point the values
    before it including the last (``x[-1], x[-2], ...``). Needs at least ``taps`` values
    (the book's mirror then fits); returns as many values as it gets, as float64."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size < taps:
        raise ValueError(f"smooth_curve needs a 1-D sequence of at least {taps} values, got "
                         f"shape {x.shape}")
    half = taps // 2
    padded = np.pad(np.pad(x, (half, 0), mode="reflect"), (0, half), mode="symmetric")
    window = np.kaiser(taps, beta)
    return np.convolve(padded, window / window.sum(), mode="valid")


# ---------------------------------------------------------------------------------------
# training


def batch_indices(n, batch_size, seed):
    """Endless mini-batch indices drawn with replacement (``epoch_batches(...,
    replacement=True)`` epoch after epoch, from ``numpy.random.default_rng(seed)``)."""
    from ..train import epoch_batches

    rng = np.random.default_rng(seed)
    while True:
        yield from epoch_batches(n, batch_size, rng, replacement=True)


def build(plan, book):
    """A fresh network (the same initial weights for every optimizer) and its optimizer."""
    from .. import nn, optim

    model = nn.MLP(training.network(plan.data, HIDDEN), activation="relu", init=INIT,
                   seed=plan.seed, dtype=plan.data.dtype.name, target=plan.target)
    return model, getattr(optim, book.cls)(model.params, **book.kwargs)


def warm_up(plan):
    """Compile (or load from Numba's cache) each optimizer's training step and the
    evaluation on throwaway networks, so the clock times training only; returns seconds."""
    t0 = time.perf_counter()
    X, y = plan.data.X_train[:BATCH_SIZE], plan.data.y_train[:BATCH_SIZE]
    for book in OPTIMIZERS:
        model, opt = build(plan, book)
        float(model.train_step(X, y, opt))
        model.evaluate(X, y)
    return time.perf_counter() - t0


def train(plan, progress="off"):
    """The book's loop: each iteration draws one mini-batch, and every optimizer takes one
    ``train_step`` on it in turn; returns one Curve per optimizer, in the book's order.

    Only the ``train_step`` call is timed (``float`` of its loss waits for a GPU); the
    batch gather and the book's loss after the update (``evaluate`` on the same batch)
    are not. ``progress``: a ``runs.Progress`` mode."""
    nets = [build(plan, book) for book in OPTIMIZERS]
    loss = np.zeros((len(nets), plan.iterations))
    seconds = np.zeros((len(nets), plan.iterations))
    X_all, y_all = plan.data.X_train, plan.data.y_train
    clock = time.perf_counter
    bar = runs.Progress(total=plan.iterations, desc="textbook", unit="iterations",
                        mode=progress)
    try:
        for i, idx in zip(range(plan.iterations), batch_indices(len(y_all), BATCH_SIZE,
                                                                 plan.seed)):
            X, y = X_all[idx], y_all[idx]
            for k, (model, opt) in enumerate(nets):
                t0 = clock()
                float(model.train_step(X, y, opt))
                seconds[k, i] = clock() - t0
                loss[k, i] = model.evaluate(X, y)[0]
            bar.update(1)
    finally:
        bar.close()
    return [Curve(book, loss[k], smooth_curve(loss[k]), np.cumsum(seconds[k]))
            for k, book in enumerate(OPTIMIZERS)]


# ---------------------------------------------------------------------------------------
# results: CSV, table, figure


def csv_rows(curves):
    """textbook.csv's rows (dicts with CSV_COLUMNS), optimizer by optimizer."""
    return [dict(iteration=i + 1, optimizer=c.optimizer.label, loss=float(c.loss[i]),
                 smoothed_loss=float(c.smoothed[i]), train_seconds=float(c.seconds[i]))
            for c in curves for i in range(len(c.loss))]


def final_table(curves):
    """The plain-text table printed at the end: final smoothed loss and time per optimizer."""
    rows = [dict(optimizer=c.optimizer.label, lr=f"{c.optimizer.kwargs['lr']:g}",
                 smoothed=f"{c.smoothed[-1]:.4f}", loss=f"{c.loss[-1]:.4f}",
                 seconds=f"{c.seconds[-1]:.2f}",
                 per_step=f"{1e3 * c.seconds[-1] / len(c.loss):.3f}") for c in curves]
    return training.format_table(
        rows, ["optimizer", "lr", "smoothed", "loss", "seconds", "per_step"],
        ["optimizer", "lr", "final smoothed loss", "final loss", "training s",
         "ms/iteration"])


def slowest_line(curves):
    """``highest final smoothed loss: SGD 0.3291 (next: AdaGrad 0.0921)``."""
    ranked = sorted(curves, key=lambda c: c.smoothed[-1], reverse=True)
    text = (f"highest final smoothed loss: {ranked[0].optimizer.label} "
            f"{ranked[0].smoothed[-1]:.4f}")
    if len(ranked) > 1:
        text += f" (next: {ranked[1].optimizer.label} {ranked[1].smoothed[-1]:.4f})"
    return text


def plot_textbook(plan, curves):
    """Smoothed loss vs iterations (the book's figure: markers every 100 iterations, y
    from 0 to 1 once every curve gets below 1) and vs training seconds; a Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 5.2), layout="constrained")
    by_iteration, by_time = fig.subplots(1, 2)
    every = max(1, plan.iterations // 20)
    iterations = np.arange(1, plan.iterations + 1)
    for i, c in enumerate(curves):
        style = plots.line_style(i, 1.8, 0.0, marker=c.optimizer.marker, markevery=every,
                                 ms=5, label=c.optimizer.label)
        by_iteration.plot(iterations, c.smoothed, **style)
        by_time.plot(c.seconds, c.smoothed, **style)
    top = 1.0 if max(float(c.smoothed[-1]) for c in curves) < 1.0 else None
    for ax, xlabel in ((by_iteration, "iterations"),
                       (by_time, "training seconds (train_step only)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training loss (mini-batch, smoothed)")
        ax.set_xlim(left=0)
        ax.set_ylim(0, top)
        ax.grid(True, alpha=0.3)
        ax.legend()
    by_iteration.set_title("smoothed loss vs iterations (the book's figure)")
    by_time.set_title("smoothed loss vs training seconds")
    fig.suptitle(f"The textbook's optimizer comparison (Saito, ch. 6): ReLU MLP "
                 f"{training.network_text(plan.data, HIDDEN)}, He init, on {plan.data.name}\n"
                 f"batch {BATCH_SIZE} drawn with replacement, {plan.iterations} iterations, "
                 f"seed {plan.seed}")
    return fig


# ---------------------------------------------------------------------------------------
# the command


def run(args):
    """``fastopt compare --textbook`` (``args`` from compare's parser); returns the Curves."""
    plan = check_args(args)
    with runs.command_frame(args, "compare", prefix="compare-textbook",
                            resolved=_resolved(plan)) as frame:
        return _run(args, plan, frame.out)


def _resolved(plan):
    """The settings.json record of what the arguments resolved to."""
    return {
        "textbook": True, "network": training.network(plan.data, HIDDEN),
        "activation": "relu", "init": INIT, "batch_size": BATCH_SIZE,
        "sampling": "with replacement", "iterations": plan.iterations,
        "optimizers": {b.label: {"class": b.cls, **b.kwargs} for b in OPTIMIZERS},
        "smoothing": {"window": "kaiser", "taps": SMOOTH_TAPS, "beta": SMOOTH_BETA},
        "data": {"name": plan.data.name, "train": plan.data.n_train},
    }


def _run(args, plan, out):
    print(f"compare --textbook: {', '.join(b.label for b in OPTIMIZERS)} on "
          f"{plan.data.name}, {plan.iterations} iterations of batch {BATCH_SIZE}", flush=True)
    compile_s = warm_up(plan)
    print(f"kernels ready after {compile_s:.1f} s (compilation or Numba's cache)", flush=True)
    curves = train(plan, runs.progress_mode(args.no_progress))
    path = training.write_rows(csv_rows(curves), CSV_COLUMNS, out / "textbook.csv")
    runs.wrote(path, "per-iteration loss, smoothed loss and training seconds per optimizer")
    runs.use_agg()
    for path in runs.save_figure(plot_textbook(plan, curves), out, "textbook", svg=args.svg):
        runs.wrote(path, "smoothed training loss vs iterations and vs training seconds")
    print()
    print(final_table(curves))
    print(slowest_line(curves))
    return curves
