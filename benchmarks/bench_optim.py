"""Optimizer step time: fastopt's fused kernels and the peers (NumPy, torch.optim).

Mirrors ``fastopt.optim`` / ``fastopt.kernels``. One class per implementation and target
(``CythonStep``: fastopt's optimizers with ``backend="cython"``),
each with only the optimizers it has (``fastopt.optim.catalogue``: torch rows for the
optimizers torch.optim has, fused rows for those with ``fused=True``), so no row is a
combination that can never run; what this machine lacks (a GPU, torch) is skipped by
NotImplementedError in ``setup``. Parameters ``optimizer x n x dtype`` in every class, so
``fastopt bench asv-report`` pairs each peer with fastopt at the same parameters (ratios,
and fastopt's effective bandwidth: (3 + 2 * n_state) * itemsize * N bytes per step).

Each timed call is one ``opt.step(g)`` (validation included); asv's ``number``
(``common.calls_per_sample``: 100 at N = 1e3, 1 from N = 1e5) calls make a sample and asv
reports the time per call: the time per step. This asv re-runs ``setup`` before every call
(asv#966); ``setup`` keeps what it built for the same parameters, so the calls are the
consecutive steps of one run, as in training.

Peers (built by ``fastopt.bench.definitions``, like ``fastopt bench update``'s):
``fastopt.reference.RefOptimizer`` (NumPy, host only), ``torch.optim`` default
(``foreach=False``, the for-loop) and ``fused=True``.
"""

from fastopt import optim
from fastopt.bench import definitions, suite

from .common import (CUDA_SIZES, OPTIMIZERS, PEER_SIZES, STEP_DTYPES, STEP_OPTIMIZERS,
                     STEP_SIZES, TORCH_FUSED_OPTIMIZERS, TORCH_STEP_OPTIMIZERS, arrays,
                     calls_per_sample, require_cython_built, require_fastopt_cuda,
                     require_torch_target, torch_device, unsupported)

missing = sorted(set(optim.OPTIMIZERS) - set(OPTIMIZERS))
if missing:
    raise RuntimeError(f"optimizers without a benchmark: {missing}; they come from the "
                       "optimizer catalogue (fastopt.optim.catalogue)")

_ARRAYS = {}  # (n, dtype) -> (p, g): generated once per process, copied per build


def _fresh_arrays(n, dtype):
    if (n, dtype) not in _ARRAYS:
        _ARRAYS.clear()
        _ARRAYS[n, dtype] = arrays(n, dtype)
    p, g = _ARRAYS[n, dtype]
    return p.copy(), g.copy()


class _Step:
    """One optimizer step per timed call; subclasses build the step (``_build``)."""

    param_names = list(suite.STEP_PARAMS)
    timeout = 180

    def setup(self, name, n, dtype):
        if getattr(self, "_built", None) == (name, n, dtype):
            return  # asv re-runs setup between the calls of a sample: keep the run going
        self._require()  # NotImplementedError before any allocation or heavy import
        p, g = _fresh_arrays(n, dtype)
        self.call = self._build(name, p, g)
        self.number = calls_per_sample(n)
        self.call()  # JIT warm-up (and torch's lazy state allocation)
        self._built = (name, n, dtype)

    def _require(self):
        """Raise NotImplementedError where this implementation cannot run here."""

    def time_step(self, name, n, dtype):
        self.call()


class FastoptStep(_Step):
    """``fastopt.optim.<Name>(p).step(g)`` on one flat host array of N elements."""

    params = (STEP_OPTIMIZERS, STEP_SIZES, STEP_DTYPES)

    def _build(self, name, p, g):
        return definitions.fastopt_step(name, p, g)[1]


class CythonStep(_Step):
    """``fastopt.optim.<Name>(p, backend="cython").step(g)``: the same step on the Cython
    kernels (``fastopt.kernels.cython``, generated from the same rules), host arrays only.

    ``setup_cache`` builds the module into its cache (or finds it there) once, before any
    timing: 1-2 minutes on 2 cores when the cache is empty, milliseconds after; ``setup``
    then only loads it. Skipped (NotImplementedError) where Cython, a C compiler or the
    Python headers are missing, with the install line."""

    params = (STEP_OPTIMIZERS, STEP_SIZES, STEP_DTYPES)

    def setup_cache(self):
        # a dict, never None: asv passes a None cache to no method (asv_runner's set_cache)
        return {"skip": require_cython_built()}

    setup_cache.timeout = 1200

    def setup(self, built, name, n, dtype):
        if built["skip"] is not None:
            raise NotImplementedError(built["skip"])
        super().setup(name, n, dtype)

    def _build(self, name, p, g):
        opt = optim.OPTIMIZERS[name](p, backend="cython", **definitions.bench_hyper(name))
        return lambda: opt.step(g)

    def time_step(self, built, name, n, dtype):
        self.call()


class FastoptStepCUDA(_Step):
    """The same on a device array (numba.cuda), each step synchronised."""

    params = (STEP_OPTIMIZERS, CUDA_SIZES, STEP_DTYPES)

    def _require(self):
        self._cuda = require_fastopt_cuda()

    def _build(self, name, p, g):
        cuda = self._cuda
        dp, dg = cuda.to_device(p), cuda.to_device(g)
        return unsupported("fastopt.optim on device arrays",
                           lambda: definitions.fastopt_step(name, dp, dg, cuda.synchronize))[1]


class NumpyStep(_Step):
    """The NumPy reference ``fastopt.reference.RefOptimizer`` (host only)."""

    params = (STEP_OPTIMIZERS, PEER_SIZES, STEP_DTYPES)

    def _build(self, name, p, g):
        return definitions.numpy_step(name, p, g)


class _TorchStep(_Step):
    variant = "torch"
    target = "cpu"

    def _require(self):
        torch = require_torch_target(self.target)
        self._torch = torch, torch_device(torch, self.target)

    def _build(self, name, p, g):
        torch, device = self._torch
        return definitions.torch_step(torch, name, p, g, self.variant, device, wait=True)


class TorchStep(_TorchStep):
    """``torch.optim.<Name>(foreach=False)``, the for-loop, on the CPU."""

    params = (TORCH_STEP_OPTIMIZERS, PEER_SIZES, STEP_DTYPES)


class TorchFusedStep(_TorchStep):
    """``torch.optim.<Name>(fused=True)`` on the CPU (SGD, Adagrad, Adam, AdamW)."""

    params = (TORCH_FUSED_OPTIMIZERS, PEER_SIZES, STEP_DTYPES)
    variant = "torch-fused"


class TorchStepCUDA(_TorchStep):
    """The for-loop on a CUDA device, each step synchronised."""

    params = (TORCH_STEP_OPTIMIZERS, CUDA_SIZES, STEP_DTYPES)
    target = "cuda"


class TorchFusedStepCUDA(_TorchStep):
    """``fused=True`` on a CUDA device, each step synchronised."""

    params = (TORCH_FUSED_OPTIMIZERS, CUDA_SIZES, STEP_DTYPES)
    variant = "torch-fused"
    target = "cuda"
