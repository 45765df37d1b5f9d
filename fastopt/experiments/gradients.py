"""``fastopt gradients``: gradient flow in a deep network - vanishing and exploding
gradients, and what rescues them (initialisation, batch norm, skip connections).

For every configuration of the grid ``--activations`` (sigmoid, tanh, relu) x ``--inits``
(std0.01: N(0, 0.01^2); xavier: Glorot normal; he: He normal) x ``--batch-norm`` (off, on)
x ``--residual`` (off, on), a network ``[n_features, 100 x --depth, n_classes]`` (default
20 hidden layers of 100; ``residual``: ``nn.MLP(residual=True)``, an identity skip around
every 100 -> 100 hidden layer) is built from ``--seed`` and

1. the gradient of the loss on a fixed batch (the first ``--grad-batch`` training images)
   is taken (``model.loss_and_grad``) and the Frobenius norm of every layer's weight
   gradient ``||dL/dW_l||`` recorded (phase "init");
2. it is trained with SGD (``--lr``, batches of ``--batch-size`` drawn with replacement
   from the training set, the same batches for every configuration) for ``--steps``
   steps, recording the mini-batch loss of every step (the training curve);
3. the per-layer gradient norms are taken again on the same fixed batch (phase
   "trained"), and the test accuracy measured.

A run whose loss becomes NaN or inf stops there (noted "diverged at step k").

Results (in the run folder)
    gradients.csv          activation, init, batch_norm, residual, phase, layer (1 = the
                           first hidden layer, depth + 1 the output layer), grad_norm
    gradients_curves.csv   activation, init, batch_norm, residual, step, loss
    gradients_summary.csv  per configuration: the first/last layer gradient-norm ratio at
                           init, final loss, test accuracy, note
    gradients.png          gradient norm vs layer (log y), one panel per activation, top
                           row at initialisation, bottom after training
    gradients_curves.png   the training curves, one panel per activation
    settings.json          see ``fastopt.runs``
"""

import argparse
import math

import numpy as np

from .. import runs
from . import training

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = {"std0.01": "normal:std=0.01", "xavier": "glorot_normal", "he": "he_normal"}
SWITCH = {"off": False, "on": True}
DEFAULT_DEPTH = 20
WIDTH = 100
DEFAULT_STEPS = 100
DEFAULT_LR = 0.01
DEFAULT_BATCH = 64
DEFAULT_GRAD_BATCH = 256
PHASES = ("init", "trained")
CSV_COLUMNS = ["activation", "init", "batch_norm", "residual", "phase", "layer",
               "grad_norm"]
CURVE_COLUMNS = ["activation", "init", "batch_norm", "residual", "step", "loss"]
SUMMARY_COLUMNS = ["activation", "init", "batch_norm", "residual", "ratio_first_last_init",
                   "final_loss", "test_accuracy", "note"]


