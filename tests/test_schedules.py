"""Tests for fastopt.schedules.

Keras 3 is the oracle for the five Keras schedules.  Keras computes in its
``floatx`` (float32 by default); the main oracle test switches Keras to
float64 with ``keras.config.set_floatx("float64")`` (restored afterwards) and
compares with ``rel=1e-12, abs=1e-15``.  A second, smaller test keeps Keras's
default float32 and compares with ``rel=1e-5`` plus a small absolute slack
(float32 rounding of e.g. ``cos(pi)`` near the end of a cosine decay).

Importing Keras (with torch) takes several seconds; everything else in this
file runs in well under a second or two.
"""

import ast
import doctest
import inspect
import math
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastopt.schedules as S
from fastopt.schedules import (
    SCHEDULES,
    Constant,
    CosineDecay,
    ExponentialDecay,
    InverseTimeDecay,
    Join,
    LinearWarmup,
    PiecewiseConstantDecay,
    PolynomialDecay,
    Schedule,
    as_schedule,
    from_string,
    join,
)

STEPS = range(0, 301)
HYPO = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# (Keras class name, kwargs) -- both libraries take the same arguments.
KERAS_CASES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7,
                              decay_rate=0.9)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7,
                              decay_rate=0.9, staircase=True)),
    ("ExponentialDecay", dict(initial_learning_rate=2.5, decay_steps=1,
                              decay_rate=0.97)),
    ("ExponentialDecay", dict(initial_learning_rate=0.001, decay_steps=50,
                              decay_rate=1.1)),
    ("PiecewiseConstantDecay", dict(boundaries=[100],
                                    values=[0.1, 0.01])),
    ("PiecewiseConstantDecay", dict(boundaries=[0, 10, 50, 51],
                                    values=[0.5, 0.1, 0.2, 0.03, 0.004])),
    ("PolynomialDecay", dict(initial_learning_rate=0.3, decay_steps=40)),
    ("PolynomialDecay", dict(initial_learning_rate=0.3, decay_steps=40,
                             end_learning_rate=0.01, power=2.5)),
    ("PolynomialDecay", dict(initial_learning_rate=0.3, decay_steps=40,
                             end_learning_rate=0.01, power=2.5, cycle=True)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=1,
                             end_learning_rate=0.0, cycle=True)),
    ("PolynomialDecay", dict(initial_learning_rate=0.01, decay_steps=60,
                             end_learning_rate=0.1, power=0.5)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.3, decay_steps=13,
                              decay_rate=0.5)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.3, decay_steps=13,
                              decay_rate=0.5, staircase=True)),
    ("CosineDecay", dict(initial_learning_rate=0.3, decay_steps=100)),
    ("CosineDecay", dict(initial_learning_rate=0.3, decay_steps=100,
                         alpha=0.2)),
    ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=100,
                         alpha=0.2, warmup_target=0.5, warmup_steps=30)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=250,
                         warmup_target=0.1, warmup_steps=1)),
    ("CosineDecay", dict(initial_learning_rate=0.2, decay_steps=70,
                         alpha=0.5, warmup_target=0.05, warmup_steps=45)),
    # warmup_target with warmup_steps=0: Keras decays from warmup_target
    ("CosineDecay", dict(initial_learning_rate=0.01, decay_steps=100,
                         alpha=0.1, warmup_target=0.5, warmup_steps=0)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1,
                                 first_decay_steps=10)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.3,
                                 first_decay_steps=7, t_mul=1.5, m_mul=0.9,
                                 alpha=0.05)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1,
                                 first_decay_steps=20, t_mul=1.0, m_mul=0.5,
                                 alpha=0.1)),
    # restarts at steps 1, 4, 13, 40, 121: log(243)/log(3) rounds below 5
    ("CosineDecayRestarts", dict(initial_learning_rate=0.2,
                                 first_decay_steps=1, t_mul=3.0, m_mul=1.1)),
]


def _case_id(case):
    name, kw = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"


@pytest.fixture(scope="module")
def keras_schedules():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    return keras


@pytest.fixture
def keras_float64(keras_schedules):
    keras = keras_schedules
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield keras
    finally:
        keras.config.set_floatx(old)


# --------------------------------------------------------------------------
# Keras oracle
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", KERAS_CASES, ids=_case_id)
def test_matches_keras_float64(keras_float64, case):
    name, kwargs = case
    theirs = getattr(keras_float64.optimizers.schedules, name)(**kwargs)
    ours = getattr(S, name)(**kwargs)
    for step in STEPS:
        expected = theirs(step)
        assert str(expected.dtype).endswith("float64")
        got = ours(step)
        assert type(got) is float
        assert got == pytest.approx(float(expected), rel=1e-12, abs=1e-15), \
            (name, kwargs, step)


@pytest.mark.parametrize("case", KERAS_CASES[::3], ids=_case_id)
def test_matches_keras_default_float32(keras_schedules, case):
    name, kwargs = case
    theirs = getattr(keras_schedules.optimizers.schedules, name)(**kwargs)
    ours = getattr(S, name)(**kwargs)
    scale = max(v for k, v in kwargs.items()
                if k in ("initial_learning_rate", "warmup_target", "values")
                for v in (v if isinstance(v, list) else [v]))
    for step in STEPS:
        assert ours(step) == pytest.approx(float(theirs(step)), rel=1e-5,
                                           abs=1e-7 * scale)


@pytest.mark.parametrize("case", KERAS_CASES[::2], ids=_case_id)
def test_from_keras_config(keras_schedules, case):
    name, kwargs = case
    theirs = getattr(keras_schedules.optimizers.schedules, name)(**kwargs)
    ours = getattr(S, name).from_config(theirs.get_config())  # has "name"
    assert ours == getattr(S, name)(**kwargs)


