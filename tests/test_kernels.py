"""Each CPU kernel against the slow NumPy reference (fastopt.reference), from the formula.

One step from a random, non-trivial state (so every term of the formula matters), for
sizes around the edges (0, 1, odd, large) on both the serial and the prange kernels:
float64 to 1e-12 relative, float32 to a few ulp.
"""

import numpy as np
import pytest

from fastopt import optim
from fastopt.kernels.rules import RULES
from fastopt.reference import RefOptimizer

SIZES = [0, 1, 2, 17, 1001]

# (optimizer, convention, hyperparameters): every branch of every rule at least once
CASES = [
    ("sgd", "torch", dict(lr=0.1)),
    ("sgd", "torch", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1, maximize=True)),
    ("sgd", "torch", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("adagrad", "torch", dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, eps=1e-3)),
    ("rmsprop", "torch", dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop", "torch", dict(lr=0.01, centered=True, momentum=0.9, alpha=0.3, maximize=True)),
    ("adam", "torch", dict(lr=0.01, weight_decay=0.1)),
    ("adam", "torch", dict(lr=0.01, amsgrad=True, betas=(0.3, 0.8), maximize=True)),
    ("adamw", "torch", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("adadelta", "torch", dict(lr=0.5, weight_decay=0.1, rho=0.5)),
    ("adamax", "torch", dict(lr=0.01, weight_decay=0.1)),
    ("adamax", "torch", dict(lr=0.01, betas=(0.2, 0.5), maximize=True)),
    ("nadam", "torch", dict(lr=0.01, weight_decay=0.1, momentum_decay=0.1)),
    ("nadam", "torch", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True,
                            betas=(0.3, 0.8))),
    ("radam", "torch", dict(lr=0.01, weight_decay=0.1)),
    ("radam", "torch", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True,
                            betas=(0.3, 0.8))),
    ("lion", "torch", dict(lr=0.01, weight_decay=0.1)),
    ("lion", "torch", dict(lr=0.01, betas=(0.5, 0.7), maximize=True)),
    ("sgd", "keras", dict(lr=0.1)),
    ("sgd", "keras", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    ("sgd", "keras", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("adagrad", "keras", dict(lr=0.1, weight_decay=0.1, eps=1e-3)),
    ("rmsprop", "keras", dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop", "keras", dict(lr=0.01, centered=True, momentum=0.9, eps=1e-3)),
    ("adam", "keras", dict(lr=0.01, weight_decay=0.1)),
    ("adamw", "keras", dict(lr=0.01, amsgrad=True, eps=1e-3)),
    ("sgd", "keras", dict(lr=0.1, nesterov=True)),  # Keras: nesterov without momentum
    ("adadelta", "keras", dict(lr=0.5, weight_decay=0.1, rho=0.5)),
    ("adadelta", "keras", dict(maximize=True)),
    ("adamax", "keras", dict(lr=0.01, weight_decay=0.1)),
    ("adamax", "keras", dict(lr=0.01, betas=(0.2, 0.5), eps=1e-3, maximize=True)),
    ("nadam", "keras", dict(lr=0.01, weight_decay=0.1)),
    ("nadam", "keras", dict(lr=0.01, betas=(0.3, 0.8), momentum_decay=0.1, maximize=True)),
    ("lion", "keras", dict(lr=0.01, weight_decay=0.1)),
    ("lion", "keras", dict(lr=0.01, betas=(0.5, 0.7), maximize=True)),
]

# state that must stay non-negative (second moments, accumulators)
NON_NEGATIVE = {"v", "s", "u", "vmax"}


def ids(case):
    name, conv, kw = case
    return f"{name}-{conv}-" + "-".join(f"{k}={v}" for k, v in kw.items())


def random_state(opt, ref, rng, dtype):
    """Give both optimizers the same random state: second moments >= 1.5 and |gm| <= 1, so
    that the centered RMSprop variance v - gm^2 is positive now and after every update."""
    symbols = [s for s in ref.state_names() if s != "mu_prod"]
    for i, (st, rst) in enumerate(zip(opt.state, ref.state)):
        names = list(st)
        assert len(names) == len(symbols), (names, symbols)
        for name, sym in zip(names, symbols):
            x = rng.standard_normal(st[name].shape)
            if sym in NON_NEGATIVE:
                x = np.abs(x) + 1.5
            if sym == "gm":
                x = np.clip(x, -1.0, 1.0)
            x = x.astype(dtype)
            np.copyto(st[name], x)
            np.copyto(rst[sym], x)


def step_both(case, dtype, n, rng, steps=1):
    name, conv, kw = case
    p = rng.standard_normal(n).astype(dtype)
    pr = p.copy()
    opt = optim.OPTIMIZERS[name](p, convention=conv, **kw)
    ref = RefOptimizer(name, [pr], convention=conv, **kw)
    if name != "sgd" or kw.get("momentum", 0) == 0 or conv == "keras":
        random_state(opt, ref, rng, dtype)
    for _ in range(steps):
        g = rng.standard_normal(n).astype(dtype)
        g[::7] = 0  # exact zeros: sign(0), sqrt(0) paths
        opt.step(g)
        ref.step([g])
    return p, pr, opt, ref


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_kernel_float64_equals_reference(case, n, rng, kernel_path):
    p, pr, opt, ref = step_both(case, np.float64, n, rng, steps=2)
    scale = max(1.0, np.abs(pr).max(initial=0))
    np.testing.assert_allclose(p, pr, rtol=1e-12, atol=1e-12 * scale)
    for (name, value), sym in zip(opt.state[0].items(), ref.state_names()):
        np.testing.assert_allclose(value, ref.state[0][sym], rtol=1e-12, atol=1e-14,
                                   err_msg=name)


@pytest.mark.parametrize("n", [1, 17, 1001])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_kernel_float32_within_few_ulp(case, n, rng, kernel_path):
    p, pr, opt, ref = step_both(case, np.float32, n, rng, steps=1)
    assert p.dtype == np.float32
    eps = np.finfo(np.float32).eps
    # a few ulp of the operands: the update is a sum of terms of the size of p
    np.testing.assert_allclose(p, pr, rtol=8 * eps, atol=8 * eps * np.abs(pr).max())


def test_every_rule_is_covered():
    covered = {optim.OPTIMIZERS[n](np.zeros(1), convention=c, **kw).rule.name
               for n, c, kw in CASES}
    assert covered == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_parallel_is_deterministic(case, rng, monkeypatch):
    """The prange path gives bitwise-identical results run to run."""
    from fastopt import config

    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 0)
    seed = int(rng.integers(1 << 30))
    runs = [step_both(case, np.float32, 30001, np.random.default_rng(seed), steps=3)[0]
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_paths_agree_bitwise(case, dtype, monkeypatch):
    """The serial kernel and the prange kernel on one and on two threads give the same bits
    (no "contract" in config.FASTMATH): fastopt.threads may switch between them with the
    load without moving a result. 1001 elements: a vectorised body and a scalar remainder
    in each thread's share."""
    import numba

    from fastopt import config

    results = []
    before = numba.get_num_threads()
    try:
        for min_size, threads in ((2**62, before), (0, 1), (0, min(2, numba.config.NUMBA_NUM_THREADS))):
            monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", min_size)
            numba.set_num_threads(threads)
            p, _, opt, _ = step_both(case, dtype, 1001, np.random.default_rng(77), steps=3)
            results.append([p] + [v.copy() for v in opt.state[0].values()])
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