def add_parser(sub):
    p = sub.add_parser(
        "gradients", help="gradient norm of every layer of a deep MLP at initialisation "
                          "and after training: sigmoid/tanh/relu x std 0.01/Xavier/He x "
                          "batch norm x skip connections",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Vanishing and exploding gradients: the norm of every layer's weight "
                    "gradient in a deep network (default 20 hidden layers of 100) at "
                    "initialisation and after --steps SGD steps, and the training curves, "
                    "for every combination of activation, initialisation, batch norm and "
                    "skip connections (nn.MLP(residual=True)).",
        epilog="""\
lists: --activations sigmoid,tanh,relu  --inits std0.01,xavier,he
       --batch-norm off,on  --residual off,on  (each a comma-separated subset)

time: about 4.5 min on MNIST with the defaults (36 networks of 20 x 100, 100 steps
  each; measured at load average ~5 on 2 shared cores, including the first compile of
  the kernel variants); --steps, --depth and the subsets scale it down.

outputs: gradients.csv, gradients_curves.csv, gradients_summary.csv, gradients.png,
  gradients_curves.png, settings.json""")
    p.add_argument("--dataset", default="mnist",
                   help="mnist (default; needs pip install \"fastopt[mnist]\") or digits "
                        "(8x8 images, scikit-learn)")
    p.add_argument("--depth", type=int, default=DEFAULT_DEPTH,
                   help=f"hidden layers of {WIDTH} (default {DEFAULT_DEPTH})")
    p.add_argument("--activations", default=",".join(ACTIVATIONS),
                   help=f"subset of {','.join(ACTIVATIONS)} (default all)")
    p.add_argument("--inits", default=",".join(INITS),
                   help=f"subset of {','.join(INITS)} (default all)")
    p.add_argument("--batch-norm", default="off,on", help="subset of off,on (default both)")
    p.add_argument("--residual", default="off,on", help="subset of off,on (default both)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"SGD steps of training (default {DEFAULT_STEPS}; 0: only the "
                        f"gradients at initialisation)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"SGD learning rate (default {DEFAULT_LR})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"training mini-batch (default {DEFAULT_BATCH})")
    p.add_argument("--grad-batch", type=int, default=DEFAULT_GRAD_BATCH,
                   help=f"rows of the fixed batch the gradient norms are taken on (the "
                        f"first this many training images; default {DEFAULT_GRAD_BATCH})")
    runs.add_common_arguments(p, "gradients", seed_help="seed of the weights and of the "
                                                        "mini-batches (default 0)")
    p.set_defaults(func=run)
    return p


def check_args(args):
    """Every argument checked before any work; returns (data, grid)."""
    runs.check_common_arguments(args)
    runs.check_count("--depth", args.depth)
    runs.check_count("--steps", args.steps, low=0)
    runs.check_positive("--lr", args.lr)
    runs.check_count("--batch-size", args.batch_size, low=2)  # batch norm needs 2 rows
    runs.check_count("--grad-batch", args.grad_batch, low=2)
    acts = runs.split_list("--activations", args.activations, ACTIVATIONS)
    inits = runs.split_list("--inits", args.inits, tuple(INITS))
    bns = [SWITCH[x] for x in runs.split_list("--batch-norm", args.batch_norm, tuple(SWITCH))]
    res = [SWITCH[x] for x in runs.split_list("--residual", args.residual, tuple(SWITCH))]
    data = training.load_data(args.dataset)
    for option, value in (("--grad-batch", args.grad_batch),
                          ("--batch-size", args.batch_size)):
        if value > data.n_train:
            raise ValueError(f"{option}: at most the {data.n_train} training images of "
                             f"{args.dataset}, got {value}")
    grid = [(a, i, b, r) for a in acts for i in inits for b in bns for r in res]
    return data, grid


def layer_norms(model, X, y):
    """||dL/dW_l|| (Frobenius, float64) of every layer on the batch X, y."""
    model.loss_and_grad(X, y)
    return [float(np.linalg.norm(g.astype(np.float64))) for g in model.weight_grads]


def run_config(data, config, args, batches):
    """One configuration: (norms by phase, curve losses, test accuracy, note)."""
    from .. import nn, optim

    activation, init, bn, residual = config
    model = nn.MLP([data.n_features, *[WIDTH] * args.depth, data.n_classes],
                   activation=activation, init=INITS[init], batch_norm=bn,
                   residual=residual, seed=args.seed, dtype=data.dtype.name)
    Xg, yg = data.X_train[:args.grad_batch], data.y_train[:args.grad_batch]
    norms = {"init": layer_norms(model, Xg, yg)}
    opt = optim.SGD(model.params, lr=args.lr)
    losses, note = [], ""
    with np.errstate(all="ignore"):
        for step, idx in enumerate(batches, 1):
            loss = float(model.train_step(data.X_train[idx], data.y_train[idx], opt))
            losses.append(loss)
            if not math.isfinite(loss):
                note = f"diverged at step {step}"
                break
        norms["trained"] = layer_norms(model, Xg, yg)
        accuracy = float(model.evaluate(data.X_test, data.y_test)[1]) if not note else \
            math.nan
    return norms, losses, accuracy, note


def flags(config):
    a, i, b, r = config
    return dict(activation=a, init=i, batch_norm="on" if b else "off",
                residual="on" if r else "off")


def run(args):
    data, grid = check_args(args)
    resolved = dict(network=[data.n_features, *[WIDTH] * args.depth, data.n_classes],
                    inits=dict(INITS), configurations=len(grid),
                    optimizer=dict(cls="SGD", lr=args.lr), batch_size=args.batch_size,
                    batches="drawn with replacement, the same for every configuration",
                    grad_batch=f"the first {args.grad_batch} training images",
                    residual="identity skip after the activation around every "
                             f"{WIDTH} -> {WIDTH} hidden layer",
                    data=dict(name=data.name, train=data.n_train))
    with runs.command_frame(args, "gradients", resolved=resolved) as frame:
        return _run(args, data, grid, frame.out)


def _run(args, data, grid, out):
    rng = np.random.default_rng(args.seed)
    batches = [rng.integers(0, data.n_train, args.batch_size) for _ in range(args.steps)]
    net = training.network_text(data, [WIDTH] * args.depth)
    print(f"gradients: {len(grid)} configuration(s) of {net} on {data.name}: gradient "
          f"norms at init and after {args.steps} SGD step(s)", flush=True)
    bar = runs.Progress(total=len(grid), desc="gradients", unit="networks",
                        mode=runs.progress_mode(args.no_progress))
    rows, curves, summary, results = [], [], [], []
    try:
        for config in grid:
            f = flags(config)
            bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in f.items()))
            norms, losses, accuracy, note = run_config(data, config, args, batches)
            results.append((config, norms, losses, note))
            for phase in PHASES:
                rows += [dict(f, phase=phase, layer=l + 1, grad_norm=v)
                         for l, v in enumerate(norms[phase])]
            curves += [dict(f, step=s, loss=v) for s, v in enumerate(losses, 1)]
            first, last = norms["init"][0], norms["init"][-2 if args.depth else -1]
            summary.append(dict(f, ratio_first_last_init=first / last if last else math.inf,
                                final_loss=losses[-1] if losses else math.nan,
                                test_accuracy=accuracy, note=note))
            bar.update(1)
    except KeyboardInterrupt:
        _write_tables(rows, curves, summary, out)
        raise
    finally:
        bar.close()
    _write_tables(rows, curves, summary, out)
    runs.use_agg()
    for name, fig, what in (("gradients", plot_norms(results, data, args),
                             "gradient norm per layer, at init and after training"),
                            ("gradients_curves", plot_curves(results, data, args),
                             "training curves")):
        for path in runs.save_figure(fig, out, name, svg=args.svg):
            runs.wrote(path, what)
    print()
    print(summary_table(summary))
    return summary


