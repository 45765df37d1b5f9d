"""GPU kernels: every update rule as a grid-stride ``@cuda.jit`` loop, from the same scalar
rules as the CPU kernels (``fastopt.kernels.rules``; no formula is written twice).

Each rule becomes an ``inline="always"`` device function: a copy of the rule whose helpers
(``grad_prologue``, ``lerp``, ...) are bound to device-function versions of the same Python
code, so nothing needs a GPU (or a driver) to compile to PTX; the copies are made by the
CPU's helper (``fastopt.kernels.jit.with_globals``). State slots a configuration does not
use are passed as ``None`` and compile away, as on the CPU. Hyperparameters travel as tuples
of scalars in the parameter dtype (the host computes them once per step), so a float32
kernel has no float64 arithmetic and a new learning rate never recompiles.

Requires ``pip install "fastopt[cuda]"`` (numba-cuda and the CUDA toolkit libraries) and,
to run, an NVIDIA GPU and driver; ``NUMBA_ENABLE_CUDASIM=1`` runs the kernels in Numba's
simulator instead (slow: for tests on about a thousand elements).
"""

import functools
import math

import numpy as np

from .._checks import is_device_array  # noqa: F401  (part of this module's API)
from .jit import with_globals
from .rules import RULES

#: threads per block of the update kernels (tests patch it small to cover several blocks)
THREADS_PER_BLOCK = 256
#: at most this many blocks; the grid-stride loop covers the rest
MAX_BLOCKS = 4096

_HELPERS = ("grad_prologue", "lerp", "maximum", "keras_weight_decay")


class CudaUnavailableError(RuntimeError):
    """The CUDA target was asked for on a machine that cannot run it."""


def _import_cuda():
    try:
        from numba import cuda as module
    except ImportError as exc:  # pragma: no cover - numba always has a cuda module or shim
        raise CudaUnavailableError(
            "the CUDA target needs numba-cuda: pip install \"fastopt[cuda]\"; or use "
            "target=\"cpu\"") from exc
    return module


def why_unavailable():
    """None if kernels can launch here (a GPU, or the simulator), else the reason."""
    try:
        module = _import_cuda()
    except CudaUnavailableError as exc:
        return str(exc)
    try:
        if module.is_available():
            return None
    except Exception as exc:  # a broken driver install raises instead of returning False
        return f"the CUDA driver failed to initialise ({exc}); use target=\"cpu\""
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        return ("numba-cuda is not installed: pip install \"fastopt[cuda]\" (and an NVIDIA "
                "driver); or use target=\"cpu\"")
    return ("no CUDA GPU is visible (numba.cuda.is_available() is False: no NVIDIA driver "
            "or device); use target=\"cpu\"")


def require():
    """Raise CudaUnavailableError saying what is missing, unless kernels can launch."""
    reason = why_unavailable()
    if reason is not None:
        raise CudaUnavailableError(f"target=\"cuda\" is not available here: {reason}")


# ---------------------------------------------------------------------------------------
# kernels

# bound per rule (see kernel_function): the device rule and the numba.cuda module
scalar = cuda = tree_sum = None


def _update_kernel(p, g, s0, s1, s2, h, f, status):
    # status: None, or a device status word (fastopt.nn.cuda): a step whose input was
    # rejected on the device changes nothing. The loop body is the CPU's
    # (fastopt.kernels.cpu._update_loop), written twice on purpose: see the comment there.
    if status is not None:
        if status[0] != 0 or status[1] != 0:
            return
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, p.size, stride):
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
def _device_helpers():
    from . import rules

    jit = _import_cuda().jit
    return {n: jit(device=True, inline="always")(getattr(rules, n)) for n in _HELPERS}


@functools.cache
def device_rule(name):
    """The scalar rule ``name`` as an inline device function."""
    rule = RULES[name]
    return _import_cuda().jit(device=True, inline="always")(
        with_globals(rule.scalar, f"{name}_device", **_device_helpers()))


def kernel_function(name):
    """The Python function of the update kernel for rule ``name`` (for ``compile_ptx``)."""
    return with_globals(_update_kernel, f"{name}_update_cuda", scalar=device_rule(name),
                        cuda=_import_cuda())


@functools.cache
def update_kernel(name):
    """The ``@cuda.jit`` update kernel for rule ``name``."""
    return _import_cuda().jit(kernel_function(name))


def launch_config(n):
    """(blocks, threads per block) for n elements."""
    tpb = THREADS_PER_BLOCK
    return max(1, min(MAX_BLOCKS, math.ceil(n / tpb))), tpb


def update(name, p, g, s0, s1, s2, hyper, flags, stream=0, status=None):
    """Apply rule ``name`` in place to 1-D contiguous device arrays (no validation here).

    ``hyper``: host values ordered as ``RULES[name].hyper`` (cast to p's dtype here);
    ``flags``: host integers ordered as ``RULES[name].flags``; ``status``: None or an int64
    device array whose first two entries, if not both 0, turn the update into a no-op."""
    n = p.size
    if n == 0:
        return
    h = tuple(p.dtype.type(v) for v in np.asarray(hyper).tolist())
    f = tuple(np.int64(v) for v in np.asarray(flags).tolist())
    blocks, tpb = launch_config(n)
    update_kernel(name)[blocks, tpb, stream](p, g, s0, s1, s2, h, f, status)


