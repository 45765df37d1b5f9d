"""``fastopt landscape``: full-batch gradient descent versus mini-batch SGD on a loss with
local minima and saddles (the lecture notes' Gabor figure).

The model has two parameters, a and b (a Gabor-like wave packet with a fixed width c)::

    u = a + b x,   f(x; a, b) = sin(u) exp(-u^2 / c),   c = 32
    L(a, b) = mean_i (f(x_i; a, b) - y_i)^2                     (full-batch loss)
    dL/da = mean_i 2 r_i f'(u_i),  dL/db = mean_i 2 r_i f'(u_i) x_i,
    r_i = f(x_i) - y_i,  f'(u) = exp(-u^2 / c) (cos u - 2 u sin u / c)

The data: ``N_DATA`` points x uniform on [-1, 1], y = f(x; TRUE) + N(0, NOISE^2), drawn
from ``--seed``. Its loss surface over the window (``A_RANGE`` x ``B_RANGE``) has the
global minimum near the true (a, b) = (0, 15), local minima in the valleys beside it
(a wave shifted by about one period) and saddles on the ridges between them.

Every path is ``fastopt.optim.SGD`` stepping a 2-element float64 array with the analytic
gradient above: full-batch gradient descent (every update sees all rows) and mini-batch
SGD at each of ``--batch-sizes`` (mini-batches of rows drawn without replacement and
reshuffled every epoch, ``fastopt.train.epoch_batches``, seeded by ``--seed``), from each
of the same starting points, ``--steps`` updates each, the learning rate ``--lr`` decaying
exponentially to ``LR_END`` of it by the last update (``schedules.ExponentialDecay``), so
that the noisy paths settle at the end. The defaults are picked so that GD stops in a
local minimum from the first two starting points while SGD's noise carries it over the
ridge into the global one (tests/test_landscape.py checks it); from the third all reach
the global minimum.

Where a path ended: its end point polished by L-BFGS on the full-batch loss
(``scipy.optimize``) gives the minimum whose basin it is in; "global" when that is the
lowest minimum found, else "local".

Results (in the run folder)
    landscape_paths.csv    run, start, batch, step, a, b, loss (the full-batch loss)
    landscape_summary.csv  one row per path: start, batch, end point, final full-batch
                           loss, the minimum it ended in (global / local, where, loss)
    landscape.png          the loss contours with the paths, one panel per starting
                           point, and the full-batch loss along each path
    settings.json          see ``fastopt.runs``
"""

import csv
import math
from typing import NamedTuple

import numpy as np

from .. import runs

C = 32.0  # the wave packet's fixed width
TRUE = (0.0, 15.0)  # the (a, b) the data come from
N_DATA = 30
NOISE = 0.2
X_RANGE = (-1.0, 1.0)
A_RANGE = (-10.0, 10.0)
B_RANGE = (2.5, 25.0)
#: starting points: GD is trapped from the first two (defaults), reaches the global
#: minimum from the third
STARTS = ((3.0, 6.0), (-4.0, 23.0), (-1.0, 11.0))
DEFAULT_STEPS = 1500
DEFAULT_LR = 3.5
LR_END = 0.02  # the learning rate decays to this fraction of --lr by the last update
DEFAULT_BATCH_SIZES = "3,5,10"
FULL = "full"
PATH_COLUMNS = ["run", "start", "batch", "step", "a", "b", "loss"]
SUMMARY_COLUMNS = ["run", "start", "start_a", "start_b", "batch", "steps", "final_a",
                   "final_b", "final_loss", "minimum", "minimum_a", "minimum_b",
                   "minimum_loss"]


# ---------------------------------------------------------------------------------------
# the model, its loss and gradient (the one place of the formulas)


def model(a, b, x):
    """f(x; a, b) = sin(u) exp(-u^2 / c), u = a + b x (broadcasts)."""
    u = a + b * x
    return np.sin(u) * np.exp(-u * u / C)


def loss(p, x, y):
    """The mean squared error of the parameters ``p = (a, b)`` on the rows ``x, y``."""
    r = model(p[0], p[1], x) - y
    return float(np.mean(r * r))


