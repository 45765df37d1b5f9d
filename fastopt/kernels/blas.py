"""Matrix products inside compiled kernels, on the BLAS that numpy itself uses.

``np.dot`` inside ``@njit`` calls SciPy's copy of OpenBLAS, while numpy's own ``@`` calls
numpy's copy. Two OpenBLAS libraries mean two thread pools, and on a small machine they
fight: right after numpy's pool has worked, its threads keep spinning and a fastopt step
runs up to 2x slower (measured on 2 cores: batch 32, 1,057 vs 465 us; still 605 us after a
0.3 s pause). So the kernels call numpy's ``cblas_?gemm`` directly: one pool for the whole
program, and "numpy GEMM speed" is the same library.

numpy's library is found through the symbols of its core extension (pip wheels of numpy 2:
``scipy_cblas_sgemm64_``; numpy 1.26: ``cblas_sgemm64_``; other builds: ``cblas_sgemm``).
Where none is found, or with ``FASTOPT_BLAS=numba`` in the environment, the kernels use
``np.dot`` (SciPy's OpenBLAS) as before. The choice is part of every cached kernel's name
(``fastopt.kernels.jit.source_tag``), so switching never loads a kernel built for the other.
"""

import ctypes
import os

import numpy as np
from numba import njit, types

from .. import config
from .jit import jit

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# (symbol pattern, integer type of its dimensions)
_CANDIDATES = (("scipy_cblas_{}64_", types.int64), ("cblas_{}64_", types.int64),
               ("cblas_{}", types.int32))


def _numpy_core_library():
    try:
        from numpy._core import _multiarray_umath as core
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as core
    return ctypes.CDLL(core.__file__)


def _find_cblas():
    """(description, integer type, {name: address}) of numpy's cblas_sgemm/dgemm, or None."""
    if os.environ.get("FASTOPT_BLAS", "numpy").lower() == "numba":
        return None
    try:
        lib = _numpy_core_library()
    except OSError:
        return None
    for pattern, int_type in _CANDIDATES:
        try:
            found = {name: ctypes.cast(getattr(lib, pattern.format(name)),
                                       ctypes.c_void_p).value
                     for name in ("sgemm", "dgemm", "sgemv", "dgemv")}
        except AttributeError:
            continue
        return pattern.format("?gemm"), int_type, found
    return None


_FOUND = _find_cblas()
HAVE_CBLAS = _FOUND is not None
#: which library the kernels' matrix products use (part of the kernel cache key)
CHOICE = f"numpy:{_FOUND[0]}" if HAVE_CBLAS else "numba:np.dot"

if HAVE_CBLAS:
    import llvmlite.binding as llvm

    _INT = _FOUND[1]
    for _name, _addr in _FOUND[2].items():
        llvm.add_symbol(f"fastopt_cblas_{_name}", _addr)

    def _gemm_signature(real):
        return types.void(types.int32, types.int32, types.int32, _INT, _INT, _INT, real,
                          types.voidptr, _INT, types.voidptr, _INT, real, types.voidptr, _INT)

    def _gemv_signature(real):
        return types.void(types.int32, types.int32, _INT, _INT, real, types.voidptr, _INT,
                          types.voidptr, _INT, real, types.voidptr, _INT)

    _sgemm = types.ExternalFunction("fastopt_cblas_sgemm", _gemm_signature(types.float32))
    _dgemm = types.ExternalFunction("fastopt_cblas_dgemm", _gemm_signature(types.float64))
    _sgemv = types.ExternalFunction("fastopt_cblas_sgemv", _gemv_signature(types.float32))
    _dgemv = types.ExternalFunction("fastopt_cblas_dgemv", _gemv_signature(types.float64))
else:
    _sgemm = _dgemm = _sgemv = _dgemv = None


@njit(inline="always", **config.CPU_JIT)
def _cblas_gemm(c, a, b, trans_a, trans_b):
    if c.shape[0] == 1 and not trans_a:
        # one row: c^T = op(b)^T a^T is a matrix-vector product; numpy's OpenBLAS does not
        # forward a one-row GEMM to GEMV itself (20.8 vs 6.5 us at 1x784 @ 784x100)
        tb = NO_TRANS if trans_b else TRANS
        rows, cols = b.shape
        if c.itemsize == 4:  # float32
            _sgemv(ROW_MAJOR, tb, rows, cols, np.float32(1), b.ctypes, cols, a.ctypes, 1,
                   np.float32(0), c.ctypes, 1)
        else:
            _dgemv(ROW_MAJOR, tb, rows, cols, np.float64(1), b.ctypes, cols, a.ctypes, 1,
                   np.float64(0), c.ctypes, 1)
        return
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    ta = TRANS if trans_a else NO_TRANS
    tb = TRANS if trans_b else NO_TRANS
    if c.itemsize == 4:  # float32
        _sgemm(ROW_MAJOR, ta, tb, m, n, k, np.float32(1), a.ctypes, a.shape[1],
               b.ctypes, b.shape[1], np.float32(0), c.ctypes, n)
    else:
        _dgemm(ROW_MAJOR, ta, tb, m, n, k, np.float64(1), a.ctypes, a.shape[1],
               b.ctypes, b.shape[1], np.float64(0), c.ctypes, n)


@njit(inline="always", **config.CPU_JIT)
def _numba_gemm(c, a, b, trans_a, trans_b):
    if trans_a:
        np.dot(a.T, b, c)
    elif trans_b:
        np.dot(a, b.T, c)
    else:
        np.dot(a, b, c)


@jit
def runtime(flag):
    """``flag`` typed as a run-time value: ``gemm(..., True, False)`` with literal flags
    would compile a gemm for every combination of them (0.5 s each in a new process).
    (``return flag`` would keep the literal type: a comparison's result has none.)"""
    return flag != 0


@jit
def gemm(c, a, b, trans_a, trans_b):
    """c = op(a) @ op(b), overwriting c; op transposes when trans_* is true.

    All three arrays 2-D, C-contiguous, of one dtype (float32 or float64). HAVE_CBLAS is a
    compile-time constant: Numba drops the branch not taken before typing it."""
    if HAVE_CBLAS:
        _cblas_gemm(c, a, b, trans_a, trans_b)
    else:
        _numba_gemm(c, a, b, trans_a, trans_b)
