"""convention="keras" against Keras 3's own optimizers (torch backend), step by step.

Also: the Keras defaults of every optimizer (fastopt's convention="keras" with no
arguments against Keras's class with none), the schedules, the He initialiser, and every
row of the README's "Keras -> fastopt" table. Skipped where Keras (or torch, its backend
here) is not installed: ``pip install -e ".[test]"``.
"""

import inspect
import math
import os

import numpy as np
import pytest

from fastopt import init, nn, optim, schedules
from fastopt.optim import catalogue

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported
pytest.importorskip("torch", reason="Keras runs on its torch backend here")
keras = pytest.importorskip("keras", reason="Keras 3 is the oracle: pip install keras")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras runs on {keras.backend.backend()!r}; these tests need "
                "KERAS_BACKEND=torch", allow_module_level=True)

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
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-6)),
    ("Adadelta", dict(lr=0.5, rho=0.95, eps=1e-7, weight_decay=0.0078125)),
    ("Adamax", dict(lr=0.015625, eps=1e-7)),
    ("Adamax", dict(lr=0.015625, eps=1e-3, betas=(0.8, 0.95), weight_decay=0.0078125)),
    ("NAdam", dict(lr=0.015625, eps=1e-7)),
    ("NAdam", dict(lr=0.015625, eps=1e-3, betas=(0.8, 0.95), weight_decay=0.0078125)),
    ("Lion", dict(lr=0.015625)),
    ("Lion", dict(lr=0.015625, betas=(0.8, 0.95), weight_decay=0.0078125)),
    ("SGD", dict(lr=0.0625, nesterov=True)),  # Keras: nesterov without momentum
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



# ---------------------------------------------------------------------------------------
# Keras's defaults: convention="keras" with no arguments is Keras's class with none

DEFAULT_STEPS = 20


def keras_step(kopt, kvars, grads):
    kopt.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], kvars))


def run_both(ours, theirs, rng, steps=DEFAULT_STEPS, shapes=SHAPES, dtype="float32",
             params=None):
    """Step fastopt's ``ours(params)`` and Keras's optimizer ``theirs`` on the same float32
    parameters and gradients; the two parameter lists after every step."""
    params = params or [rng.standard_normal(s).astype(dtype) for s in shapes]
    kvars = [keras.Variable(p.copy(), dtype=dtype) for p in params]
    opt = ours(params)
    for _ in range(steps):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        opt.step(grads)
        keras_step(theirs, kvars, grads)
        yield params, [keras.ops.convert_to_numpy(v) for v in kvars]


def assert_same_steps(ours, theirs, rng, rtol=1e-6, atol=1e-6, **kw):
    """Parameters of order 1 after each step: to 1e-6 absolute and relative. (The float32
    parameters themselves round at 1.2e-7; Keras computes the bias corrections 1 - beta^t
    in float32, 1e-5 relative off at t=1 for beta2=0.999, against fastopt's float64: a
    1e-8 difference on a step of lr=1e-3.)"""
    n = 0
    for mine, keras_params in run_both(ours, theirs, rng, **kw):
        n += 1
        for i, (a, b) in enumerate(zip(mine, keras_params)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol,
                                       err_msg=f"array {i} after step {n}")
    return n


KERAS_CLASSES = catalogue.keras_names()  # fastopt name -> keras.optimizers class name


@pytest.mark.parametrize("name", list(KERAS_CLASSES))
def test_keras_defaults_step_like_keras(name, rng):
    cls = optim.OPTIMIZERS[name]
    kopt = getattr(keras.optimizers, KERAS_CLASSES[name])()
    steps = assert_same_steps(lambda p: cls(p, convention="keras"), kopt, rng)
    assert steps == DEFAULT_STEPS


# fastopt argument -> Keras argument (the rest have the same name)
KERAS_ARG = {"lr": "learning_rate", "alpha": "rho", "eps": "epsilon"}


