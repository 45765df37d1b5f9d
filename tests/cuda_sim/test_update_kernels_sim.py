"""GPU update kernels against the CPU kernels, in Numba's CUDA simulator (or on a GPU).

Run by tests/test_cuda.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 (the simulator must
be switched on before numba is imported); skipped when collected in a process without it
and without a GPU. Threads per block and the block limit are patched small, so every case
covers several blocks, the grid-stride loop and a ragged tail.
"""

import numpy as np
import pytest

from fastopt import optim
from fastopt.kernels import cpu
from fastopt.kernels import cuda as gpu
from fastopt.reference import RefOptimizer
from tests.test_kernels import CASES, ids, random_state

pytestmark = pytest.mark.skipif(gpu.why_unavailable() is not None,
                                reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU")

N = 1000  # 4 blocks x 32 threads = 128 threads: ~8 elements each, last pass ragged


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    monkeypatch.setattr(gpu, "THREADS_PER_BLOCK", 32)
    monkeypatch.setattr(gpu, "MAX_BLOCKS", 4)


def prepared(case, dtype, rng):
    """An optimizer with random state, and this step's (p, g, state, hyper, flags)."""
    name, conv, kw = case
    p = rng.standard_normal(N).astype(dtype)
    opt = optim.OPTIMIZERS[name](p, convention=conv, **kw)
    ref = RefOptimizer(name, [p.copy()], convention=conv, **kw)
    random_state(opt, ref, rng, dtype)
    g = rng.standard_normal(N).astype(dtype)
    g[::7] = 0
    plan = opt.plan_steps(1)
    return opt, p, g, list(plan.slots[0]), plan.hypers[0][0], plan.flags[0][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_gpu_kernel_matches_cpu_kernel(case, dtype, rng):
    from numba import cuda

    opt, p, g, state, hyper, flags = prepared(case, dtype, rng)
    name = opt.rule.name
    d_p, d_g = cuda.to_device(p), cuda.to_device(g)
    d_state = [None if s is None else cuda.to_device(s) for s in state]
    gpu.update(name, d_p, d_g, *d_state, hyper, flags)
    cpu.update(name, p, g, *state, hyper, flags)
    # same formula; the CPU kernel may fuse multiply-adds, the simulator does not
    tol = dict(rtol=4e-6, atol=4e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(d_p.copy_to_host(), p, **tol)
    for d, s in zip(d_state, state):
        if s is not None:
            np.testing.assert_allclose(d.copy_to_host(), s, **tol)


def test_empty_array_is_a_no_op(rng):
    from numba import cuda

    p = cuda.to_device(np.zeros(0, np.float32))
    gpu.update("sgd", p, p, None, None, None, np.zeros(5), np.zeros(4, np.int64))
