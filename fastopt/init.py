"""Weight initialisers that fill NumPy arrays in place.

Every initialiser has the form ``f(out, rng, ...) -> out``: it FILLS the
given array ``out`` in place (a float32 or float64 ``numpy.ndarray``, which
may be a view into a larger flat parameter buffer, contiguous or not) with
values drawn from the ``numpy.random.Generator`` ``rng``, and returns
``out``.  Nothing else in the buffer is touched.

Values are always sampled in float64 and then cast into ``out``, so a
float32 and a float64 array filled with the same seed agree to float32
rounding.  The same seed gives the same values.

Fans
----
Weights have shape ``(fan_in, fan_out)`` (the layer computes
``y = x @ W + b``).  A 1-D array (a bias) has ``fan_in = fan_out = len``.
Arrays with more dimensions follow Keras's ``compute_fans``: the leading
dimensions form the receptive field, ``fan_in = shape[-2] * prod(shape[:-2])``
and ``fan_out = shape[-1] * prod(shape[:-2])``; a 0-d array has fans (1, 1).
See :func:`compute_fans`.

Formulas (Keras ``VarianceScaling``)
------------------------------------
================  =====  ======================  ============================
initialiser       scale  n                       a.k.a.
================  =====  ======================  ============================
glorot_*          1      (fan_in + fan_out) / 2  Xavier (Glorot & Bengio 2010)
he_*              2      fan_in                  Kaiming (He et al. 2015)
lecun_*           1      fan_in                  LeCun (1998)
================  =====  ======================  ============================

* ``*_uniform``: U(-limit, limit) with ``limit = sqrt(3 * scale / n)``, so
  the variance is ``scale / n``.  Keras and torch (``xavier_uniform_``,
  ``kaiming_uniform_(nonlinearity="relu")``) agree on this one.
* ``*_normal(truncated=True)`` (default, Keras): a normal truncated at two
  standard deviations, ``std = sqrt(scale / n) / 0.87962566103423978``; the
  constant is the standard deviation of a unit normal truncated to [-2, 2],
  so the truncated values have variance exactly ``scale / n`` and
  ``|value| <= 2 * std``.
* ``*_normal(truncated=False)``: the untruncated N(0, scale / n) of torch
  (``nn.init.xavier_normal_``, ``nn.init.kaiming_normal_`` with
  ``mode="fan_in", nonlinearity="relu"``) and of most textbooks.  Beware the
  textbook's names: its "Xavier" initialisation ``randn * sqrt(1 / n_in)`` is
  ``lecun_normal(truncated=False)`` (Glorot's fan average is not used), and
  its "He" ``randn * sqrt(2 / n_in)`` is ``he_normal(truncated=False)``.

The truncated normal is drawn by rejection: draw unit normals, redraw (with
the same generator) exactly those with ``|z| > 2`` until none is left, then
multiply by ``std``.  About 4.6 % of draws are rejected per round, so a
handful of rounds over ever smaller index sets finish any array.

Also: :func:`zeros`, :func:`normal` (untruncated ``N(0, std**2)``), the
registry :data:`INITIALIZERS` (with the ``xavier_*`` / ``kaiming_*``
aliases) and :func:`get`, which also understands small specs such as
``"normal:std=0.05"`` or ``"he_normal:truncated=false"``.

Bad input raises before anything is written: ``TypeError`` for a ``rng``
that is not a ``numpy.random.Generator`` (use ``np.random.default_rng(seed)``)
or an array that is not float32/float64, ``ValueError`` for a read-only
array, a negative or NaN ``std``, or an array with a zero fan.

>>> import numpy as np
>>> from fastopt import init
>>> rng = np.random.default_rng(0)
>>> buf = np.zeros(784 * 100 + 100, dtype=np.float32)
>>> W = buf[:78400].reshape(784, 100)
>>> _ = init.he_normal(W, rng)
>>> bool(np.abs(W).max() <= 2 * np.sqrt(2 / 784) / 0.87962566103423978)
True
>>> bool((buf[78400:] == 0).all())
True
"""

import functools
import inspect
import math

import numpy as np

from . import _checks, specs

__all__ = [
    "zeros",
    "normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "compute_fans",
    "INITIALIZERS",
    "get",
    "TRUNCATED_STD_FACTOR",
]