def gradient(p, x, y):
    """(dL/da, dL/db) of ``loss(p, x, y)``, as a float64 array (formulas: module doc)."""
    u = p[0] + p[1] * x
    e = np.exp(-u * u / C)
    r = np.sin(u) * e - y
    d = 2.0 * r * e * (np.cos(u) - 2.0 * u * np.sin(u) / C)  # 2 r f'(u)
    return np.array([np.mean(d), np.mean(d * x)], dtype=np.float64)


def loss_grid(A, B, x, y):
    """The full-batch loss at every point of the grids ``A``, ``B`` (for the contours)."""
    out = np.empty(A.shape)
    for i in range(A.shape[0]):  # a row at a time: (columns, rows of data) at most
        r = model(A[i][:, None], B[i][:, None], x[None, :]) - y[None, :]
        out[i] = np.mean(r * r, axis=1)
    return out


class Data(NamedTuple):
    x: np.ndarray  # (N_DATA,) float64
    y: np.ndarray  # (N_DATA,) float64


def make_data(seed, n=N_DATA):
    """The data set of ``seed``: x uniform on X_RANGE, y = f(x; TRUE) + noise."""
    rng = np.random.default_rng([seed, 0])
    x = rng.uniform(*X_RANGE, n)
    y = model(*TRUE, x) + rng.normal(0.0, NOISE, n)
    return Data(x, y)


# ---------------------------------------------------------------------------------------
# the paths


class Path(NamedTuple):
    run: str  # "gd" or "sgd_b<batch>", with the start: "s1 gd"
    start: int  # index into the starting points (1-based in files)
    batch: object  # int, or FULL
    points: np.ndarray  # (steps + 1, 3): a, b, full-batch loss; row 0 the start


def run_path(data, start, batch, steps, lr, seed, start_index=0):
    """``steps`` updates of ``fastopt.optim.SGD`` (lr ``lr`` decaying to LR_END of it)
    from ``start``; ``batch`` FULL is gradient descent, an int mini-batches of that many
    rows (without replacement, reshuffled every epoch). Returns a Path."""
    from .. import optim, schedules
    from ..train import epoch_batches

    n = len(data.x)
    p = np.array(start, dtype=np.float64)
    opt = optim.SGD(p, lr=schedules.ExponentialDecay(lr, max(steps, 1), LR_END))
    rng = np.random.default_rng([seed, 1, start_index, 0 if batch == FULL else batch])
    queue = []
    points = [(p[0], p[1], loss(p, data.x, data.y))]
    for _ in range(steps):
        if batch == FULL:
            rows = slice(None)
        else:
            if not queue:
                queue = epoch_batches(n, batch, rng)
            rows = queue.pop(0)
        opt.step(gradient(p, data.x[rows], data.y[rows]))
        points.append((p[0], p[1], loss(p, data.x, data.y)))
    name = "gd" if batch == FULL else f"sgd_b{batch}"
    return Path(f"s{start_index + 1} {name}", start_index + 1, batch,
                np.array(points, dtype=np.float64))


class Minimum(NamedTuple):
    a: float
    b: float
    loss: float


def polish(data, point):
    """The minimum whose basin ``point`` lies in: L-BFGS on the full-batch loss (NaN for
    a point that is not finite)."""
    from scipy.optimize import minimize

    if not np.all(np.isfinite(point)):
        return Minimum(math.nan, math.nan, math.nan)
    res = minimize(lambda p: loss(p, data.x, data.y), np.asarray(point, dtype=np.float64),
                   jac=lambda p: gradient(p, data.x, data.y), method="L-BFGS-B",
                   options=dict(gtol=1e-10, ftol=1e-14, maxiter=2000))
    return Minimum(float(res.x[0]), float(res.x[1]), float(res.fun))


def global_minimum(data, found=()):
    """The lowest of the minimum polished from TRUE and the finite ``found`` ones."""
    return min([polish(data, TRUE), *[m for m in found if math.isfinite(m.loss)]],
               key=lambda m: m.loss)


