"""The MLP on the GPU against the MLP on the CPU, in Numba's CUDA simulator (or on a GPU).

Run by tests/test_cuda.py in a subprocess with NUMBA_ENABLE_CUDASIM=1. The GEMM tile, the
reduction widths and the threads per block are patched small, so every product covers
several blocks and ragged tiles in both directions (layer widths 5, 7, 3 and 5 rows with
4 x 4 tiles) and every reduction several partial sums.
"""

import math

import numpy as np
import pytest

from fastopt import nn, optim, train
from fastopt.kernels import cuda as gpu
from fastopt.nn import cuda as gpu_nn

pytestmark = [pytest.mark.skipif(gpu.why_unavailable() is not None,
                                 reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU"),
              pytest.mark.usefixtures("small_mlp_launches")]

SIZES = [6, 5, 7, 3]
N = 5
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def pair(activation="relu", dtype="float32", loss="cross_entropy", sizes=SIZES):
    kw = dict(activation=activation, dtype=dtype, loss=loss, seed=3)
    return nn.MLP(sizes, **kw), nn.MLP(sizes, target="cuda", **kw)


def batch(rng, dtype, loss="cross_entropy", n=N, sizes=SIZES):
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        return X, rng.integers(0, sizes[-1], n)
    return X, rng.standard_normal((n, sizes[-1])).astype(dtype)


def host(d):
    return d.copy_to_host()


def test_parameters_start_equal_and_live_on_the_device():
    cpu, dev = pair()
    assert gpu.is_device_array(dev.params) and gpu.is_device_array(dev.weights[1])
    np.testing.assert_array_equal(host(dev.params), cpu.params)
    np.testing.assert_array_equal(host(dev.weights[1]), cpu.weights[1])
    np.testing.assert_array_equal(host(dev.biases[2]), cpu.biases[2])


@pytest.mark.parametrize("activation,dtype", [
    ("relu", "float32"), ("leaky_relu", "float32"), ("tanh", "float32"),
    ("sigmoid", "float32"), ("gelu", "float32"), ("relu", "float64"), ("gelu", "float64")])
def test_forward_matches_cpu(activation, dtype, rng):
    cpu, dev = pair(activation, dtype)
    X, _ = batch(rng, dtype)
    out = dev.forward(X)
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    np.testing.assert_allclose(out, cpu.forward(X), **TOL[dtype])


CASES = [("relu", "float64", "cross_entropy"), ("tanh", "float32", "cross_entropy"),
         ("gelu", "float64", "mse"), ("sigmoid", "float32", "mse"),
         ("leaky_relu", "float32", "cross_entropy")]


@pytest.mark.parametrize("activation,dtype,loss", CASES)
def test_loss_and_gradients_match_cpu(activation, dtype, loss, rng):
    cpu, dev = pair(activation, dtype, loss)
    X, y = batch(rng, dtype, loss)
    value = dev.loss_and_grad(X, y)
    assert isinstance(value, float)
    assert value == pytest.approx(cpu.loss_and_grad(X, y), rel=TOL[dtype]["rtol"])
    for gd, gc in zip(dev.weight_grads + dev.bias_grads, cpu.weight_grads + cpu.bias_grads):
        np.testing.assert_allclose(host(gd), gc, **TOL[dtype])


def test_bias_gradients_are_the_same_on_every_run(rng):
    _, dev = pair("tanh", "float32")
    X, y = batch(rng, "float32", n=9)
    dev.loss_and_grad(X, y)
    first = host(dev.grads)
    for _ in range(2):
        dev.loss_and_grad(X, y)
        np.testing.assert_array_equal(host(dev.grads), first)


OPTIMIZERS = [("adam", dict(lr=1e-2, amsgrad=True)),
              ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
              ("rmsprop", dict(lr=1e-2, centered=True))]


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_train_step_matches_cpu(name, kw, rng):
    cpu, dev = pair("relu", "float32")
    oc = optim.OPTIMIZERS[name](cpu.params, **kw)
    od = optim.OPTIMIZERS[name](dev.params, **kw)
    assert od.device
    for _ in range(2):
        X, y = batch(rng, "float32")
        lc = cpu.train_step(X, y, oc)
        ld = dev.train_step(X, y, od)
        assert isinstance(ld, gpu_nn.DeviceLoss)
        assert float(ld) == pytest.approx(lc, rel=2e-5)
    np.testing.assert_allclose(host(dev.params), cpu.params, rtol=1e-4, atol=1e-5)
    assert od.steps == oc.steps == 2
    sd_c, sd_d = oc.state_dict(), od.state_dict()
    for k in sd_c["state"][0]:
        np.testing.assert_allclose(sd_d["state"][0][k], sd_c["state"][0][k], rtol=1e-4,
                                   atol=1e-6)


def test_train_step_on_device_data_returns_a_lazy_loss(rng):
    from numba import cuda

    cpu, dev = pair("relu", "float64", "mse")
    X, y = batch(rng, "float64", "mse")
    oc, od = optim.SGD(cpu.params, lr=0.1), optim.SGD(dev.params, lr=0.1)
    loss = dev.train_step(cuda.to_device(X), cuda.to_device(y), od)
    expected = cpu.train_step(X, y, oc)
    assert math.isfinite(loss) and np.isfinite(loss)
    assert f"{loss:.6f}" == f"{expected:.6f}" and loss > 0 and loss == float(loss)
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-12)
    np.testing.assert_allclose(host(dev.params), cpu.params, rtol=1e-11, atol=1e-13)
    out = dev.forward(cuda.to_device(X))
    assert gpu.is_device_array(out)
    np.testing.assert_allclose(host(out), cpu.forward(X), rtol=1e-11)


