"""CPU kernels: every update rule compiled into one fused, in-place pass over memory.

For each rule in ``fastopt.kernels.rules.RULES`` there are two compiled loops over the
flattened arrays, a serial one and a ``prange`` one; ``update`` picks by size
(``config.PARALLEL_MIN_SIZE``; the thread policy of ``fastopt.threads`` can also pick by
how busy the cores are). State slots the configuration does not use are passed as
``None``: Numba compiles a specialisation in which those loads and stores do not exist.

Kernels are built on first use (``update_kernels``), so importing this module compiles
nothing. Hyperparameters travel in small arrays (``hyper`` in the parameter dtype, ``flags``
as int64) that are unpacked into register tuples before the loop, so a new learning rate
never triggers a new compilation.
"""

import functools

import numpy as np
from numba import njit, prange
from numba.np.unsafe.ndarray import to_fixed_tuple

from .. import config, threads
from .jit import variant
from .rules import RULES

# globals bound per variant (see fastopt.kernels.jit.variant); these defaults are never used
scalar = None
N_HYPER = N_FLAGS = 0


def _update_loop(p, g, s0, s1, s2, hyper, flags):
    # The GPU kernel (fastopt.kernels.cuda._update_kernel) repeats this loop body: when
    # config.FASTMATH still had "contract", a shared inline function changed the LLVM
    # block structure and moved Lion's serial kernel by an ulp. Without "contract" they
    # could share it (not yet tried: it needs the bitwise checks of tests/test_kernels.py).
    h = to_fixed_tuple(hyper, N_HYPER)
    f = to_fixed_tuple(flags, N_FLAGS)
    for i in prange(p.size):
        gi = g[i]
        a0 = gi if s0 is None else s0[i]
        a1 = gi if s1 is None else s1[i]
        a2 = gi if s2 is None else s2[i]
        pi, a0, a1, a2 = scalar(p[i], gi, a0, a1, a2, h, f)
        p[i] = pi
        if s0 is not None:
            s0[i] = a0
        if s1 is not None:
            s1[i] = a1
        if s2 is not None:
            s2[i] = a2


@functools.cache
def update_kernels(name):
    """(serial, parallel) compiled update loops for the rule ``name``."""
    rule = RULES[name]
    bind = dict(scalar=njit(inline="always", **config.CPU_JIT)(rule.scalar),
                N_HYPER=len(rule.hyper), N_FLAGS=len(rule.flags))
    return (variant(_update_loop, f"{name}_update_serial", **bind),
            variant(_update_loop, f"{name}_update_parallel", parallel=True, **bind))


def update(name, p, g, s0, s1, s2, hyper, flags):
    """Apply rule ``name`` in place to 1-D C-contiguous arrays (no validation here).

    ``s0..s2`` are state arrays or None for slots the configuration does not use;
    ``hyper`` is a 1-D array in p's dtype ordered as ``RULES[name].hyper``; ``flags`` an
    int64 array ordered as ``RULES[name].flags``.
    """
    serial, parallel = update_kernels(name)
    # serial or prange by size, and with FASTOPT_THREADS=auto (the default) also by how
    # busy the cores are (fastopt.threads); both give the same bits
    threads.run_sized(name, p.size, serial, parallel, p, g, s0, s1, s2, hyper, flags)


# ---------------------------------------------------------------------------------------
# gradient statistics and clipping


def _sumsq_loop(g):
    # accumulated in float64: cannot overflow for float32 input
    acc = 0.0
    for i in prange(g.size):
        x = np.float64(g[i])
        acc += x * x
    return acc


def _scale_loop(g, coef):
    for i in prange(g.size):
        g[i] = g[i] * coef


def _clamp_loop(g, clip):
    neg = -clip
    for i in prange(g.size):
        x = g[i]
        if x > clip:
            g[i] = clip
        elif x < neg:
            g[i] = neg


@functools.cache
def _pair(loop_name):
    loop = globals()[loop_name]
    options = config.REDUCTION_JIT if loop_name == "_sumsq_loop" else config.CPU_JIT
    return (variant(loop, f"{loop_name[1:]}_serial", options=options),
            variant(loop, f"{loop_name[1:]}_parallel", parallel=True, options=options))


def _pick(loop_name, n):
    serial, parallel = _pair(loop_name)
    return parallel if n >= config.PARALLEL_MIN_SIZE else serial


def grad_stats(g):
    """(sum of squares as float64, all elements finite) of a 1-D array, in one pass.

    A NaN or inf element makes the sum NaN or inf; only when the sum is not finite is a
    second look needed, to tell a non-finite element from float64 overflow of huge values.
    """
    sumsq = _pick("_sumsq_loop", g.size)(g)
    if np.isfinite(sumsq):
        return sumsq, True
    return sumsq, bool(np.isfinite(g).all())


def scale(g, coef):
    """g *= coef in place (coef already in g's dtype)."""
    _pick("_scale_loop", g.size)(g, coef)


def clamp(g, clip):
    """Clamp g to [-clip, clip] in place; NaN stays NaN (torch.clamp_)."""
    _pick("_clamp_loop", g.size)(g, clip)
