"""Argument checks shared by the public entry points: messages name the argument and the fix.

The one module of argument checks: the optimizers, models, training loop, schedules,
initialisers, commands and sweeps all check through it. It imports only the standard
library (the array checks import NumPy when called), so that ``fastopt.schedules`` and
the command-line front-ends that use it import instantly.
"""

import math
import numbers
import operator


def __getattr__(name):
    if name == "FLOAT_DTYPES":  # the dtypes of parameters and data
        import numpy as np

        return (np.dtype(np.float32), np.dtype(np.float64))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    if not is_bool(value):
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
    import numpy as np

    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def float_array(name, a, *, writeable):
    """A C-contiguous float32/float64 NumPy array (writeable if asked)."""
    import numpy as np

    if not isinstance(a, np.ndarray):
        if is_device_array(a):
            raise TypeError(f"{name} is a GPU array but the other arrays are NumPy arrays; "
                            "keep all of them on the host or all on the GPU")
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in __getattr__("FLOAT_DTYPES"):
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}; "
                        f"convert it once with {name}.astype(np.float32)")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}) "
                         "(and keep a reference to that array: it is updated in place)")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only; the optimizer updates it in place, so pass "
                         "a writeable array")
    return a


def memory_span(a):
    """(first byte, one past the last byte) of a C-contiguous host or GPU array."""
    iface = getattr(a, "__array_interface__", None) or a.__cuda_array_interface__
    start = iface["data"][0]
    return start, start + a.size * a.dtype.itemsize


def no_overlap(arrays, name="params"):
    """Raise if two arrays share memory (a parameter listed twice, or overlapping views)."""
    spans = []
    for i, a in enumerate(arrays):
        if a.size:
            spans.append((*memory_span(a), i))
    spans.sort()
    for (s0, e0, i), (s1, e1, j) in zip(spans, spans[1:]):
        if s1 < e0:
            raise ValueError(f"{name}[{min(i, j)}] and {name}[{max(i, j)}] share memory; each "
                             "parameter must appear once (a flat buffer is one array)")


class MemoryMap:
    """Where arrays that do not overlap each other lie in memory (an optimizer's parameters
    and state arrays), to check other arrays (gradients) against them in O(log n) each.

    ``entries``: (name, owner, array); ``owner`` groups the arrays that an array may be
    exactly (a gradient may *be* its own parameter or one of its state arrays: the update
    reads every element before it writes it), never partly overlap."""

    def __init__(self, entries):
        import numpy as np

        self._ndarray = np.ndarray
        rows = sorted((*memory_span(a), name, owner) for name, owner, a in entries if a.size)
        self.starts = [r[0] for r in rows]
        self.rows = rows
        # the NumPy arrays that own the memory of the map's arrays: an array whose memory
        # belongs to none of them lies apart, known without asking for its address (which
        # costs microseconds per array)
        self._roots = {id(self._root(a)) for _, _, a in entries}
        self._keep = [self._root(a) for _, _, a in entries]  # keeps those ids valid

    def _root(self, a):
        while isinstance(getattr(a, "base", None), self._ndarray):
            a = a.base
        return a

    def check_apart(self, name, a, owner):
        """Raise ValueError naming both arrays if ``a`` overlaps one of the map's arrays
        without being exactly one that belongs to ``owner``. ``name``: a str, or a
        callable that returns it (called only for the message)."""
        import bisect

        if not a.size:
            return
        root = self._root(a)
        if (isinstance(root, self._ndarray) and root.base is None
                and id(root) not in self._roots):
            return  # its own memory, which no parameter or state array uses
        start, end = memory_span(a)
        k = bisect.bisect_left(self.starts, end) - 1  # the last array starting before a ends
        if k < 0 or self.rows[k][1] <= start:
            return
        s, e, other, own = self.rows[k]
        if (s, e) == (start, end) and own == owner:
            return
        name = name() if callable(name) else name
        raise ValueError(f"{name} shares memory with {other}: a gradient may be its own "
                         "parameter, but must not overlap another array the optimizer "
                         "writes (the update would read values it has already written); "
                         f"pass a separate array for {name} (e.g. {name}.copy())")


