"""``fastopt init``: the textbook's weight-initialisation experiments.

1. Activation histograms. Inputs N(0, 1) of shape (samples, units) go through ``layers``
   fully connected layers of ``units`` units without biases, ``z = act(z @ W)``, with W drawn
   by each weight initialiser; one figure per activation (rows: initialiser, columns:
   layers) and a CSV of per-layer statistics. Every (activation, initialiser) pair uses the
   same input and the same standard-normal draws for W, so rows differ only by the scale.
2. Training curves. ``fastopt.nn.MLP([n_features, 100, 100, 100, 100, 10],
   activation="relu")`` trained with plain SGD on a data set for each initialiser (the
   textbook: std 0.01 vs Xavier vs He, lr 0.01, batch 128 drawn with replacement);
   ``fastopt.train.fit`` histories as CSV and the training loss per step (log scale).

Initialiser names (``--inits``, ``--train-inits``)
    std=S     N(0, S^2)                      fastopt.init "normal:std=S"
    xavier    N(0, 1/n_in), the textbook's   fastopt.init "lecun_normal:truncated=false"
              "Xavier" (Glorot's fan average is not used)
    he        N(0, 2/n_in)                   fastopt.init "he_normal:truncated=false"
    any other fastopt.init name (glorot_uniform, he_normal (truncated), ...)

Statistics (``activation_stats.csv``): mean, std, min, max of the layer's outputs,
``fraction_zero`` (exactly 0: dead ReLU units) and ``fraction_saturated`` (the activation's
derivative is below 1% of its maximum: sigmoid z < ~0.0025 or > ~0.9975, |tanh| > ~0.995,
ReLU z = 0), where gradients stop flowing.
"""

import argparse

import numpy as np

from .. import runs, tables

#: name -> (function, derivative from the output divided by its maximum, histogram range)
ACTIVATIONS = {
    "sigmoid": (lambda a: 1.0 / (1.0 + np.exp(-a)), lambda z: 4.0 * z * (1.0 - z), (0.0, 1.0)),
    "tanh": (np.tanh, lambda z: 1.0 - z * z, (-1.0, 1.0)),
    "relu": (lambda a: np.maximum(a, 0.0), lambda z: (z > 0).astype(float), (0.0, 2.0)),
}
SATURATED = 0.01  # derivative below this fraction of its maximum

DEFAULT_INITS = "std=1,std=0.01,xavier,he"
DEFAULT_TRAIN_INITS = "std=0.01,xavier,he"
TITLES = {"xavier": "Xavier (std 1/sqrt(n))", "he": "He (std sqrt(2/n))"}
HIDDEN = (100, 100, 100, 100)  # the textbook's network


# ---------------------------------------------------------------------------------------
# initialiser names


def parse_inits(option, text):
    """``"std=1,xavier,he"`` -> [(label, fastopt.init spec), ...]; ValueError lists choices."""
    from .. import init

    items = []
    for label in runs.split_list(option, text):
        low = label.lower()
        if low.startswith("std="):
            try:
                std = float(low[4:])
            except ValueError:
                std = float("nan")
            if not 0 < std < float("inf"):
                raise ValueError(f"{option}: {label!r} needs a positive number after std=, "
                                 "e.g. std=0.01")
            spec = f"normal:std={std!r}"
        elif low == "xavier":
            spec = "lecun_normal:truncated=false"
        elif low == "he":
            spec = "he_normal:truncated=false"
        elif low in init.INITIALIZERS and low != "normal":
            spec = low
        else:
            raise ValueError(f"{option}: unknown initialiser {label!r}; valid: std=<number>, "
                             "xavier, he, or a fastopt.init name ("
                             + ", ".join(n for n in init.INITIALIZERS if n != "normal") + ")")
        items.append((low, spec))
    return items


def _title(label):
    return TITLES.get(label, label)


def _slug(label):
    return label.replace("=", "").replace(":", "_").replace(",", "_")


# ---------------------------------------------------------------------------------------
# 1. activation histograms


