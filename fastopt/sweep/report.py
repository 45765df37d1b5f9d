"""What ``fastopt sweep`` draws from a finished sweep: the table of the best trials, the
rows of best.csv, and the figures sweep_lr.png and best_curves.png.

Plain functions of a ``SweepResult``, usable from Python too; matplotlib loads on the first
figure (``matplotlib.figure.Figure``, no pyplot state).
"""

import math

import numpy as np

from ..experiments import training


def best_rows(result, k):
    """The best k trials, best first, as the rows of best.csv (rank, then TRIAL_COLUMNS)."""
    return [dict(rank=i + 1, **row) for i, row in enumerate(result.best(k))]


def _short(value, spec=".3g"):
    if value is None:
        return "-"
    if isinstance(value, float):
        return training.fmt(value, spec)
    return str(value)


def best_table(result, space, k):
    """The plain-text table of the best k trials (columns that vary in the space only)."""
    names = ["optimizer", "lr"] + [n for n in ("weight_decay", "momentum", "batch_size",
                                                "schedule", "seed") if space.varies(n)]
    heads = {"weight_decay": "wd", "batch_size": "batch"}
    rows = []
    for row in best_rows(result, k):
        cells = dict(rank=str(row["rank"]), trial=row["trial_id"],
                     acc=training.fmt(100 * row["val_accuracy"], ".2f"),
                     loss=training.fmt(row["val_loss"], ".4f"),
                     best=training.fmt(100 * row["best_val_accuracy"], ".2f"),
                     steps=str(row["steps"]), seconds=training.fmt(row["trial_seconds"], ".2f"),
                     note=row["status"] if row["status"] != "ok" else "")
        cells.update({n: _short(row[n]) for n in names})
        rows.append(cells)
    columns = ["rank", "trial", *names, "acc", "loss", "best", "steps", "seconds", "note"]
    headers = ["rank", "trial", *(heads.get(n, n) for n in names), "val acc %", "val loss",
               "best val acc %", "steps", "trial s", ""]
    return training.format_table(rows, columns, headers)


def _colours(result):
    """One colour per optimizer, in the order they first appear in the sweep."""
    labels = list(dict.fromkeys(t.settings["optimizer"] for t in result.planned))
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def plot_scatter(result, space, k, title=None):
    """Final validation accuracy versus lr (and weight decay, batch size where they vary),
    one colour per optimizer; the best k circled, diverged trials as crosses."""
    from matplotlib.figure import Figure

    panels = [("lr", "learning rate (log scale)", True)]
    if space.varies("weight_decay"):
        panels.append(("weight_decay", "weight decay (log scale)", True))
    if space.varies("batch_size"):
        panels.append(("batch_size", "batch size (log scale)", True))
    if space.varies("momentum"):
        panels.append(("momentum", "momentum", False))
    fig = Figure(figsize=(5.2 * len(panels) + 0.6, 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    colours = _colours(result)
    best_ids = {r["trial_id"] for r in result.best(k)}
    for ax, (name, label, log) in zip(axes, panels):
        for opt, colour in colours.items():
            rows = [r for r in result.trials if r["optimizer"] == opt and r[name] is not None]
            for kind, marker in (("ok", "o"), ("diverged", "x")):
                pick = [r for r in rows if (r["status"] == "ok") == (kind == "ok")]
                if not pick:
                    continue
                x = np.array([r[name] for r in pick], dtype=float)
                y = 100 * np.array([r["val_accuracy"] for r in pick], dtype=float)
                y = np.where(np.isfinite(y), y, 0.0)
                ax.scatter(x, y, s=26, marker=marker, color=colour, alpha=0.85,
                           label=opt if kind == "ok" or not any(
                               r["status"] == "ok" for r in rows) else "_" + opt)
            top = [r for r in rows if r["trial_id"] in best_ids]
            if top:
                ax.scatter([r[name] for r in top], [100 * r["val_accuracy"] for r in top],
                           s=90, facecolors="none", edgecolors="black", linewidths=1.1,
                           label="_best")
        if log:
            values = [r[name] for r in result.trials if r[name] is not None and r[name] > 0]
            if values:
                ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("validation accuracy after the last step (%)")
    axes[0].set_ylim(-2, 102)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(axes[0].scatter([], [], s=90, facecolors="none", edgecolors="black"))
    labels.append(f"best {k}")
    if any(r["status"] != "ok" for r in result.trials):
        handles.append(axes[0].scatter([], [], marker="x", color="0.3"))
        labels.append("diverged")
    fig.legend(handles, labels, loc="outside right upper", title="optimizer",
               fontsize="small")
    fig.suptitle(title or f"{len(result.trials)} trials")
    return fig


def plot_best_curves(result, k, x_column="epoch", title=None):
    """Validation accuracy against ``x_column`` (epoch or step) of the best k trials, one
    small panel each, best first (the textbook's figure, validation only)."""
    from matplotlib.figure import Figure

    best = result.best(k)
    cols = min(5, max(1, len(best)))
    rows = max(1, math.ceil(len(best) / cols))
    fig = Figure(figsize=(2.7 * cols, 2.3 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False))
    colours = _colours(result)
    for i, ax in enumerate(axes.flat):
        if i >= len(best):
            ax.set_visible(False)
            continue
        row = best[i]
        history = result.history(row["trial_id"])
        ax.plot(history[x_column], 100 * history["test_accuracy"],
                color=colours.get(row["optimizer"], "C0"), lw=1.6)
        wd = "" if row["weight_decay"] is None else f" wd {row['weight_decay']:.2g}"
        ax.set_title(f"#{i + 1} {row['optimizer']} val {100 * row['val_accuracy']:.1f}%\n"
                     f"lr {row['lr']:.2g}{wd}", fontsize="small")
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("val acc (%)")
        if i >= len(best) - cols:
            ax.set_xlabel(x_column)
    fig.suptitle(title or f"best {len(best)} of {len(result.trials)} trials: validation "
                          "accuracy during training")
    return fig