def float_arrays(name, arrays, *, writeable):
    """An array or a list of arrays, each checked by ``float_array``; returns the list."""
    import numpy as np

    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    else:
        try:
            arrays = list(arrays)
        except TypeError:
            raise TypeError(f"{name} must be an array or a list of arrays, got "
                            f"{type(arrays).__name__}") from None
    return [float_array(f"{name}[{i}]", a, writeable=writeable) for i, a in enumerate(arrays)]


def count(name, value, *, low=1, optional=False):
    """An integer (Python or NumPy, not a bool) >= ``low``, returned as int; None passes
    when ``optional``. ValueError naming the argument otherwise, for a wrong type (2.0
    included: never rounded) as for a wrong value."""
    if value is None and optional:
        return None
    if is_bool(value) or not isinstance(value, numbers.Integral) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {what}{' or None' if optional else ''}, "
                         f"got {value!r}")
    return int(value)


def integer(name, value, *, optional=False):
    """An integer (Python or NumPy, not a bool) returned as int; None passes when
    ``optional``. TypeError naming the argument otherwise (range checks are the caller's:
    their bounds depend on the data)."""
    import numpy as np

    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer{' or None' if optional else ''}"
                        f", got {value!r}")
    return int(value)


def positive(name, value):
    """A finite real number > 0 (int or float), returned as float; ValueError naming the
    argument otherwise."""
    if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def fraction(name, value, *, example):
    """A real number strictly between 0 and 1 (a share of something), returned as float;
    ValueError naming the argument and an ``example`` value otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), e.g. {example}, got {value!r}")
    return float(value)


def widths(name, values):
    """One or more layer widths: integers >= 1 of any integer type (an integral float such
    as 64.0 counts; 2.7 is refused, never truncated), returned as a tuple of ints."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of integers >= 1 (layer widths), got "
                        f"{describe(values)}")
    items = list(values)
    if not items:
        raise ValueError(f"{name} must be one or more positive layer widths, got {values!r}")
    result = []
    for i, value in enumerate(items):
        width = as_int(value)
        if width is None or width < 1:
            kind = ValueError if isinstance(value, numbers.Number) and not is_bool(value) \
                else TypeError
            raise kind(f"{name}[{i}] must be an integer >= 1 (a layer width), got "
                       f"{describe(value)}; widths are never rounded")
        result.append(width)
    return tuple(result)


# ---------------------------------------------------------------------------------------
# Keras-style scalar arguments (schedules): integer-valued floats count as integers, and
# messages show the value with its type


def describe(value):
    """``repr`` of a value plus its type name, for error messages."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def is_bool(value):
    """True for a Python or NumPy bool (without importing NumPy)."""
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def as_int(value):
    """``value`` as a Python int if it is integer-valued, else ``None``.

    Accepts ints, NumPy integers, integer 0-d tensors (anything with ``__index__``) and
    integral finite floats; rejects bools.
    """
    if is_bool(value):
        return None
    try:
        return operator.index(value)
    except TypeError:
        pass
    if isinstance(value, numbers.Real):
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):  # pragma: no cover
            return None
        if math.isfinite(f) and f.is_integer():
            return int(f)
    return None


def whole(name, value, minimum):
    """An integer-valued argument ``>= minimum`` (0 or 1), returned as int."""
    result = as_int(value)
    what = "a positive integer" if minimum >= 1 else "a non-negative integer"
    if result is None:
        if isinstance(value, numbers.Number) and not is_bool(value):
            raise ValueError(f"{name} must be {what}, got {describe(value)}")
        raise TypeError(f"{name} must be {what}, got {describe(value)}")
    if result < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return result


def number(name, value, what="a non-negative finite number", low=0.0, high=math.inf,
           low_open=False):
    """A finite real argument in ``[low, high]`` (``(low, high]`` if ``low_open``), also
    from NumPy scalars and 0-d tensors; returned as a Python float."""
    if is_bool(value) or isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be {what}, got {describe(value)}")
    try:
        value_f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {describe(value)}") from None
    if (math.isnan(value_f) or math.isinf(value_f) or value_f > high
            or value_f < low or (low_open and value_f == low)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value_f


def boolean(name, value):
    """True or False (Python or NumPy bool); TypeError showing the value otherwise."""
    if not is_bool(value):
        raise TypeError(f"{name} must be a bool (True or False), got {describe(value)}")
    return bool(value)