def test_join_warmup_cosine_equals_keras_warmup(keras_float64):
    # the join form of a Keras CosineDecay with warm-up
    kwargs = dict(initial_learning_rate=0.02, decay_steps=150, alpha=0.1,
                  warmup_target=0.4, warmup_steps=40)
    theirs = keras_float64.optimizers.schedules.CosineDecay(**kwargs)
    ours = join([LinearWarmup(40, peak=0.4, start=0.02),
                 CosineDecay(0.4, 150, alpha=0.1)], [40])
    for step in STEPS:
        assert ours(step) == pytest.approx(float(theirs(step)), rel=1e-12,
                                           abs=1e-15)


# --------------------------------------------------------------------------
# hand-computed values (independent of Keras)
# --------------------------------------------------------------------------

def test_exponential_spot_values():
    s = ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    assert s(0) == 1.0
    assert s(10) == 0.5
    assert s(5) == pytest.approx(math.sqrt(0.5), rel=1e-15)
    assert s(25) == pytest.approx(0.5 ** 2.5, rel=1e-15)
    st_ = ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5,
                           staircase=True)
    assert [st_(i) for i in (0, 9, 10, 19, 20, 29)] == \
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert ExponentialDecay(0.3, 4, 0.0)(0) == 0.3  # 0 ** 0 == 1
    assert ExponentialDecay(0.3, 4, 0.0)(1) == 0.0


def test_piecewise_spot_values():
    s = PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
    assert [s(i) for i in (0, 100, 101, 200, 201, 10 ** 9)] == \
        [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    s0 = PiecewiseConstantDecay([0], [3.0, 2.0])
    assert (s0(0), s0(1)) == (3.0, 2.0)


def test_polynomial_spot_values():
    s = PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.0)
    assert [s(i) for i in (0, 5, 10, 11, 1000)] == [1.0, 0.5, 0.0, 0.0, 0.0]
    sq = PolynomialDecay(1.0, 10, end_learning_rate=0.1, power=2.0)
    assert sq(5) == pytest.approx(0.9 * 0.25 + 0.1, rel=1e-15)
    assert sq(10) == pytest.approx(0.1, rel=1e-15)
    assert PolynomialDecay(1.0, 10)(10) == 0.0001  # Keras's default end
    # cycle: decay_steps * max(1, ceil(step / decay_steps))
    c = PolynomialDecay(1.0, 10, end_learning_rate=0.0, cycle=True)
    assert c(0) == 1.0            # multiplier 1 at step 0
    assert c(10) == 0.0           # end of first cycle
    assert c(11) == pytest.approx(1 - 11 / 20, rel=1e-15)  # 20-step cycle
    assert c(20) == 0.0
    assert c(21) == pytest.approx(1 - 21 / 30, rel=1e-15)


def test_inverse_time_spot_values():
    s = InverseTimeDecay(1.0, decay_steps=10, decay_rate=2.0)
    assert s(0) == 1.0
    assert s(5) == 0.5
    assert s(10) == pytest.approx(1 / 3, rel=1e-15)
    st_ = InverseTimeDecay(1.0, 10, 2.0, staircase=True)
    assert [st_(i) for i in (0, 9, 10, 19)] == [1.0, 1.0, 1 / 3, 1 / 3]


def test_cosine_spot_values():
    s = CosineDecay(1.0, decay_steps=100)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.5, rel=1e-15)
    assert s(100) == 0.0
    assert s(10 ** 6) == 0.0
    a = CosineDecay(2.0, 100, alpha=0.25)
    assert a(50) == pytest.approx(2.0 * (0.75 * 0.5 + 0.25), rel=1e-15)
    assert a(100) == 0.5 and a(1000) == 0.5
    w = CosineDecay(0.1, 100, alpha=0.5, warmup_target=1.1, warmup_steps=10)
    assert w(0) == 0.1
    assert w(5) == pytest.approx(0.6, rel=1e-15)
    assert w(9) == pytest.approx(1.0, rel=1e-15)
    assert w(10) == 1.1                     # warm-up ends exactly at W
    assert w(60) == pytest.approx(1.1 * 0.75, rel=1e-15)
    assert w(110) == pytest.approx(0.55, rel=1e-15)
    assert w(10 ** 6) == w(110)             # clamped at W + T
    # warmup_target with warmup_steps=0 (Keras): start from warmup_target
    z = CosineDecay(0.1, 100, warmup_target=1.0)
    assert z(0) == 1.0 and z(50) == pytest.approx(0.5, rel=1e-15)


def test_constant():
    c = Constant(0.01)
    assert c(0) == 0.01 and c(12345) == 0.01 and type(c(3)) is float
    assert Constant(3)(0) == 3.0 and type(Constant(3)(0)) is float
    assert Constant(0)(7) == 0.0


# --------------------------------------------------------------------------
# LinearWarmup and join
# --------------------------------------------------------------------------