# ---------------------------------------------------------------------------------------
# gradient norm (max_grad_norm, skip_nonfinite): a deterministic two-pass reduction

TPB = 256  # bound per compiled variant: threads per block of the reduction


def _tree_sum(part, t):
    """part[0] = sum of the shared array ``part`` (power-of-two size, one entry per thread
    t of the block, written before a syncthreads), added pairwise in a fixed order. Every
    thread of the block must call it."""
    half = part.size // 2
    while half > 0:
        if t < half:
            part[t] += part[t + half]
        cuda.syncthreads()
        half //= 2


@functools.cache
def device_tree_sum():
    """``_tree_sum`` as an inline device function (block reductions without atomics)."""
    cuda_module = _import_cuda()
    return cuda_module.jit(device=True, inline="always")(
        with_globals(_tree_sum, "tree_sum", cuda=cuda_module))


def _sumsq_blocks(partial, g):
    """partial[block] = sum of g[i]**2 (float64) over the block's grid-stride share, added
    in a fixed tree order (no atomics: the same bits on every run)."""
    part = cuda.shared.array(TPB, float64)
    t = cuda.threadIdx.x
    acc = float64(0.0)
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        v = float64(g[i])
        acc += v * v
    part[t] = acc
    cuda.syncthreads()
    tree_sum(part, t)
    if t == 0:
        partial[cuda.blockIdx.x] = part[0]


def _sumsq_function(tpb):
    from numba import float64

    return with_globals(_sumsq_blocks, f"sumsq_blocks_{tpb}", cuda=_import_cuda(),
                        float64=float64, TPB=tpb, tree_sum=device_tree_sum())


@functools.cache
def _sumsq_kernel(tpb):
    return _import_cuda().jit(_sumsq_function(tpb))


def sumsq_ptx(dtype, cc=(9, 0)):
    """PTX of the norm reduction for gradients of ``dtype`` (it sums in float64 on purpose:
    float32 squares overflow above 1.8e19)."""
    from numba import types as nt

    real = nt.float32 if np.dtype(dtype) == np.float32 else nt.float64
    sig = (nt.Array(nt.float64, 1, "C"), nt.Array(real, 1, "C"))
    return _import_cuda().compile_ptx(_sumsq_function(THREADS_PER_BLOCK), sig, cc=cc)[0]


def sumsq(g):
    """Sum of squares of a 1-D device array, as a Python float (float64 sums; waits for
    the device). The block sums are added on the host, in order."""
    if g.size == 0:
        return 0.0
    blocks, tpb = launch_config(g.size)
    partial = _import_cuda().device_array(blocks, np.float64)
    _sumsq_kernel(tpb)[blocks, tpb](partial, g)
    return float(math.fsum(partial.copy_to_host()))


def global_norm(flat_grads):
    """Like ``fastopt.clip.global_norm`` for device arrays: (norm, every element finite)."""
    total = math.fsum(sumsq(g) for g in flat_grads)
    if math.isfinite(total):
        return math.sqrt(total), True
    host = [g.copy_to_host() for g in flat_grads]  # rare: tell NaN from inf or overflow
    if all(np.isfinite(h).all() for h in host):
        return math.sqrt(total), True  # float64 overflow of finite values, as on the CPU
    if any(np.isnan(h).any() for h in host):
        return math.nan, False
    return math.inf, False


# ---------------------------------------------------------------------------------------
# PTX (compilation check without a GPU)


def signature(name, dtype, state, gated=False):
    """The kernel signature for rule ``name``: ``state`` is a tuple of three booleans (which
    of s0..s2 are arrays; the others are None); ``gated``: with a status word."""
    from numba import types as nt

    real = nt.float32 if np.dtype(dtype) == np.float32 else nt.float64
    arr = nt.Array(real, 1, "C")
    rule = RULES[name]
    slots = tuple(arr if used else nt.none for used in state)
    return (arr, arr) + slots + (nt.UniTuple(real, len(rule.hyper)),
                                 nt.UniTuple(nt.int64, len(rule.flags)),
                                 nt.Array(nt.int64, 1, "C") if gated else nt.none)


def ptx(name, dtype, state, cc=(9, 0), gated=False):
    """PTX text of the update kernel (no GPU or driver needed; the simulator must be off)."""
    code, _ = _import_cuda().compile_ptx(kernel_function(name),
                                         signature(name, dtype, state, gated), cc=cc)
    return code


# ---------------------------------------------------------------------------------------
# device arrays (Numba device arrays, or anything with __cuda_array_interface__: CuPy,
# torch CUDA tensors), zero copy


def device_array(name, a):
    """A Numba device-array view of ``a`` (no copy), checked like the host arrays."""
    require()
    d = a if hasattr(a, "copy_to_host") else _import_cuda().as_cuda_array(a)
    if np.dtype(d.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} must have dtype float32 or float64, got {d.dtype}")
    if not d.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous on the device")
    return d


def full_like(d, value):
    """A new device array shaped like ``d`` filled with ``value``."""
    return _import_cuda().to_device(np.full(d.shape, value, dtype=d.dtype))


def flat(d):
    """A 1-D view of a contiguous device array."""
    return d.reshape(d.size) if d.ndim != 1 else d
