"""Learning-rate schedules.

A *schedule* is any callable ``step -> float``, where ``step`` is the 0-based
index of the update being applied: the first update uses ``schedule(0)``, the
second ``schedule(1)`` and so on.  This is the numbering Keras uses
(``optimizer.iterations`` before the increment), so the six Keras-style
classes below return exactly what ``keras.optimizers.schedules.<Name>``
returns for the same arguments (up to Keras's float32 rounding; these compute
in float64).

Everything here is pure Python (only the standard library), so importing this
module is essentially free, and every schedule returns a Python ``float``.

Contents
--------
* :class:`ExponentialDecay`, :class:`PiecewiseConstantDecay`,
  :class:`PolynomialDecay`, :class:`InverseTimeDecay`, :class:`CosineDecay`,
  :class:`CosineDecayRestarts`: the Keras 3 schedules, same arguments and
  results.
* :class:`LinearWarmup`: linear ramp, then constant or another schedule.
* :class:`Constant` and :func:`as_schedule` (how optimizers turn ``lr=0.1``
  or a schedule into a callable).
* :func:`join` (:class:`Join`): run schedules one after another, each
  restarted from step 0, like ``optax.join_schedules``.
* :data:`SCHEDULES` and :func:`from_string`: build a schedule from a
  command-line string such as ``"cosine:decay_steps=1000,alpha=0.1"``.

All classes validate their arguments when constructed (``ValueError`` for a
bad value, ``TypeError`` for a bad type, the message naming the argument),
reject a negative or non-integer step when called, have a ``repr`` that
reads like the constructor call, a ``get_config()`` dict that
``from_config`` (``cls(**config)``) turns back into an equal schedule, and
compare equal when their class and configuration are equal.

Example
-------
>>> from fastopt.schedules import CosineDecay, LinearWarmup, join
>>> sched = join([LinearWarmup(warmup_steps=10, peak=0.1),
...               CosineDecay(0.1, decay_steps=90)], boundaries=[10])
>>> [round(sched(s), 4) for s in (0, 5, 10, 55, 100, 1000)]
[0.0, 0.05, 0.1, 0.05, 0.0, 0.0]
"""

import bisect
import math
import numbers

from . import _checks, specs

__all__ = [
    "Schedule",
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    "LinearWarmup",
    "Constant",
    "Join",
    "join",
    "as_schedule",
    "SCHEDULES",
    "from_string",
]


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------

def _lr_arg(name, value):
    return _checks.number(name, value, "a non-negative finite number")


def _check_step(step):
    """Slow path of step validation: return ``step`` as a Python int."""
    result = _checks.as_int(step)
    if result is None:
        raise TypeError(
            "step must be a non-negative integer (the 0-based index of the "
            f"update), got {_checks.describe(step)}")
    if result < 0:
        raise ValueError(
            "step must be a non-negative integer (the 0-based index of the "
            f"update), got {step!r}")
    return result


def _check_boundaries(name, boundaries):
    """Strictly increasing non-negative integers, as a tuple."""
    if isinstance(boundaries, (str, bytes)) or not hasattr(
            boundaries, "__iter__"):
        raise TypeError(f"{name} must be a sequence of non-negative integers, "
                        f"got {_checks.describe(boundaries)}")
    result = tuple(_checks.whole(f"{name}[{i}]", b, 0)
                   for i, b in enumerate(boundaries))
    for i in range(1, len(result)):
        if result[i] <= result[i - 1]:
            raise ValueError(
                f"{name} must be strictly increasing, got {list(result)} "
                f"({name}[{i}]={result[i]} <= {name}[{i - 1}]="
                f"{result[i - 1]})")
    return result


def _check_pieces(name, pieces, boundaries):
    """One piece more than boundaries (PiecewiseConstantDecay values, join schedules)."""
    if len(pieces) != len(boundaries) + 1:
        raise ValueError(
            f"len({name}) must be len(boundaries) + 1 = {len(boundaries) + 1}, "
            f"got {len(pieces)} {name} for {len(boundaries)} boundaries")