def test_linear_warmup():
    w = LinearWarmup(4, peak=0.2)
    assert [w(i) for i in range(7)] == pytest.approx(
        [0.0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2], rel=1e-15)
    w = LinearWarmup(10, peak=1.0, start=0.5)
    assert w(0) == 0.5 and w(5) == 0.75 and w(10) == 1.0 and w(99) == 1.0
    down = LinearWarmup(2, peak=0.1, start=0.3)  # ramps down
    assert down(1) == pytest.approx(0.2, rel=1e-15) and down(2) == 0.1
    # warmup_steps = 0: no ramp at all
    assert LinearWarmup(0, peak=0.3)(0) == 0.3
    after = ExponentialDecay(0.2, 1, 0.5)
    wa = LinearWarmup(4, peak=0.2, after=after)
    assert wa(3) == pytest.approx(0.15, rel=1e-15)
    assert [wa(i) for i in (4, 5, 6)] == [0.2, 0.1, 0.05]
    assert LinearWarmup(0, peak=9.0, after=after)(1) == 0.1
    # a number as `after` is a constant
    assert LinearWarmup(2, 0.2, after=0.05)(2) == 0.05
    assert LinearWarmup(2, 0.2, after=0.05).after == Constant(0.05)


def test_linear_warmup_after_is_join():
    cos = CosineDecay(0.3, 50, alpha=0.1)
    a = LinearWarmup(20, peak=0.3, start=0.01, after=cos)
    b = join([LinearWarmup(20, peak=0.3, start=0.01), cos], [20])
    for step in STEPS:
        assert a(step) == b(step)


def test_join_semantics():
    s = join([Constant(1.0), lambda t: 100.0 + t, ExponentialDecay(8.0, 1, 0.5)],
             [3, 5])
    assert [s(i) for i in range(9)] == \
        [1.0, 1.0, 1.0, 100.0, 101.0, 8.0, 4.0, 2.0, 1.0]
    assert isinstance(s, Join)
    # numbers are constants; a single schedule needs no boundaries
    assert join([0.5], [])(10) == 0.5
    j = join([0.5, 0.25], [2])
    assert [j(i) for i in range(4)] == [0.5, 0.5, 0.25, 0.25]
    # boundary 0: the first schedule is never used
    z = join([Constant(9.0), lambda t: float(t)], [0])
    assert (z(0), z(3)) == (0.0, 3.0)


def test_join_converts_to_python_float():
    class Scalar:  # e.g. a 0-d array / tensor returned by a foreign schedule
        def __float__(self):
            return 0.25

    s = join([lambda t: Scalar(), lambda t: 1], [2])
    assert type(s(0)) is float and s(0) == 0.25
    assert type(s(5)) is float and s(5) == 1.0
    w = LinearWarmup(1, 0.5, after=lambda t: Scalar())
    assert type(w(3)) is float
    with pytest.raises(TypeError, match="must return a number"):
        join([lambda t: "x"], [])(0)


def test_join_validation():
    with pytest.raises(ValueError, match=r"len\(schedules\) must be"):
        join([Constant(1.0), Constant(2.0)], [])
    with pytest.raises(ValueError, match=r"len\(schedules\) must be"):
        join([Constant(1.0)], [5])
    with pytest.raises(ValueError, match="boundaries must be strictly increasing"):
        join([0.1, 0.2, 0.3], [5, 5])
    with pytest.raises(ValueError, match=r"boundaries\[0\] must be a non-negative integer"):
        join([0.1, 0.2], [-1])
    with pytest.raises(ValueError, match=r"boundaries\[0\] must be a non-negative integer"):
        join([0.1, 0.2], [2.5])
    with pytest.raises(TypeError, match=r"schedules\[1\] must be a callable"):
        join([0.1, "cosine"], [5])
    with pytest.raises(ValueError, match=r"schedules\[0\] must be a non-negative"):
        join([-0.1, 0.2], [5])
    with pytest.raises(ValueError, match="at least one schedule"):
        join([], [])
    with pytest.raises(TypeError, match="schedules must be a sequence"):
        join(Constant(1.0), [])


# --------------------------------------------------------------------------
# step validation
# --------------------------------------------------------------------------

ALL_EXAMPLES = [
    ExponentialDecay(0.1, 10, 0.9, staircase=True),
    PiecewiseConstantDecay([5, 10], [0.3, 0.2, 0.1]),
    PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=2.0, cycle=True),
    InverseTimeDecay(0.1, 10, 0.5),
    CosineDecay(0.0, 100, alpha=0.1, warmup_target=0.1, warmup_steps=10),
    S.CosineDecayRestarts(0.1, 10, t_mul=1.5, m_mul=0.8, alpha=0.1),
    LinearWarmup(10, 0.1, start=0.01, after=CosineDecay(0.1, 20)),
    Constant(0.1),
    join([LinearWarmup(3, 0.1), CosineDecay(0.1, 20)], [3]),
]


@pytest.mark.parametrize("sched", ALL_EXAMPLES, ids=lambda s: type(s).__name__)
def test_step_validation(sched):
    with pytest.raises(ValueError, match="step must be a non-negative integer.*-1"):
        sched(-1)
    for bad in (1.5, float("nan"), float("inf"), "3", None, True, [1]):
        with pytest.raises(TypeError, match="step must be a non-negative integer"):
            sched(bad)
    # integer-valued non-int steps are accepted
    np = pytest.importorskip("numpy")
    assert sched(np.int64(7)) == sched(7)
    assert sched(7.0) == sched(7)
    assert type(sched(np.int32(3))) is float


# --------------------------------------------------------------------------
# repr / config / equality
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sched", ALL_EXAMPLES, ids=lambda s: type(s).__name__)
def test_config_repr_round_trip(sched):
    config = sched.get_config()
    assert isinstance(config, dict)
    clone = type(sched).from_config(config)
    assert clone == sched and hash(clone) == hash(sched)
    assert clone is not sched
    assert repr(clone) == repr(sched)
    assert repr(sched).startswith(type(sched).__name__ + "(")
    # repr evaluates back to an equal object
    assert eval(repr(sched), vars(S)) == sched
    for step in (0, 1, 9, 10, 11, 55, 300):
        assert clone(step) == sched(step)