def layer_activations(activation, init_spec, x, layers, seed):
    """Outputs of each of ``layers`` bias-free layers ``z = act(z @ W)``; a list of arrays."""
    from .. import init

    act = ACTIVATIONS[activation][0]
    fill = init.get(init_spec)
    rng = np.random.default_rng([seed, 1])  # the same draws for every initialiser
    units = x.shape[1]
    z = x
    outputs = []
    with np.errstate(over="ignore"):  # sigmoid of a very negative input is 0, fine
        for _ in range(layers):
            W = fill(np.empty((units, units)), rng)
            z = act(z @ W)
            outputs.append(z)
    return outputs


def activation_stats(activation, label, outputs):
    """Per-layer statistics rows (dicts) of ``layer_activations``' outputs."""
    derivative = ACTIVATIONS[activation][1]
    rows = []
    for layer, z in enumerate(outputs, 1):
        rows.append(dict(activation=activation, weight_init=label, layer=layer,
                         mean=float(z.mean()), std=float(z.std()), min=float(z.min()),
                         max=float(z.max()), fraction_zero=float(np.mean(z == 0)),
                         fraction_saturated=float(np.mean(derivative(z) < SATURATED))))
    return rows


def run_histograms(activations, inits, samples, units, layers, seed):
    """{activation: [(init label, [layer outputs])]} and the statistics rows."""
    x = np.random.default_rng([seed, 0]).standard_normal((samples, units))
    results, rows = {}, []
    for activation in activations:
        results[activation] = []
        for label, spec in inits:
            outputs = layer_activations(activation, spec, x, layers, seed)
            results[activation].append((label, outputs))
            rows += activation_stats(activation, label, outputs)
    return results, rows


