"""convention="keras" against Keras 3's own optimizers (torch backend), step by step."""

import os

import numpy as np
import pytest

from fastopt import optim
from fastopt.optim import catalogue

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

STEPS = 30
SHAPES = [(6,), (2, 3)]


def keras_opt(name, kw):
    """The Keras optimizer equivalent to fastopt's ``name(**kw, convention="keras")``."""
    kw = dict(kw)
    args = dict(learning_rate=kw.pop("lr"))
    if "betas" in kw:
        args["beta_1"], args["beta_2"] = kw.pop("betas")
    if "alpha" in kw:
        args["rho"] = kw.pop("alpha")
    if "eps" in kw:
        args["epsilon"] = kw.pop("eps")
    wd = kw.pop("weight_decay", 0.0)
    if wd:
        args["weight_decay"] = wd
    args.update(kw)
    keras_name = catalogue.keras_names()[getattr(optim, name).__name__.lower()]
    cls = getattr(keras.optimizers, keras_name)
    if name == "AdamW":
        args.setdefault("weight_decay", 0.0)
    return cls(**args)


# Keras keeps the learning rate in a float32 variable, and its torch backend computes the
# decoupled weight-decay factor 1 - wd*lr in float32: learning rates and weight decays here
# are powers of two, exact in float32, so that float64 runs can be compared to 1e-10.
CASES = [
    ("SGD", dict(lr=0.0625)),
    ("SGD", dict(lr=0.0625, momentum=0.9)),
    ("SGD", dict(lr=0.0625, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.0625, momentum=0.9, weight_decay=0.0078125)),
    ("Adagrad", dict(lr=0.0625, eps=1e-7)),
    ("Adagrad", dict(lr=0.0625, eps=1e-7, initial_accumulator_value=0.5, weight_decay=0.0078125)),
    ("RMSprop", dict(lr=0.015625, alpha=0.9, eps=1e-7)),
    ("RMSprop", dict(lr=0.015625, alpha=0.9, eps=1e-7, centered=True)),
    ("RMSprop", dict(lr=0.015625, alpha=0.9, eps=1e-7, momentum=0.8, centered=True)),
    ("Adam", dict(lr=0.015625, eps=1e-7)),
    ("Adam", dict(lr=0.015625, eps=1e-7, amsgrad=True, betas=(0.8, 0.95))),
    ("Adam", dict(lr=0.015625, eps=1e-7, weight_decay=0.0078125)),
    ("AdamW", dict(lr=0.015625, eps=1e-7, weight_decay=0.03125)),
    ("AdamW", dict(lr=0.015625, eps=1e-7, weight_decay=0.03125, amsgrad=True)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_keras_convention_matches_keras(name, kw, dtype, rng):
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    kvars = [keras.Variable(p.copy(), dtype=dtype) for p in params]
    kopt = keras_opt(name, kw)
    opt = getattr(optim, name)(params, convention="keras", **kw)
    # float32: Keras computes 1 - beta^t in float32 (about 1e-4 relative error at t=1 for
    # beta2=0.999) where fastopt uses float64, so step sizes differ at that level.
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    for _ in range(STEPS):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        opt.step(grads)
        kopt.apply_gradients(zip([keras.ops.convert_to_tensor(g, dtype=dtype) for g in grads],
                                 kvars))
        for p, v in zip(params, kvars):
            np.testing.assert_allclose(p, keras.ops.convert_to_numpy(v), rtol=rtol,
                                       atol=atol)


def test_keras_adagrad_default_accumulator_is_keras_default():
    p = np.zeros(2)
    opt = optim.Adagrad(p, convention="keras")
    np.testing.assert_array_equal(opt.state[0]["accumulator"], 0.1)
    assert optim.Adagrad(np.zeros(2)).state[0]["sum"].tolist() == [0.0, 0.0]


def test_conventions_differ_where_documented():
    """Adam: Keras's eps-hat differs from torch's eps; SGD momentum agrees at constant lr."""
    g = np.array([1e-6, -2e-6, 3e-6])
    a, b = np.zeros(3), np.zeros(3)
    optim.Adam(a, lr=0.1, eps=1e-6).step(g)
    optim.Adam(b, lr=0.1, eps=1e-6, convention="keras").step(g)
    assert not np.allclose(a, b, rtol=1e-3)
    a, b = np.zeros(3), np.zeros(3)
    oa = optim.SGD(a, lr=0.1, momentum=0.9)
    ob = optim.SGD(b, lr=0.1, momentum=0.9, convention="keras")
    for _ in range(5):
        oa.step(g)
        ob.step(g)
    np.testing.assert_allclose(a, b, rtol=1e-12)
