"""Two-dimensional test functions with analytic gradients, for drawing optimizer paths.

Each :class:`Surface` carries its formula, gradient, a start point and plot window chosen so
that the optimizers' behaviour is visible (a narrow valley, a saddle, several minima, many
local minima), and default learning rates:

- ``lrs``: hand-picked learning rates of the default optimizers (and Nesterov), chosen so
  that each path shows the optimizer's character within ``steps`` updates (on the textbook
  function they are the textbook's);
- for any other optimizer ``fastopt.experiments.paths`` scales one of two numbers:
  ``gd_lr``, a stable learning rate for plain gradient descent (it depends on the
  curvature), or ``step``, a typical step length of the adaptive optimizers (Adam's first
  steps have length about lr whatever the gradient's size).

``f`` and ``grad`` accept floats or NumPy arrays (for the contour grid).
"""

import math
from typing import Callable, NamedTuple

import numpy as np


class Surface(NamedTuple):
    """A 2-D test function and how to look at it."""

    name: str
    formula: str  # matplotlib mathtext, for titles
    f: Callable  # (x, y) -> value
    grad: Callable  # (x, y) -> (df/dx, df/dy)
    start: tuple  # (x0, y0)
    xlim: tuple
    ylim: tuple
    minima: tuple  # ((x, y), ...) global/local minima to mark; empty for the saddle
    steps: int  # default number of updates
    lrs: dict  # optimizer name -> default learning rate
    gd_lr: float
    step: float
    log_levels: bool  # contour levels spaced logarithmically (f >= 0 over many decades)


# ---------------------------------------------------------------------------------------
# the functions (gradients written out by hand; tests check them by finite differences)


def _quadratic(x, y):
    return x ** 2 / 20.0 + y ** 2


def _quadratic_grad(x, y):
    return x / 10.0, 2.0 * y  # the textbook's df (exact same operations)


def _rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def _rosenbrock_grad(x, y):
    r = y - x ** 2
    return -2 * (1 - x) - 400 * x * r, 200 * r


def _beale(x, y):
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
            + (2.625 - x + x * y ** 3) ** 2)


def _beale_grad(x, y):
    t1 = 1.5 - x + x * y
    t2 = 2.25 - x + x * y ** 2
    t3 = 2.625 - x + x * y ** 3
    gx = 2 * t1 * (y - 1) + 2 * t2 * (y ** 2 - 1) + 2 * t3 * (y ** 3 - 1)
    gy = 2 * t1 * x + 4 * t2 * x * y + 6 * t3 * x * y ** 2
    return gx, gy


def _saddle(x, y):
    return x ** 2 - y ** 2


def _saddle_grad(x, y):
    return 2 * x, -2 * y


def _himmelblau(x, y):
    return (x ** 2 + y - 11) ** 2 + (x + y ** 2 - 7) ** 2


def _himmelblau_grad(x, y):
    a = x ** 2 + y - 11
    b = x + y ** 2 - 7
    return 4 * x * a + 2 * b, 2 * a + 4 * y * b


def _rastrigin(x, y):
    return (20 + x ** 2 - 10 * np.cos(2 * math.pi * x)
            + y ** 2 - 10 * np.cos(2 * math.pi * y))


def _rastrigin_grad(x, y):
    return (2 * x + 20 * math.pi * np.sin(2 * math.pi * x),
            2 * y + 20 * math.pi * np.sin(2 * math.pi * y))


def _lrs(sgd, momentum, adagrad, rmsprop, adam):
    """Default learning rates; Nesterov uses momentum's."""
    return dict(sgd=sgd, momentum=momentum, nesterov=momentum, adagrad=adagrad,
                rmsprop=rmsprop, adam=adam)


SURFACES = {s.name: s for s in (
    Surface("quadratic", r"$x^2/20 + y^2$ (textbook)", _quadratic, _quadratic_grad,
            start=(-7.0, 2.0), xlim=(-10.0, 10.0), ylim=(-5.0, 5.0), minima=((0.0, 0.0),),
            steps=30, lrs=_lrs(sgd=0.95, momentum=0.1, adagrad=1.5, rmsprop=0.1, adam=0.3),
            gd_lr=0.95, step=0.3, log_levels=False),
    Surface("rosenbrock", r"Rosenbrock $(1-x)^2 + 100(y-x^2)^2$", _rosenbrock,
            _rosenbrock_grad, start=(-1.2, 1.0), xlim=(-2.0, 2.0), ylim=(-1.0, 3.0),
            minima=((1.0, 1.0),), steps=1000,
            lrs=_lrs(sgd=1e-3, momentum=2e-4, adagrad=0.3, rmsprop=0.01, adam=0.05),
            gd_lr=1e-3, step=0.05, log_levels=True),
    Surface("beale", "Beale", _beale, _beale_grad,
            start=(1.0, 1.5), xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), minima=((3.0, 0.5),),
            steps=300, lrs=_lrs(sgd=3e-3, momentum=1e-3, adagrad=0.25, rmsprop=0.01, adam=0.05),
            gd_lr=3e-3, step=0.05, log_levels=True),
    Surface("saddle", r"saddle $x^2 - y^2$", _saddle, _saddle_grad,
            start=(-1.5, 1e-3), xlim=(-2.0, 2.0), ylim=(-2.0, 2.0), minima=(),
            steps=60, lrs=_lrs(sgd=0.1, momentum=0.02, adagrad=0.25, rmsprop=0.01, adam=0.05),
            gd_lr=0.1, step=0.05, log_levels=False),
    Surface("himmelblau", r"Himmelblau $(x^2+y-11)^2 + (x+y^2-7)^2$", _himmelblau,
            _himmelblau_grad, start=(-0.3, -0.9), xlim=(-5.0, 5.0), ylim=(-5.0, 5.0),
            minima=((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186),
                    (3.584428, -1.848126)),
            steps=150, lrs=_lrs(sgd=5e-3, momentum=1e-3, adagrad=0.5, rmsprop=0.03, adam=0.1),
            gd_lr=5e-3, step=0.1, log_levels=True),
    Surface("rastrigin", "Rastrigin", _rastrigin, _rastrigin_grad,
            start=(-3.3, 2.6), xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), minima=((0.0, 0.0),),
            steps=150, lrs=_lrs(sgd=4.5e-3, momentum=5e-3, adagrad=1.0, rmsprop=0.1, adam=0.3),
            gd_lr=4.5e-3, step=0.3, log_levels=False),
)}
