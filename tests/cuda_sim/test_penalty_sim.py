"""The weight penalty (nn.MLP(l2=, l1=)) on the GPU against the CPU, in Numba's CUDA
simulator (or on a GPU); run by tests/test_cuda.py with NUMBA_ENABLE_CUDASIM=1. Launches
are patched small (tests/cuda_sim/conftest.py), so the penalty sum spans several threads'
shares and the gradient kernel several blocks."""

import numpy as np
import pytest

from fastopt import nn, optim, train
from fastopt.kernels import cuda as gpu

pytestmark = [pytest.mark.skipif(gpu.why_unavailable() is not None,
                                 reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU"),
              pytest.mark.usefixtures("small_mlp_launches")]

SIZES = [6, 5, 7, 3]
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def pair(dtype, **kw):
    kw = dict(activation="tanh", dtype=dtype, seed=3, **kw)
    return nn.MLP(SIZES, **kw), nn.MLP(SIZES, target="cuda", **kw)


def batch(rng, dtype, n=5):
    return rng.standard_normal((n, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("l1, l2", [(0.0, 0.3), (0.05, 0.1)])
def test_penalised_loss_and_gradients_match_cpu(dtype, l1, l2, rng):
    cpu, dev = pair(dtype, l1=l1, l2=l2)
    X, y = batch(rng, dtype)
    value = dev.loss_and_grad(X, y)
    assert value == pytest.approx(cpu.loss_and_grad(X, y), rel=TOL[dtype]["rtol"])
    plain = nn.MLP(SIZES, activation="tanh", dtype=dtype, seed=3)
    assert value - plain.loss_and_grad(X, y) == pytest.approx(cpu.penalty(), rel=1e-4)
    np.testing.assert_allclose(dev.grads.copy_to_host(), cpu.grads, **TOL[dtype])
    assert dev.penalty() == pytest.approx(cpu.penalty(), rel=1e-12)
    assert dev.evaluate(X, y)[0] == pytest.approx(cpu.evaluate(X, y)[0],
                                                  rel=TOL[dtype]["rtol"])


def test_penalised_training_matches_cpu_and_biases_are_not_decayed(rng):
    cpu, dev = pair("float64", l1=0.01, l2=0.2)
    X, y = batch(rng, "float64", n=12)
    hists = [train.fit(m, optim.SGD(m.params, lr=0.1), (X, y), batch_size=4, epochs=3,
                       progress=False) for m in (cpu, dev)]
    np.testing.assert_allclose(dev.params.copy_to_host(), cpu.params, **TOL["float64"])
    np.testing.assert_allclose(hists[1]["train_loss"], hists[0]["train_loss"], rtol=1e-10)
    # only the weights get the penalty's gradient: l2 * W, nothing on the biases
    pen = nn.MLP(SIZES, target="cuda", dtype="float64", seed=3, l2=0.5)
    off = nn.MLP(SIZES, target="cuda", dtype="float64", seed=3)
    X, y = batch(rng, "float64")
    pen.loss_and_grad(X, y)
    off.loss_and_grad(X, y)
    for a, b, W in zip(pen.weight_grads, off.weight_grads, off.weights):
        np.testing.assert_allclose(a.copy_to_host() - b.copy_to_host(),
                                   0.5 * W.copy_to_host(), rtol=1e-12, atol=1e-15)
    for a, b in zip(pen.bias_grads, off.bias_grads):
        np.testing.assert_array_equal(a.copy_to_host(), b.copy_to_host())


def test_zero_penalty_launches_no_penalty_kernel(rng):
    _, dev = pair("float32")
    assert dev._gpu.penalty is None


def test_fit_evaluation_columns_on_the_device_match_cpu(rng):
    """train_eval_* on a subset and val_* from validation_split, with the data on the GPU."""
    cpu, dev = pair("float64", l2=0.1)
    X, y = batch(rng, "float64", n=15)
    Xt, yt = batch(rng, "float64", n=6)
    hists = [train.fit(m, optim.SGD(m.params, lr=0.1), (X, y, Xt, yt), batch_size=4,
                       epochs=2, validation_split=0.2, train_eval_size=5, seed=2,
                       progress=False) for m in (cpu, dev)]
    for col in ("train_eval_loss", "train_accuracy", "val_loss", "val_accuracy",
                "test_loss", "test_accuracy"):
        assert np.isfinite(hists[0][col]).all()
        np.testing.assert_allclose(hists[1][col], hists[0][col], rtol=1e-10, atol=1e-12)