def where_ended(minimum, best, tol=1e-3):
    """"global" if ``minimum`` is ``best`` (same point, to ``tol`` in a and b); "diverged"
    if it is not finite (the path blew up); "outside" if it lies beyond the drawn window
    (too large a learning rate throws a path onto the far plateau where the model is ~0);
    else "local"."""
    if not (math.isfinite(minimum.a) and math.isfinite(minimum.b)):
        return "diverged"
    if math.hypot(minimum.a - best.a, minimum.b - best.b) <= tol * max(1.0, abs(best.b)):
        return "global"
    inside = A_RANGE[0] <= minimum.a <= A_RANGE[1] and B_RANGE[0] <= minimum.b <= B_RANGE[1]
    return "local" if inside else "outside"


# ---------------------------------------------------------------------------------------
# the command line


class Plan(NamedTuple):
    data: Data
    starts: tuple
    batch_sizes: list  # [FULL, int, ...]: GD first
    steps: int
    lr: float
    seed: int


def add_parser(sub):
    p = sub.add_parser(
        "landscape", help="GD vs mini-batch SGD on a 2-parameter loss with local minima",
        description="Fit the two-parameter Gabor-like model sin(a + b x) exp(-(a + b x)^2 "
                    "/ 32) to a small synthetic data set and draw, on the contours of its "
                    "full-batch loss, the paths of full-batch gradient descent and of "
                    "mini-batch SGD from the same starting points (fastopt.optim.SGD, "
                    "analytic gradients, real mini-batches of the data rows): GD stops in "
                    "a local minimum, SGD's noise carries it out.",
        epilog=f"time: about 11 s of CPU with the defaults ({len(STARTS)} starting points "
               f"x (GD + 3 batch sizes) x {DEFAULT_STEPS} updates; measured 30 s wall at "
               "load average 8.6 on 2 cores).\n"
               "outputs: landscape_paths.csv, landscape_summary.csv, landscape.png, "
               "settings.json")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"updates per path (default {DEFAULT_STEPS})")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"initial learning rate of every path (default {DEFAULT_LR:g}); it "
                        f"decays exponentially to {LR_END:g} x lr by the last update")
    p.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES,
                   help=f"mini-batch sizes of the SGD paths, at most {N_DATA} rows "
                        f"(default {DEFAULT_BATCH_SIZES}); full-batch GD is always drawn "
                        f"(full, or {N_DATA}, adds nothing)")
    p.add_argument("--starts", default=None, metavar="A,B;A,B",
                   help="starting points a,b separated by ';', e.g. '3,6;-1,11' (default: "
                        + ";".join(f"{a:g},{b:g}" for a, b in STARTS) + ")")
    runs.add_common_arguments(p, "landscape", seed_help="seed of the data's noise and of "
                                                        "the mini-batch order (default 0)")
    p.set_defaults(func=run)
    return p


def parse_starts(text):
    """``--starts`` 'a,b;a,b' -> ((a, b), ...) inside the window; ValueError otherwise."""
    if text is None:
        return STARTS
    starts = []
    for item in [s.strip() for s in text.split(";") if s.strip()]:
        try:
            a, b = (float(v) for v in item.split(","))
        except ValueError:
            raise ValueError(f"--starts: each starting point is two numbers a,b, the points "
                             f"separated by ';' (e.g. 3,6;-1,11), got {item!r}") from None
        if not (A_RANGE[0] <= a <= A_RANGE[1] and B_RANGE[0] <= b <= B_RANGE[1]):
            raise ValueError(f"--starts: {item!r} lies outside the drawn window a in "
                             f"[{A_RANGE[0]:g}, {A_RANGE[1]:g}], b in [{B_RANGE[0]:g}, "
                             f"{B_RANGE[1]:g}]")
        starts.append((a, b))
    if not starts:
        raise ValueError(f"--starts needs at least one point a,b, got {text!r}")
    return tuple(starts)


def check_args(args):
    """Every argument checked before any work; returns a Plan."""
    from ..experiments import compare  # the --batch-sizes syntax of compare (with full)

    runs.check_common_arguments(args)
    steps = runs.check_count("--steps", args.steps)
    lr = runs.check_positive("--lr", args.lr)
    sizes = compare.parse_batch_sizes(args.batch_sizes)
    too_big = [b for b in sizes if b != FULL and b > N_DATA]
    if too_big:
        raise ValueError(f"--batch-sizes: at most the {N_DATA} rows of the data (GD uses all "
                         f"of them and is always drawn), got {too_big[0]}")
    sizes = [b for b in sizes if b not in (FULL, N_DATA)]  # the full batch is GD's
    starts = parse_starts(args.starts)
    return Plan(make_data(args.seed), starts, [FULL, *sizes], steps, lr, args.seed)