def test_get_config_contents():
    assert CosineDecay(0.1, 100).get_config() == dict(
        initial_learning_rate=0.1, decay_steps=100, alpha=0.0,
        warmup_target=None, warmup_steps=0)
    assert PiecewiseConstantDecay([1, 2], [3, 2, 1]).get_config() == dict(
        boundaries=[1, 2], values=[3.0, 2.0, 1.0])
    assert repr(ExponentialDecay(0.1, 100, 0.96, True)) == (
        "ExponentialDecay(initial_learning_rate=0.1, decay_steps=100, "
        "decay_rate=0.96, staircase=True)")
    assert repr(LinearWarmup(5, 0.1)) == \
        "LinearWarmup(warmup_steps=5, peak=0.1, start=0.0, after=None)"
    # the config is a copy
    s = PiecewiseConstantDecay([1, 2], [3, 2, 1])
    s.get_config()["values"].append(7)
    assert s.get_config()["values"] == [3.0, 2.0, 1.0]
    assert ExponentialDecay(0.1, 10, 0.9) != ExponentialDecay(0.1, 10, 0.8)
    assert ExponentialDecay(0.1, 10, 0.9) != InverseTimeDecay(0.1, 10, 0.9)


def test_numpy_arguments_are_normalised():
    np = pytest.importorskip("numpy")
    s = CosineDecay(np.float32(0.5), np.int64(10), alpha=np.float64(0.1))
    assert type(s.initial_learning_rate) is float
    assert type(s.decay_steps) is int
    assert repr(s) == ("CosineDecay(initial_learning_rate=0.5, decay_steps=10, "
                       "alpha=0.1, warmup_target=None, warmup_steps=0)")
    assert ExponentialDecay(0.1, 10.0, 0.5).decay_steps == 10


# --------------------------------------------------------------------------
# constructor validation
# --------------------------------------------------------------------------

BAD_CONSTRUCTIONS = [
    # (factory, exception, message regex)
    (lambda: ExponentialDecay(0.1, 0, 0.9), ValueError,
     "decay_steps must be a positive integer, got 0"),
    (lambda: ExponentialDecay(0.1, -5, 0.9), ValueError,
     "decay_steps must be a positive integer, got -5"),
    (lambda: ExponentialDecay(0.1, 2.5, 0.9), ValueError,
     r"decay_steps must be a positive integer, got 2.5"),
    (lambda: ExponentialDecay(0.1, "10", 0.9), TypeError,
     "decay_steps must be a positive integer"),
    (lambda: ExponentialDecay(float("nan"), 10, 0.9), ValueError,
     "initial_learning_rate must be a non-negative finite number, got nan"),
    (lambda: ExponentialDecay(-0.1, 10, 0.9), ValueError,
     "initial_learning_rate must be a non-negative finite number"),
    (lambda: ExponentialDecay(float("inf"), 10, 0.9), ValueError,
     "initial_learning_rate must be a non-negative finite number"),
    (lambda: ExponentialDecay("0.1", 10, 0.9), TypeError,
     "initial_learning_rate must be a non-negative finite number"),
    (lambda: ExponentialDecay(None, 10, 0.9), TypeError,
     "initial_learning_rate must be"),
    (lambda: ExponentialDecay(0.1, 10, -0.9), ValueError,
     "decay_rate must be a non-negative finite number"),
    (lambda: ExponentialDecay(0.1, 10, 0.9, staircase=1), TypeError,
     "staircase must be a bool"),
    (lambda: ExponentialDecay(0.1, True, 0.9), TypeError,
     "decay_steps must be a positive integer"),
    (lambda: InverseTimeDecay(0.1, 0, 0.9), ValueError,
     "decay_steps must be a positive integer, got 0"),
    (lambda: InverseTimeDecay(0.1, 10, float("nan")), ValueError,
     "decay_rate must be a non-negative finite number"),
    (lambda: InverseTimeDecay(0.1, 10, 0.5, staircase="yes"), TypeError,
     "staircase must be a bool"),
    (lambda: PolynomialDecay(0.1, 0), ValueError,
     "decay_steps must be a positive integer, got 0"),
    (lambda: PolynomialDecay(0.1, 10, end_learning_rate=-1e-3), ValueError,
     "end_learning_rate must be a non-negative finite number"),
    (lambda: PolynomialDecay(0.1, 10, power=-1.0), ValueError,
     "power must be a positive finite number, got -1.0"),
    (lambda: PolynomialDecay(0.1, 10, power=0), ValueError,
     "power must be a positive finite number, got 0"),
    (lambda: PolynomialDecay(0.1, 10, cycle=None), TypeError,
     "cycle must be a bool"),
    (lambda: CosineDecay(0.1, 0), ValueError,
     "decay_steps must be a positive integer, got 0"),
    (lambda: CosineDecay(0.1, 10, alpha=1.5), ValueError,
     r"alpha must be a finite number in \[0, 1\], got 1.5"),
    (lambda: CosineDecay(0.1, 10, alpha=-0.1), ValueError, "alpha must be"),
    (lambda: CosineDecay(0.1, 10, warmup_target=-1.0, warmup_steps=3),
     ValueError, "warmup_target must be a non-negative finite number"),
    (lambda: CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=-3),
     ValueError, "warmup_steps must be a non-negative integer, got -3"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=5), ValueError,
     "warmup_steps=5 has no effect without warmup_target"),
    (lambda: PiecewiseConstantDecay([10, 5], [0.1, 0.2, 0.3]), ValueError,
     "boundaries must be strictly increasing"),
    (lambda: PiecewiseConstantDecay([10, 10], [0.1, 0.2, 0.3]), ValueError,
     "boundaries must be strictly increasing"),
    (lambda: PiecewiseConstantDecay([10, 20], [0.1, 0.2]), ValueError,
     r"len\(values\) must be len\(boundaries\) \+ 1 = 3, got 2"),
    (lambda: PiecewiseConstantDecay([10], [0.1, 0.2, 0.3]), ValueError,
     r"len\(values\) must be len\(boundaries\) \+ 1 = 2, got 3"),
    (lambda: PiecewiseConstantDecay([], [0.1]), ValueError,
     "boundaries must contain at least one boundary"),
    (lambda: PiecewiseConstantDecay([10], [0.1, float("nan")]), ValueError,
     r"values\[1\] must be a non-negative finite number, got nan"),
    (lambda: PiecewiseConstantDecay([-1], [0.1, 0.2]), ValueError,
     r"boundaries\[0\] must be a non-negative integer, got -1"),
    (lambda: PiecewiseConstantDecay(10, [0.1, 0.2]), TypeError,
     "boundaries must be a sequence"),
    (lambda: PiecewiseConstantDecay([10], 0.1), TypeError,
     "values must be a sequence"),
    (lambda: LinearWarmup(-1, 0.1), ValueError,
     "warmup_steps must be a non-negative integer, got -1"),
    (lambda: LinearWarmup(10, float("nan")), ValueError,
     "peak must be a non-negative finite number"),
    (lambda: LinearWarmup(10, 0.1, start=-0.1), ValueError,
     "start must be a non-negative finite number"),
    (lambda: LinearWarmup(10, 0.1, after="cosine"), TypeError,
     "after must be a callable schedule"),
    (lambda: Constant(-1.0), ValueError,
     "lr must be a non-negative finite number, got -1.0"),
    (lambda: Constant(float("inf")), ValueError,
     "lr must be a non-negative finite number"),
    (lambda: S.CosineDecayRestarts(0.1, 0), ValueError,
     "first_decay_steps must be a positive integer, got 0"),
    (lambda: S.CosineDecayRestarts(0.1, 10, t_mul=0.5), ValueError,
     r"t_mul must be >= 1, got 0.5: .* ends after .* = 20 steps"),
    (lambda: S.CosineDecayRestarts(0.1, 10, t_mul=float("nan")), ValueError,
     "t_mul must be a finite number >= 1"),
    (lambda: S.CosineDecayRestarts(0.1, 10, m_mul=-1.0), ValueError,
     "m_mul must be a non-negative finite number"),
    (lambda: S.CosineDecayRestarts(0.1, 10, alpha=1.5), ValueError,
     r"alpha must be a finite number in \[0, 1\]"),
    (lambda: S.CosineDecayRestarts(0.1, 10, name=3), TypeError,
     "name must be a str or None"),
]


