"""Compilation settings shared by every kernel (one place, so tests and benchmarks agree).

Environment overrides are read once, when fastopt is imported:

FASTOPT_PARALLEL_MIN_SIZE
    arrays with at least this many elements use the ``prange`` (multi-threaded) CPU kernel,
    smaller ones the serial kernel. The default is the crossover measured with
    ``python -m fastopt bench crossover`` on a 2-core machine (see benchmarks/README.md).

FASTOPT_THREADS
    how the CPU update kernels use threads when the cores may be shared (``fastopt.threads``):
    ``all`` (default) takes the ``prange`` kernel from PARALLEL_MIN_SIZE elements, as
    before; ``auto`` lets each such array race its serial and its ``prange`` kernel now and
    then and use the faster, which keeps a loaded machine fast but can move a result by an
    ulp (the two kernels differ in a few elements for some rules: Adam with amsgrad,
    SGD with Nesterov); ``1`` runs everything on one thread, numpy's BLAS included.
"""

import os

# Explicit fast-math flags: allow contraction (FMA) and reciprocal/function approximations,
# but NOT "nnan"/"ninf", so NaN and inf propagate and can be noticed. Element-wise kernels
# also leave out "reassoc": with it LLVM reassociates the serial and the prange loop
# differently and their results differ by an ulp (measured on SGD-Nesterov float32);
# without it the two paths agree bitwise at no measurable cost.
FASTMATH = {"nsz", "arcp", "contract", "afn"}
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


THREADS = _env_choice("FASTOPT_THREADS", "all", ("all", "auto", "1"))