#: Standard deviation of a unit normal truncated to [-2, 2] (Keras's constant).
TRUNCATED_STD_FACTOR = 0.87962566103423978


# ----------------------------------------------------------------- checks

def _check_out(out):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray (float32 or float64) to fill in place, "
                        f"got {type(out).__name__}")
    if out.dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"out must have dtype float32 or float64, got {out.dtype}; "
                        "initialisers fill floating-point parameter arrays in place")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writeable array (the initialiser fills it "
                         "in place)")
    return out


def _check_rng(rng, *, optional=False):
    if optional and rng is None:
        return rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
                        "use rng = np.random.default_rng(seed)")
    return rng


def _check_std(std):
    return _checks.real("std", std, low=0.0)


def _check_truncated(truncated):
    return _checks.flag("truncated", truncated)


def compute_fans(shape):
    """``(fan_in, fan_out)`` of an array shape, as Keras computes them.

    ``()`` -> (1, 1); ``(n,)`` -> (n, n); ``(fan_in, fan_out)`` -> itself;
    more dimensions: the leading ones are the receptive field,
    ``(shape[-2] * r, shape[-1] * r)`` with ``r = prod(shape[:-2])``.

    >>> compute_fans((784, 100))
    (784, 100)
    >>> compute_fans((10,))
    (10, 10)
    >>> compute_fans((3, 3, 16, 32))
    (144, 288)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _fan_n(out, mode):
    fan_in, fan_out = compute_fans(out.shape)
    if fan_in == 0 or fan_out == 0:
        raise ValueError(f"out has a zero fan (shape {out.shape}: fan_in={fan_in}, "
                         f"fan_out={fan_out}); variance-scaling initialisers need "
                         "fan_in > 0 and fan_out > 0")
    return (fan_in + fan_out) / 2.0 if mode == "fan_avg" else float(fan_in)


# ---------------------------------------------------------------- sampling

def _truncated_standard_normal(rng, size):
    """``size`` float64 unit normals conditioned on ``|z| <= 2`` (rejection)."""
    z = rng.standard_normal(size)
    bad = np.flatnonzero(np.abs(z) > 2.0)
    while bad.size:
        z[bad] = rng.standard_normal(bad.size)
        bad = bad[np.abs(z[bad]) > 2.0]
    return z


def _fill(out, values):
    out[...] = values.reshape(out.shape)
    return out


def _variance_scaling(out, rng, scale, mode, distribution, truncated=True):
    _check_out(out)
    _check_rng(rng)
    truncated = _check_truncated(truncated)
    n = _fan_n(out, mode)
    variance = scale / n
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return _fill(out, rng.uniform(-limit, limit, out.size))
    if truncated:
        std = math.sqrt(variance) / TRUNCATED_STD_FACTOR
        return _fill(out, _truncated_standard_normal(rng, out.size) * std)
    return _fill(out, rng.standard_normal(out.size) * math.sqrt(variance))


# -------------------------------------------------------------- public API

def zeros(out, rng=None):
    """Fill ``out`` with zeros and return it (``rng`` is accepted and ignored).

    ``rng`` exists so that every initialiser has the form ``f(out, rng)``;
    it may be ``None`` or a ``numpy.random.Generator``.
    """
    _check_out(out)
    _check_rng(rng, optional=True)
    out[...] = 0
    return out


def normal(out, rng, std=0.01):
    """Fill ``out`` with N(0, std**2) (untruncated) and return it.

    The default ``std=0.01`` is the classic small-random-weights choice;
    Keras's ``RandomNormal`` defaults to 0.05 and torch's ``normal_`` to 1.
    ``std=0`` fills zeros (after drawing, so the generator advances the same).
    """
    _check_out(out)
    _check_rng(rng)
    std = _check_std(std)
    return _fill(out, rng.standard_normal(out.size) * std)


def glorot_uniform(out, rng):
    """Glorot/Xavier uniform: U(-limit, limit), ``limit = sqrt(6 / (fan_in + fan_out))``.

    Same as Keras ``GlorotUniform`` and torch ``nn.init.xavier_uniform_``.
    """
    return _variance_scaling(out, rng, 1.0, "fan_avg", "uniform")


def glorot_normal(out, rng, truncated=True):
    """Glorot/Xavier normal, variance ``2 / (fan_in + fan_out)``.

    ``truncated=True`` (Keras ``GlorotNormal``): normal truncated at 2 std with
    ``std = sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978``.
    ``truncated=False`` (torch ``nn.init.xavier_normal_``):
    N(0, 2 / (fan_in + fan_out)).
    """
    return _variance_scaling(out, rng, 1.0, "fan_avg", "normal", truncated)


def he_uniform(out, rng):
    """He/Kaiming uniform: U(-limit, limit), ``limit = sqrt(6 / fan_in)``.

    Same as Keras ``HeUniform`` and torch
    ``nn.init.kaiming_uniform_(w, nonlinearity="relu")`` (mode ``fan_in``).
    """
    return _variance_scaling(out, rng, 2.0, "fan_in", "uniform")


def he_normal(out, rng, truncated=True):
    """He/Kaiming normal, variance ``2 / fan_in``.

    ``truncated=True`` (Keras ``HeNormal``): normal truncated at 2 std with
    ``std = sqrt(2 / fan_in) / 0.87962566103423978``.  ``truncated=False``
    (torch ``nn.init.kaiming_normal_(w, nonlinearity="relu")``, the
    textbook's "He" ``randn * sqrt(2 / n_in)``): N(0, 2 / fan_in).
    """
    return _variance_scaling(out, rng, 2.0, "fan_in", "normal", truncated)


def lecun_uniform(out, rng):
    """LeCun uniform: U(-limit, limit), ``limit = sqrt(3 / fan_in)`` (Keras ``LecunUniform``)."""
    return _variance_scaling(out, rng, 1.0, "fan_in", "uniform")


def lecun_normal(out, rng, truncated=True):
    """LeCun normal, variance ``1 / fan_in``.

    ``truncated=True`` (Keras ``LecunNormal``): normal truncated at 2 std with
    ``std = sqrt(1 / fan_in) / 0.87962566103423978``.  ``truncated=False``:
    N(0, 1 / fan_in), which is what many textbooks call "Xavier"
    (``randn * sqrt(1 / n_in)``).
    """
    return _variance_scaling(out, rng, 1.0, "fan_in", "normal", truncated)


#: Name -> initialiser.  ``xavier_*`` and ``kaiming_*`` are aliases of
#: ``glorot_*`` and ``he_*``.
INITIALIZERS = {
    "zeros": zeros,
    "normal": normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
}

_OPTION_CHECKS = {"std": _check_std, "truncated": _check_truncated}


def _options_of(func):
    """Keyword options an initialiser takes beyond ``(out, rng)``."""
    return [p for p in inspect.signature(func).parameters if p not in ("out", "rng")]


def get(spec):
    """Return the initialiser ``(out, rng) -> out`` that ``spec`` names.

    ``spec`` is a key of :data:`INITIALIZERS` (case-insensitive), optionally
    followed by options::

        spec := NAME [ ":" key=value { "," key=value } ]

    e.g. ``"he_normal"``, ``"normal:std=0.05"``,
    ``"kaiming_normal:truncated=false"``.  Values are numbers or
    ``true``/``false``.  A plain name returns the function itself; a spec with
    options returns a ``functools.partial`` with the options bound (checked
    now, not at the first call).  A callable is returned unchanged.

    Unknown names or keys raise ``ValueError`` listing the valid ones.

    >>> get("he_normal") is he_normal
    True
    >>> get("normal:std=0.05").keywords
    {'std': 0.05}
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"initialiser must be a name (str) or a callable (out, rng) -> out, "
                        f"got {type(spec).__name__}")
    name, rest = specs.head(spec)
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initialiser {name!r}; valid names: "
                         + ", ".join(INITIALIZERS))
    func = INITIALIZERS[name]
    if not rest.strip():
        return func
    allowed = _options_of(func)
    kwargs = {}
    for key, text in specs.options(rest, f"initialiser spec {spec!r}"):
        if key not in allowed:
            raise ValueError(f"initialiser {name!r} has no option {key!r}; valid options: "
                             + (", ".join(allowed) if allowed else "none"))
        value = specs.scalar(text, f"initialiser spec {spec!r}, key {key!r}")
        kwargs[key] = _OPTION_CHECKS[key](value)
    return functools.partial(func, **kwargs)
