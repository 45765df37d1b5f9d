"""MLP(residual=True) on the GPU against the CPU, in Numba's CUDA simulator (or on a GPU):
forward, loss and every gradient, and a few training steps. Skips from the input (6 -> 6),
none (6 -> 5), and around 5 -> 5 hidden layers; launches patched small (conftest)."""

import numpy as np
import pytest

from fastopt import nn, optim
from fastopt.kernels import cuda as gpu

pytestmark = [pytest.mark.skipif(gpu.why_unavailable() is not None,
                                 reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU"),
              pytest.mark.usefixtures("small_mlp_launches")]

SIZES = [6, 6, 5, 5, 5, 3]
N = 5
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def pair(activation, dtype):
    kw = dict(activation=activation, dtype=dtype, seed=3, residual=True)
    return nn.MLP(SIZES, **kw), nn.MLP(SIZES, target="cuda", **kw)


def batch(rng, dtype):
    return rng.standard_normal((N, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], N)


@pytest.mark.parametrize("activation,dtype", [("tanh", "float64"), ("relu", "float32"),
                                              ("sigmoid", "float32")])
def test_forward_loss_and_gradients_match_cpu(activation, dtype, rng):
    cpu, dev = pair(activation, dtype)
    X, y = batch(rng, dtype)
    np.testing.assert_allclose(dev.forward(X), cpu.forward(X), **TOL[dtype])
    assert dev.loss_and_grad(X, y) == pytest.approx(cpu.loss_and_grad(X, y),
                                                    rel=TOL[dtype]["rtol"])
    np.testing.assert_allclose(dev.grads.copy_to_host(), cpu.grads, **TOL[dtype])


def test_train_steps_match_cpu_and_repeat_bitwise(rng):
    def run(model):
        opt = optim.SGD(model.params, lr=0.1, momentum=0.9)
        r = np.random.default_rng(4)
        losses = [float(model.train_step(*batch(r, "float32"), opt)) for _ in range(2)]
        params = model.params if isinstance(model.params, np.ndarray) else \
            model.params.copy_to_host()
        return losses, params

    cpu, dev = pair("tanh", "float32")
    lc, pc = run(cpu)
    ld, pd = run(dev)
    np.testing.assert_allclose(ld, lc, rtol=2e-5)
    np.testing.assert_allclose(pd, pc, rtol=1e-4, atol=1e-5)
    ld2, pd2 = run(pair("tanh", "float32")[1])
    assert ld2 == ld
    np.testing.assert_array_equal(pd2, pd)
