"""Optimizer step time: fastopt's fused kernels and the peers (NumPy, torch.optim) side by side.

Mirrors ``fastopt.optim`` / ``fastopt.kernels``. One benchmark, every optimizer x N x dtype x
target x implementation, so that one results file holds fastopt and its peers at the same
parameters; ``fastopt bench asv-report`` turns them into ratios and effective bandwidth
((3 + 2 * n_state) * itemsize * N bytes per step: parameter and state read and written,
gradient read). ``time_step`` runs ``steps_per_call(N)`` steps (one for N >= 1e5).

Peers (built by ``fastopt.bench.definitions``, like ``fastopt bench update``'s):
``fastopt.reference.RefOptimizer`` (NumPy, host only), ``torch.optim`` default
(``foreach=False``, the for-loop) and ``fused=True`` where torch has it. The cuda target is
skipped where it cannot run (no GPU; the peers likewise) and until fastopt's optimizers
take device arrays.
"""

from fastopt import optim
from fastopt.bench import definitions, suite

from .common import (DTYPES, OPTIMIZERS, SIZES, TARGETS, TORCH_FUSED, TORCH_NAMES,
                     UPDATE_IMPLS, UPDATE_OPTIMIZERS, arrays, require_fastopt_cuda,
                     require_torch_target, steps_per_call, torch_device, unsupported)

missing = sorted(set(optim.OPTIMIZERS) - set(OPTIMIZERS))
if missing:
    raise RuntimeError(f"optimizers without a benchmark: {missing}; they come from the "
                       "optimizer catalogue (fastopt.optim.catalogue)")

_ARRAYS = {}  # (n, dtype) -> (p, g): asv may run setup before every sample


def _fresh_arrays(n, dtype):
    if (n, dtype) not in _ARRAYS:
        _ARRAYS.clear()
        _ARRAYS[n, dtype] = arrays(n, dtype)
    p, g = _ARRAYS[n, dtype]
    return p.copy(), g.copy()


def _skip_unsupported(name, target, impl):
    """NotImplementedError for a combination that cannot run here, before any allocation
    or heavy import; else what the implementation needs (numba.cuda, torch and device)."""
    if impl == "fastopt":
        return require_fastopt_cuda() if target == "cuda" else None
    if impl == "numpy":
        if target != "cpu":
            raise NotImplementedError("the NumPy reference runs on the host only")
        return None
    if name not in TORCH_NAMES or (impl == "torch-fused" and name not in TORCH_FUSED):
        raise NotImplementedError(f"torch.optim has no {impl} {name}")
    torch = require_torch_target(target)
    return torch, torch_device(torch, target)


def _step(name, p, g, impl, needs):
    """One step of ``impl`` (``fastopt.bench.definitions``' peers); each call waits for
    the GPU on the cuda target."""
    if impl == "fastopt" and needs is None:
        return definitions.fastopt_step(name, p, g)[1]
    if impl == "fastopt":  # the CUDA target: device arrays, synchronised
        cuda = needs
        dp, dg = cuda.to_device(p), cuda.to_device(g)
        return unsupported("fastopt.optim on device arrays",
                           lambda: definitions.fastopt_step(name, dp, dg, cuda.synchronize))[1]
    if impl == "numpy":
        return definitions.numpy_step(name, p, g)
    torch, device = needs
    return definitions.torch_step(torch, name, p, g, impl, device, wait=True)


class OptimizerStep:
    """``opt.step(g)`` on a single flat array of N elements (validation included)."""

    params = (UPDATE_OPTIMIZERS, SIZES, DTYPES, TARGETS, UPDATE_IMPLS)
    param_names = list(suite.UPDATE_PARAMS)
    timeout = 180

    def setup(self, name, n, dtype, target, impl):
        needs = _skip_unsupported(name, target, impl)
        p, g = _fresh_arrays(n, dtype)
        self.call = _step(name, p, g, impl, needs)
        self.reps = steps_per_call(n)
        self.call()  # JIT warm-up (and torch's lazy state allocation)

    def time_step(self, name, n, dtype, target, impl):
        for _ in range(self.reps):
            self.call()

    # asv's version of this benchmark (a hash of its code) from before its setup moved to
    # fastopt.bench.definitions; what it measures did not change, so the results recorded
    # before stay comparable. Delete this line when the measurement changes.
    time_step.version = "6b9bf9aa0a25cf524e551c25003a47e54901b55004f7ed8daebe9b5aec6be83a"
