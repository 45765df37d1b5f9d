"""Optimizer step time: fastopt's fused kernels and the peers (NumPy, torch.optim) side by side.

Mirrors ``fastopt.optim`` / ``fastopt.kernels``. One benchmark, every optimizer x N x dtype x
target x implementation, so that one results file holds fastopt and its peers at the same
parameters; ``fastopt bench asv-report`` turns them into ratios and effective bandwidth
((3 + 2 * n_state) * itemsize * N bytes per step: parameter and state read and written,
gradient read). ``time_step`` runs ``steps_per_call(N)`` steps (one for N >= 1e5).

Peers: ``fastopt.reference.RefOptimizer`` (NumPy, host only), ``torch.optim`` default
(``foreach=False``, the for-loop) and ``fused=True`` where torch has it. The cuda target is
skipped where it cannot run (no GPU; the peers likewise) and until fastopt's optimizers
take device arrays.
"""

from fastopt import optim

from .common import (BENCH_HYPER, DTYPES, OPTIMIZERS, SIZES, TARGETS, TORCH_FUSED,
                     TORCH_NAMES, UPDATE_IMPLS, UPDATE_OPTIMIZERS, arrays,
                     require_fastopt_cuda, require_torch_target, steps_per_call,
                     torch_device, unsupported)

missing = sorted(set(optim.OPTIMIZERS) - set(OPTIMIZERS))
if missing:
    raise RuntimeError(f"optimizers without a benchmark: {missing}; add them to "
                       "benchmarks/common.py OPTIMIZERS")

_ARRAYS = {}  # (n, dtype) -> (p, g): asv may run setup before every sample


def _fresh_arrays(n, dtype):
    if (n, dtype) not in _ARRAYS:
        _ARRAYS.clear()
        _ARRAYS[n, dtype] = arrays(n, dtype)
    p, g = _ARRAYS[n, dtype]
    return p.copy(), g.copy()


class OptimizerStep:
    """``opt.step(g)`` on a single flat array of N elements (validation included)."""

    params = (UPDATE_OPTIMIZERS, SIZES, DTYPES, TARGETS, UPDATE_IMPLS)
    param_names = ["optimizer", "n", "dtype", "target", "impl"]
    timeout = 180

    def setup(self, name, n, dtype, target, impl):
        hyper = BENCH_HYPER.get(name, {})
        # skips first, before any allocation or heavy import
        if impl == "fastopt":
            cuda = require_fastopt_cuda() if target == "cuda" else None
        elif impl == "numpy":
            if target != "cpu":
                raise NotImplementedError("the NumPy reference runs on the host only")
        else:
            if name not in TORCH_NAMES or (impl == "torch-fused" and name not in TORCH_FUSED):
                raise NotImplementedError(f"torch.optim has no {impl} {name}")
            torch = require_torch_target(target)
            device = torch_device(torch, target)

        p, g = _fresh_arrays(n, dtype)
        if impl == "fastopt" and cuda is None:
            opt = optim.OPTIMIZERS[name](p, **hyper)
            self.call = lambda: opt.step(g)
        elif impl == "fastopt":  # the future CUDA target: device arrays, synchronised
            dp, dg = cuda.to_device(p), cuda.to_device(g)
            opt = unsupported("fastopt.optim on device arrays",
                              lambda: optim.OPTIMIZERS[name](dp, **hyper))

            def call():
                opt.step(dg)
                cuda.synchronize()

            self.call = call
        elif impl == "numpy":
            from fastopt.reference import RefOptimizer

            ref = RefOptimizer(name, [p], **hyper)
            self.call = lambda: ref.step([g])
        else:
            kw = {"torch": dict(foreach=False), "torch-fused": dict(fused=True)}[impl]
            tp = torch.nn.Parameter(torch.from_numpy(p).to(device))
            tp.grad = torch.from_numpy(g).to(device)
            topt = getattr(torch.optim, TORCH_NAMES[name])([tp], **hyper, **kw)
            if device.type == "cuda":
                def call():
                    topt.step()
                    torch.cuda.synchronize()

                self.call = call
            else:
                self.call = topt.step
        self.reps = steps_per_call(n)
        self.call()  # JIT warm-up (and torch's lazy state allocation)

    def time_step(self, name, n, dtype, target, impl):
        for _ in range(self.reps):
            self.call()
