"""backend="cython": kernels generated from the rules, against the Numba kernels.

Every rule x option combination of tests/test_kernels.py (CASES) x dtype x serial and
prange path: three steps of an optimizer with backend="cython" next to the same optimizer
with backend="numba" (1001 elements: vector bodies and scalar remainders), parameters and
state compared bit for bit; the tests of tests/test_kernels.py tie the Numba kernels to the
NumPy reference, so these tie the Cython ones to it too. The first test builds the
module into the cache (about a minute on a busy 2-core machine; later runs load it).
Skipped only where Cython, setuptools, a C compiler or the Python headers are missing
(``pip install "fastopt[cython]"``, ``apt install gcc python3-dev``).
"""

import numpy as np
import pytest
from test_kernels import CASES, ids, random_state

from fastopt import config, optim
from fastopt.kernels import cpu, cygen
from fastopt.kernels import cython as cy
from fastopt.kernels.rules import RULES, UpdateRule

@pytest.fixture(scope="session")
def backend():
    try:
        cy.check_toolchain()
    except cy.BackendUnavailable as exc:
        pytest.skip(f"the Cython backend cannot be built here: {exc}")
    return cy.module()  # a build failure fails the tests


def run(case, dtype, backend_name, n=1001, seed=5, steps=3, **options):
    """(optimizer, [params, *state]) after ``steps`` steps; ``options`` go to the optimizer
    only (not to the reference, which only provides the random state)."""
    name, conv, kw = case
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    opt = optim.OPTIMIZERS[name](p, convention=conv, backend=backend_name, **kw, **options)
    from fastopt.reference import RefOptimizer

    ref = RefOptimizer(name, [p.copy()], convention=conv, **kw)
    if name != "sgd" or kw.get("momentum", 0) == 0 or conv == "keras":
        random_state(opt, ref, rng, dtype)
    for _ in range(steps):
        g = rng.standard_normal(n).astype(dtype)
        g[::7] = 0  # exact zeros: sqrt(0), sign(0)
        opt.step(g)
    return opt, [p] + [v for v in opt.state[0].values()]


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("path", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_cython_equals_numba(case, dtype, path, backend, monkeypatch):
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 0 if path == "parallel" else 2**62)
    opt, ours = run(case, dtype, "cython")
    _, theirs = run(case, dtype, "numba")
    assert opt.backend == "cython"
    for name, a, b in zip(["params"] + list(opt.state[0]), ours, theirs):
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=name)


def test_every_rule_is_compiled(backend):
    for name in RULES:
        for dtype in (np.float32, np.float64):
            serial, parallel = cy.update_kernels(name, dtype)
            assert callable(serial) and callable(parallel)


@pytest.mark.parametrize("path", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_scale_clamp(dtype, path, backend, monkeypatch):
    """scale and clamp bitwise; the float64 sum of squares within rounding of Numba's (its
    reduction is reassociated into vector lanes, see fastopt/kernels/cython.py)."""
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 0 if path == "parallel" else 2**62)
    rng = np.random.default_rng(3)
    g = (rng.standard_normal(40_001) * 3).astype(dtype)
    s_cy, ok_cy = cy.grad_stats(g)
    s_nb, ok_nb = cpu.grad_stats(g)
    assert ok_cy and ok_nb
    np.testing.assert_allclose(s_cy, s_nb, rtol=1e-13)
    np.testing.assert_allclose(s_cy, np.sum(g.astype(np.float64) ** 2), rtol=1e-13)
    g[5] = np.nan
    assert not cy.grad_stats(g)[1] and np.isnan(cy.grad_stats(g)[0])
    g[5] = np.inf
    assert cy.grad_stats(g) == (np.inf, False)
    g[5] = 1.0
    a, b = g.copy(), g.copy()
    cy.scale(a, dtype(0.37))
    cpu.scale(b, dtype(0.37))
    np.testing.assert_array_equal(bits(a), bits(b))
    a[7] = b[7] = np.nan
    cy.clamp(a, dtype(1.5))
    cpu.clamp(b, dtype(1.5))
    np.testing.assert_array_equal(bits(a), bits(b))
    assert np.isnan(a[7]) and np.abs(a[~np.isnan(a)]).max() == dtype(1.5)
    for fn in (cy.scale, cy.clamp):  # empty arrays
        fn(np.zeros(0, dtype), dtype(1))
    assert cy.grad_stats(np.zeros(0, dtype)) == (0.0, True)


