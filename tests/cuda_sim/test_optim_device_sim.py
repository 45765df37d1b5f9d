"""Optimizers on GPU arrays (simulator or GPU): same numbers as on the host, zero copy,
clear errors for mixed host/device arrays."""

import numpy as np
import pytest

from fastopt import optim
from fastopt.kernels import cuda as gpu

pytestmark = pytest.mark.skipif(gpu.why_unavailable() is not None,
                                reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU")

CONFIGS = [
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    ("adamw", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-2, centered=True, momentum=0.5)),
    ("nadam", dict(lr=1e-2)),
    ("lion", dict(lr=1e-3)),
]


class Interface:
    """Only __cuda_array_interface__, as CuPy arrays and torch CUDA tensors offer."""

    def __init__(self, d):
        self.__cuda_array_interface__ = d.__cuda_array_interface__


@pytest.fixture(autouse=True)
def small_grid(monkeypatch):
    monkeypatch.setattr(gpu, "THREADS_PER_BLOCK", 32)
    monkeypatch.setattr(gpu, "MAX_BLOCKS", 2)


@pytest.mark.parametrize("name,kw", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_device_optimizer_matches_host_optimizer(name, kw, rng):
    from numba import cuda

    shapes = [(7, 5), (30,)]
    host = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    dev = [cuda.to_device(p) for p in host]
    opt_h = optim.OPTIMIZERS[name](host, **kw)
    opt_d = optim.OPTIMIZERS[name](dev, **kw)
    assert opt_d.device and not opt_h.device
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        opt_h.step(grads)
        opt_d.step([cuda.to_device(g) for g in grads])
    for d, h in zip(dev, host):
        np.testing.assert_allclose(d.copy_to_host(), h, rtol=2e-6, atol=2e-6)
    sd_h, sd_d = opt_h.state_dict(), opt_d.state_dict()
    for i in sd_h["state"]:
        for k in sd_h["state"][i]:
            assert isinstance(sd_d["state"][i][k], np.ndarray)
            np.testing.assert_allclose(sd_d["state"][i][k], sd_h["state"][i][k], rtol=2e-6,
                                       atol=2e-6)


def test_cuda_array_interface_objects_are_updated_in_place_without_copy(rng):
    from numba import cuda

    if not hasattr(cuda, "as_cuda_array"):
        pytest.skip("the simulator's arrays have no __cuda_array_interface__ (GPU only)")
    p = cuda.to_device(np.ones(50, np.float32))
    opt = optim.SGD(Interface(p), lr=0.5)
    opt.step(Interface(cuda.to_device(np.full(50, 2.0, np.float32))))
    np.testing.assert_array_equal(p.copy_to_host(), np.zeros(50, np.float32))


def test_state_dict_round_trip_on_device(rng):
    from numba import cuda

    p = cuda.to_device(rng.standard_normal(20))
    opt = optim.Adam(p, lr=0.1)
    opt.step(cuda.to_device(rng.standard_normal(20)))
    saved = opt.state_dict()
    q = cuda.to_device(p.copy_to_host())
    opt2 = optim.Adam(q, lr=0.1)
    opt2.load_state_dict(saved)
    g = rng.standard_normal(20)
    opt.step(cuda.to_device(g))
    opt2.step(cuda.to_device(g))
    np.testing.assert_array_equal(p.copy_to_host(), q.copy_to_host())


def test_mixing_host_and_device_arrays_is_rejected(rng):
    from numba import cuda

    host = np.zeros(4, np.float32)
    dev = cuda.to_device(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="mixes NumPy arrays and GPU arrays"):
        optim.Adam([host, dev])
    opt = optim.Adam(dev)
    with pytest.raises(TypeError, match="not a GPU array"):
        opt.step(np.ones(4, np.float32))
    np.testing.assert_array_equal(dev.copy_to_host(), 0)  # nothing changed
    host_opt = optim.Adam(host)
    with pytest.raises(TypeError, match="GPU array"):
        host_opt.step(cuda.to_device(np.ones(4, np.float32)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_grad_norm_and_skip_nonfinite_on_device_match_host(dtype, rng):
    from numba import cuda

    shapes = [(300,), (6, 7)]  # several blocks of the norm reduction, ragged
    host = [rng.standard_normal(s).astype(dtype) for s in shapes]
    dev = [cuda.to_device(p) for p in host]
    kw = dict(lr=1e-2, max_grad_norm=0.5, skip_nonfinite=True)
    opt_h, opt_d = optim.Adam(host, **kw), optim.Adam(dev, **kw)
    for k in range(3):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        if k == 1:
            grads[1][2, 3] = np.nan if dtype == np.float32 else np.inf
        applied_h = opt_h.step(grads)
        applied_d = opt_d.step([cuda.to_device(g) for g in grads])
        assert applied_h == applied_d == (k != 1)
        if k != 1:
            assert opt_d.last_grad_norm == pytest.approx(opt_h.last_grad_norm, rel=1e-12)
        else:
            assert not np.isfinite(opt_d.last_grad_norm)
    assert opt_d.skipped_steps == opt_h.skipped_steps == 1
    for d, h in zip(dev, host):
        np.testing.assert_allclose(d.copy_to_host(), h, rtol=2e-6, atol=2e-7)


def test_device_norm_is_float64_and_the_same_on_every_run(rng):
    from numba import cuda

    g = cuda.to_device(rng.standard_normal(1000).astype(np.float32) * 1e20)  # squares > f32
    norm, finite = gpu.global_norm([g])
    assert finite
    assert norm == pytest.approx(np.linalg.norm(g.copy_to_host().astype(np.float64)),
                                 rel=1e-12)
    assert all(gpu.global_norm([g]) == (norm, True) for _ in range(3))