def _to_float(value, schedule, step):
    """Convert a sub-schedule's result to a Python float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"schedule {schedule!r} returned {_checks.describe(value)} at step "
            f"{step}; a schedule must return a number") from None


# --------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------

class Schedule:
    """Base class of the schedules in this module.

    Subclasses set ``_PARAMS`` (the constructor's argument names, in order),
    store each argument as an attribute of the same name, and implement
    ``_value(step)`` for a validated Python int ``step >= 0``, returning a
    Python float.  The base class supplies step validation, ``repr``,
    ``get_config``/``from_config`` and equality.
    """

    _PARAMS = ()

    def __call__(self, step):
        if type(step) is not int or step < 0:
            step = _check_step(step)
        return self._value(step)

    def _value(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments as a dict (argument name -> value)."""
        config = {}
        for name in self._PARAMS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            config[name] = value
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuild a schedule from :meth:`get_config` output.

        A ``"name"`` key (present in Keras's ``get_config()`` output) is
        ignored, so Keras configs of the same schedule are accepted too.
        """
        config = {k: v for k, v in dict(config).items() if k != "name"}
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def _key(self):
        def freeze(v):
            if isinstance(v, (list, tuple)):
                return tuple(freeze(x) for x in v)
            return v
        return tuple((k, freeze(v)) for k, v in self.get_config().items())

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        try:
            return hash((type(self).__name__, self._key()))
        except TypeError:  # an unhashable user callable inside
            return id(self)


# --------------------------------------------------------------------------
# Keras schedules
# --------------------------------------------------------------------------

class _RateDecay(Schedule):
    """Shared by ExponentialDecay and InverseTimeDecay: the same arguments and the same
    progress p = step / decay_steps (floored if staircase)."""

    _PARAMS = ("initial_learning_rate", "decay_steps", "decay_rate",
               "staircase")

    def __init__(self, initial_learning_rate, decay_steps, decay_rate,
                 staircase=False):
        self.initial_learning_rate = _lr_arg("initial_learning_rate",
                                             initial_learning_rate)
        self.decay_steps = _checks.whole("decay_steps", decay_steps, 1)
        self.decay_rate = _checks.number("decay_rate", decay_rate,
                                     "a non-negative finite number")
        self.staircase = _checks.boolean("staircase", staircase)

    def _progress(self, step):
        if self.staircase:
            return float(step // self.decay_steps)
        return step / self.decay_steps


class ExponentialDecay(_RateDecay):
    r"""Exponential decay (``keras.optimizers.schedules.ExponentialDecay``).

    .. math::

        \eta(t) = \eta_0 \, r^{\,p}, \qquad
        p = \begin{cases} \lfloor t / T \rfloor & \text{staircase} \\
                          t / T & \text{otherwise} \end{cases}

    Args:
        initial_learning_rate: :math:`\eta_0`, non-negative finite number.
        decay_steps: :math:`T`, positive integer: the learning rate is
            multiplied by ``decay_rate`` every ``decay_steps`` steps.
        decay_rate: :math:`r`, non-negative finite number (``< 1`` decays;
            ``> 1`` grows, and an ``OverflowError`` is raised at the step
            where the result would leave the float range).
        staircase: if ``True``, decay in discrete jumps every
            ``decay_steps`` steps instead of continuously.

    Example:
        >>> s = ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5,
        ...                      staircase=True)
        >>> s(0), s(99), s(100), s(250)
        (0.1, 0.1, 0.05, 0.025)

    Note (torch): ``torch.optim.lr_scheduler.StepLR(step_size=T, gamma=r)``
    is the ``staircase=True`` form and ``ExponentialLR(gamma=r)`` the
    ``decay_steps=1`` form, but torch schedulers count ``scheduler.step()``
    calls (often epochs), not optimizer updates.
    """

    def _value(self, step):
        p = self._progress(step)
        try:
            result = self.initial_learning_rate * self.decay_rate ** p
        except OverflowError:
            result = math.inf
        if not math.isfinite(result):
            raise OverflowError(
                f"ExponentialDecay learning rate overflowed at step {step} "
                f"(decay_rate={self.decay_rate} > 1 grows without bound)")
        return result


class PiecewiseConstantDecay(Schedule):
    r"""Piecewise constant learning rate
    (``keras.optimizers.schedules.PiecewiseConstantDecay``).

    .. math::

        \eta(t) = \begin{cases}
            v_0 & t \le b_0 \\
            v_i & b_{i-1} < t \le b_i \\
            v_n & t > b_{n-1}
        \end{cases}

    Boundaries are *inclusive* on the left piece: ``values[i]`` is used
    while ``step <= boundaries[i]``, so ``values[i+1]`` first applies at
    step ``boundaries[i] + 1``.

    Args:
        boundaries: ``n >= 1`` strictly increasing non-negative integers.
        values: ``n + 1`` non-negative finite learning rates.

    Example:
        >>> s = PiecewiseConstantDecay([100, 200], [0.1, 0.01, 0.001])
        >>> s(0), s(100), s(101), s(200), s(201)
        (0.1, 0.1, 0.01, 0.01, 0.001)

    Note (torch): ``MultiStepLR(milestones, gamma)`` switches *at* the
    milestone (the update with 0-based index ``m`` already uses the new
    rate), so Keras boundary ``b`` corresponds to torch milestone ``b + 1``;
    torch also multiplies by ``gamma`` instead of taking explicit values.
    :func:`join` uses the torch/optax (exclusive) convention.
    """

    _PARAMS = ("boundaries", "values")

    def __init__(self, boundaries, values):
        self.boundaries = _check_boundaries("boundaries", boundaries)
        if isinstance(values, (str, bytes)) or not hasattr(values,
                                                           "__iter__"):
            raise TypeError("values must be a sequence of non-negative finite "
                            f"numbers, got {_checks.describe(values)}")
        self.values = tuple(_lr_arg(f"values[{i}]", v)
                            for i, v in enumerate(values))
        if not self.boundaries:
            raise ValueError("boundaries must contain at least one boundary, "
                             "got []")
        _check_pieces("values", self.values, self.boundaries)

    def _value(self, step):
        return self.values[bisect.bisect_left(self.boundaries, step)]


class PolynomialDecay(Schedule):
    r"""Polynomial decay (``keras.optimizers.schedules.PolynomialDecay``).

    .. math::

        \eta(t) = (\eta_0 - \eta_{end})
                  \left(1 - \frac{\min(t, T)}{T}\right)^{k} + \eta_{end}

    With ``cycle=True`` there is no ``min``; instead
    :math:`T` is replaced by :math:`T \cdot \max(1, \lceil t / T \rceil)`
    (the first multiple of ``decay_steps`` that is ``>= step``; at step 0 the
    multiplier is 1), so the rate reaches :math:`\eta_{end}` at every
    multiple of ``decay_steps`` and then jumps back up, each cycle from a
    lower height.

    Args:
        initial_learning_rate: :math:`\eta_0`, non-negative finite number.
        decay_steps: :math:`T`, positive integer.
        end_learning_rate: :math:`\eta_{end}`, non-negative finite number
            (default ``0.0001`` as in Keras).  It may exceed
            ``initial_learning_rate``, which gives a polynomial increase.
        power: :math:`k`, positive finite number (``1.0`` is linear).
            Keras also accepts ``power=0``, which never decays
            (:math:`0^0 = 1`); this class rejects it.
        cycle: whether to restart the decay after ``decay_steps``.

    Example:
        >>> s = PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.0)
        >>> s(0), s(5), s(10), s(20)
        (1.0, 0.5, 0.0, 0.0)

    Note (torch): ``PolynomialLR(total_iters=T, power=k)`` always decays to
    0 (``end_learning_rate=0``, whereas Keras's default is ``1e-4``) and has
    no ``cycle`` option.
    """

    _PARAMS = ("initial_learning_rate", "decay_steps", "end_learning_rate",
               "power", "cycle")

    def __init__(self, initial_learning_rate, decay_steps,
                 end_learning_rate=0.0001, power=1.0, cycle=False):
        self.initial_learning_rate = _lr_arg("initial_learning_rate",
                                             initial_learning_rate)
        self.decay_steps = _checks.whole("decay_steps", decay_steps, 1)
        self.end_learning_rate = _lr_arg("end_learning_rate",
                                         end_learning_rate)
        self.power = _checks.number("power", power, "a positive finite number",
                                low_open=True)
        self.cycle = _checks.boolean("cycle", cycle)

    def _value(self, step):
        decay_steps = self.decay_steps
        if self.cycle:
            # ceil of an exact integer division; max(1, .) handles step 0
            decay_steps *= max(1, -(-step // decay_steps))
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return ((self.initial_learning_rate - self.end_learning_rate)
                * (1.0 - p) ** self.power + self.end_learning_rate)


class InverseTimeDecay(_RateDecay):
    r"""Inverse time decay (``keras.optimizers.schedules.InverseTimeDecay``).

    .. math::

        \eta(t) = \frac{\eta_0}{1 + r\,p}, \qquad
        p = \begin{cases} \lfloor t / T \rfloor & \text{staircase} \\
                          t / T & \text{otherwise} \end{cases}

    Args:
        initial_learning_rate: :math:`\eta_0`, non-negative finite number.
        decay_steps: :math:`T`, positive integer.
        decay_rate: :math:`r`, non-negative finite number.
        staircase: if ``True``, decay in discrete jumps every
            ``decay_steps`` steps.

    Example:
        >>> s = InverseTimeDecay(0.1, decay_steps=10, decay_rate=1.0)
        >>> s(0), s(10), s(30)
        (0.1, 0.05, 0.025)

    Note (torch): no built-in equivalent; use
    ``LambdaLR(opt, lambda t: 1 / (1 + r * t / T))``.
    """

    def _value(self, step):
        p = self._progress(step)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class CosineDecay(Schedule):
    r"""Cosine decay with optional linear warm-up
    (``keras.optimizers.schedules.CosineDecay``).

    Without warm-up (``warmup_target=None``):

    .. math::

        \eta(t) = \eta_0 \left[(1 - \alpha)\,
                  \tfrac12\left(1 + \cos\frac{\pi \min(t, T)}{T}\right)
                  + \alpha\right]

    With warm-up (``warmup_target`` :math:`\eta_w` given, :math:`W` =
    ``warmup_steps``), :math:`t` is first clamped to :math:`W + T`:

    .. math::

        \eta(t) = \begin{cases}
            \eta_0 + (\eta_w - \eta_0)\, t / W & t < W \\
            \eta_w \left[(1 - \alpha)\,
                \tfrac12\left(1 + \cos\frac{\pi (t - W)}{T}\right)
                + \alpha\right] & W \le t \le W + T
        \end{cases}

    so the rate starts at ``initial_learning_rate``, reaches
    ``warmup_target`` exactly at step ``W``, and ends at
    ``alpha * warmup_target`` from step ``W + T`` on.  As in Keras, when
    ``warmup_target`` is given with ``warmup_steps=0`` the decay starts from
    ``warmup_target`` at step 0 and ``initial_learning_rate`` is never used.

    Args:
        initial_learning_rate: :math:`\eta_0`, non-negative finite number:
            the start of the decay, or of the warm-up if ``warmup_target``
            is given.
        decay_steps: :math:`T`, positive integer: length of the decay.
        alpha: :math:`\alpha \in [0, 1]`: the final rate as a fraction of the
            rate the decay starts from.
        warmup_target: ``None`` (no warm-up) or :math:`\eta_w`, the
            non-negative finite rate reached at the end of the warm-up.
        warmup_steps: :math:`W`, non-negative integer.  Must be 0 when
            ``warmup_target`` is ``None`` (Keras silently ignores it there;
            this class raises ``ValueError`` instead).

    Example:
        >>> s = CosineDecay(0.0, decay_steps=100, warmup_target=0.1,
        ...                 warmup_steps=10)
        >>> s(0), s(5), s(10), round(s(60), 6), s(110), s(500)
        (0.0, 0.05, 0.1, 0.05, 0.0, 0.0)

    Note (torch): ``CosineAnnealingLR(T_max=T, eta_min=alpha * lr0)`` takes
    an absolute minimum instead of a fraction and does not stop at
    ``T_max``: it keeps following the cosine back up, while this schedule
    stays at the minimum.  Warm-up needs ``LinearLR`` + ``SequentialLR``.
    """

    _PARAMS = ("initial_learning_rate", "decay_steps", "alpha",
               "warmup_target", "warmup_steps")

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0,
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _lr_arg("initial_learning_rate",
                                             initial_learning_rate)
        self.decay_steps = _checks.whole("decay_steps", decay_steps, 1)
        self.alpha = _checks.number("alpha", alpha,
                                "a finite number in [0, 1]", 0.0, 1.0)
        if warmup_target is not None:
            warmup_target = _lr_arg("warmup_target", warmup_target)
        self.warmup_target = warmup_target
        self.warmup_steps = _checks.whole("warmup_steps", warmup_steps, 0)
        if warmup_target is None and self.warmup_steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} has no effect without "
                "warmup_target; pass warmup_target=<learning rate at the end "
                "of the warm-up> (or warmup_steps=0)")

    def _cosine(self, step, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def _value(self, step):
        if self.warmup_target is None:
            return self._cosine(min(step, self.decay_steps),
                                self.initial_learning_rate)
        warmup_steps = self.warmup_steps
        step = min(step, self.decay_steps + warmup_steps)
        if step < warmup_steps:
            return ((self.warmup_target - self.initial_learning_rate)
                    * (step / warmup_steps) + self.initial_learning_rate)
        return self._cosine(step - warmup_steps, self.warmup_target)


class CosineDecayRestarts(Schedule):
    r"""Cosine decay with warm restarts, SGDR (Loshchilov & Hutter 2017)
    (``keras.optimizers.schedules.CosineDecayRestarts``).

    The steps are cut into periods: the first lasts :math:`T_0` =
    ``first_decay_steps`` steps, each next one ``t_mul`` times longer.  In
    period :math:`i = 0, 1, \dots`, which starts at step
    :math:`T_0 (1 + m + \dots + m^{i-1})` (:math:`m` = ``t_mul``), with
    :math:`f \in [0, 1)` the fraction of the period done:

    .. math::

        \eta(t) = \eta_0 \left[(1 - \alpha)\, \mu^i\,
                  \tfrac12 \left(1 + \cos \pi f\right) + \alpha\right]

    (:math:`\mu` = ``m_mul``): every period decays from
    :math:`\eta_0 \mu^i` (scaled by ``1 - alpha``) towards
    :math:`\alpha \eta_0`, then the rate jumps back up.  Keras's formula,
    which finds :math:`i` as ``floor(log(1 - (t/T0)(1 - m)) / log(m))``;
    this class computes in float64 and also checks :math:`i` against the
    period boundaries, since that ratio can round down at the first step of
    a period (in Python's float64 ``log(243)/log(3) < 5``), which would give
    that step the end-of-period rate instead of the restart.

    Args:
        initial_learning_rate: :math:`\eta_0`, non-negative finite number.
        first_decay_steps: :math:`T_0`, positive integer: length of the
            first period.
        t_mul: :math:`m \ge 1`, each period's length over the previous
            one's (Keras's default 2.0; 1.0 gives periods of equal length).
            Below 1 the periods would shrink and end after
            :math:`T_0/(1 - m)` steps (where Keras returns NaN), so it is
            refused.
        m_mul: :math:`\mu \ge 0`, each restart's peak over the previous
            one's (default 1.0: every restart returns to
            ``initial_learning_rate``).
        alpha: :math:`\alpha \in [0, 1]`, the minimum rate as a fraction of
            ``initial_learning_rate``.
        name: Keras's name of the schedule; accepted for Keras code and
            ignored (not part of ``get_config``).

    Example (periods of 10, 20, 40, ... steps; each restart, at steps 10,
    30, 70, ..., peaks at half the previous one):
        >>> s = CosineDecayRestarts(0.1, first_decay_steps=10, m_mul=0.5)
        >>> s(0), round(s(5), 6), s(10), round(s(20), 6), s(30)
        (0.1, 0.05, 0.05, 0.025, 0.025)

    Note (torch): ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)`` is the
    ``m_mul=1`` form with an integer ``T_mult`` and an absolute minimum
    ``eta_min = alpha * lr0``; torch counts ``scheduler.step()`` calls.
    """

    _PARAMS = ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul",
               "alpha")

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0,
                 m_mul=1.0, alpha=0.0, name="SGDRDecay"):
        self.initial_learning_rate = _lr_arg("initial_learning_rate",
                                             initial_learning_rate)
        self.first_decay_steps = _checks.whole("first_decay_steps",
                                               first_decay_steps, 1)
        t_mul = _checks.number("t_mul", t_mul, "a finite number >= 1")
        if t_mul < 1.0:
            raise ValueError(
                f"t_mul must be >= 1, got {t_mul}: with t_mul < 1 every "
                "period is shorter than the one before and the schedule ends "
                f"after first_decay_steps/(1 - t_mul) = "
                f"{self.first_decay_steps / (1.0 - t_mul):g} steps; use "
                "t_mul=1.0 for periods of equal length")
        self.t_mul = t_mul
        self.m_mul = _checks.number("m_mul", m_mul,
                                    "a non-negative finite number")
        self.alpha = _checks.number("alpha", alpha,
                                    "a finite number in [0, 1]", 0.0, 1.0)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got "
                            f"{_checks.describe(name)}")
        self.name = name

    def _start(self, i):
        """The start of period i, in units of first_decay_steps."""
        if self.t_mul == 1.0:
            return float(i)
        return (1.0 - self.t_mul ** i) / (1.0 - self.t_mul)

    def _period(self, fraction):
        """(period index i, fraction f of period i done) at ``fraction``
        first periods since step 0."""
        t_mul = self.t_mul
        if t_mul == 1.0:
            i = math.floor(fraction)
            return i, fraction - i
        i = math.floor(math.log(1.0 - fraction * (1.0 - t_mul))
                       / math.log(t_mul))
        # the log ratio may round across a period boundary: check against it
        if fraction >= self._start(i + 1):
            i += 1
        elif fraction < self._start(i):
            i -= 1
        return i, (fraction - self._start(i)) / t_mul ** i

    def _value(self, step):
        i, f = self._period(step / self.first_decay_steps)
        cosine = 0.5 * self.m_mul ** i * (1.0 + math.cos(math.pi * f))
        return self.initial_learning_rate * (
            (1.0 - self.alpha) * cosine + self.alpha)


# --------------------------------------------------------------------------
# non-Keras schedules
# --------------------------------------------------------------------------

class Constant(Schedule):
    r"""The same learning rate at every step.

    .. math::

        \eta(t) = \eta

    Args:
        lr: the learning rate, non-negative finite number.

    Example:
        >>> Constant(0.01)(0), Constant(0.01)(10**9)
        (0.01, 0.01)

    Note (torch): ``torch.optim.lr_scheduler.ConstantLR`` is something else
    (it scales the rate by ``factor`` for ``total_iters`` steps, then
    returns to the base rate).  A plain float does this job in torch.
    """

    _PARAMS = ("lr",)

    def __init__(self, lr):
        self.lr = _lr_arg("lr", lr)

    def _value(self, step):
        return self.lr


def _schedule_arg(name, value):
    """A callable schedule, or a number turned into a :class:`Constant`."""
    if callable(value):
        return value
    if isinstance(value, numbers.Real) and not _checks.is_bool(value):
        return Constant(_lr_arg(name, value))
    raise TypeError(f"{name} must be a callable schedule step -> float or a "
                    f"non-negative finite number, got {_checks.describe(value)}")


class LinearWarmup(Schedule):
    r"""Linear warm-up from ``start`` to ``peak``, then ``peak`` or another
    schedule.

    .. math::

        \eta(t) = \begin{cases}
            s + (p - s)\, t / W & t < W \\
            p & t \ge W,\ \text{after is None} \\
            \text{after}(t - W) & t \ge W
        \end{cases}

    The rate is ``start`` at step 0 and reaches ``peak`` at step ``W``
    (which belongs to the second phase: ``after(0)``, normally also
    ``peak``).  ``LinearWarmup(W, p, s, after=A)`` equals
    ``join([LinearWarmup(W, p, s), A], [W])``.

    Args:
        warmup_steps: :math:`W`, non-negative integer (0: no warm-up).
        peak: :math:`p`, the rate reached at step ``W``, non-negative finite.
        start: :math:`s`, the rate at step 0, non-negative finite (default
            0.0; it may exceed ``peak`` for a linear ramp down).
        after: ``None`` (stay at ``peak``), or a schedule (any callable
            ``step -> float``, or a number for a constant) called with the
            step counted from the end of the warm-up.  It should normally
            start at ``peak``, e.g. ``CosineDecay(peak, ...)``; this is not
            checked.

    Example:
        >>> s = LinearWarmup(4, peak=0.1, after=ExponentialDecay(0.1, 1, 0.5))
        >>> s(0), s(2), s(4), s(5), s(6)
        (0.0, 0.05, 0.1, 0.05, 0.025)

    Note (torch): ``LinearLR(start_factor, end_factor, total_iters)`` ramps
    multiplicative factors, and ``start_factor`` must be > 0 there, so a
    ramp from exactly 0 is not possible; the following schedule needs
    ``SequentialLR``.
    """

    _PARAMS = ("warmup_steps", "peak", "start", "after")

    def __init__(self, warmup_steps, peak, start=0.0, after=None):
        self.warmup_steps = _checks.whole("warmup_steps", warmup_steps, 0)
        self.peak = _lr_arg("peak", peak)
        self.start = _lr_arg("start", start)
        if after is not None:
            after = _schedule_arg("after", after)
        self.after = after

    def _value(self, step):
        warmup_steps = self.warmup_steps
        if step < warmup_steps:
            return self.start + (self.peak - self.start) * (step / warmup_steps)
        if self.after is None:
            return self.peak
        value = self.after(step - warmup_steps)
        if type(value) is float:
            return value
        return _to_float(value, self.after, step - warmup_steps)


class Join(Schedule):
    r"""Schedules one after another, each restarted at its boundary
    (use :func:`join` to build one).

    .. math::

        \eta(t) = \text{schedules}[i](t - b_{i-1})
        \quad\text{for } b_{i-1} \le t < b_i,
        \qquad b_{-1} = 0,\ b_n = \infty

    Boundaries are *exclusive* on the left piece (``schedules[i+1]`` starts
    at step ``boundaries[i]``, called with step 0), as in
    ``optax.join_schedules`` and torch's ``SequentialLR``; note that this is
    the opposite of :class:`PiecewiseConstantDecay`, which follows Keras.

    Args:
        schedules: ``n + 1`` schedules (callables ``step -> float``; a number
            becomes a :class:`Constant`).
        boundaries: ``n`` strictly increasing non-negative integers
            (``n`` may be 0: a single schedule).
    """

    _PARAMS = ("schedules", "boundaries")

    def __init__(self, schedules, boundaries):
        if isinstance(schedules, (str, bytes)) or not hasattr(schedules,
                                                              "__iter__"):
            raise TypeError("schedules must be a sequence of schedules, "
                            f"got {_checks.describe(schedules)}")
        self.schedules = tuple(_schedule_arg(f"schedules[{i}]", s)
                               for i, s in enumerate(schedules))
        self.boundaries = _check_boundaries("boundaries", boundaries)
        if not self.schedules:
            raise ValueError("schedules must contain at least one schedule, "
                             "got []")
        _check_pieces("schedules", self.schedules, self.boundaries)

    def _value(self, step):
        i = bisect.bisect_right(self.boundaries, step)
        offset = self.boundaries[i - 1] if i else 0
        schedule = self.schedules[i]
        value = schedule(step - offset)
        if type(value) is float:
            return value
        return _to_float(value, schedule, step - offset)


def join(schedules, boundaries):
    """Join schedules like ``optax.join_schedules``: ``schedules[0]`` for
    ``step < boundaries[0]``, ``schedules[i]`` for
    ``boundaries[i-1] <= step < boundaries[i]`` called with
    ``step - boundaries[i-1]`` (restarted), the last one for all later
    steps.  See :class:`Join`.

    Example (warm-up then cosine, the same as
    ``CosineDecay(0.0, 90, warmup_target=0.1, warmup_steps=10)``):

    >>> s = join([LinearWarmup(10, peak=0.1), CosineDecay(0.1, 90)], [10])
    >>> s(0), s(5), s(10), s(100)
    (0.0, 0.05, 0.1, 0.0)
    """
    return Join(schedules, boundaries)


def as_schedule(lr):
    """Turn an optimizer's ``lr`` argument into a schedule.

    A number becomes a :class:`Constant` (it must be finite and ``>= 0``); a
    callable (any ``step -> float``, including Keras schedules) is returned
    unchanged; anything else raises ``TypeError``.

    >>> as_schedule(0.1)
    Constant(lr=0.1)
    >>> s = CosineDecay(0.1, 100)
    >>> as_schedule(s) is s
    True
    """
    if callable(lr):
        return lr
    message = ("lr must be a non-negative finite number or a callable "
               "schedule step -> float, got ")
    if _checks.is_bool(lr) or not isinstance(lr, numbers.Real):
        raise TypeError(message + _checks.describe(lr))
    value = float(lr)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(message + repr(lr))
    return Constant(value)


# --------------------------------------------------------------------------
# registry and command-line parsing
# --------------------------------------------------------------------------

SCHEDULES = {
    "exponential": ExponentialDecay,
    "piecewise": PiecewiseConstantDecay,
    "polynomial": PolynomialDecay,
    "inverse_time": InverseTimeDecay,
    "cosine": CosineDecay,
    "cosine_restarts": CosineDecayRestarts,
    "warmup": LinearWarmup,
    "constant": Constant,
}

# Which constructor argument from_string's ``lr`` fills, per class.
_LR_PARAM = {
    ExponentialDecay: "initial_learning_rate",
    PolynomialDecay: "initial_learning_rate",
    InverseTimeDecay: "initial_learning_rate",
    CosineDecay: "initial_learning_rate",
    CosineDecayRestarts: "initial_learning_rate",
    LinearWarmup: "peak",
    Constant: "lr",
    PiecewiseConstantDecay: None,  # lr is values[0], see from_string
}

_LIST_PARAMS = frozenset({"boundaries", "values"})


def from_string(spec, lr):
    """Build a schedule from a command-line string.

    Grammar::

        spec  := NAME [ ":" key=value { "," key=value } ]
        value := true | false | none | INT | FLOAT | item { ";" item }

    ``NAME`` is a key of :data:`SCHEDULES` (``exponential``, ``piecewise``,
    ``polynomial``, ``inverse_time``, ``cosine``, ``cosine_restarts``,
    ``warmup``, ``constant``)
    and the keys are the class's constructor arguments.  Words are
    case-insensitive, whitespace around items is ignored, ints are written
    without a decimal point (``decay_steps=1000``) and floats with one or an
    exponent (``alpha=0.1``, ``decay_rate=9.6e-1``).  List arguments
    (``boundaries``, ``values``) separate items with ``;``, e.g.
    ``boundaries=100;200`` (a single item needs no ``;``).  Since ``;`` is
    special to shells, quote such specs on a command line.

    ``lr`` is the schedule's learning rate at step 0, so that a command line
    can say ``--lr 0.1 --schedule cosine:decay_steps=1000``:

    * ``exponential``, ``polynomial``, ``inverse_time``, ``cosine``,
      ``cosine_restarts``: ``lr`` is ``initial_learning_rate``
      (``cosine_restarts:first_decay_steps=100,t_mul=2.0,m_mul=0.9``);
    * ``constant``: ``lr`` is the rate;
    * ``piecewise``: ``lr`` is the rate up to the first boundary and
      ``values`` lists the rates *after* each boundary, so it has
      ``len(boundaries)`` items:
      ``piecewise:boundaries=100;200,values=0.01;0.001``;
    * ``warmup``: ``lr`` is ``peak``.  Its ``after`` key names another
      schedule, which gets ``lr`` as its initial rate and every key that is
      not a ``warmup`` argument:
      ``warmup:warmup_steps=100,after=cosine,decay_steps=1000,alpha=0.1``
      is ``LinearWarmup(100, lr, after=CosineDecay(lr, 1000, alpha=0.1))``.

    The argument that ``lr`` fills may not also be set in the spec.  Unknown
    names or keys raise ``ValueError`` listing the valid ones; invalid values
    raise the class's own error.

    >>> from_string("exponential:decay_steps=100,decay_rate=0.96,"
    ...             "staircase=true", 0.1)
    ExponentialDecay(initial_learning_rate=0.1, decay_steps=100, \
decay_rate=0.96, staircase=True)
    >>> from_string("piecewise:boundaries=100;200,values=0.01;0.001", 0.1)
    PiecewiseConstantDecay(boundaries=[100, 200], values=[0.1, 0.01, 0.001])
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {_checks.describe(spec)}")
    lr = _lr_arg("lr", lr)
    name, rest = specs.head(spec)
    if name not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {name!r} in spec {spec!r}; valid names: "
            + ", ".join(SCHEDULES))
    kwargs = {}
    for key, text in specs.options(rest, f"schedule spec {spec!r}"):
        context = f"schedule spec {spec!r}, key {key!r}"
        if key in _LIST_PARAMS:
            kwargs[key] = [specs.scalar(t.strip(), context, ints=True, none=True)
                           for t in text.split(";") if t.strip()]
        elif key == "after":
            kwargs[key] = text.lower()
        elif ";" in text:
            raise ValueError(f"{context}: {key!r} takes a single value, "
                             f"got the list {text!r}")
        else:
            kwargs[key] = specs.scalar(text, context, ints=True, none=True)
    return _build(SCHEDULES[name], name, kwargs, lr, spec)


