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

# Explicit fast-math flags: ignore the sign of zero, and nothing else. NOT "nnan"/"ninf", so
# NaN and inf propagate and can be noticed; NOT "contract" or "reassoc": with "contract" LLVM
# fuses a*b + c into an FMA in the vectorised body of a loop but not always in its scalar
# remainder, so the serial kernel, the prange kernel and the prange kernel on another thread
# count differed in a few elements by an ulp (Adam with amsgrad: 623 of 40,001 float32
# elements; Lion with weight decay: 1); NOT "arcp"/"afn": with them LLVM turns a float32
# x / sqrt(y) into the x86 reciprocal-square-root estimate plus a Newton step, whose bits
# depend on the CPU (rsqrtps and the AVX-512 rsqrt14ps differ after the Newton step in 37%
# of random inputs on an AMD Zen 4) and on which part of a loop (512-bit body, 256-bit or
# scalar remainder) an element falls in. Without them every division and square root is the
# correctly rounded IEEE operation, as in torch and in C: the three CPU paths agree bitwise
# for every rule (tests/test_kernels.py, test_paths_agree_bitwise), fastopt.threads may switch
# between them with the load, and the Cython backend (C without contraction) matches Numba
# bit for bit on any x86 CPU. Element-wise kernels are memory-bound: no measurable cost at
# N >= 1e5 (benchmarks/README.md, "Contention", "Numba or Cython?").
FASTMATH = {"nsz"}
# Reductions (the gradient norm) need "reassoc" to vectorise.
REDUCTION_FASTMATH = FASTMATH | {"reassoc"}

# Options for every CPU kernel. error_model="numpy" lets division vectorise (no
# ZeroDivisionError checks); nogil lets callers run kernels from several threads.
CPU_JIT = dict(fastmath=FASTMATH, error_model="numpy", nogil=True)
REDUCTION_JIT = dict(CPU_JIT, fastmath=REDUCTION_FASTMATH)


def env_int(name, default, minimum=0, what="an integer number of elements"):
    """The integer environment variable ``name`` (``default`` when unset or empty), checked
    to be ``what`` and >= ``minimum``; a clear ValueError otherwise."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if parsed < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {parsed}")
    return parsed


PARALLEL_MIN_SIZE = env_int("FASTOPT_PARALLEL_MIN_SIZE", 32768)


def _env_choice(name, default, choices):
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


THREADS = _env_choice("FASTOPT_THREADS", "auto", ("auto", "all", "1"))