def run(args):
    plan = check_args(args)
    resolved = dict(
        model="sin(a + b x) exp(-(a + b x)^2 / c)", c=C, loss="mean squared error",
        data=dict(n=N_DATA, x=f"uniform on [{X_RANGE[0]:g}, {X_RANGE[1]:g}]",
                  true_a=TRUE[0], true_b=TRUE[1], noise_std=NOISE),
        starts=[list(s) for s in plan.starts], batch_sizes=plan.batch_sizes,
        optimizer="SGD", lr=plan.lr, lr_schedule=f"ExponentialDecay({plan.lr:g}, "
                                                 f"{plan.steps}, {LR_END:g})",
        sampling="mini-batches without replacement, reshuffled every epoch")
    with runs.command_frame(args, "landscape", resolved=resolved) as frame:
        return _run(args, plan, frame.out)


def _run(args, plan, out):
    jobs = [(i, s, b) for i, s in enumerate(plan.starts) for b in plan.batch_sizes]
    print(f"landscape: {len(plan.starts)} starting point(s) x (GD + "
          f"{len(plan.batch_sizes) - 1} batch size(s)) = {len(jobs)} paths of {plan.steps} "
          f"updates, lr {plan.lr:g}", flush=True)
    with np.errstate(all="ignore"):  # a too large --lr overflows: reported, not warned
        paths = [run_path(plan.data, s, b, plan.steps, plan.lr, plan.seed, i)
                 for i, s, b in runs.Progress(jobs, desc="landscape", unit="paths",
                                              mode=runs.progress_mode(args.no_progress))]
        rows = summarize(plan, paths)
    write_paths_csv(paths, out / "landscape_paths.csv")
    runs.wrote(out / "landscape_paths.csv", "every path: run, start, batch, step, a, b, loss")
    write_rows(rows, SUMMARY_COLUMNS, out / "landscape_summary.csv")
    runs.wrote(out / "landscape_summary.csv", "where each path ended")
    runs.use_agg()
    fig = plot_landscape(plan, paths, rows)
    for path in runs.save_figure(fig, out, "landscape", svg=args.svg):
        runs.wrote(path, "loss contours with the GD and SGD paths")
    print()
    for line in summary_lines(rows):
        print(line)
    return rows


# ---------------------------------------------------------------------------------------
# numbers and files


def summarize(plan, paths):
    """One row per path (SUMMARY_COLUMNS): where it ended and in which minimum."""
    ends = [polish(plan.data, p.points[-1, :2]) for p in paths]
    best = global_minimum(plan.data, ends)
    rows = []
    for path, m in zip(paths, ends):
        a, b, value = path.points[-1]
        start = plan.starts[path.start - 1]
        rows.append(dict(run=path.run, start=path.start, start_a=start[0], start_b=start[1],
                         batch=path.batch, steps=len(path.points) - 1, final_a=float(a),
                         final_b=float(b), final_loss=float(value),
                         minimum=where_ended(m, best), minimum_a=m.a, minimum_b=m.b,
                         minimum_loss=m.loss))
    return rows


def summary_lines(rows):
    """What the command prints: each path's end, grouped by starting point."""
    out = []
    for r in rows:
        what = "GD" if r["batch"] == FULL else f"SGD batch {r['batch']}"
        if r["minimum"] in ("diverged", "outside"):
            out.append(f"start {r['start']} ({r['start_a']:g}, {r['start_b']:g}), {what}: "
                       + ("diverged (not finite)" if r["minimum"] == "diverged" else
                          f"left the window, ended at ({r['final_a']:.3g}, "
                          f"{r['final_b']:.3g}) with full-batch loss "
                          f"{r['final_loss']:.4f} (lower --lr)"))
            continue
        out.append(f"start {r['start']} ({r['start_a']:g}, {r['start_b']:g}), {what}: "
                   f"ended in the {r['minimum']} minimum at ({r['minimum_a']:.2f}, "
                   f"{r['minimum_b']:.2f}), full-batch loss {r['final_loss']:.4f}")
    return out


