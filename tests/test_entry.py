"""fastopt.kernels.cpu.entry / via_entry: a compiled caller calls a kernel through the entry
point Python looked up (fit's chunk loop does, so nothing is linked into it); an entry point
for other argument types raises instead of being called."""

import numba
import numpy as np
import pytest
from numba import njit

from fastopt.kernels import cpu


@njit
def _scaled_head(a, b, c, d):
    """Returns an array (a new reference through the entry point) built from all four."""
    return a[:2] * b + c * d


@njit
def _fill(out, a, b, c, d):
    out[:] = a + b + c + d


_call_head = cpu.via_entry(_scaled_head, 0, 4)
_call_fill = cpu.via_entry(_fill, 1, 5)


@njit
def _caller(calls, x, out):
    head = _call_head(calls, x, 2.0, 1.0, 3.0)
    _call_fill(calls, out, 1.0, 2.0, 3.0, head[0])
    return head


def _sig(*args):
    return tuple(numba.typeof(a) for a in args)


def test_the_caller_gets_the_kernels_results():
    x, out = np.arange(4.0), np.zeros(3)
    calls = (cpu.entry(_scaled_head, _sig(x, 2.0, 1.0, 3.0)),
             cpu.entry(_fill, _sig(out, 1.0, 2.0, 3.0, 3.0)))
    for _ in range(3):  # the returned array stays valid (reference counts are right)
        head = _caller(calls, x, out)
    np.testing.assert_array_equal(head, [3.0, 5.0])
    np.testing.assert_array_equal(out, [9.0, 9.0, 9.0])


def test_an_entry_point_for_other_types_raises():
    x, out = np.arange(4.0), np.zeros(3)
    wrong = cpu.entry(_scaled_head, _sig(np.arange(4.0, dtype=np.float32), 2.0, 1.0, 3.0))
    calls = (wrong, cpu.entry(_fill, _sig(out, 1.0, 2.0, 3.0, 3.0)))
    with pytest.raises(RuntimeError, match="entry point for other argument types"):
        _caller(calls, x, out)
    np.testing.assert_array_equal(out, 0.0)  # nothing ran


def test_arity_is_checked():
    with pytest.raises(ValueError, match="4 or 5 arguments"):
        cpu.via_entry(_fill, 0, 3)


def test_a_declared_return_type_is_checked():
    """via_entry(..., returns=) types its caller without compiling the callee; entry() then
    refuses a callee that returns something else."""
    out = np.zeros(3)
    sig = _sig(out, 1.0, 2.0, 3.0, 3.0)
    assert cpu.entry(_fill, sig, returns=numba.types.none)[1] == cpu.entry(_fill, sig)[1]
    with pytest.raises(TypeError, match="returns none, its caller expects float64"):
        cpu.entry(_fill, sig, returns=numba.types.float64)