@pytest.mark.parametrize("factory, exc, message", BAD_CONSTRUCTIONS)
def test_bad_constructor_arguments(factory, exc, message):
    with pytest.raises(exc, match=message):
        factory()


def test_exponential_overflow_is_reported():
    s = ExponentialDecay(1.0, 1, 2.0)
    assert s(10) == 1024.0
    with pytest.raises(OverflowError, match="overflowed at step 5000"):
        s(5000)
    with pytest.raises(OverflowError, match="overflowed at step 1024"):
        ExponentialDecay(1e300, 1, 2.0)(1024)


# --------------------------------------------------------------------------
# as_schedule
# --------------------------------------------------------------------------

def test_as_schedule():
    assert as_schedule(0.1) == Constant(0.1)
    assert as_schedule(1) == Constant(1.0)
    assert as_schedule(0) == Constant(0.0)
    s = CosineDecay(0.1, 10)
    assert as_schedule(s) is s
    f = lambda t: 0.5  # noqa: E731
    assert as_schedule(f) is f
    msg = ("lr must be a non-negative finite number or a callable schedule "
           "step -> float, got ")
    for bad in (-0.1, float("nan"), float("inf"), -1):
        with pytest.raises(ValueError, match=msg):
            as_schedule(bad)
    for bad in ("0.1", None, True, [0.1], 1j):
        with pytest.raises(TypeError, match=msg):
            as_schedule(bad)
    np = pytest.importorskip("numpy")
    c = as_schedule(np.float32(0.25))
    assert c == Constant(0.25) and type(c(0)) is float


# --------------------------------------------------------------------------
# from_string
# --------------------------------------------------------------------------

def test_from_string_examples():
    assert from_string("cosine:decay_steps=1000,alpha=0.1", 0.1) == \
        CosineDecay(0.1, 1000, alpha=0.1)
    assert from_string(
        "exponential:decay_steps=100,decay_rate=0.96,staircase=true", 0.1) \
        == ExponentialDecay(0.1, 100, 0.96, staircase=True)
    assert from_string("  Polynomial : decay_steps = 10 , power=2, cycle=TRUE,"
                       "end_learning_rate=0", 0.5) == \
        PolynomialDecay(0.5, 10, end_learning_rate=0.0, power=2.0, cycle=True)
    assert from_string("inverse_time:decay_steps=10,decay_rate=0.5", 1) == \
        InverseTimeDecay(1.0, 10, 0.5)
    assert from_string("constant", 0.3) == Constant(0.3)
    assert from_string("constant:", 0.3) == Constant(0.3)
    assert from_string("cosine:decay_steps=1e3,warmup_target=none", 0.1) == \
        CosineDecay(0.1, 1000)
    assert from_string(
        "cosine:decay_steps=900,warmup_target=0.1,warmup_steps=100", 0.0) == \
        CosineDecay(0.0, 900, warmup_target=0.1, warmup_steps=100)
    # piecewise: lr up to the first boundary, then `values`
    assert from_string("piecewise:boundaries=100;200,values=0.01;0.001",
                       0.1) == \
        PiecewiseConstantDecay([100, 200], [0.1, 0.01, 0.001])
    assert from_string("piecewise:boundaries=100,values=0.01", 0.1) == \
        PiecewiseConstantDecay([100], [0.1, 0.01])
    # warmup: lr is the peak; other keys go to the `after` schedule
    assert from_string("warmup:warmup_steps=100", 0.1) == \
        LinearWarmup(100, 0.1)
    assert from_string("warmup:warmup_steps=100,start=0.01,after=cosine,"
                       "decay_steps=1000,alpha=0.1", 0.1) == \
        LinearWarmup(100, 0.1, start=0.01,
                     after=CosineDecay(0.1, 1000, alpha=0.1))
    assert from_string("warmup:after=piecewise,boundaries=5,values=0.05,"
                       "warmup_steps=3", 0.1) == \
        LinearWarmup(3, 0.1, after=PiecewiseConstantDecay([5], [0.1, 0.05]))