@pytest.mark.parametrize("what", ["nan_x", "bad_label"])
def test_a_batch_rejected_on_the_device_changes_nothing(what, rng):
    from numba import cuda

    cpu, dev = pair("relu", "float32")
    oc, od = optim.Adam(cpu.params, lr=1e-2), optim.Adam(dev.params, lr=1e-2)
    X, y = batch(rng, "float32")
    cpu.train_step(X, y, oc)
    dev.train_step(X, y, od)
    before = host(dev.params), od.state_dict()
    Xb, yb = X.copy(), y.copy()
    if what == "nan_x":
        Xb[2, 1] = np.nan
    else:
        yb[3] = 7
    dev.train_step(cuda.to_device(Xb), cuda.to_device(yb), od)  # queued, no wait
    dev.train_step(X, y, od)  # queued behind it: a no-op too
    assert od.steps == 3
    with pytest.raises(ValueError, match="NaN or inf" if what == "nan_x" else "outside"):
        float(dev.train_step(X, y, od))
    np.testing.assert_array_equal(host(dev.params), before[0])
    assert od.steps == 1
    after = od.state_dict()
    for k in before[1]["state"][0]:
        np.testing.assert_array_equal(after["state"][0][k], before[1]["state"][0][k])
    # training goes on as if the bad batch had never been given
    loss = dev.train_step(X, y, od)
    assert float(loss) == pytest.approx(cpu.train_step(X, y, oc), rel=2e-5)
    np.testing.assert_allclose(host(dev.params), cpu.params, rtol=1e-4, atol=1e-5)


def test_bad_host_input_is_refused_before_anything_runs(rng):
    _, dev = pair()
    od = optim.SGD(dev.params, lr=0.1)
    X, y = batch(rng, "float32")
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        dev.train_step(X, y, od)
    with pytest.raises(ValueError, match="shape"):
        dev.train_step(X[:, :4], y, od)
    assert od.steps == 0