@pytest.mark.parametrize("name", list(KERAS_CLASSES))
def test_keras_defaults_are_kerass_signature_defaults(name):
    """Every default fastopt's Keras convention has is the default of the Keras argument
    it stands for (Keras's weight_decay=None: no decay, 0 here)."""
    ours = optim.OPTIMIZERS[name].default_arguments("keras")
    sig = inspect.signature(getattr(keras.optimizers, KERAS_CLASSES[name]).__init__)
    theirs = {k: p.default for k, p in sig.parameters.items()}
    compared = []
    for arg, value in ours.items():
        if arg == "betas":
            assert value == (theirs["beta_1"], theirs["beta_2"]), name
        elif KERAS_ARG.get(arg, arg) in theirs:
            expected = theirs[KERAS_ARG.get(arg, arg)]
            assert value == (0.0 if expected is None else expected), (name, arg)
        else:  # fastopt's own options (maximize, dampening, lr_decay, ...) do nothing
            assert arg in ("maximize", "dampening", "lr_decay", "decoupled_weight_decay",
                           "momentum_decay"), (name, arg)
            continue
        compared.append(arg)
    assert "lr" in compared


def test_explicit_values_win_over_keras_defaults():
    p = np.zeros(3)
    assert optim.Adam(p, eps=1e-8, convention="keras").defaults["eps"] == 1e-8
    r = optim.RMSprop(p, lr=1e-2, alpha=0.99, convention="keras").defaults
    assert (r["lr"], r["alpha"], r["eps"]) == (1e-2, 0.99, 1e-7)
    assert optim.AdamW(p, weight_decay=1e-2, convention="keras").defaults["weight_decay"] == 1e-2
    assert optim.Adagrad(p, initial_accumulator_value=0.0,
                         convention="keras").state[0]["accumulator"].tolist() == [0, 0, 0]
    # parameter groups override the resolved defaults too
    g = optim.SGD([{"params": [p]}, {"params": [np.zeros(2)], "lr": 0.5}], convention="keras")
    assert [x["lr"] for x in g.param_groups] == [0.01, 0.5]


def test_torch_convention_keeps_torch_defaults():
    torch = pytest.importorskip("torch")
    for name, tname in catalogue.torch_names().items():
        sig = inspect.signature(getattr(torch.optim, tname).__init__)
        for arg, value in optim.OPTIMIZERS[name].default_arguments("torch").items():
            if arg in sig.parameters and arg != "initial_accumulator_value":
                assert value == sig.parameters[arg].default, (name, arg)
    assert optim.Adagrad.default_arguments("torch")["initial_accumulator_value"] == 0.0
    assert optim.Lion.default_arguments("torch")["lr"] == 1e-4
    with pytest.raises(ValueError, match="convention must be 'torch' for RAdam"):
        optim.RAdam.default_arguments("keras")


def test_nadam_uses_kerass_momentum_schedule(rng):
    """Keras 3's Nadam warms its momentum as beta1*(1 - 0.5*0.96^t) (momentum_decay=1 in
    torch's formula); torch's 0.96^(0.004 t) would not match Keras: this test can fail."""
    assert optim.NAdam.default_arguments("keras")["momentum_decay"] == 1.0
    kopt = keras.optimizers.Nadam()
    mine, theirs = list(run_both(lambda p: optim.NAdam(p, convention="keras",
                                                       momentum_decay=4e-3), kopt, rng))[-1]
    assert max(np.abs(a - b).max() for a, b in zip(mine, theirs)) > 1e-5


def test_keras_sgd_nesterov_without_momentum(rng):
    """Keras takes plain SGD steps for nesterov=True, momentum=0; torch refuses it."""
    kopt = keras.optimizers.SGD(nesterov=True)
    assert_same_steps(lambda p: optim.SGD(p, nesterov=True, convention="keras"), kopt, rng)
    a, b = np.ones(3), np.ones(3)
    optim.SGD(a, nesterov=True, convention="keras").step(np.full(3, 0.5))
    optim.SGD(b, convention="keras").step(np.full(3, 0.5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        optim.SGD(np.ones(3), nesterov=True)


# ---------------------------------------------------------------------------------------
# schedules (Keras computes in float32 by default, like the code in the lecture notes)

SCHEDULE_CASES = [
    # the README table's rows
    ("PiecewiseConstantDecay", dict(boundaries=[700, 900], values=[0.1, 0.05, 0.01]),
     range(0, 1201)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=1000, decay_rate=0.96),
     range(0, 20001, 7)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=1000, decay_rate=0.96,
                              staircase=True), range(0, 20001, 7)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=10000,
                             end_learning_rate=0.01, power=0.5), range(0, 12001, 5)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=1000,
                             end_learning_rate=0.01, power=2.0, cycle=True),
     range(0, 5001, 3)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=100, decay_rate=0.5),
     range(0, 3001, 3)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=1000, alpha=0.1),
     range(0, 1501)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=1000, warmup_target=0.1,
                         warmup_steps=100), range(0, 1501)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=100),
     range(0, 3101)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=50, t_mul=1.0,
                                 m_mul=0.8, alpha=0.05), range(0, 1001)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=30, t_mul=1.5,
                                 m_mul=0.9, alpha=0.1), range(0, 2001)),
]