def write_paths_csv(paths, target):
    with runs.atomic_file(target, "w") as f:
        w = csv.writer(f)
        w.writerow(PATH_COLUMNS)
        for p in paths:
            for step, (a, b, value) in enumerate(p.points):
                w.writerow([p.run, p.start, p.batch, step, repr(float(a)), repr(float(b)),
                            repr(float(value))])
    return target


def write_rows(rows, columns, target):
    from . import training

    return training.write_rows(rows, columns, target)


# ---------------------------------------------------------------------------------------
# the figure


def plot_landscape(plan, paths, rows, grid=241):
    """One contour panel per starting point (log of the full-batch loss; star: the global
    minimum, crosses: the local minima the paths ended in) with the GD path (white) and
    the SGD paths, and below each the full-batch loss along the paths. Returns a Figure."""
    from matplotlib.figure import Figure

    a = np.linspace(*A_RANGE, grid)
    b = np.linspace(*B_RANGE, grid)
    A, B = np.meshgrid(a, b)
    Z = np.log10(loss_grid(A, B, plan.data.x, plan.data.y))
    k = len(plan.starts)
    fig = Figure(figsize=(5.2 * k, 9.0), layout="constrained")
    axes = np.array(fig.subplots(2, k, height_ratios=(2.2, 1.0), squeeze=False))
    best = next(r for r in rows if r["minimum"] == "global") if any(
        r["minimum"] == "global" for r in rows) else None
    for j in range(k):
        ax, ax_loss = axes[0, j], axes[1, j]
        filled = ax.contourf(A, B, Z, levels=30, cmap="viridis")
        ax.contour(A, B, Z, levels=15, colors="k", linewidths=0.3, alpha=0.4)
        mine = [(p, r) for p, r in zip(paths, rows) if p.start == j + 1]
        for i, (p, r) in enumerate(mine):
            gd = p.batch == FULL
            color = "white" if gd else f"C{(i - 1) % 10 + 1}"
            label = ("GD (full batch)" if gd else f"SGD batch {p.batch}") + f": {r['minimum']}"
            ax.plot(p.points[:, 0], p.points[:, 1], color=color, lw=2.4 if gd else 1.0,
                    alpha=1.0 if gd else 0.85, label=label, zorder=4 if gd else 3)
            ax.plot(*p.points[-1, :2], "o", color=color, mec="k", ms=6, zorder=5)
            if r["minimum"] == "local":  # (an "outside" one is off the panel)
                ax.plot(r["minimum_a"], r["minimum_b"], "x", color="red", ms=10, mew=2.5,
                        zorder=6)
            ax_loss.plot(np.arange(len(p.points)), p.points[:, 2],
                         color="k" if gd else color, lw=2.0 if gd else 0.9, label=label)
        ax.plot(*plan.starts[j], "s", color="white", mec="k", ms=8, zorder=6)
        if best is not None:
            ax.plot(best["minimum_a"], best["minimum_b"], "*", color="gold", mec="k", ms=16,
                    zorder=6)
        ax.set_title(f"start {j + 1}: (a, b) = ({plan.starts[j][0]:g}, {plan.starts[j][1]:g})")
        ax.set_xlim(*A_RANGE)
        ax.set_ylim(*B_RANGE)
        ax.set_xlabel("a")
        ax.set_ylabel("b")
        ax.legend(fontsize="small", loc="upper right", framealpha=0.8)
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("update")
        ax_loss.set_ylabel("full-batch loss")
        ax_loss.grid(True, which="both", alpha=0.3)
    fig.colorbar(filled, ax=axes[0, :].tolist(), label="log10 full-batch loss", shrink=0.8)
    fig.suptitle(f"GD vs mini-batch SGD on sin(a + b x) exp(-(a + b x)^2 / {C:g}), "
                 f"{N_DATA} points (seed {plan.seed}); fastopt.optim.SGD, lr {plan.lr:g} "
                 f"decaying to {LR_END * plan.lr:g} over {plan.steps} updates\n"
                 "white square: start; star: global minimum; red x: a local minimum a path "
                 "stopped in")
    return fig