def _to_spec(sched, skip_defaults=False):
    """Inverse of from_string for tests: (spec, lr) from get_config()."""
    name = {cls: n for n, cls in SCHEDULES.items()}[type(sched)]
    config = sched.get_config()
    if skip_defaults:  # e.g. CosineDecay's warmup_steps=0 inside a warmup
        params = inspect.signature(type(sched)).parameters
        config = {k: v for k, v in config.items()
                  if params[k].default is inspect.Parameter.empty
                  or params[k].default != v}

    def fmt(v):
        if isinstance(v, list):
            return ";".join(fmt(x) for x in v)
        return repr(v).lower() if isinstance(v, (bool, type(None))) else repr(v)

    if name == "piecewise":
        lr = config["values"][0]
        config["values"] = config["values"][1:]
    elif name == "warmup":
        lr = config.pop("peak")
        after = config.pop("after")
        if after is not None:
            after_spec, after_lr = _to_spec(after, skip_defaults=True)
            assert after_lr == lr
            after_name, _, after_items = after_spec.partition(":")
            config["after"] = after_name
            items = ",".join(f"{k}={fmt(v) if k != 'after' else v}"
                             for k, v in config.items())
            return f"{name}:{items},{after_items}".rstrip(","), lr
    else:
        lr = config.pop(S._LR_PARAM[type(sched)])
    items = ",".join(f"{k}={fmt(v)}" for k, v in config.items())
    return (f"{name}:{items}" if items else name), lr


ROUND_TRIP = ALL_EXAMPLES[:-1] + [
    LinearWarmup(7, 0.25, after=PolynomialDecay(0.25, 9, cycle=True)),
    LinearWarmup(7, 0.25, after=Constant(0.25)),
    PiecewiseConstantDecay([0, 3, 1000], [1.0, 0.5, 0.25, 1e-5]),
    CosineDecay(1e-3, 17, alpha=1.0),
]


@pytest.mark.parametrize("sched", ROUND_TRIP, ids=repr)
def test_from_string_round_trip(sched):
    spec, lr = _to_spec(sched)
    assert from_string(spec, lr) == sched
    assert from_string(spec.upper(), lr) == sched  # case-insensitive


@HYPO
@given(name=st.sampled_from(["exponential", "inverse_time"]),
       lr=st.floats(0, 10), steps=st.integers(1, 10 ** 6),
       rate=st.floats(0, 1), staircase=st.booleans())
def test_from_string_round_trip_random(name, lr, steps, rate, staircase):
    sched = SCHEDULES[name](lr, steps, rate, staircase=staircase)
    spec, lr2 = _to_spec(sched)
    assert from_string(spec, lr2) == sched


BAD_SPECS = [
    ("cosin:decay_steps=10", "unknown schedule 'cosin'.*valid names: "
     "exponential, piecewise, polynomial, inverse_time, cosine, cosine_restarts, warmup, "
     "constant"),
    ("cosine:decay_step=10", "unknown key.*decay_step.*valid keys: "
     "decay_steps, alpha, warmup_target, warmup_steps"),
    ("cosine:decay_steps=10,initial_learning_rate=0.5",
     "initial_learning_rate of schedule 'cosine' comes from the lr argument"),
    ("constant:lr=0.5", "lr of schedule 'constant' comes from the lr argument"),
    ("warmup:warmup_steps=10,peak=0.2", "peak of schedule 'warmup' comes from"),
    ("cosine:decay_steps", "bad item 'decay_steps'.*key=value"),
    ("cosine:decay_steps=10,,alpha=0.1", "bad item ''"),
    ("cosine:decay_steps=", "bad item"),
    ("cosine:decay_steps=10,decay_steps=20", "key 'decay_steps' given twice"),
    ("cosine:decay_steps=ten", "cannot parse 'ten'"),
    ("cosine:decay_steps=10;20", "'decay_steps' takes a single value"),
    ("cosine:decay_steps=0", "decay_steps must be a positive integer, got 0"),
    ("cosine:decay_steps=10,alpha=2", "alpha must be a finite number in"),
    ("exponential:decay_steps=10,decay_rate=0.5,staircase=maybe",
     "cannot parse 'maybe'"),
    ("exponential:decay_steps=10,decay_rate=0.5,staircase=1",
     "staircase must be a bool"),
    ("exponential:decay_steps=10", "decay_rate"),  # missing argument
    ("piecewise:boundaries=100;200,values=0.1;0.01;0.001",
     r"values lists the learning rates after each boundary.*needs "
     r"len\(boundaries\) = 2 items, got 3"),
    ("piecewise:boundaries=100;200", "needs values"),
    ("piecewise:values=0.1", "needs boundaries"),
    ("piecewise:boundaries=200;100,values=0.1;0.01",
     "boundaries must be strictly increasing"),
    ("piecewise:boundaries=1.5,values=0.1", r"boundaries\[0\] must be a "
     "non-negative integer"),
    ("warmup:warmup_steps=10,decay_steps=100", "unknown key.*decay_steps for "
     "schedule 'warmup'.*valid keys: warmup_steps, start, after"),
    ("warmup:warmup_steps=10,after=cosin", "unknown 'after' schedule 'cosin'"),
    ("warmup:warmup_steps=10,after=warmup", "unknown 'after' schedule"),
    ("warmup:warmup_steps=10,after=cosine,decay_steps=5,bogus=1",
     "unknown key.*bogus for schedule 'cosine'"),
]


