"""Oracle tests: prove tests/reference.py against torch.optim and Keras 3.

torch: the default single-tensor path (foreach=False), 100 steps, several odd
shapes, every option combination; float64 (with torch's default dtype set to
float64 so its scalar state is float64) to rtol 1e-10 on params and every
state array, and float32 to 1e-5 on params.
Keras: keras.optimizers.* on the torch backend with floatx float64, 50 steps,
params and state compared after every step.
"""

import inspect
import math
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before any keras import

from fastopt import reference  # noqa: E402
from fastopt.optim import catalogue  # noqa: E402
from fastopt.reference import DEFAULTS, STATE_NAMES, RefOptimizer  # noqa: E402

SHAPES = [(7,), (3, 5), (1,)]
N_STEPS = 100
N_STEPS_KERAS = 50

F64_TOL = dict(rtol=1e-10, atol=1e-13)
F32_TOL = dict(rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------- data
def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def make_grads(n_steps, dtype, seed=1):
    """Per-step gradient lists; magnitudes vary and a few entries are exactly 0."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_steps):
        scale = 10.0 ** rng.uniform(-2, 1)
        gs = []
        for s in SHAPES:
            g = scale * rng.standard_normal(s)
            g[rng.random(s) < 0.05] = 0.0
            gs.append(g.astype(dtype))
        out.append(gs)
    return out


def assert_close(actual, desired, tol, what):
    """Fast all-close check of a list of (label, ref_array, other_array)."""
    for label, a, b in zip(what, actual, desired):
        a = np.asarray(a)
        b = np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype or not np.all(
                np.abs(a - b) <= tol["atol"] + tol["rtol"] * np.abs(b)):
            assert a.dtype == b.dtype, f"{label}: dtype {a.dtype} != {b.dtype}"
            np.testing.assert_allclose(a, b, **tol, err_msg=label)


def varying_lr(base):
    return lambda k: base * (1.0 + 0.5 * math.sin(0.7 * k))


# -------------------------------------------------------------------- cases
B_LOW = (0.3, 0.9)  # beta1 < 0.5 -> lerp weight 1-beta1 > 0.5: the other lerp branch

TORCH_CASES = {
    "sgd": [
        {},
        dict(lr=0.05),
        dict(lr=0.01, momentum=0.9),
        dict(lr=0.01, momentum=0.9, dampening=0.3),
        dict(lr=0.01, momentum=0.9, nesterov=True),
        dict(lr=0.02, momentum=0.4, nesterov=True, weight_decay=0.1),
        dict(lr=0.02, weight_decay=0.1),
        dict(lr=0.01, momentum=0.9, weight_decay=0.05, maximize=True),
        dict(lr=0.01, momentum=0.7, dampening=0.5, weight_decay=0.01, maximize=True),
    ],
    "adagrad": [
        {},
        dict(lr_decay=0.05),
        dict(initial_accumulator_value=0.5),
        dict(weight_decay=0.1),
        dict(eps=1e-3, maximize=True),
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.2,
             maximize=True),
    ],
    "rmsprop": [
        {},
        dict(centered=True),
        dict(momentum=0.9),
        dict(centered=True, momentum=0.9),
        dict(weight_decay=0.1),
        dict(alpha=0.3, centered=True),  # 1-alpha > 0.5: other lerp branch for grad_avg
        dict(lr=1e-3, alpha=0.9, eps=1e-4, centered=True, momentum=0.5,
             weight_decay=0.05, maximize=True),
    ],
    "adam": [
        {},
        dict(amsgrad=True),
        dict(weight_decay=0.1),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(betas=B_LOW),
        dict(maximize=True),
        dict(lr=1e-2, betas=(0.2, 0.95), eps=1e-4, weight_decay=0.1, amsgrad=True,
             maximize=True),
    ],
    "adamw": [
        {},
        dict(amsgrad=True),
        dict(weight_decay=0.0),
        dict(betas=(0.4, 0.99), maximize=True),
        dict(lr=1e-2, betas=B_LOW, weight_decay=0.1, amsgrad=True, maximize=True),
    ],
    "adadelta": [
        {},
        dict(lr=0.5, rho=0.5),
        dict(weight_decay=0.1),
        dict(maximize=True),
        dict(eps=1e-3, rho=0.95, weight_decay=0.05, maximize=True),
    ],
    "adamax": [
        {},
        dict(betas=(0.3, 0.8)),
        dict(weight_decay=0.1),
        dict(maximize=True),
        dict(lr=1e-2, betas=B_LOW, eps=1e-3, weight_decay=0.05, maximize=True),
    ],
    "nadam": [
        {},
        dict(momentum_decay=0.01),
        dict(weight_decay=0.1),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(betas=B_LOW),
        dict(maximize=True),
        dict(lr=1e-2, betas=(0.4, 0.95), momentum_decay=0.1, eps=1e-4,
             weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
    ],
    "radam": [
        {},  # rho_t <= 5 for the first 5 steps, rectified afterwards
        dict(weight_decay=0.1),
        dict(weight_decay=0.1, decoupled_weight_decay=True),
        dict(betas=B_LOW),
        dict(betas=(0.9, 0.5)),  # rho_inf = 3: never rectified
        dict(maximize=True),
        dict(lr=1e-2, betas=(0.45, 0.99), eps=1e-4, weight_decay=0.05,
             decoupled_weight_decay=True, maximize=True),
    ],
}

TORCH_CASE_IDS = [
    (name, i) for name, cases in TORCH_CASES.items() for i in range(len(cases))
]


# ------------------------------------------------------------- torch runner
def torch_mod():
    return pytest.importorskip("torch")


TORCH_CLASS = catalogue.torch_names()


@pytest.fixture
def torch_default_dtype():
    """Yields a setter for torch's default dtype and restores it afterwards."""
    torch = torch_mod()
    old = torch.get_default_dtype()
    yield torch.set_default_dtype
    torch.set_default_dtype(old)


def torch_kwargs(name, hyper):
    kw = dict(hyper)
    if name == "adagrad" and kw.get("initial_accumulator_value") is None:
        kw.pop("initial_accumulator_value", None)
    kw.pop("lr", None)
    return kw


def run_against_torch(name, hyper, dtype, n_steps=N_STEPS, lr=None,
                      grad_scale=1.0, check_state=True):
    """Run reference and torch side by side; compare after every step."""
    torch = torch_mod()
    tol = F64_TOL if dtype == np.float64 else F32_TOL
    params = make_params(dtype)
    grads = make_grads(n_steps, dtype)

    ref_params = [p.copy() for p in params]
    if lr is None:
        lr = hyper.get("lr", DEFAULTS[name]["lr"])
    ref = RefOptimizer(name, ref_params, **{**hyper, "lr": lr})

    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    lr0 = lr(0) if callable(lr) else lr
    opt = getattr(torch.optim, TORCH_CLASS[name])(
        tparams, lr=lr0, foreach=False, **torch_kwargs(name, hyper))
    keymap = reference.TORCH_STATE_KEYS[name]

    for k in range(n_steps):
        if callable(lr):
            for group in opt.param_groups:
                group["lr"] = lr(k)
        for tp, g in zip(tparams, grads[k]):
            tg = torch.from_numpy(g.copy())
            if grad_scale != 1.0:
                tg = tg * grad_scale  # Python scalar -> cast to tensor dtype
            tp.grad = tg
        opt.step()
        ref.step(grads[k], grad_scale=grad_scale)
        assert ref.t == k + 1

        labels, mine, theirs = [], [], []
        for i, (rp, tp) in enumerate(zip(ref_params, tparams)):
            labels.append(f"{name} {hyper} param {i} step {k + 1}")
            mine.append(rp)
            theirs.append(tp.detach().numpy())
            if name == "nadam":
                # torch keeps mu_product as a default-dtype tensor (float32 unless
                # the default is float64) and multiplies it in that dtype: the
                # reference's 0-d array must match it bit for bit.
                tmu = opt.state[tp]["mu_product"]
                assert tmu.dtype == getattr(torch, np.dtype(dtype).name)
                assert ref.state[i]["mu_prod"].item() == tmu.item(), (k, i)
            if not check_state:
                continue
            tstate = opt.state[tp]
            if name != "sgd":  # torch's SGD keeps no step count
                assert float(tstate["step"]) == k + 1
            for sym in ref.state_names():
                tv = tstate[keymap[sym]].detach().numpy()
                labels.append(f"{name} {hyper} state {sym} param {i} step {k + 1}")
                mine.append(ref.state[i][sym])
                theirs.append(tv)
            # Every torch state array (besides "step") is mirrored by the reference.
            mirrored = {keymap[s] for s in ref.state_names()}
            assert set(tstate) - {"step"} == mirrored
        assert_close(mine, theirs, tol, labels)
    return ref


@pytest.mark.parametrize("name,idx", TORCH_CASE_IDS,
                         ids=[f"{n}-{i}" for n, i in TORCH_CASE_IDS])
def test_torch_float64(name, idx, torch_default_dtype):
    torch = torch_mod()
    torch_default_dtype(torch.float64)
    run_against_torch(name, TORCH_CASES[name][idx], np.float64)


@pytest.mark.parametrize("name,idx", TORCH_CASE_IDS,
                         ids=[f"{n}-{i}" for n, i in TORCH_CASE_IDS])
def test_torch_float32(name, idx, torch_default_dtype):
    torch = torch_mod()
    torch_default_dtype(torch.float32)
    ref = run_against_torch(name, TORCH_CASES[name][idx], np.float32,
                            check_state=False)
    assert all(p.dtype == np.float32 for p in ref.params)
    assert all(a.dtype == np.float32 for st in ref.state for a in st.values())


# One richer option set per optimizer for the lr-schedule / grad_scale tests.
RICH = {name: cases[-1] for name, cases in TORCH_CASES.items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(TORCH_CLASS))
def test_torch_changing_lr(name, dtype, torch_default_dtype):
    torch = torch_mod()
    torch_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    base = RICH[name].get("lr", DEFAULTS[name]["lr"])
    run_against_torch(name, RICH[name], dtype, n_steps=40, lr=varying_lr(base),
                      check_state=dtype == np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(TORCH_CLASS))
def test_torch_grad_scale(name, dtype, torch_default_dtype):
    torch = torch_mod()
    torch_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    run_against_torch(name, RICH[name], dtype, n_steps=30, grad_scale=0.37,
                      check_state=dtype == np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lerp_branch_matches_torch(dtype):
    """reference._lerp picks ATen's branch (|w| < 0.5 -> a + w*(b-a), else
    b - (b-a)*(1-w)).  Both branches are equal in exact arithmetic and torch's
    CPU kernel fuses multiply-adds, so bit equality is impossible; instead the
    chosen branch must agree with torch.lerp far more often than the other one.
    """
    torch = torch_mod()
    rng = np.random.default_rng(5)
    a = rng.standard_normal(4000).astype(dtype)
    b = rng.standard_normal(4000).astype(dtype)
    for w in (0.1, 0.3, 0.7, 0.95):
        expected = torch.lerp(torch.from_numpy(a), torch.from_numpy(b), w).numpy()
        mine = reference._lerp(a, b, w)
        np.testing.assert_allclose(mine, expected, rtol=1e-5 if dtype == np.float32
                                   else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-15)
        wt = dtype(w)
        other = (b - (b - a) * (dtype(1) - wt)) if w < 0.5 else (a + wt * (b - a))
        assert (mine != expected).sum() * 1.5 < (other != expected).sum(), w


def test_defaults_match_torch_signatures():
    torch = torch_mod()
    for name, cls_name in TORCH_CLASS.items():
        sig = inspect.signature(getattr(torch.optim, cls_name).__init__)
        for key, val in DEFAULTS[name].items():
            tdef = sig.parameters[key].default
            if name == "adagrad" and key == "initial_accumulator_value":
                assert val is None and tdef == 0  # None == "0 for torch"
            else:
                assert val == tdef, (name, key, val, tdef)
    assert DEFAULTS["lion"] == dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
                                    maximize=False)


# --------------------------------------------------------------------- Lion
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("wd,maximize", [(0.0, False), (0.1, False), (0.3, True)])
def test_lion_hand_unrolled(dtype, wd, maximize):
    """Three Lion steps written out from Chen et al. 2023, Algorithm 2."""
    lr, b1, b2 = 0.01, 0.8, 0.95
    p0 = np.array([0.5, -1.0, 2.0, 0.0], dtype=dtype)
    gs = [np.array([0.3, -0.2, 0.0, 1.0], dtype=dtype),
          np.array([-0.4, 0.1, 0.5, -2.0], dtype=dtype),
          np.array([0.05, 0.3, -0.25, 0.0], dtype=dtype)]
    s = -1.0 if maximize else 1.0

    p = p0.astype(np.float64)
    m = np.zeros(4)
    expected = []
    for g in gs:
        g = s * g.astype(np.float64)
        c = b1 * m + (1 - b1) * g
        p = p * (1 - lr * wd) - lr * np.sign(c)
        m = b2 * m + (1 - b2) * g
        expected.append((p.copy(), m.copy()))

    # step 1 by hand: m0 = 0, so sign(c) = sign(g1)
    g1 = s * gs[0].astype(np.float64)
    np.testing.assert_allclose(expected[0][0], p0 * (1 - lr * wd) - lr * np.sign(g1))
    np.testing.assert_allclose(expected[0][1], (1 - b2) * g1)

    ref_p = p0.copy()
    ref = RefOptimizer("lion", [ref_p], lr=lr, betas=(b1, b2), weight_decay=wd,
                       maximize=maximize)
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == np.float64 else dict(rtol=1e-6,
                                                                        atol=1e-7)
    for g, (pe, me) in zip(gs, expected):
        ref.step([g])
        np.testing.assert_allclose(ref_p, pe, **tol)
        np.testing.assert_allclose(ref.state[0]["m"], me, **tol)
    # sign(0) == 0: at step 1 entry 2 has g = 0 and m = 0, so c = 0 and that
    # entry only feels the weight decay.
    np.testing.assert_allclose(expected[0][0][2], 2.0 * (1 - lr * wd))
    assert ref.state_names() == ("m",)


def test_lion_grad_scale_and_lr_callable():
    p1 = [np.array([1.0, -2.0, 3.0])]
    p2 = [a.copy() for a in p1]
    g = [np.array([0.2, 0.0, -0.7])]
    r1 = RefOptimizer("lion", p1, lr=lambda k: 0.1 * (k + 1), weight_decay=0.5)
    r2 = RefOptimizer("lion", p2, lr=lambda k: 0.1 * (k + 1), weight_decay=0.5)
    for _ in range(3):
        r1.step(g, grad_scale=-2.0)
        r2.step([-2.0 * g[0]])
    np.testing.assert_array_equal(p1[0], p2[0])
    assert r1.lr_at(2) == pytest.approx(0.3)


# ------------------------------------------------------------ interface tests
def test_interface_and_validation():
    p = [np.zeros(3), np.zeros((2, 2))]
    ids = [id(a) for a in p]
    r = RefOptimizer("Adam", p, amsgrad=True)
    assert r.name == "adam" and r.hyper["betas"] == (0.9, 0.999)
    assert r.state_names() == ("m", "v", "vmax")
    g = [np.ones(3), np.ones((2, 2))]
    g_copy = [a.copy() for a in g]
    r.step(g, grad_scale=3.0)
    assert [id(a) for a in r.params] == ids and np.all(p[0] < 0)  # in place
    np.testing.assert_array_equal(g[0], g_copy[0])  # grads untouched
    assert r.t == 1
    for name in reference.NAMES:
        assert set(RefOptimizer(name, [np.zeros(2)]).state_names()) <= set(
            STATE_NAMES[name])
    assert RefOptimizer("sgd", [np.zeros(2)]).state_names() == ()
    assert RefOptimizer("sgd", [np.zeros(2)], momentum=0.5).state_names() == ("b",)
    assert RefOptimizer("rmsprop", [np.zeros(2)], centered=True,
                        momentum=0.1).state_names() == ("v", "gm", "b")
    a = RefOptimizer("adagrad", [np.zeros(2)])
    assert a.state[0]["s"].tolist() == [0.0, 0.0]
    a = RefOptimizer("adagrad", [np.zeros(2)], convention="keras")
    assert a.state[0]["s"].tolist() == [0.1, 0.1]
    n = RefOptimizer("nadam", [np.zeros(2, np.float32)])
    assert n.state[0]["mu_prod"].shape == () and n.state[0]["mu_prod"].dtype == np.float32

    with pytest.raises(ValueError):
        RefOptimizer("adabelief", p)
    with pytest.raises(TypeError):
        RefOptimizer("adam", p, momentum=0.9)
    with pytest.raises(ValueError):
        RefOptimizer("radam", p, convention="keras")
    with pytest.raises(ValueError):
        RefOptimizer("sgd", p, convention="keras", dampening=0.1)
    with pytest.raises(ValueError):
        RefOptimizer("adagrad", p, convention="keras", lr_decay=0.1)
    with pytest.raises(ValueError):
        RefOptimizer("sgd", [np.zeros(2)]).step([np.zeros(2, np.float32)])
    with pytest.raises(TypeError):
        RefOptimizer("sgd", [np.zeros(2, np.int64)])


def test_sgd_first_momentum_step_is_plain_gradient():
    p = [np.array([1.0, 2.0])]
    r = RefOptimizer("sgd", p, lr=0.1, momentum=0.9, dampening=0.5)
    r.step([np.array([1.0, -1.0])])
    np.testing.assert_array_equal(r.state[0]["b"], [1.0, -1.0])  # no (1-dampening)
    np.testing.assert_allclose(p[0], [0.9, 2.1])
    r.step([np.array([1.0, 1.0])])
    np.testing.assert_allclose(r.state[0]["b"], [0.9 + 0.5, -0.9 + 0.5])


# ------------------------------------------------------------------- Keras
KERAS_CASES = {
    "sgd": [
        dict(lr=0.01),
        dict(lr=0.01, momentum=0.9),
        dict(lr=0.01, momentum=0.9, nesterov=True),
        dict(lr=0.02, weight_decay=0.1),
        dict(lr=0.01, momentum=0.8, nesterov=True, weight_decay=0.05),
        dict(lr=0.01, momentum=0.5, weight_decay=0.05, maximize=True),
    ],
    "adagrad": [
        dict(lr=0.01),  # initial accumulator 0.1 (Keras default)
        dict(lr=0.05, initial_accumulator_value=0.5, eps=1e-7),
        dict(lr=0.05, initial_accumulator_value=0.0, eps=1e-6, weight_decay=0.1),
    ],
    "rmsprop": [
        dict(lr=1e-3),
        dict(lr=1e-3, centered=True),
        dict(lr=1e-3, momentum=0.9),
        dict(lr=1e-3, alpha=0.3, eps=1e-6, centered=True, momentum=0.5,
             weight_decay=0.1),
    ],
    "adam": [
        dict(),
        dict(amsgrad=True),
        dict(lr=1e-2, weight_decay=0.1),
        dict(lr=1e-2, betas=B_LOW, eps=1e-6, amsgrad=True, maximize=True),
    ],
    "adamw": [
        dict(),
        dict(lr=1e-2, amsgrad=True, weight_decay=0.05, betas=(0.8, 0.95)),
    ],
    "adadelta": [
        dict(),  # Keras's defaults: lr 1e-3, rho 0.95, eps 1e-7
        dict(lr=0.5, rho=0.5, eps=1e-6, weight_decay=0.1, maximize=True),
    ],
    "adamax": [
        dict(),
        dict(lr=1e-2, betas=B_LOW, eps=1e-3, weight_decay=0.1),
    ],
    "nadam": [
        dict(),  # Keras's momentum schedule 0.96**t (momentum_decay=1.0)
        dict(lr=1e-2, betas=B_LOW, eps=1e-6, weight_decay=0.1, maximize=True),
    ],
    "lion": [
        dict(),
        dict(lr=1e-2, betas=(0.5, 0.7), weight_decay=0.1),
    ],
}
KERAS_CASE_IDS = [(n, i) for n, c in KERAS_CASES.items() for i in range(len(c))]
KERAS_CLASS = catalogue.keras_names()


def keras_mod():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras tests need KERAS_BACKEND=torch")
    return keras


@pytest.fixture
def keras_floatx():
    keras = keras_mod()
    old = keras.config.floatx()
    yield keras.config.set_floatx
    keras.config.set_floatx(old)


def keras_kwargs(name, h):
    kw = dict(learning_rate=float(h["lr"]) if not callable(h["lr"]) else h["lr"](0))
    if "betas" in h:
        kw["beta_1"], kw["beta_2"] = h["betas"]
    if "eps" in h:
        kw["epsilon"] = h["eps"]
    if "alpha" in h:
        kw["rho"] = h["alpha"]
    for k in ("momentum", "nesterov", "centered", "amsgrad",
              "initial_accumulator_value", "rho"):
        if k in h:
            kw[k] = h[k]
    if name == "sgd":
        kw["momentum"] = float(kw["momentum"])
    kw["weight_decay"] = h["weight_decay"] if h.get("weight_decay") else None
    if name == "adamw":
        kw["weight_decay"] = float(h["weight_decay"])
    return kw


def to_numpy(kvar):
    """keras.Variable (torch backend) -> NumPy array."""
    return kvar.value.detach().cpu().numpy()


def run_against_keras(name, hyper, dtype, n_steps=N_STEPS_KERAS, lr=None,
                      check_state=True):
    keras = keras_mod()
    import torch

    tol = F64_TOL if dtype == np.float64 else F32_TOL
    params = make_params(dtype, seed=3)
    grads = make_grads(n_steps, dtype, seed=4)
    hyper = dict(hyper)
    if lr is not None:
        hyper["lr"] = lr
    ref_params = [p.copy() for p in params]
    ref = RefOptimizer(name, ref_params, convention="keras", **hyper)

    dt = "float64" if dtype == np.float64 else "float32"
    kvars = [keras.Variable(p.copy(), dtype=dt) for p in params]
    opt = getattr(keras.optimizers, KERAS_CLASS[name])(**keras_kwargs(name, ref.hyper))
    sign = -1.0 if ref.hyper["maximize"] else 1.0  # Keras has no maximize
    keymap = reference.KERAS_STATE_KEYS[name]

    for k in range(n_steps):
        if callable(lr):
            opt.learning_rate = float(lr(k))
        tg = [torch.from_numpy((sign * g).astype(dtype)) for g in grads[k]]
        opt.apply_gradients(zip(tg, kvars))
        ref.step(grads[k])
        labels, mine, theirs = [], [], []
        for i, (rp, kv) in enumerate(zip(ref_params, kvars)):
            labels.append(f"keras {name} {hyper} param {i} step {k + 1}")
            mine.append(rp)
            theirs.append(to_numpy(kv))
            if not check_state:
                continue
            for sym in ref.state_names():
                if sym not in keymap:  # Nadam's mu_prod: one Keras scalar, _u_product
                    continue
                kstate = getattr(opt, keymap[sym])[opt._get_variable_index(kv)]
                labels.append(f"keras {name} {hyper} state {sym} param {i} step {k + 1}")
                mine.append(ref.state[i][sym])
                theirs.append(to_numpy(kstate))
        assert_close(mine, theirs, tol, labels)


@pytest.mark.parametrize("name,idx", KERAS_CASE_IDS,
                         ids=[f"{n}-{i}" for n, i in KERAS_CASE_IDS])
def test_keras_float64(name, idx, keras_floatx):
    keras_floatx("float64")  # so Keras' lr variable and Python scalars are float64
    run_against_keras(name, KERAS_CASES[name][idx], np.float64)


@pytest.mark.parametrize("name,idx", KERAS_CASE_IDS,
                         ids=[f"{n}-{i}" for n, i in KERAS_CASE_IDS])
def test_keras_float32(name, idx, keras_floatx):
    keras_floatx("float32")
    run_against_keras(name, KERAS_CASES[name][idx], np.float32, check_state=False)


@pytest.mark.parametrize("name", list(KERAS_CLASS))
def test_keras_changing_lr(name, keras_floatx):
    keras_floatx("float64")
    h = KERAS_CASES[name][-1]
    base = h.get("lr", DEFAULTS[name]["lr"])
    run_against_keras(name, h, np.float64, n_steps=30, lr=varying_lr(base))