def _build(cls, name, kwargs, lr, spec):
    lr_param = _LR_PARAM[cls]
    params = cls._PARAMS
    after_kwargs = {}
    if cls is LinearWarmup:
        # keys that are not warm-up arguments go to the 'after' schedule
        after_kwargs = {k: v for k, v in kwargs.items() if k not in params}
        kwargs = {k: v for k, v in kwargs.items() if k in params}
        after_name = kwargs.pop("after", None)
        if after_name is not None:
            if after_name not in SCHEDULES or after_name == "warmup":
                valid = [n for n in SCHEDULES if n != "warmup"]
                raise ValueError(
                    f"unknown 'after' schedule {after_name!r} in spec "
                    f"{spec!r}; valid names: " + ", ".join(valid))
            kwargs["after"] = _build(SCHEDULES[after_name], after_name,
                                     after_kwargs, lr, spec)
        elif after_kwargs:
            valid = [p for p in params if p != lr_param]
            raise ValueError(
                f"unknown key(s) {', '.join(sorted(after_kwargs))} for "
                f"schedule 'warmup' in spec {spec!r}; valid keys: "
                + ", ".join(valid)
                + " (other keys are allowed only with after=<schedule>)")
    valid = [p for p in params if p != lr_param]
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        if lr_param in unknown:
            raise ValueError(
                f"{lr_param} of schedule {name!r} comes from the lr argument "
                f"(lr={lr}); remove it from spec {spec!r}")
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} for schedule {name!r} in "
            f"spec {spec!r}; valid keys: " + ", ".join(valid))
    if cls is PiecewiseConstantDecay:
        missing = [k for k in ("boundaries", "values") if k not in kwargs]
        if missing:
            raise ValueError(
                f"schedule 'piecewise' needs {' and '.join(missing)} in spec "
                f"{spec!r}, e.g. 'piecewise:boundaries=100;200,"
                "values=0.01;0.001' (lr is used up to the first boundary)")
        boundaries, values = kwargs["boundaries"], kwargs["values"]
        if len(values) != len(boundaries):
            raise ValueError(
                f"schedule spec {spec!r}: values lists the learning rates "
                "after each boundary (lr is used before the first), so it "
                f"needs len(boundaries) = {len(boundaries)} items, got "
                f"{len(values)}")
        return cls(boundaries, [lr] + list(values))
    kwargs[lr_param] = lr
    return cls(**kwargs)