def test_max_grad_norm_within_rounding(backend):
    """With fused clipping the coefficient comes from the sum of squares: equal to rounding."""
    case = ("adam", "torch", dict(lr=0.01))
    a = run(case, np.float64, "cython", n=5000, max_grad_norm=1.0)[1][0]
    b = run(case, np.float64, "numba", n=5000, max_grad_norm=1.0)[1][0]
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("first, second", [("numba", "cython"), ("cython", "numba")])
def test_state_dict_switches_backend(first, second, backend):
    """Save with one backend, load into the other, continue: the bits of never stopping."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(3001)
    grads = [rng.standard_normal(3001) for _ in range(4)]
    kw = dict(lr=0.01, weight_decay=0.1, amsgrad=True)
    whole = p0.copy()
    opt = optim.Adam(whole, backend=first, **kw)
    for g in grads:
        opt.step(g)
    p = p0.copy()
    a = optim.Adam(p, backend=first, **kw)
    for g in grads[:2]:
        a.step(g)
    b = optim.Adam(p, backend=second, **kw)
    b.load_state_dict(a.state_dict())
    for g in grads[2:]:
        b.step(g)
    np.testing.assert_array_equal(bits(p), bits(whole))
    for k in opt.state[0]:
        np.testing.assert_array_equal(bits(b.state[0][k]), bits(opt.state[0][k]))


def test_backend_is_validated():
    with pytest.raises(ValueError, match="backend must be 'numba' or 'cython'"):
        optim.Adam(np.zeros(3), backend="c")
    for name, cls in optim.OPTIMIZERS.items():  # every optimizer takes the keyword
        assert cls(np.zeros(3), backend="numba").backend == "numba"


def test_missing_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(cy.BackendUnavailable, match="apt install gcc"):
        cy.check_toolchain()


def _rule(fn, hyper=("lr",)):
    return {"bad": UpdateRule("bad", fn, hyper, (), ("s",))}


def _float_literal(p, g, s, s1, s2, h, f):
    (lr,) = h
    p = p - lr * g * 0.5
    return p, s, s1, s2


def _loop(p, g, s, s1, s2, h, f):
    (lr,) = h
    for _ in range(2):
        p = p - lr * g
    return p, s, s1, s2


def _unknown_call(p, g, s, s1, s2, h, f):
    (lr,) = h
    p = p - lr * max(g, s)
    return p, s, s1, s2


def _pow(p, g, s, s1, s2, h, f):
    (lr,) = h
    p = p - lr * g ** g
    return p, s, s1, s2


@pytest.mark.parametrize("fn, what", [(_float_literal, "literal 0.5"),
                                      (_loop, "statement For"),
                                      (_unknown_call, "call of max"),
                                      (_pow, "operator Pow")])
def test_generator_refuses_unknown_constructs(fn, what):
    with pytest.raises(cygen.TranslationError, match=what) as info:
        cygen.generate(_rule(fn))
    assert "test_cython.py" in str(info.value)  # the file and line of the construct


def test_generated_source_is_typed_per_dtype():
    src = cygen.generate()
    assert "sqrtf(" in src and "fabsf(" in src  # float32 stays float32
    assert "double h[" in src and "float h[" in src
    for name in RULES:
        for sfx in ("f32", "f64"):
            for kind in ("serial", "parallel"):
                assert f"def {name}_{sfx}_{kind}(" in src


def test_build_renames_into_place(tmp_path, monkeypatch):
    """Builds happen in a folder of their own and are renamed into the cache: two at once
    both succeed, the cache holds one complete module and no leftovers (the compiler is
    replaced by a stand-in that writes a file slowly)."""
    import threading
    import time

    def fake_compile(pyx, tmp):
        out = tmp / "lib" / "built.so"
        out.parent.mkdir()
        with open(out, "wb") as fh:
            for _ in range(5):
                fh.write(b"x" * 1000)
                time.sleep(0.01)
        return out

    monkeypatch.setattr(cy, "check_toolchain", lambda: None)
    monkeypatch.setattr(cy, "_compile", fake_compile)
    target = tmp_path / "key" / "mod.so"
    errors = []

    def build():
        try:
            cy.build(target)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=build) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert target.read_bytes() == b"x" * 5000
    assert sorted(p.name for p in target.parent.iterdir()) == ["mod.pyx", "mod.so"]
    assert target.with_suffix(".pyx").read_text() == cy.source()


def test_compiler_failure_is_reported(tmp_path, monkeypatch):
    def broken(pyx, tmp):
        raise RuntimeError("gcc: error: unrecognized option")

    monkeypatch.setattr(cy, "check_toolchain", lambda: None)
    monkeypatch.setattr(cy, "_compile", broken)
    with pytest.raises(cy.BackendUnavailable, match="unrecognized option"):
        cy.build(tmp_path / "k" / "mod.so")
    assert not (tmp_path / "k" / "mod.so").exists()
    assert list((tmp_path / "k").iterdir()) == []  # no partial build left


def test_cython_optimizer_copies_and_pickles(backend):
    """fit's warm-up deep-copies the optimizer: a copy keeps its backend and its bits."""
    import copy
    import pickle

    rng = np.random.default_rng(1)
    p = rng.standard_normal(101)
    g = rng.standard_normal(101)
    opt = optim.Adam(p, backend="cython", amsgrad=True)
    opt.step(g)
    for twin in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert twin.backend == "cython"
        twin.step(g)
        ref = copy.deepcopy(opt)
        ref.step(g)
        np.testing.assert_array_equal(bits(twin.param_groups[0]["params"][0]),
                                      bits(ref.param_groups[0]["params"][0]))