@pytest.mark.parametrize("name,kw,steps", SCHEDULE_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SCHEDULE_CASES)])
def test_schedules_match_keras_float32(name, kw, steps):
    ours = getattr(schedules, name)(**kw)
    theirs = getattr(keras.optimizers.schedules, name)(**kw)
    lr0 = kw.get("initial_learning_rate") or kw.get("warmup_target") or kw["values"][0]
    steps = list(steps)
    got = np.array([ours(s) for s in steps])
    expected = np.array([float(theirs(s)) for s in steps])
    if name == "CosineDecayRestarts":
        # Keras finds the period from floor(log(1 + (t/T0)(t_mul - 1))/log(t_mul)) in
        # float32, which rounds down at some first steps of a period (step 75 = 30 + 45
        # here): there Keras gives the end of the previous period, alpha*lr0, fastopt the
        # restart. Those steps only, and only that way.
        starts = {round(ours._start(i) * ours.first_decay_steps) for i in range(30)}
        off = np.flatnonzero(~np.isclose(got, expected, rtol=1e-6, atol=1e-6 * lr0))
        for k in off:
            assert steps[k] in starts, steps[k]
            assert expected[k] == pytest.approx(kw.get("alpha", 0.0) * lr0, abs=1e-6 * lr0)
        assert len(off) <= 3
        keep = np.setdiff1d(np.arange(len(steps)), off)
        got, expected = got[keep], expected[keep]
    # relative 1e-6 (float32 rounds at 6e-8), absolute 1e-6 of the initial rate where a
    # cosine ends at 0 (Keras's float32 cos(pi) is 1 - 1e-8 off)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * lr0)


def test_cosine_decay_restarts_restarts():
    s = schedules.CosineDecayRestarts(0.1, first_decay_steps=10, t_mul=2.0, m_mul=0.5,
                                      alpha=0.1)
    # periods [0, 10), [10, 30), [30, 70): peaks 0.1, 0.05, 0.025 above alpha*lr0 = 0.01
    for start, peak in ((0, 0.1), (10, 0.05), (30, 0.025), (70, 0.0125)):
        assert s(start) == pytest.approx(0.9 * peak + 0.01, rel=1e-12)
    assert s(20) == pytest.approx(0.9 * 0.5 * 0.05 + 0.01, rel=1e-12)  # half way: cos = 0
    assert s(29) < s(30)


# ---------------------------------------------------------------------------------------
# the README's "Keras -> fastopt" table, row by row


def test_readme_sgd_momentum(rng):
    """keras.optimizers.SGD(0.1, momentum=0.9) == optim.SGD(params, 0.1, momentum=0.9,
    convention="keras")."""
    assert_same_steps(lambda p: optim.SGD(p, 0.1, momentum=0.9, convention="keras"),
                      keras.optimizers.SGD(0.1, momentum=0.9), rng)


def test_readme_sgd_with_piecewise_schedule(rng):
    """A schedule as the learning rate steps like Keras's across its boundaries (the
    table's boundaries scaled down to 20 steps)."""
    kw = dict(boundaries=[7, 12], values=[0.1, 0.05, 0.01])
    assert_same_steps(
        lambda p: optim.SGD(p, schedules.PiecewiseConstantDecay(**kw), momentum=0.9,
                            convention="keras"),
        keras.optimizers.SGD(keras.optimizers.schedules.PiecewiseConstantDecay(**kw),
                             momentum=0.9), rng)


