"""fastopt.init: every distribution against its formula, Keras and torch; in-place fills; errors."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from fastopt import init

FACTOR = 0.87962566103423978
SHAPE = (200, 100)          # 20,000 samples; fan_in 200, fan_out 100
FAN_IN, FAN_OUT = SHAPE
P_MIN = 1e-3                # fixed seeds: deterministic, and a wrong formula gives p ~ 0

# name -> (scale, n) of Keras VarianceScaling
VS = {
    "glorot": (1.0, (FAN_IN + FAN_OUT) / 2),
    "he": (2.0, FAN_IN),
    "lecun": (1.0, FAN_IN),
}


def expected_dist(family, kind, truncated=True):
    """The exact scipy distribution an initialiser must sample from."""
    scale, n = VS[family]
    var = scale / n
    if kind == "uniform":
        limit = math.sqrt(3 * var)
        return stats.uniform(loc=-limit, scale=2 * limit)
    if truncated:
        return stats.truncnorm(-2, 2, scale=math.sqrt(var) / FACTOR)
    return stats.norm(scale=math.sqrt(var))


def fill(name, dtype=np.float64, seed=0, shape=SHAPE, **kw):
    out = np.empty(shape, dtype=dtype)
    res = getattr(init, name)(out, np.random.default_rng(seed), **kw)
    assert res is out
    return out


CASES = [(f, k, t) for f in VS for k, t in (("uniform", None), ("normal", True),
                                            ("normal", False))]


def case_id(c):
    f, k, t = c
    return f"{f}_{k}" + ("" if t is None else ("_trunc" if t else "_untrunc"))


def call(family, kind, truncated, **kw):
    name = f"{family}_{kind}"
    if truncated is not None:
        kw["truncated"] = truncated
    return fill(name, **kw)


# ------------------------------------------------------------ distributions

@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distribution_matches_formula(case, dtype):
    family, kind, truncated = case
    x = call(family, kind, truncated, dtype=dtype).ravel()
    dist = expected_dist(family, kind, truncated if truncated is not None else True)
    assert stats.kstest(x.astype(np.float64), dist.cdf).pvalue > P_MIN
    scale, n = VS[family]
    assert x.astype(np.float64).var() == pytest.approx(scale / n, rel=0.04)
    assert abs(x.mean()) < 4 * math.sqrt(scale / n / x.size)
    if kind == "uniform":
        limit = math.sqrt(3 * scale / n)
        assert np.abs(x).max() <= dtype(limit)
        assert np.abs(x).max() > 0.99 * limit
    elif truncated:
        std = math.sqrt(scale / n) / FACTOR
        assert np.abs(x).max() <= dtype(2 * std)
        assert np.abs(x).max() > 1.99 * std          # the tails do reach the cut
    else:
        std = math.sqrt(scale / n)
        assert np.abs(x).max() > 3 * std             # untruncated: tails beyond 2 std


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal", "lecun_normal"])
def test_truncated_never_beyond_two_std(name):
    # 1-D array of 200k: fan_in = fan_out = 200k
    n = 200_000
    std = math.sqrt(VS[name.split("_")[0]][0] / n) / FACTOR
    for dtype in (np.float32, np.float64):
        x = fill(name, dtype=dtype, seed=7, shape=(n,))
        assert np.abs(x).max() <= dtype(2 * std)
        assert x.var(dtype=np.float64) == pytest.approx(VS[name.split("_")[0]][0] / n, rel=0.02)


def test_normal_std():
    x = fill("normal", std=0.05).ravel()
    assert stats.kstest(x, stats.norm(scale=0.05).cdf).pvalue > P_MIN
    assert x.std() == pytest.approx(0.05, rel=0.02)
    assert np.array_equal(fill("normal", std=0.0), np.zeros(SHAPE))
    x = fill("normal").ravel()                     # default std 0.01
    assert x.std() == pytest.approx(0.01, rel=0.02)


def test_zeros():
    out = np.full(SHAPE, 3.0, dtype=np.float32)
    assert init.zeros(out) is out
    assert not out.any()
    out[:] = 1
    init.zeros(out, np.random.default_rng(0))
    assert not out.any()
    init.zeros(np.empty((0, 3)))                   # empty is fine for zeros


def test_one_d_fans_are_length():
    # bias of length 50: he_uniform limit = sqrt(6/50)
    x = fill("he_uniform", shape=(50,))
    assert np.abs(x).max() <= math.sqrt(6 / 50)
    x = fill("glorot_uniform", shape=(20_000,))
    assert np.abs(x).max() == pytest.approx(math.sqrt(3 / 20_000), rel=1e-3)


def test_compute_fans():
    assert init.compute_fans((784, 100)) == (784, 100)
    assert init.compute_fans((7,)) == (7, 7)
    assert init.compute_fans(()) == (1, 1)
    assert init.compute_fans((3, 3, 16, 32)) == (144, 288)


# ------------------------------------------------------- Keras and torch

@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("case", [c for c in CASES if c[2] is not False], ids=case_id)
def test_matches_keras_distribution(keras, case):
    family, kind, _ = case
    cls = {"glorot": "Glorot", "he": "He", "lecun": "Lecun"}[family] + kind.capitalize()
    kx = keras.ops.convert_to_numpy(getattr(keras.initializers, cls)(seed=3)(SHAPE))
    kx = kx.astype(np.float64).ravel()
    ours = call(family, kind, None if kind == "uniform" else True).ravel()
    dist = expected_dist(family, kind)
    # Keras samples follow the same exact distribution, and the two samples agree.
    assert stats.kstest(kx, dist.cdf).pvalue > P_MIN
    assert stats.ks_2samp(ours, kx).pvalue > P_MIN
    assert ours.var() == pytest.approx(kx.var(), rel=0.06)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("family,torch_init", [
    ("glorot", lambda nn, w: nn.init.xavier_normal_(w)),
    ("he", lambda nn, w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
    ("he", lambda nn, w: nn.init.kaiming_normal_(w)),       # default leaky_relu(a=0) = relu gain
])
def test_untruncated_matches_torch(torch, family, torch_init):
    torch.manual_seed(0)
    w = torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)  # torch Linear weight: (out, in)
    tx = torch_init(torch.nn, w).numpy().ravel()
    ours = fill(f"{family}_normal", truncated=False).ravel()
    scale, n = VS[family]
    assert tx.var() == pytest.approx(scale / n, rel=0.04)
    assert ours.var() == pytest.approx(tx.var(), rel=0.06)
    assert stats.ks_2samp(ours, tx).pvalue > P_MIN


@pytest.mark.parametrize("family,torch_init", [
    ("glorot", lambda nn, w: nn.init.xavier_uniform_(w)),
    ("he", lambda nn, w: nn.init.kaiming_uniform_(w, nonlinearity="relu")),
])
def test_uniform_matches_torch(torch, family, torch_init):
    torch.manual_seed(0)
    w = torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)
    tx = torch_init(torch.nn, w).numpy().ravel()
    ours = fill(f"{family}_uniform").ravel()
    scale, n = VS[family]
    limit = math.sqrt(3 * scale / n)
    assert np.abs(tx).max() <= limit and np.abs(ours).max() <= limit
    assert stats.ks_2samp(ours, tx).pvalue > P_MIN


def test_textbook_names():
    # textbook "Xavier" = randn * sqrt(1/n_in) = lecun_normal(truncated=False);
    # textbook "He" = randn * sqrt(2/n_in) = he_normal(truncated=False): same draws exactly.
    z = np.random.default_rng(5).standard_normal(SHAPE)
    assert np.allclose(fill("lecun_normal", seed=5, truncated=False), z * math.sqrt(1 / FAN_IN))
    assert np.allclose(fill("he_normal", seed=5, truncated=False), z * math.sqrt(2 / FAN_IN))


# ------------------------------------------------------ determinism, views

ALL = ["normal", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
       "lecun_uniform", "lecun_normal"]


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_values(name):
    a = fill(name, seed=11, shape=(30, 20))
    b = fill(name, seed=11, shape=(30, 20))
    c = fill(name, seed=12, shape=(30, 20))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # sampled in float64 then cast: float32 fill == float64 fill rounded
    a32 = fill(name, seed=11, shape=(30, 20), dtype=np.float32)
    assert np.array_equal(a32, a.astype(np.float32))


@pytest.mark.parametrize("name", ALL + ["zeros"])
def test_fills_only_the_view(name):
    buf = np.full(100 * 50 + 50 + 30, 7.0, dtype=np.float32)
    W = buf[:5000].reshape(100, 50)
    b = buf[5000:5050]
    out = getattr(init, name)(W, np.random.default_rng(0))
    assert out is W and np.shares_memory(W, buf)
    assert (buf[5000:] == 7.0).all()
    assert (W != 7.0).all()
    getattr(init, name)(b, np.random.default_rng(0))
    assert (buf[5050:] == 7.0).all()
    # a non-contiguous view: every other column of a 2-D buffer
    grid = np.full((40, 60), 7.0)
    view = grid[:, ::2]
    getattr(init, name)(view, np.random.default_rng(0))
    assert (grid[:, 1::2] == 7.0).all() and (view != 7.0).all()
    # same values as filling a fresh contiguous array with the same seed
    fresh = np.empty((40, 30))
    getattr(init, name)(fresh, np.random.default_rng(0))
    assert np.array_equal(view, fresh)


# ----------------------------------------------------------------- errors

def _unchanged_after(func, out, rng, exc, match, **kw):
    before = out.copy()
    state = rng.bit_generator.state if isinstance(rng, np.random.Generator) else None
    with pytest.raises(exc, match=match):
        func(out, rng, **kw)
    assert np.array_equal(out, before)
    if state is not None:
        assert rng.bit_generator.state == state     # nothing drawn either


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad_rng", [0, None, np.random.RandomState(0), "seed"])
def test_bad_rng(name, bad_rng):
    out = np.full((4, 3), 7.0)
    _unchanged_after(getattr(init, name), out, bad_rng, TypeError,
                     r"rng must be a numpy\.random\.Generator.*default_rng\(seed\)")


def test_zeros_bad_rng():
    with pytest.raises(TypeError, match="default_rng"):
        init.zeros(np.ones(3), 42)


@pytest.mark.parametrize("name", ALL + ["zeros"])
def test_bad_arrays(name):
    f = getattr(init, name)
    rng = np.random.default_rng(0)
    _unchanged_after(f, np.full((4, 3), 7, dtype=np.int64), rng, TypeError, "float32 or float64")
    _unchanged_after(f, np.full((4, 3), 7, dtype=np.float16), rng, TypeError, "float32 or float64")
    ro = np.full((4, 3), 7.0)
    ro.flags.writeable = False
    _unchanged_after(f, ro, rng, ValueError, "read-only")
    with pytest.raises(TypeError, match="numpy.ndarray"):
        f([[0.0, 0.0]], rng)


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                                  "lecun_uniform", "lecun_normal"])
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0,)])
def test_zero_fan(name, shape):
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"out has a zero fan"):
        getattr(init, name)(np.empty(shape), rng)
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("std,exc", [(-0.1, ValueError), (float("nan"), ValueError),
                                     (float("inf"), ValueError), ("0.1", TypeError),
                                     (True, TypeError)])
def test_bad_std(std, exc):
    out = np.full((4, 3), 7.0)
    _unchanged_after(init.normal, out, np.random.default_rng(0), exc, "std", std=std)


@pytest.mark.parametrize("name", ["glorot_normal", "he_normal", "lecun_normal"])
def test_bad_truncated(name):
    out = np.full((4, 3), 7.0)
    _unchanged_after(getattr(init, name), out, np.random.default_rng(0), TypeError, "truncated",
                     truncated="no")


# --------------------------------------------------------------- registry

def test_registry():
    expected = {"zeros", "normal", "glorot_uniform", "glorot_normal", "xavier_uniform",
                "xavier_normal", "he_uniform", "he_normal", "kaiming_uniform", "kaiming_normal",
                "lecun_uniform", "lecun_normal"}
    assert set(init.INITIALIZERS) == expected
    assert init.INITIALIZERS["xavier_uniform"] is init.glorot_uniform
    assert init.INITIALIZERS["xavier_normal"] is init.glorot_normal
    assert init.INITIALIZERS["kaiming_uniform"] is init.he_uniform
    assert init.INITIALIZERS["kaiming_normal"] is init.he_normal
    for name, f in init.INITIALIZERS.items():
        assert init.get(name) is f
    assert init.get("  He_Normal ") is init.he_normal
    assert init.get(init.he_normal) is init.he_normal


def test_get_unknown_lists_names():
    with pytest.raises(ValueError, match=r"unknown initialiser 'orthogonal'.*glorot_uniform.*"
                                         r"kaiming_normal.*lecun_normal"):
        init.get("orthogonal")
    with pytest.raises(TypeError):
        init.get(3)


def test_get_spec():
    f = init.get("normal:std=0.05")
    out = f(np.empty(SHAPE), np.random.default_rng(0))
    assert out.std() == pytest.approx(0.05, rel=0.02)
    f = init.get("he_normal:truncated=false")
    assert np.array_equal(f(np.empty((20, 10)), np.random.default_rng(1)),
                          fill("he_normal", seed=1, shape=(20, 10), truncated=False))
    f = init.get("kaiming_normal: truncated = TRUE")
    assert np.array_equal(f(np.empty((20, 10)), np.random.default_rng(1)),
                          fill("he_normal", seed=1, shape=(20, 10)))


@pytest.mark.parametrize("spec,match", [
    ("normal:mean=1", r"no option 'mean'; valid options: std"),
    ("he_uniform:truncated=false", r"no option 'truncated'; valid options: none"),
    ("normal:std", r"expected key=value"),
    ("normal:std=abc", r"cannot read 'abc'"),
    ("normal:std=-1", r"std must be"),
    ("normal:std=0.1,std=0.2", r"given twice"),
    ("he_normal:truncated=1", r"truncated must be True or False"),
])
def test_get_bad_spec(spec, match):
    with pytest.raises((ValueError, TypeError), match=match):
        init.get(spec)


def test_import_is_light():
    code = ("import sys, fastopt.init; "
            "bad = [m for m in ('numba', 'scipy', 'matplotlib', 'torch', 'keras') "
            "if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_doctests():
    import doctest

    result = doctest.testmod(init, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