#: (optimizer, keywords, fused): with skip_nonfinite or max_grad_norm, fit and train_step
#: call optimizer.step(model.grads) instead of their fused Numba loop, so the optimizer's
#: backend runs the update there
FIT_CASES = [("sgd", dict(lr=0.05, momentum=0.9, nesterov=True), True),
             ("adam", dict(lr=0.01), True), ("adamw", dict(lr=0.01, amsgrad=True), True),
             ("lion", dict(lr=1e-3), True),
             ("adam", dict(lr=0.01, skip_nonfinite=True), False),
             ("adam", dict(lr=0.01, max_grad_norm=0.5), False)]


def _fit(name, kw, backend_name):
    from fastopt import nn, train

    rng = np.random.default_rng(3)
    X = rng.standard_normal((96, 8)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    model = nn.MLP((8, 6, 3), seed=1)
    opt = optim.OPTIMIZERS[name](model.params, backend=backend_name, **kw)
    history = train.fit(model, opt, (X[:64], y[:64], X[64:], y[64:]), batch_size=16,
                        max_steps=7, eval_every=3, progress=False)
    model.train_step(X[:16], y[:16], opt)  # one step outside fit as well
    assert opt.backend == backend_name
    return model, opt, history


@pytest.mark.parametrize("name, kw, fused", FIT_CASES,
                         ids=[f"{n}-{'-'.join(k)}" for n, k, _ in FIT_CASES])
def test_fit_and_train_step_give_the_bits_of_numba_with_backend_cython(name, kw, fused,
                                                                       backend, monkeypatch):
    """fit and MLP.train_step launch Numba's fused kernels themselves (fit's compiled
    chunks, train_step's fused backward + update), whatever the optimizer's backend: a
    backend="cython" optimizer trains to the same bits as a backend="numba" one, and no
    Cython kernel runs. With skip_nonfinite or max_grad_norm both call
    ``optimizer.step(model.grads)``, so the Cython kernels do run: the same bits again
    (clipping's sum of squares may differ by rounding: float32 parameters, float64 sum)."""
    calls = []
    for what in ("update", "grad_stats", "scale", "clamp"):
        real = getattr(cy, what)
        monkeypatch.setattr(cy, what, lambda *a, _real=real, _w=what: (calls.append(_w),
                                                                       _real(*a))[1])
    m_cy, o_cy, h_cy = _fit(name, kw, "cython")
    if fused:
        assert calls == []  # fit and train_step used Numba's kernels only
    else:
        assert calls.count("update") >= 8  # seven steps of fit, one train_step (and a
        # step of the copy fit warms up on)
    m_nb, o_nb, h_nb = _fit(name, kw, "numba")
    np.testing.assert_array_equal(bits(m_cy.params), bits(m_nb.params))
    for k in o_nb.state[0]:
        np.testing.assert_array_equal(bits(o_cy.state[0][k]), bits(o_nb.state[0][k]))
    for column in ("step", "train_loss", "test_loss", "test_accuracy", "lr"):
        np.testing.assert_array_equal(h_cy[column], h_nb[column], err_msg=column)
    assert o_cy.steps == o_nb.steps == 8


def test_march_setting(monkeypatch):
    """FASTOPT_CYTHON_MARCH picks gcc's -march (part of CFLAGS and the cache key); anything
    that is not a plain -march value is refused with the variable's name."""
    monkeypatch.setenv("FASTOPT_CYTHON_MARCH", "haswell")
    assert cy._march() == "haswell"
    monkeypatch.delenv("FASTOPT_CYTHON_MARCH")
    assert cy._march() == "native"
    monkeypatch.setenv("FASTOPT_CYTHON_MARCH", "native -O0")
    with pytest.raises(ValueError, match="FASTOPT_CYTHON_MARCH"):
        cy._march()