def test_readme_adam_with_exponential_decay(rng):
    kw = dict(initial_learning_rate=1e-2, decay_steps=5, decay_rate=0.9)
    assert_same_steps(
        lambda p: optim.Adam(p, schedules.ExponentialDecay(**kw), convention="keras"),
        keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(**kw)), rng)


def test_readme_he_normal():
    """kernel_initializer='he_normal' == nn.MLP(init="he_normal") == init.he_normal: both
    a normal truncated at 2 of its standard deviations sqrt(2/fan_in)/0.8796..., so that the
    values have standard deviation sqrt(2/fan_in). Different random streams: the semantics
    (scale, truncation, shape) are compared, not the bits."""
    fan_in, fan_out = 784, 100
    target = math.sqrt(2.0 / fan_in)
    bound = 2 * target / init.TRUNCATED_STD_FACTOR
    theirs = keras.ops.convert_to_numpy(
        keras.initializers.HeNormal(seed=0)((fan_in, fan_out), dtype="float32"))
    ours = init.he_normal(np.empty((fan_in, fan_out), np.float32), np.random.default_rng(0))
    model = nn.MLP([fan_in, fan_out, 10], init="he_normal", seed=0)
    layer = np.asarray(model.weights[0])
    assert layer.shape == theirs.shape == (fan_in, fan_out)
    # Keras's own constant and fans (VarianceScaling(2.0, "fan_in", "truncated_normal"))
    he = keras.initializers.get("he_normal")
    assert isinstance(he, keras.initializers.VarianceScaling)
    assert (he.scale, he.mode, he.distribution) == (2.0, "fan_in", "truncated_normal")
    assert init.TRUNCATED_STD_FACTOR == 0.87962566103423978
    n = fan_in * fan_out
    # Keras's torch backend truncates by taking the first of 4 normals inside [-2, 2] and
    # keeps the first one when all 4 fall outside (probability 0.0455^4 = 4e-6 per value,
    # 0.3 values expected here); fastopt redraws until inside
    assert (np.abs(theirs) > bound * (1 + 1e-6)).sum() <= 3
    for w in (ours, layer):
        assert np.abs(w).max() <= bound * (1 + 1e-6)  # truncated at 2 std
    for w in (theirs, ours, layer):
        assert np.quantile(np.abs(w), 0.9999) > 0.99 * bound  # and not narrower
        # sample std: standard error about 1/sqrt(2n) = 0.25%; 1.5% is 6 of them
        assert abs(w.std() / target - 1) < 0.015
        assert abs(w.mean()) < 5 * target / math.sqrt(n)
    # the same distribution: quantiles of the two samples agree
    q = np.linspace(0.01, 0.99, 25)
    np.testing.assert_allclose(np.quantile(ours, q), np.quantile(theirs, q),
                               atol=0.03 * target)


def test_readme_defaults_table_is_what_the_classes_do():
    """The README's table of the defaults that differ states what default_arguments gives."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Keras -> fastopt", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines()
            if line.startswith("| ") and "torch (default" not in line]
    seen = 0
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        cls = getattr(optim, cells[0].split()[0], None)
        if cls is None or len(cells) != 3:
            continue  # the snippet table's rows
        for convention, cell in zip(("torch", "keras"), cells[1:]):
            if convention not in cls._rules:
                continue
            defaults = cls.default_arguments(convention)
            for arg, value in defaults.items():
                m = re.search(rf"\b{arg} (?:\([^)]*\) )?(-?\d[\d.e-]*)", cell)
                if m:
                    assert float(m.group(1)) == value, (cells[0], convention, arg)
                    seen += 1
    assert seen >= 30


def test_optimizers_docstring_defaults_table_is_what_the_classes_do():
    from fastopt.optim import optimizers

    table = optimizers.__doc__.split("Keras 3 (convention=\"keras\")\n", 1)[1].split("\n\n")[0]
    cls, n = None, 0
    for line in table.splitlines():
        words = line.split("(mu_t")[0].replace("(Keras's rho)", "").split()
        if len(words) == 4:
            cls = getattr(optim, words.pop(0))
        arg, torch_value, keras_value = words
        assert cls.default_arguments("torch")[arg] == float(torch_value), (cls, arg)
        assert cls.default_arguments("keras")[arg] == float(keras_value), (cls, arg)
        n += 1
    assert n == 19
