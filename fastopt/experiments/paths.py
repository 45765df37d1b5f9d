"""``fastopt paths``: optimizer trajectories on 2-D test functions.

Every path is produced by a real fastopt optimizer updating a 2-element float64 array, with
the gradient computed analytically in NumPy (``fastopt.experiments.surfaces``). A path that
diverges (a non-finite value, or a coordinate beyond ``DIVERGED``) is cut off at its last
good point and noted in the legend, the summary CSV and on stdout.

Results (in the run folder)
    paths.csv            function, optimizer, iteration, x, y, f (iteration 0 = start point)
    paths_summary.csv    one row per path: settings, updates done, status, end point
    paths.png            one panel per function, one line per optimizer
    book.png             with ``--book`` only: the textbook's 2x2 figure
    settings.json        see ``fastopt.runs``

``--book`` reproduces the textbook figure: f = x^2/20 + y^2 from (-7, 2), 30 updates, with
the textbook's formulas (see ``BOOK``): SGD lr 0.95; Momentum lr 0.1, v = 0.9 v - lr g,
x += v (``SGD(convention="keras")``); AdaGrad lr 1.5, h += g^2, x -= lr g / (sqrt(h) + 1e-7)
(``Adagrad`` in the torch convention with eps 1e-7 and a zero accumulator: the Keras
convention puts eps inside the root and starts the accumulator at 0.1); Adam lr 0.3 with
lr_t = lr sqrt(1 - 0.999^t) / (1 - 0.9^t), x -= lr_t m / (sqrt(v) + 1e-7)
(``Adam(convention="keras", eps=1e-7)``). The textbook's loop records the position before
each of its 30 updates, so its figure (``book.png``) shows iterations 0..29; ``paths.csv``
has all 31 points.
"""

import argparse
import csv
import math
from typing import NamedTuple

import numpy as np

from .. import runs
from ..optim import catalogue
from . import optspec
from .surfaces import SURFACES

#: |x| or |y| beyond this ends a path as diverged.
DIVERGED = 1e6

# name -> (fastopt.optim class, fixed arguments, default lr when the surface has none in
#          its ``lrs``: factor * the Surface field named), from the optimizer catalogue
#          (``fastopt.optim.catalogue.Preset.path_lr``).
OPTIMIZERS = {name: (p.cls, p.fixed) + p.path_lr for name, p in catalogue.presets().items()}
DEFAULT_OPTIMIZERS = "sgd,momentum,adagrad,rmsprop,adam"


class OptimizerConfig(NamedTuple):
    """One path's optimizer: CSV/legend label, display title, class name, arguments."""

    label: str
    title: str
    cls: str
    kwargs: dict


class Trajectory(NamedTuple):
    function: str
    optimizer: str  # the label
    title: str
    cls: str  # fastopt.optim class name
    kwargs: dict
    points: np.ndarray  # (n, 3): x, y, f; row 0 is the start
    status: str  # "" for a complete path, else why it was cut off


#: The textbook figure: (label, title, class, arguments) in the textbook's order.
BOOK_FUNCTION = "quadratic"
BOOK_STEPS = 30
BOOK = (  # the textbook's formulas come from the catalogue (Facts.textbook)
    OptimizerConfig("sgd", "SGD", "SGD", dict(lr=0.95, **catalogue.textbook("sgd"))),
    OptimizerConfig("momentum", "Momentum", "SGD",
                    dict(lr=0.1, momentum=0.9, **catalogue.textbook("sgd"))),
    OptimizerConfig("adagrad", "AdaGrad", "Adagrad",
                    dict(lr=1.5, **catalogue.textbook("adagrad"))),
    OptimizerConfig("adam", "Adam", "Adam", dict(lr=0.3, **catalogue.textbook("adam"))),
)


# ---------------------------------------------------------------------------------------
# --optimizers: NAME[:key=value[,key=value...]], comma-separated (fastopt.experiments.optspec)


def parse_optimizers(text):
    """``"sgd,momentum:lr=0.05,momentum=0.8,adam"`` -> [(label, name, overrides), ...].

    A comma separates items; an item ``NAME`` or ``NAME:key=value`` starts an optimizer, a
    bare ``key=value`` adds an option to the optimizer before it. Keys are the arguments of
    the fastopt.optim class (``lr``, ``momentum``, ``eps``, ``betas`` as ``beta1``/``beta2``,
    ...). The label (CSV, legend) is ``NAME:key=value,...`` as given, or ``NAME``.
    """
    return optspec.parse_optimizers(text, {name: v[0] for name, v in OPTIMIZERS.items()})


