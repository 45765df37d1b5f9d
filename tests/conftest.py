import os

# Keras is only an oracle here; it must run on the torch backend (no TensorFlow/JAX).
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastopt import config  # noqa: E402


@pytest.fixture(params=["serial", "parallel"])
def kernel_path(request, monkeypatch):
    """Run the test once with the serial kernels and once with the prange kernels."""
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 0 if request.param == "parallel" else 2**62)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def torch64():
    """torch with float64 default dtype, so its scalar optimizer state is float64 too."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def sweep_kernels():
    """The SGD kernels of the sweep tests compiled into Numba's disk cache once, in this
    process, so that the Dask workers of the sweep tests load them instead of compiling."""
    from fastopt import sweep
    from fastopt.experiments import sweepspace

    task = sweep.make_task("digits", budget_steps=2, hidden=(2,))
    trial, = sweepspace.plan_trials(sweepspace.parse_space("optimizer=sgd"), 1)
    sweep.warm_up(task, trial.settings)
    return task


@pytest.fixture(scope="session")
def dask_cluster(sweep_kernels):
    """A LocalCluster of two single-threaded worker processes and a client, shared by the
    sweep tests (``fastopt.sweep.connect``); skipped without dask.distributed."""
    pytest.importorskip("distributed")
    from fastopt import sweep

    client, cluster = sweep.connect(workers=2)
    yield client
    client.close()
    cluster.close()