def test_device_arrays_of_the_wrong_kind_are_refused(rng):
    from numba import cuda

    _, dev = pair()
    od = optim.SGD(dev.params, lr=0.1)
    X, y = batch(rng, "float32")
    with pytest.raises(ValueError, match="float32 array of shape"):
        dev.train_step(cuda.to_device(X.astype(np.float64)), y, od)
    with pytest.raises(ValueError, match="int64 array of shape"):
        dev.train_step(cuda.to_device(X), cuda.to_device(y.astype(np.int32)), od)


def test_dropout_and_batch_norm_are_cpu_only():
    with pytest.raises(ValueError, match="dropout has no GPU kernels"):
        nn.MLP(SIZES, dropout=0.5, target="cuda")
    with pytest.raises(ValueError, match="batch_norm has no GPU kernels"):
        nn.MLP(SIZES, batch_norm=True, target="cuda")


def test_an_optimizer_on_other_arrays_is_refused():
    _, dev = pair()
    with pytest.raises(ValueError, match="built on model.params"):
        dev.train_step(np.zeros((2, 6), np.float32), np.zeros(2, np.int64),
                       optim.SGD(np.zeros(3, np.float32)))


def test_fit_on_the_device_matches_fit_on_the_cpu(rng):
    X, y = batch(rng, "float32", n=10)
    Xt, yt = batch(rng, "float32", n=6)
    cpu, dev = pair("tanh", "float32")
    oc, od = optim.Adam(cpu.params, lr=1e-2), optim.Adam(dev.params, lr=1e-2)
    hc = train.fit(cpu, oc, (X, y, Xt, yt), batch_size=4, epochs=1, progress=False)
    hd = train.fit(dev, od, (X, y, Xt, yt), batch_size=4, epochs=1, progress=False)
    assert list(hd["step"]) == list(hc["step"]) == [0, 3]
    np.testing.assert_allclose(hd["test_loss"], hc["test_loss"], rtol=2e-5)
    np.testing.assert_allclose(hd["train_loss"][1:], hc["train_loss"][1:], rtol=2e-5)
    assert list(hd["test_accuracy"]) == list(hc["test_accuracy"])
    assert od.steps == oc.steps == 3
    np.testing.assert_allclose(host(dev.params), cpu.params, rtol=1e-4, atol=1e-5)


def test_train_step_with_gradient_clipping_matches_cpu(rng):
    cpu, dev = pair("relu", "float64")
    kw = dict(lr=0.1, momentum=0.9, max_grad_norm=0.05)
    oc, od = optim.SGD(cpu.params, **kw), optim.SGD(dev.params, **kw)
    for _ in range(2):
        X, y = batch(rng, "float64")
        assert float(dev.train_step(X, y, od)) == pytest.approx(cpu.train_step(X, y, oc),
                                                               rel=1e-11)
    assert od.last_grad_norm == pytest.approx(oc.last_grad_norm, rel=1e-10)
    np.testing.assert_allclose(host(dev.params), cpu.params, rtol=1e-10, atol=1e-12)


def test_loss_buffers_are_reused_not_allocated_per_step(rng):
    _, dev = pair()
    od = optim.SGD(dev.params, lr=0.1)
    X, y = batch(rng, "float32")
    first = dev.train_step(X, y, od)
    buf = first._buf
    value = float(first)
    del first  # back to the pool
    second = dev.train_step(X, y, od)
    assert second._buf is buf and float(second) < value


def test_checkpoint_of_a_gpu_model_resumes_with_the_same_numbers(rng, tmp_path):
    import fastopt

    _, dev = pair("relu", "float64")
    od = optim.Adam(dev.params, lr=1e-2)
    X, y = batch(rng, "float64")
    dev.train_step(X, y, od)
    path = fastopt.save(tmp_path / "ckpt", dev.params, od)
    _, other = pair("relu", "float64")
    oo = optim.Adam(other.params, lr=1e-2)
    fastopt.load(path, other.params, oo)
    assert oo.steps == 1
    a, b = dev.train_step(X, y, od), other.train_step(X, y, oo)
    assert float(a) == float(b)
    np.testing.assert_array_equal(host(other.params), host(dev.params))
