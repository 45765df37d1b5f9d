"""The optimizer objects: parameter groups, schedules, state dicts, bad input, recompilation."""

import math

import numpy as np
import pytest

import fastopt
from fastopt import optim, schedules
from fastopt.kernels import cpu

ALL = sorted(optim.OPTIMIZERS)


def make(name, params, **kw):
    kw.setdefault("lr", 1e-2)
    return optim.OPTIMIZERS[name](params, **kw)


def snapshot(params, opt):
    return ([p.copy() for p in params],
            [{k: v.copy() for k, v in st.items()} for st in opt.state],
            opt.steps, opt.skipped_steps)


def assert_unchanged(before, params, opt):
    ps, states, steps, skipped = before
    for a, b in zip(ps, params):
        np.testing.assert_array_equal(a, b)
    for sa, sb in zip(states, opt.state):
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    assert opt.steps == steps and opt.skipped_steps == skipped


@pytest.mark.parametrize("name", ALL)
def test_single_array_list_and_groups(name, rng):
    a = rng.standard_normal(10)
    b = rng.standard_normal((3, 4))
    ga, gb = rng.standard_normal(10), rng.standard_normal((3, 4))
    a1, b1, a2, b2 = a.copy(), b.copy(), a.copy(), b.copy()
    o1 = make(name, [a1, b1])
    o2 = make(name, [{"params": [a2]}, {"params": b2}])
    o3 = make(name, a.copy())
    for _ in range(3):
        assert o1.step([ga, gb]) is True
        o2.step([ga, gb])
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    o3.step(ga)
    assert o3.steps == 1 and o1.steps == 3


def test_param_groups_override_hyperparameters(rng):
    w, bias = rng.standard_normal(6), rng.standard_normal(3)
    gw, gb = rng.standard_normal(6), rng.standard_normal(3)
    w_ref, b_ref = w.copy(), bias.copy()
    opt = optim.AdamW([{"params": [w]}, {"params": [bias], "weight_decay": 0.0, "lr": 0.5}],
                      lr=0.1, weight_decay=0.1)
    opt.step([gw, gb])
    optim.AdamW(w_ref, lr=0.1, weight_decay=0.1).step(gw)
    optim.AdamW(b_ref, lr=0.5, weight_decay=0.0).step(gb)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(bias, b_ref)
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_lr_property_and_schedule():
    w = np.zeros(3)
    sched = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = optim.SGD(w, lr=sched)
    assert opt.lr == pytest.approx(0.1)
    opt.step(np.ones(3))
    np.testing.assert_allclose(w, -0.1)
    assert opt.lr == pytest.approx(0.05)
    opt.step(np.ones(3))
    np.testing.assert_allclose(w, -0.15)
    opt.lr = 1.0
    assert opt.lr == 1.0


@pytest.mark.parametrize("name", ALL)
def test_changing_lr_adds_no_compiled_signature(name, rng):
    p = rng.standard_normal(50).astype(np.float32)
    g = rng.standard_normal(50).astype(np.float32)
    opt = make(name, p, lr=1e-3)
    opt.step(g)
    serial, parallel = cpu.update_kernels(opt.rule.name)
    before = (len(serial.signatures), len(parallel.signatures))
    for lr in (1e-4, 0.3, 2.0):
        opt.lr = lr
        opt.step(g)
    opt.lr = schedules.CosineDecay(0.1, decay_steps=10)
    for _ in range(3):
        opt.step(g)
    assert (len(serial.signatures), len(parallel.signatures)) == before


# ---------------------------------------------------------------------------------------
# bad input: clear errors, nothing modified


