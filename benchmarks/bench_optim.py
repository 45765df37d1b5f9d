"""Optimizer step time: fastopt's fused kernels and the peers (NumPy, torch.optim) side by side.

``asv compare`` between the ``impl`` values gives the ratios; effective bandwidth is
(3 + 2 * n_state) * itemsize * N bytes per step.
"""

from fastopt import optim

from .common import BENCH_HYPER, OPTIMIZERS, arrays

missing = sorted(set(optim.OPTIMIZERS) - set(OPTIMIZERS))
if missing:
    raise RuntimeError(f"optimizers without a benchmark: {missing}; add them to "
                       "benchmarks/common.py OPTIMIZERS")

TORCH_NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
               "adamw": "AdamW", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "NAdam",
               "radam": "RAdam"}
TORCH_FUSED = {"sgd", "adam", "adamw", "adagrad"}


class OptimizerStep:
    """One opt.step() on a single flat array of N elements (validation included)."""

    params = (OPTIMIZERS, [1000, 1000000], ["float32"],
              ["fastopt", "numpy", "torch", "torch-fused"])
    param_names = ["optimizer", "n", "dtype", "impl"]
    timeout = 180

    def setup(self, name, n, dtype, impl):
        p, g = arrays(n, dtype)
        hyper = BENCH_HYPER.get(name, {})
        if impl == "fastopt":
            opt = optim.OPTIMIZERS[name](p, **hyper)
            self.call = lambda: opt.step(g)
        elif impl == "numpy":
            from fastopt.reference import RefOptimizer

            ref = RefOptimizer(name, [p], **hyper)
            self.call = lambda: ref.step([g])
        else:
            try:
                import torch
            except ImportError:
                raise NotImplementedError("torch is not installed") from None
            if name not in TORCH_NAMES or (impl == "torch-fused" and name not in TORCH_FUSED):
                raise NotImplementedError(f"torch.optim has no {impl} {name}")
            kw = {"torch": dict(foreach=False), "torch-fused": dict(fused=True)}[impl]
            tp = torch.nn.Parameter(torch.from_numpy(p))
            tp.grad = torch.from_numpy(g)
            topt = getattr(torch.optim, TORCH_NAMES[name])([tp], **hyper, **kw)
            self.call = topt.step
        self.reps = max(1, 100000 // n)
        self.call()  # JIT warm-up

    def time_step(self, name, n, dtype, impl):
        for _ in range(self.reps):
            self.call()