def _write_tables(rows, curves, summary, out):
    for name, table, columns, what in (
            ("gradients.csv", rows, CSV_COLUMNS, "gradient norm of every layer"),
            ("gradients_curves.csv", curves, CURVE_COLUMNS, "mini-batch loss per step"),
            ("gradients_summary.csv", summary, SUMMARY_COLUMNS, "one row per network")):
        training.write_rows(table, columns, out / name)
        runs.wrote(out / name, what)


def summary_table(summary):
    table = [dict(act=r["activation"], init=r["init"], bn=r["batch_norm"],
                  res=r["residual"], ratio=training.fmt(r["ratio_first_last_init"]),
                  loss=training.fmt(r["final_loss"]),
                  acc=training.fmt(100 * r["test_accuracy"], ".1f"), note=r["note"])
             for r in summary]
    return training.format_table(
        table, ["act", "init", "bn", "res", "ratio", "loss", "acc", "note"],
        ["activation", "init", "batch norm", "skip", "|g1|/|gL| at init", "final loss",
         "test acc %", ""])


# ---------------------------------------------------------------------------------------
# figures

STYLES = {(False, False): "-", (True, False): "--", (False, True): ":", (True, True): "-."}


def _label(config):
    _, init, bn, res = config
    return (init + (" +BN" if bn else "") + (" +skip" if res else ""))


def _panels(fig, rows, acts):
    axes = np.array(fig.subplots(rows, len(acts), squeeze=False, sharex=True))
    return axes


def plot_norms(results, data, args):
    """Gradient norm vs layer (log y): one column per activation, rows init / trained."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    acts = list(dict.fromkeys(c[0] for c, *_ in results))
    inits = list(INITS)
    fig = Figure(figsize=(5 * len(acts), 8), layout="constrained")
    axes = _panels(fig, 2, acts)
    for config, norms, _, note in results:
        col = acts.index(config[0])
        for row, phase in enumerate(PHASES):
            v = np.array(norms[phase])
            ok = np.isfinite(v) & (v > 0)
            layers = np.arange(1, v.size + 1)
            axes[row, col].plot(layers[ok], v[ok], STYLES[config[2:]], marker=".",
                                color=f"C{inits.index(config[1])}", label=_label(config))
    for col, act in enumerate(acts):
        for row, phase in enumerate(PHASES):
            ax = axes[row, col]
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            when = "at initialisation" if phase == "init" else f"after {args.steps} steps"
            ax.set_title(f"{act}, {when}")
            ax.set_xlabel("layer (1 = first hidden, last = output)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, col].set_ylabel("||dL/dW||")
        axes[1, col].set_ylabel("||dL/dW||")
    axes[0, 0].legend(fontsize="x-small", ncol=2)
    fig.suptitle(f"Gradient norm per layer: MLP "
                 f"{training.network_text(data, [WIDTH] * args.depth)} on {data.name}, "
                 f"fixed batch of {args.grad_batch}; colour: init, line: batch norm / skip")
    return fig


def plot_curves(results, data, args):
    """Mini-batch loss per step, one panel per activation."""
    from matplotlib.figure import Figure

    acts = list(dict.fromkeys(c[0] for c, *_ in results))
    inits = list(INITS)
    fig = Figure(figsize=(5 * len(acts), 4.2), layout="constrained")
    axes = _panels(fig, 1, acts)[0]
    for config, _, losses, note in results:
        ax = axes[acts.index(config[0])]
        v = np.array(losses, dtype=float)
        ok = np.isfinite(v)
        steps = np.arange(1, v.size + 1)
        ax.plot(steps[ok], v[ok], STYLES[config[2:]], color=f"C{inits.index(config[1])}",
                label=_label(config) + (f" ({note})" if note else ""))
    for ax, act in zip(axes, acts):
        ax.set_title(act)
        ax.set_xlabel("SGD step")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("mini-batch loss")
    axes[0].legend(fontsize="x-small", ncol=2)
    fig.suptitle(f"Training curves: SGD lr {args.lr:g}, batch {args.batch_size}, "
                 f"{training.network_text(data, [WIDTH] * args.depth)} on {data.name}")
    return fig