@pytest.mark.parametrize("spec, message", BAD_SPECS)
def test_from_string_errors(spec, message):
    with pytest.raises((ValueError, TypeError), match=message):
        from_string(spec, 0.1)


def test_from_string_bad_lr_and_spec_type():
    with pytest.raises(ValueError, match="lr must be a non-negative finite"):
        from_string("constant", -1.0)
    with pytest.raises(TypeError, match="spec must be a str"):
        from_string(None, 0.1)


def test_registry():
    assert SCHEDULES == {
        "exponential": ExponentialDecay, "piecewise": PiecewiseConstantDecay,
        "polynomial": PolynomialDecay, "inverse_time": InverseTimeDecay,
        "cosine": CosineDecay, "cosine_restarts": S.CosineDecayRestarts,
        "warmup": LinearWarmup, "constant": Constant}
    for cls in SCHEDULES.values():
        assert issubclass(cls, Schedule)


# --------------------------------------------------------------------------
# hypothesis properties
# --------------------------------------------------------------------------

lrs = st.floats(0.0, 10.0)
pos_steps = st.integers(1, 500)
step_lists = st.lists(st.integers(0, 2000), min_size=2, max_size=30)


def _nonincreasing(values):
    """Non-increasing up to float rounding (relative to the largest value)."""
    slack = 1e-12 * max(values, default=0.0) + 1e-300
    return all(b <= a + slack for a, b in zip(values, values[1:]))


def _nondecreasing(values):
    return _nonincreasing(values[::-1])


def _check_values(sched, steps):
    values = [sched(s) for s in sorted(steps)]
    for v in values:
        assert type(v) is float and math.isfinite(v) and v >= 0.0
    return values


@HYPO
@given(lr=lrs, ds=pos_steps, rate=st.floats(0.0, 1.0),
       staircase=st.booleans(), steps=step_lists)
def test_property_exponential(lr, ds, rate, staircase, steps):
    values = _check_values(ExponentialDecay(lr, ds, rate, staircase), steps)
    assert _nonincreasing(values)
    assert max(values) <= lr


@HYPO
@given(lr=lrs, ds=pos_steps, rate=st.floats(0.0, 100.0),
       staircase=st.booleans(), steps=step_lists)
def test_property_inverse_time(lr, ds, rate, staircase, steps):
    values = _check_values(InverseTimeDecay(lr, ds, rate, staircase), steps)
    assert _nonincreasing(values)


@HYPO
@given(lr=lrs, end=lrs, ds=pos_steps, power=st.floats(1e-3, 5.0),
       cycle=st.booleans(), steps=step_lists)
def test_property_polynomial(lr, end, ds, power, cycle, steps):
    sched = PolynomialDecay(lr, ds, end_learning_rate=end, power=power,
                            cycle=cycle)
    values = _check_values(sched, steps)
    low, high = min(lr, end), max(lr, end)
    slack = 1e-12 * high + 1e-300  # (lr - end) + end rounds at high's scale
    assert all(low - slack <= v <= high + slack for v in values)
    if not cycle:
        assert (_nonincreasing if lr >= end else _nondecreasing)(values)
        assert sched(ds) == pytest.approx(end, rel=1e-12, abs=1e-300)


@HYPO
@given(lr=lrs, target=st.one_of(st.none(), lrs), ds=pos_steps,
       alpha=st.floats(0.0, 1.0), warmup=st.integers(0, 300), steps=step_lists)
def test_property_cosine(lr, target, ds, alpha, warmup, steps):
    if target is None:
        warmup = 0
    sched = CosineDecay(lr, ds, alpha=alpha, warmup_target=target,
                        warmup_steps=warmup)
    _check_values(sched, steps)
    peak = lr if target is None else target
    decay = _check_values(sched, [s + warmup for s in steps])
    assert _nonincreasing(decay)
    assert all(v <= peak * (1 + 1e-12) for v in decay)
    assert sched(warmup + ds) == pytest.approx(alpha * peak, rel=1e-12,
                                               abs=1e-300)
    if warmup:
        ramp = _check_values(sched, [s % warmup for s in steps] + [warmup])
        assert (_nondecreasing if peak >= lr else _nonincreasing)(ramp)


@HYPO
@given(data=st.data(), n=st.integers(1, 6), steps=step_lists)
def test_property_piecewise(data, n, steps):
    boundaries = sorted(data.draw(st.sets(st.integers(0, 1000), min_size=n,
                                          max_size=n)))
    values = data.draw(st.lists(lrs, min_size=n + 1, max_size=n + 1))
    sched = PiecewiseConstantDecay(boundaries, values)
    got = _check_values(sched, steps)
    assert set(got) <= set(values)
    for b, v, v_next in zip(boundaries, values, values[1:]):
        assert sched(b) == v and sched(b + 1) == v_next
    desc = sorted(values, reverse=True)
    if _nonincreasing(desc):
        assert _nonincreasing(_check_values(
            PiecewiseConstantDecay(boundaries, desc), steps))