BAD_HYPER = [
    ("sgd", dict(lr=-1.0), "lr"),
    ("sgd", dict(lr=float("nan")), "lr"),
    ("sgd", dict(momentum=-0.1), "momentum"),
    ("sgd", dict(nesterov=True), "nesterov"),
    ("sgd", dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
    ("sgd", dict(weight_decay=-1e-3), "weight_decay"),
    ("sgd", dict(weight_decay=float("nan")), "weight_decay"),
    ("sgd", dict(momentum=0.9, dampening=0.5, convention="keras"), "dampening"),
    ("adam", dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    ("adam", dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    ("adam", dict(betas=0.9), "betas"),
    ("adam", dict(eps=-1e-8), "eps"),
    ("adam", dict(eps=float("nan")), "eps"),
    ("adam", dict(amsgrad="yes"), "amsgrad"),
    ("adam", dict(convention="tf"), "convention"),
    ("adamw", dict(weight_decay=float("inf")), "weight_decay"),
    ("rmsprop", dict(alpha=1.5), "alpha"),
    ("rmsprop", dict(momentum=-1.0), "momentum"),
    ("adagrad", dict(lr_decay=-1.0), "lr_decay"),
    ("adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ("adadelta", dict(rho=1.5), "rho"),
    ("nadam", dict(momentum_decay=-1.0), "momentum_decay"),
    ("radam", dict(convention="keras"), "convention"),  # Keras has no RAdam
    ("sgd", dict(nesterov=True, convention="torch"), "nesterov"),
    ("radam", dict(betas=(0.9, float("nan"))), r"betas\[1\]"),
    ("lion", dict(betas=(0.9, 1.0)), r"betas\[1\]"),
    ("adam", dict(max_grad_norm=0.0), "max_grad_norm"),
    ("adam", dict(skip_nonfinite=1), "skip_nonfinite"),
    ("adam", dict(lr="fast"), "lr"),
]


@pytest.mark.parametrize("name,kw,match", BAD_HYPER)
def test_invalid_hyperparameters_raise(name, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        optim.OPTIMIZERS[name](np.zeros(3), **kw)


@pytest.mark.parametrize("bad,match", [
    (np.zeros(3, dtype=np.int64), "float32 or float64"),
    (np.zeros(3, dtype=np.complex128), "float32 or float64"),
    (np.zeros((4, 4))[:, 0], "C-contiguous"),
    ([1.0, 2.0], "numpy.ndarray"),
    ([], "empty"),
    ({"params": [np.zeros(2)]}, "list"),
    ([{"params": [np.zeros(2)], "bogus": 1}], "bogus"),
    ([np.zeros(2), {"params": [np.zeros(2)]}], "mixes"),
])
def test_invalid_params_raise(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        optim.Adam(bad)


def test_read_only_params_raise():
    p = np.zeros(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.Adam(p)


def test_same_array_twice_raises():
    p = np.zeros(8)
    with pytest.raises(ValueError, match="share memory"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match="share memory"):
        optim.SGD([p[:5], p[4:]])
    optim.SGD([p[:4], p[4:]])  # adjacent, disjoint views are fine


@pytest.mark.parametrize("name", ALL)
def test_bad_grads_raise_and_change_nothing(name, rng):
    params = [rng.standard_normal(5), rng.standard_normal((2, 3))]
    opt = make(name, params)
    opt.step([rng.standard_normal(5), rng.standard_normal((2, 3))])
    before = snapshot(params, opt)
    bad = [
        ([np.ones(5)], ValueError, "2 parameters"),
        ([np.ones(5), np.ones((3, 2))], ValueError, "shape"),
        ([np.ones(5), np.ones((2, 3), dtype=np.float32)], TypeError, "dtype"),
        ([np.ones(5), np.ones((3, 2)).T], ValueError, "C-contiguous"),
        ([np.ones(5), np.ones((2, 3), dtype=np.int32)], TypeError, "dtype int32"),
        (np.ones(5), TypeError, "list"),
        ([np.ones(5), [[1.0] * 3] * 2], TypeError, "numpy.ndarray"),
    ]
    for grads, exc, match in bad:
        with pytest.raises(exc, match=match):
            opt.step(grads)
        assert_unchanged(before, params, opt)


def test_bad_schedule_value_changes_nothing(rng):
    p = rng.standard_normal(4)
    opt = optim.Adam(p, lr=lambda step: 0.1 if step < 1 else float("nan"))
    opt.step(np.ones(4))
    before = snapshot([p], opt)
    with pytest.raises(ValueError, match="lr"):
        opt.step(np.ones(4))
    assert_unchanged(before, [p], opt)


def test_group_hyperparameter_edited_to_invalid_is_rejected(rng):
    p = rng.standard_normal(4)
    opt = optim.Adam(p)
    opt.step(np.ones(4))
    before = snapshot([p], opt)
    opt.param_groups[0]["betas"] = (0.9, 2.0)
    with pytest.raises(ValueError, match="betas"):
        opt.step(np.ones(4))
    assert_unchanged(before, [p], opt)


def test_editing_group_options_allocates_state(rng):
    p = rng.standard_normal(4)
    opt = optim.SGD(p, lr=0.1)
    opt.step(np.ones(4))
    assert opt.state[0] == {}
    opt.param_groups[0]["momentum"] = 0.9
    before = p.copy()
    opt.step(np.ones(4))  # a fresh buffer starts from the gradient, like torch
    np.testing.assert_allclose(p, before - 0.1)
    np.testing.assert_allclose(opt.state[0]["momentum_buffer"], 1.0)


# ---------------------------------------------------------------------------------------
# non-finite gradients and fused clipping


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_skip_nonfinite_leaves_everything(name, bad, rng, kernel_path):
    params = [rng.standard_normal(40), rng.standard_normal(7)]
    opt = make(name, params, skip_nonfinite=True)
    opt.step([rng.standard_normal(40), rng.standard_normal(7)])
    before = snapshot(params, opt)
    g = [rng.standard_normal(40), rng.standard_normal(7)]
    g[1][3] = bad
    assert opt.step(g) is False
    assert opt.skipped_steps == 1
    before = (before[0], before[1], before[2], 1)
    assert_unchanged(before, params, opt)
    g[1][3] = 0.0
    assert opt.step(g) is True and opt.steps == 2


def test_without_skip_nonfinite_nan_propagates_like_torch():
    p = np.zeros(3)
    optim.Adam(p).step(np.array([np.nan, 1.0, 1.0]))
    assert np.isnan(p[0]) and np.isfinite(p[1:]).all()


@pytest.mark.parametrize("name", ALL)
def test_fused_clip_equals_clip_then_step(name, rng):
    params = [rng.standard_normal(30), rng.standard_normal((4, 5))]
    copies = [p.copy() for p in params]
    fused = make(name, params, max_grad_norm=0.5)
    plain = make(name, copies)
    for _ in range(5):
        g = [rng.standard_normal(30) * 3, rng.standard_normal((4, 5)) * 3]
        fused.step(g)
        g2 = [x.copy() for x in g]
        norm = fastopt.clip_grad_norm(g2, 0.5)
        assert fused.last_grad_norm == pytest.approx(norm, rel=1e-12)
        plain.step(g2)
    for a, b in zip(params, copies):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_repr_names_options():
    r = repr(optim.Adam([np.zeros(2), np.zeros(3)], lr=0.5, amsgrad=True))
    assert "Adam(2 arrays" in r and "amsgrad=True" in r and "lr=0.5" in r


@pytest.mark.parametrize("module", ["fastopt", "fastopt.optim", "fastopt.optim.optimizers",
                                    "fastopt.optim.base"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_import_is_light():
    """`import fastopt` loads neither numba nor matplotlib, and compiles nothing."""
    import subprocess
    import sys

    code = ("import sys, fastopt; "
            "print('numba' in sys.modules, 'matplotlib' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "False"]


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizer_deep_copies_and_pickles(name):
    """fit's warm-up deep-copies the optimizer; checkpoints of whole objects pickle it."""
    import copy
    import pickle

    p = np.linspace(-1, 1, 7).astype(np.float32)
    opt = optim.OPTIMIZERS[name](p)
    opt.step(np.full(7, 0.5, np.float32))
    for twin in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert twin.steps == opt.steps and twin.backend == opt.backend
        assert twin.param_groups[0]["params"][0] is not p


def test_convention_defaults_resolve_once():
    """DEFAULT in a signature: one object (copies and pickles are it), resolved to the
    convention's value when the optimizer is built, never stored."""
    import copy
    import inspect
    import pickle

    from fastopt.optim.base import DEFAULT

    assert copy.deepcopy(DEFAULT) is DEFAULT and pickle.loads(pickle.dumps(DEFAULT)) is DEFAULT
    assert "lr=DEFAULT" in str(inspect.signature(optim.SGD))
    for name, cls in optim.OPTIMIZERS.items():
        for convention in cls._rules:
            opt = cls(np.zeros(2), convention=convention)
            assert DEFAULT not in opt.defaults.values(), (name, convention)
            assert opt.defaults == {k: v for k, v in cls.default_arguments(convention).items()
                                    if k in opt.defaults}
    assert copy.deepcopy(optim.SGD(np.zeros(2), convention="keras")).defaults["lr"] == 0.01
    # a passed value equal to the other convention's default is kept
    assert optim.SGD(np.zeros(2), lr=1e-3, convention="keras").defaults["lr"] == 1e-3