def configure(name, overrides, surface, label=None):
    """The optimizer settings of one path: fixed arguments, the surface's lr, overrides."""
    cls, fixed, scale, factor = OPTIMIZERS[name]
    lr = surface.lrs.get(name, float(f"{getattr(surface, scale) * factor:.6g}"))
    kwargs = optspec.merge(cls, dict(fixed, lr=lr), overrides)
    return OptimizerConfig(label or name, label or name, cls, kwargs)


def check_config(config):
    """Build the optimizer once on a scratch array, so bad values fail before any work."""
    optspec.check_arguments(config.label, config.cls, config.kwargs)


# ---------------------------------------------------------------------------------------
# the paths


def run_path(surface, config, steps):
    """``steps`` updates of ``config``'s optimizer from ``surface.start``; a Trajectory."""
    from .. import optim

    p = np.array(surface.start, dtype=np.float64)
    opt = getattr(optim, config.cls)(p, **config.kwargs)
    points = [(p[0], p[1], surface.f(p[0], p[1]))]
    status = ""
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            g = np.array(surface.grad(p[0], p[1]), dtype=np.float64)
            if not np.isfinite(g).all():
                status = f"gradient not finite after {t - 1} updates"
                break
            opt.step(g)
            x, y = p[0], p[1]
            value = surface.f(x, y)
            if not (math.isfinite(x) and math.isfinite(y)):
                status = f"diverged at update {t} (not finite)"
                break
            if max(abs(x), abs(y)) > DIVERGED:
                status = f"diverged at update {t} (|x| or |y| > {DIVERGED:g})"
                break
            if not math.isfinite(value):
                status = f"diverged at update {t} (f not finite)"
                break
            points.append((x, y, value))
    return Trajectory(surface.name, config.label, config.title, config.cls,
                      dict(config.kwargs), np.array(points, dtype=np.float64), status)


def run_paths(plan, steps, progress=False):
    """Trajectories for ``plan``: a list of (surface, [OptimizerConfig, ...]).

    ``steps`` None uses each surface's default; ``progress``: a ``runs.Progress`` mode.
    """
    jobs = [(s, c) for s, configs in plan for c in configs]
    return [run_path(surface, config, steps or surface.steps) for surface, config in
            runs.Progress(jobs, desc="paths", unit="paths", mode=progress)]


# ---------------------------------------------------------------------------------------
# files


def write_paths_csv(trajectories, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["function", "optimizer", "iteration", "x", "y", "f"])
        for t in trajectories:
            for i, (x, y, v) in enumerate(t.points):
                w.writerow([t.function, t.optimizer, i, repr(float(x)), repr(float(y)),
                            repr(float(v))])
    return path


def write_summary_csv(trajectories, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["function", "optimizer", "class", "settings", "updates", "status",
                    "x_end", "y_end", "f_end", "distance_to_nearest_minimum"])
        for t in trajectories:
            x, y, v = t.points[-1]
            minima = SURFACES[t.function].minima
            dist = min((math.hypot(x - a, y - b) for a, b in minima), default=float("nan"))
            settings = " ".join(f"{k}={v}" for k, v in t.kwargs.items())
            w.writerow([t.function, t.optimizer, t.cls, settings, len(t.points) - 1,
                        t.status or "ok", repr(float(x)), repr(float(y)), repr(float(v)),
                        repr(float(dist))])
    return path


# ---------------------------------------------------------------------------------------
# figures


def _grid(surface, n=400):
    x = np.linspace(*surface.xlim, n)
    y = np.linspace(*surface.ylim, n)
    X, Y = np.meshgrid(x, y)
    return X, Y, surface.f(X, Y)


def _draw_surface(ax, surface):
    from matplotlib.colors import LogNorm

    X, Y, Z = _grid(surface)
    if surface.log_levels:
        low = max(float(Z.min()), float(Z.max()) * 1e-7, 1e-3)
        levels = np.geomspace(low, float(Z.max()), 24)
        ax.contourf(X, Y, Z, levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.25,
                    extend="both")
        ax.contour(X, Y, Z, levels=levels, norm=LogNorm(), colors="0.45", linewidths=0.4)
    else:
        ax.contourf(X, Y, Z, levels=16, cmap="Greys_r", alpha=0.25)
        ax.contour(X, Y, Z, levels=16, colors="0.45", linewidths=0.4)
    if surface.minima:
        mx, my = zip(*surface.minima)
        ax.scatter(mx, my, marker="*", s=160, color="gold", edgecolors="black",
                   linewidths=0.8, zorder=4)
    else:  # the saddle point
        ax.scatter([0.0], [0.0], marker="X", s=90, color="white", edgecolors="black",
                   zorder=4)