@HYPO
@given(warmup=st.integers(0, 300), peak=lrs, start=lrs, steps=step_lists)
def test_property_linear_warmup(warmup, peak, start, steps):
    sched = LinearWarmup(warmup, peak, start=start)
    values = _check_values(sched, steps)
    assert (_nondecreasing if peak >= start else _nonincreasing)(values)
    assert sched(warmup) == peak
    if warmup:
        assert sched(0) == start


@HYPO
@given(data=st.data(), n=st.integers(0, 4), steps=step_lists)
def test_property_join_restarts(data, n, steps):
    boundaries = sorted(data.draw(st.sets(st.integers(0, 500), min_size=n,
                                          max_size=n)))
    # schedule i returns 1000 * i + local step, so we can read both back
    scheds = [(lambda i: lambda t: 1000.0 * i + t)(i) for i in range(n + 1)]
    j = join(scheds, boundaries)
    for s in steps:
        i = sum(b <= s for b in boundaries)
        offset = boundaries[i - 1] if i else 0
        assert j(s) == 1000.0 * i + (s - offset)


# invalid configurations always raise
bad_lrs = st.one_of(st.floats(max_value=-1e-300, allow_infinity=True),
                    st.just(float("nan")), st.just(float("inf")))
bad_decay_steps = st.one_of(st.integers(max_value=0),
                            st.floats(0.01, 1e6).filter(
                                lambda x: not x.is_integer()))


@HYPO
@given(cls=st.sampled_from([ExponentialDecay, InverseTimeDecay]),
       lr=st.one_of(lrs, bad_lrs), ds=st.one_of(pos_steps, bad_decay_steps),
       rate=st.one_of(st.floats(0, 2), bad_lrs))
def test_property_invalid_decay_raises(cls, lr, ds, rate):
    valid = (lr >= 0 and math.isfinite(lr) and isinstance(ds, int) and ds > 0
             and rate >= 0 and math.isfinite(rate))
    assume(not valid)
    with pytest.raises(ValueError, match="initial_learning_rate|decay_steps"
                       "|decay_rate"):
        cls(lr, ds, rate)


@HYPO
@given(lr=st.one_of(lrs, bad_lrs), ds=st.one_of(pos_steps, bad_decay_steps),
       alpha=st.floats(allow_nan=True), target=st.one_of(st.none(), lrs,
                                                          bad_lrs),
       warmup=st.integers(-5, 5))
def test_property_invalid_cosine_raises(lr, ds, alpha, target, warmup):
    valid = (lr >= 0 and math.isfinite(lr) and isinstance(ds, int) and ds > 0
             and 0 <= alpha <= 1 and warmup >= 0
             and (target is None and warmup == 0 or target is not None
                  and target >= 0 and math.isfinite(target)))
    if valid:
        CosineDecay(lr, ds, alpha, target, warmup)
    else:
        with pytest.raises(ValueError):
            CosineDecay(lr, ds, alpha, target, warmup)


@HYPO
@given(boundaries=st.lists(st.integers(-3, 50), min_size=1, max_size=5),
       values=st.lists(st.one_of(lrs, bad_lrs), min_size=1, max_size=7))
def test_property_piecewise_validation(boundaries, values):
    valid = (all(b >= 0 for b in boundaries)
             and all(a < b for a, b in zip(boundaries, boundaries[1:]))
             and len(values) == len(boundaries) + 1
             and all(v >= 0 and math.isfinite(v) for v in values))
    if valid:
        PiecewiseConstantDecay(boundaries, values)
        join(values, boundaries)
    else:
        with pytest.raises(ValueError):
            PiecewiseConstantDecay(boundaries, values)
        with pytest.raises(ValueError):
            join(values, boundaries)


@HYPO
@given(step=st.one_of(st.integers(max_value=-1),
                      st.floats().filter(lambda x: not (
                          math.isfinite(x) and x.is_integer() and x >= 0))))
def test_property_bad_steps_raise(step):
    for sched in ALL_EXAMPLES:
        with pytest.raises((ValueError, TypeError), match="step must be"):
            sched(step)


# --------------------------------------------------------------------------
# module hygiene
# --------------------------------------------------------------------------

def _imports(module):
    """(top-level names, relative module names) that ``module``'s source imports."""
    imported, relative = set(), set()
    for node in ast.walk(ast.parse(pathlib.Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            relative |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    return imported, relative


def test_only_stdlib_imports():
    """The module must import instantly: standard library only (no numba,
    numpy, torch, matplotlib), and of fastopt only the stdlib-only spec reader and
    argument checks."""
    from fastopt import specs

    imported, relative = _imports(S)
    assert imported <= {"bisect", "math", "numbers", "operator"}, imported
    assert relative <= {"specs", "_checks"}, relative
    assert _imports(specs) == (set(), set())
    code = ("import sys, fastopt.schedules as s; s.from_string('cosine:decay_steps=5', 0.1); "
            "print(sorted(m for m in ('numpy', 'numba', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_public_names_and_docstrings():
    for name in S.__all__:
        obj = getattr(S, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__) > 40, name
    for cls in SCHEDULES.values():
        assert ".. math::" in cls.__doc__ and "Example" in cls.__doc__
        assert "torch" in cls.__doc__


def test_doctests():
    result = doctest.testmod(S, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0
