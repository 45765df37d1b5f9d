"""Compilation settings shared by every kernel (one place, so tests and benchmarks agree).

Environment overrides are read once, when fastopt is imported:

FASTOPT_PARALLEL_MIN_SIZE
    arrays with at least this many elements use the ``prange`` (multi-threaded) CPU kernel,
    smaller ones the serial kernel. The default is the crossover measured with
    ``python -m fastopt bench crossover`` on a 2-core machine (see benchmarks/README.md).

FASTOPT_THREADS
    how the CPU kernels use threads when the cores may be shared (``fastopt.threads``):
    ``auto`` (default) keeps the threads while they are fast and falls back to one thread
    while other programs keep the cores busy (a quiet machine gives the numbers of
    ``all``); ``all`` always uses the threads (prange kernels from PARALLEL_MIN_SIZE
    elements, numpy's BLAS on its own thread count); ``1`` runs everything on one
    thread, numpy's BLAS included. ``all`` and ``1`` are bitwise reproducible whatever
    the load; ``auto`` after a switch to one thread is not (OpenBLAS rounds differently
    on one thread).
"""

import os

# Explicit fast-math flags: allow reciprocal and function approximations and ignore the sign
# of zero, but NOT "nnan"/"ninf", so NaN and inf propagate and can be noticed, and NOT
# "contract" or "reassoc". With "contract" LLVM fuses a*b + c into an FMA in the vectorised
# body of a loop but not always in its scalar remainder, so the serial kernel, the prange
# kernel and the prange kernel on another thread count differed in a few elements by an ulp
# (Adam with amsgrad: 623 of 40,001 float32 elements; Lion with weight decay: 1); without it
# the three agree bitwise for every rule (tests/test_kernels.py, test_paths_agree_bitwise),
# so fastopt.threads may switch between them with the load, and C compilers without
# contraction (the Cython backend) can match Numba bit for bit. Element-wise kernels are
# memory-bound: no measurable cost (benchmarks/README.md, "Contention").
FASTMATH = {"nsz", "arcp", "afn"}
# Reductions (the gradient norm) need "reassoc" to vectorise.
REDUCTION_FASTMATH = FASTMATH | {"reassoc"}

# Options for every CPU kernel. error_model="numpy" lets division vectorise (no
# ZeroDivisionError checks); nogil lets callers run kernels from several threads.
CPU_JIT = dict(fastmath=FASTMATH, error_model="numpy", nogil=True)
REDUCTION_JIT = dict(CPU_JIT, fastmath=REDUCTION_FASTMATH)


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer number of elements, got {value!r}") from None
    if parsed < 0:
        raise ValueError(f"{name} must be >= 0, got {parsed}")
    return parsed


PARALLEL_MIN_SIZE = _env_int("FASTOPT_PARALLEL_MIN_SIZE", 32768)


def _env_choice(name, default, choices):
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


THREADS = _env_choice("FASTOPT_THREADS", "auto", ("auto", "all", "1"))
