"""Argument checks shared by the public entry points: messages name the argument and the fix."""

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def real(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within the given bounds, returned as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value}")
    return value


def flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def betas(name, value):
    try:
        b1, b2 = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {value!r}") from None
    return (real(f"{name}[0]", b1, low=0.0, high=1.0, high_open=True),
            real(f"{name}[1]", b2, low=0.0, high=1.0, high_open=True))


def is_device_array(a):
    """True for an object that exposes ``__cuda_array_interface__`` (not a NumPy array), or
    a device array of Numba's CUDA simulator."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def float_array(name, a, *, writeable):
    """A C-contiguous float32/float64 NumPy array (writeable if asked)."""
    if not isinstance(a, np.ndarray):
        if is_device_array(a):
            raise TypeError(f"{name} is a GPU array but the other arrays are NumPy arrays; "
                            "keep all of them on the host or all on the GPU")
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}; "
                        f"convert it once with {name}.astype(np.float32)")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}) "
                         "(and keep a reference to that array: it is updated in place)")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only; the optimizer updates it in place, so pass "
                         "a writeable array")
    return a


def no_overlap(arrays, name="params"):
    """Raise if two arrays share memory (a parameter listed twice, or overlapping views)."""
    spans = []
    for i, a in enumerate(arrays):
        if a.size:
            iface = getattr(a, "__array_interface__", None) or a.__cuda_array_interface__
            start = iface["data"][0]
            spans.append((start, start + a.size * a.dtype.itemsize, i))
    spans.sort()
    for (s0, e0, i), (s1, e1, j) in zip(spans, spans[1:]):
        if s1 < e0:
            raise ValueError(f"{name}[{min(i, j)}] and {name}[{max(i, j)}] share memory; each "
                             "parameter must appear once (a flat buffer is one array)")


def float_arrays(name, arrays, *, writeable):
    """An array or a list of arrays, each checked by ``float_array``; returns the list."""
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    else:
        try:
            arrays = list(arrays)
        except TypeError:
            raise TypeError(f"{name} must be an array or a list of arrays, got "
                            f"{type(arrays).__name__}") from None
    return [float_array(f"{name}[{i}]", a, writeable=writeable) for i, a in enumerate(arrays)]


def fraction(name, value, *, example):
    """A real number strictly between 0 and 1 (a share of something), returned as float;
    ValueError naming the argument and an ``example`` value otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), e.g. {example}, got {value!r}")
    return float(value)


def widths(name, values):
    """One or more layer widths (integers >= 1), returned as a tuple of ints."""
    values = tuple(int(v) for v in values)
    if not values or min(values) < 1:
        raise ValueError(f"{name} must be one or more positive layer widths, got {values}")
    return values