def _legend_label(t):
    label = f"{t.title} (lr {t.kwargs['lr']:g})"
    return label + (f": {t.status}" if t.status else "")


def plot_paths(trajectories):
    """One panel per function (contours, start, minima), one line per optimizer; a Figure."""
    from matplotlib.figure import Figure

    functions = list(dict.fromkeys(t.function for t in trajectories))
    labels = list(dict.fromkeys(t.optimizer for t in trajectories))
    # earlier lines wider, so a path that a later one follows stays visible beneath it;
    # colours repeat after ten optimizers, with a dashed line
    style = {label: dict(color=f"C{i % 10}", lw=max(3.2 - 0.5 * i, 1.2),
                         ls="-" if i < 10 else "--")
             for i, label in enumerate(labels)}
    ncols = min(3, len(functions))
    nrows = math.ceil(len(functions) / ncols)
    fig = Figure(figsize=(6.0 * ncols, 5.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(functions):]:
        fig.delaxes(ax)
    for ax, name in zip(axes.flat, functions):
        surface = SURFACES[name]
        _draw_surface(ax, surface)
        paths = [t for t in trajectories if t.function == name]
        for t in paths:
            pts = t.points
            ax.plot(pts[:, 0], pts[:, 1], **style[t.optimizer],
                    marker="o" if len(pts) <= 61 else None, ms=3, label=_legend_label(t),
                    zorder=3)
            if t.status:  # where it was cut off
                ax.scatter(pts[-1:, 0], pts[-1:, 1], marker="x", s=70, color="red",
                           linewidths=2, zorder=5)
        ax.scatter([surface.start[0]], [surface.start[1]], marker="o", s=60, color="white",
                   edgecolors="black", linewidths=1.2, zorder=5)
        updates = max(len(t.points) - 1 for t in paths)
        ax.set_title(f"{surface.formula}\nstart ({surface.start[0]:g}, {surface.start[1]:g}), "
                     f"up to {updates} updates", fontsize="medium")
        ax.set_xlim(surface.xlim)
        ax.set_ylim(surface.ylim)
        ax.set_xlabel("x (parameter 1)")
        ax.set_ylabel("y (parameter 2)")
        ax.legend(fontsize="small", loc="best", framealpha=0.85)
    fig.suptitle("Optimizer paths (white circle: start; gold star: minimum; "
                 "red cross: path cut off)")
    return fig


def plot_book(trajectories):
    """The textbook's figure: a 2x2 grid, one optimizer per panel, red path over the
    contours of x^2/20 + y^2 (values above 7 masked to 0, as in the book); a Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 9), layout="constrained")
    axes = fig.subplots(2, 2)
    x = np.arange(-10, 10, 0.01)
    y = np.arange(-5, 5, 0.01)
    X, Y = np.meshgrid(x, y)
    Z = SURFACES[BOOK_FUNCTION].f(X, Y)
    Z[Z > 7] = 0
    for ax, t in zip(axes.flat, trajectories):
        pts = t.points[:BOOK_STEPS]  # the book plots the position before each update
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="red")
        ax.contour(X, Y, Z)
        ax.plot(0, 0, "+")
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_title(f"{t.title} (lr {t.kwargs['lr']:g})")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(r"Textbook figure: $f(x, y) = x^2/20 + y^2$ from (-7, 2), "
                 "positions before each of 30 updates")
    return fig


# ---------------------------------------------------------------------------------------
# the command


def add_parser(sub):
    p = sub.add_parser(
        "paths", help="optimizer trajectories on 2-D test functions (contour plots + CSV)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run fastopt optimizers on 2-D test functions with analytic gradients "
                    "and draw their paths over the contours.",
        epilog=f"""\
optimizer syntax:
  --optimizers NAME[:key=value[,key=value...]][,NAME...]
  A name starts an optimizer; key=value items after it set its arguments (keys are the
  arguments of the fastopt.optim class; Adam-type betas as beta1=, beta2=). Examples:
    --optimizers sgd,adam
    --optimizers sgd:lr=0.5,momentum:lr=0.05,momentum=0.8,adam:lr=0.1,beta1=0.8
  names: {', '.join(OPTIMIZERS)}
  momentum = SGD with momentum=0.9, nesterov = SGD with momentum=0.9, nesterov=True.

default learning rates: chosen per function for sgd, momentum, nesterov, adagrad,
  rmsprop and adam (on x^2/20+y^2 the textbook's sgd 0.95, momentum 0.1, adagrad 1.5,
  adam 0.3);
  the others scale a per-function step size. The legend, paths_summary.csv and
  settings.json show the values used.

functions: {', '.join(SURFACES)}

--book reproduces the textbook figure exactly (x^2/20+y^2 from (-7, 2), 30 updates,
SGD 0.95, Momentum 0.1, AdaGrad 1.5, Adam 0.3 with the textbook's formulas, eps 1e-7)
and also writes book.png in the textbook's 2x2 layout.""")
    p.add_argument("--functions", default=None,
                   help="comma-separated test functions (default: all)")
    p.add_argument("--optimizers", default=None,
                   help=f"comma-separated optimizers with optional overrides, see below "
                        f"(default: {DEFAULT_OPTIMIZERS})")
    p.add_argument("--steps", type=int, default=None,
                   help="updates per path (default: per function, e.g. 30 on quadratic, "
                        "300 on rosenbrock)")
    p.add_argument("--book", action="store_true",
                   help="the textbook's figure and settings (no --functions/--optimizers/"
                        "--steps)")
    runs.add_common_arguments(p, "paths", seed_help="recorded in settings.json (default 0); "
                                                    "paths are deterministic")
    p.set_defaults(func=run)
    return p


def plan_from_args(args):
    """Check every argument and return [(surface, [OptimizerConfig, ...]), ...]."""
    runs.check_common_arguments(args)
    if args.book:
        given = [opt for opt, value in (("--functions", args.functions),
                                        ("--optimizers", args.optimizers),
                                        ("--steps", args.steps)) if value is not None]
        if given:
            raise ValueError(f"--book fixes the function, optimizers and steps; drop "
                             f"{', '.join(given)}")
        return [(SURFACES[BOOK_FUNCTION], list(BOOK))]
    if args.steps is not None:
        runs.check_count("--steps", args.steps)
    names = runs.split_list("--functions", args.functions or ",".join(SURFACES),
                            choices=list(SURFACES))
    specs = parse_optimizers(args.optimizers or DEFAULT_OPTIMIZERS)
    plan = []
    for name in names:
        surface = SURFACES[name]
        configs = [configure(opt, overrides, surface, label)
                   for label, opt, overrides in specs]
        plan.append((surface, configs))
    for config in plan[0][1]:
        check_config(config)
    return plan


def run(args):
    """The ``paths`` command (``args`` from ``add_parser``'s parser)."""
    plan = plan_from_args(args)
    steps = BOOK_STEPS if args.book else args.steps
    resolved = {s.name: {"start": s.start, "steps": steps or s.steps,
                         "optimizers": {c.label: {"class": c.cls, **c.kwargs} for c in cs}}
                for s, cs in plan}
    with runs.command_frame(args, "paths", resolved=resolved) as frame:
        return _run(args, plan, steps, frame.out)


def _run(args, plan, steps, out):
    trajectories = run_paths(plan, steps, progress=runs.progress_mode(args.no_progress))
    for t in trajectories:
        if t.status:
            print(f"note: {t.function}/{t.optimizer}: {t.status}; path cut off there")
    runs.wrote(write_paths_csv(trajectories, out / "paths.csv"),
               f"{len(trajectories)} paths (function, optimizer, iteration, x, y, f)")
    runs.wrote(write_summary_csv(trajectories, out / "paths_summary.csv"),
               "one row per path: settings, status, end point")
    runs.use_agg()
    fig = plot_paths(trajectories)
    for path in runs.save_figure(fig, out, "paths", svg=args.svg):
        runs.wrote(path, f"contour plot, {len(plan)} function(s)")
    if args.book:
        for path in runs.save_figure(plot_book(trajectories), out, "book", svg=args.svg):
            runs.wrote(path, "the textbook's 2x2 figure (one optimizer per panel)")
    return trajectories