def plot_activation_histograms(activation, per_init, bins=30):
    """Rows: initialisers, columns: layers; histograms of the layer outputs; a Figure.

    ReLU panels leave out the exact zeros (half the values or more) so the shape of the
    positive part stays visible; each panel prints its std and zero/saturated shares.
    """
    from matplotlib.figure import Figure

    low, high = ACTIVATIONS[activation][2]
    derivative = ACTIVATIONS[activation][1]
    nrows, ncols = len(per_init), len(per_init[0][1])
    fig = Figure(figsize=(2.5 * ncols + 1.2, 1.9 * nrows + 1.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey="row", squeeze=False)
    for r, (label, outputs) in enumerate(per_init):
        for c, z in enumerate(outputs):
            ax = axes[r, c]
            values = z.ravel()
            shown = values[values != 0] if activation == "relu" else values
            ax.hist(shown, bins=bins, range=(low, high), color=f"C{r}")
            outside = np.mean((values < low) | (values > high))
            lines = [f"std {values.std():.2g}"]
            if activation == "relu":
                lines.append(f"zero {np.mean(values == 0):.0%}")
            else:
                lines.append(f"saturated {np.mean(derivative(values) < SATURATED):.0%}")
            if outside > 0.005:
                lines.append(f"outside range {outside:.0%}")
            ax.text(0.97, 0.95, "\n".join(lines), transform=ax.transAxes, ha="right",
                    va="top", fontsize="x-small",
                    bbox=dict(boxstyle="round", facecolor="white", alpha=0.8, lw=0))
            ax.set_xlim(low, high)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            if r == 0:
                ax.set_title(f"layer {c + 1}")
            if c == 0:
                ax.set_ylabel(f"{_title(label)}\ncount")
            if r == nrows - 1:
                ax.set_xlabel(f"{activation} output")
    n = per_init[0][1][0].size
    zeros = " (exact zeros not drawn)" if activation == "relu" else ""
    fig.suptitle(f"{activation} activations per layer: {ncols} layers, input N(0,1), "
                 f"{n:,} values per panel{zeros}; rows: weight initialisation")
    return fig


# ---------------------------------------------------------------------------------------
# 2. training curves


def load_data(name, dtype="float32"):
    """``fastopt.datasets.load`` with a missing optional package reported as ValueError."""
    from .. import datasets

    if name not in datasets.DATASETS:
        raise ValueError(f"--dataset: unknown data set {name!r}; valid: "
                         + ", ".join(datasets.DATASETS))
    try:
        return datasets.load(name, dtype=dtype)
    except datasets.MissingExtraError as exc:
        raise ValueError(f"--dataset {name}: {exc}") from None


def train_one(data, spec, steps, lr, batch_size, seed, progress, label=""):
    """SGD training of the textbook's ReLU network with initialiser ``spec``; ``progress``
    a ``runs.progress_mode`` ("bar", "lines": a line every ~10 s, "off").

    Returns (History, note); note is "" or why training stopped early (divergence).
    """
    from .. import nn, optim, train

    model = nn.MLP([data.n_features, *HIDDEN, data.n_classes], activation="relu", init=spec,
                   seed=seed, dtype=data.dtype.name)
    opt = optim.SGD(model.params, lr=lr)
    every = max(1, steps // 100)
    run = train.Training(model, opt, data, batch_size=batch_size, max_steps=steps,
                         eval_every=every, seed=seed, progress=False, replacement=True,
                         train_eval_size=0)
    bar = runs.Progress(total=steps, desc=f"init: {label}" if label else "init", unit="steps",
                        mode=progress)
    try:
        while not run.advance(steps=every):
            bar.update(run.steps - bar.n)
        bar.update(run.steps - bar.n)
    except train.TrainingDiverged as exc:
        return exc.history, f"diverged at step {exc.step}"
    finally:
        bar.close()
    return run.history, ""


def plot_training(curves, title):
    """Training loss (log scale) and test accuracy per step, one line per initialiser."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, (label, history, note) in enumerate(curves):
        step, loss = history["step"], history["train_loss"]
        ok = np.isfinite(loss)  # the record before the first step has no training loss
        name = _title(label) + (f" ({note})" if note else "")
        ax_loss.plot(step[ok], loss[ok], color=f"C{i}", lw=1.6, label=name)
        ax_acc.plot(step, 100 * history["test_accuracy"], color=f"C{i}", lw=1.6, label=name)
    ax_loss.set_yscale("log")
    ax_loss.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_loss.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_loss.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax_loss.set_xlabel("step (mini-batch updates)")
    ax_loss.set_ylabel("training loss (cross-entropy, mean since last point)")
    ax_loss.set_title("training loss")
    ax_acc.set_xlabel("step (mini-batch updates)")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_ylim(0, 100)
    ax_acc.set_title("test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="weight initialisation")
    fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------------------
# the command


def add_parser(sub):
    p = sub.add_parser(
        "init", help="weight initialisation: activation histograms and training curves",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The textbook's weight-initialisation experiments: histograms of the "
                    "activations of a deep network for several weight scales, and training "
                    "curves of a ReLU MLP per initialisation.",
        epilog="""\
initialisers (--inits, --train-inits):
  std=S    N(0, S^2)
  xavier   N(0, 1/n_in)   (the textbook's "Xavier"; fastopt.init lecun_normal:truncated=false)
  he       N(0, 2/n_in)   (fastopt.init he_normal:truncated=false)
  or any fastopt.init name, e.g. glorot_uniform, he_normal (truncated at 2 std)

outputs: activations_<activation>.png, activation_stats.csv, train_<init>.csv,
training.png, settings.json""")
    h = p.add_argument_group("activation histograms")
    h.add_argument("--activations", default="sigmoid,tanh,relu",
                   help=f"comma-separated (default all: {', '.join(ACTIVATIONS)})")
    h.add_argument("--inits", default=DEFAULT_INITS,
                   help=f"weight initialisers, one row each (default {DEFAULT_INITS})")
    h.add_argument("--samples", type=int, default=1000, help="input rows (default 1000)")
    h.add_argument("--units", type=int, default=100,
                   help="input features and units per layer (default 100)")
    h.add_argument("--layers", type=int, default=5, help="layers (default 5)")
    h.add_argument("--bins", type=int, default=30, help="histogram bins (default 30)")
    t = p.add_argument_group("training curves (ReLU MLP n-100-100-100-100-10, SGD)")
    t.add_argument("--dataset", default="digits",
                   help="digits (default, 8x8 images) or mnist (needs fastopt[mnist])")
    t.add_argument("--train-inits", default=DEFAULT_TRAIN_INITS,
                   help=f"initialisers to train with (default {DEFAULT_TRAIN_INITS})")
    t.add_argument("--steps", type=int, default=2000, help="SGD updates (default 2000)")
    t.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    t.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default 128)")
    t.add_argument("--no-training", action="store_true", help="histograms only")
    runs.add_common_arguments(p, "init")
    p.set_defaults(func=run)
    return p


def check_args(args):
    """Check every argument before any work; returns (activations, inits, train_inits, data)."""
    runs.check_common_arguments(args)
    for option in ("samples", "units", "layers", "bins", "steps", "batch_size"):
        runs.check_count("--" + option.replace("_", "-"), getattr(args, option))
    runs.check_positive("--lr", args.lr)
    activations = runs.split_list("--activations", args.activations,
                                  choices=list(ACTIVATIONS))
    inits = parse_inits("--inits", args.inits)
    if args.no_training:
        return activations, inits, [], None
    train_inits = parse_inits("--train-inits", args.train_inits)
    data = load_data(args.dataset)
    if args.batch_size > data.n_train:
        raise ValueError(f"--batch-size must be at most the {data.n_train} training samples "
                         f"of {args.dataset}, got {args.batch_size}")
    return activations, inits, train_inits, data


def run(args):
    """The ``init`` command (``args`` from ``add_parser``'s parser)."""
    activations, inits, train_inits, data = check_args(args)
    resolved = {"inits": dict(inits), "train_inits": dict(train_inits),
                "network": ([data.n_features, *HIDDEN, data.n_classes] if data else None),
                "batches": "drawn with replacement (the textbook's np.random.choice)",
                "eval_every": max(1, args.steps // 100)}
    with runs.command_frame(args, "init", resolved=resolved) as frame:
        runs.use_agg()
        _histograms(args, activations, inits, frame.out)
        if train_inits:
            _training(args, train_inits, data, frame.out)
    return frame.out


def _histograms(args, activations, inits, out):
    """Activation histograms and statistics for every activation x initialisation."""
    results, rows = run_histograms(activations, inits, args.samples, args.units, args.layers,
                                   args.seed)
    path = out / "activation_stats.csv"
    _write_rows(rows, path)
    runs.wrote(path, "per-layer activation statistics (mean, std, fraction zero/saturated)")
    for activation in activations:
        fig = plot_activation_histograms(activation, results[activation], bins=args.bins)
        for p in runs.save_figure(fig, out, f"activations_{activation}", svg=args.svg):
            runs.wrote(p, f"{activation} histograms, rows = weight init, columns = layers")


def _training(args, train_inits, data, out):
    """The training curves of the textbook network for each initialisation."""
    progress = runs.progress_mode(args.no_progress)
    curves = []
    for i, (label, spec) in enumerate(train_inits, 1):
        print(f"training with {label} ({i}/{len(train_inits)}): {args.steps} SGD steps on "
              f"{args.dataset}", flush=True)
        history, note = train_one(data, spec, args.steps, args.lr, args.batch_size,
                                  args.seed, progress, label)
        if note:
            print(f"note: {label}: {note}; the curve stops there")
        path = history.to_csv(out / f"train_{_slug(label)}.csv")
        last = history.records[-1]
        runs.wrote(path, f"{label}: {len(history)} records, final test accuracy "
                         f"{last['test_accuracy']:.3f}")
        curves.append((label, history, note))
    sizes = "-".join(str(s) for s in (data.n_features, *HIDDEN, data.n_classes))
    fig = plot_training(curves, f"ReLU MLP {sizes} on {args.dataset}, SGD lr {args.lr:g}, "
                                f"batch {args.batch_size}")
    for p in runs.save_figure(fig, out, "training", svg=args.svg):
        runs.wrote(p, "training loss (log scale) and test accuracy per initialisation")


def _write_rows(rows, path):
    return tables.write_csv(rows, path, cell=lambda v: repr(v) if isinstance(v, float) else v)
