import functools
import os
import sys

# Keras is only an oracle here; it must run on the torch backend (no TensorFlow/JAX).
os.environ.setdefault("KERAS_BACKEND", "torch")
# Bitwise checks compare runs with each other: the tests run with the threads always on
# (FASTOPT_THREADS=all), so a neighbour on the CI machine cannot switch a run to one BLAS
# thread halfway (fastopt.threads). The auto policy has tests of its own, on a fake clock.
os.environ.setdefault("FASTOPT_THREADS", "all")
# No compile helper processes (fastopt.kernels.warmup) beside the tests' own kernels: a
# new network kind in a test would start one; tests/test_warmup.py turns them on.
os.environ.setdefault("FASTOPT_COMPILE_PROCESSES", "1")

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
    from fastopt.sweep.trial import warm_up

    task = sweep.make_task("digits", budget_steps=2, hidden=(2,))
    trial, = sweep.plan_trials(sweep.parse_space("optimizer=sgd"), 1)
    warm_up(task, trial.settings)
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


@pytest.fixture
def crash_trial(dask_cluster):
    """``crash_trial(index, marker)``: the worker of ``dask_cluster`` that first starts trial
    ``index`` of a sweep dies at once (``os._exit``), after writing its pid and address to
    the file ``marker``; every later start of that trial runs normally. The hook
    (``fastopt.sweep.trial._on_trial_start``) is set in each worker process, not in this one,
    and removed when the test ends."""
    import cloudpickle

    # The workers cannot import this conftest, so its functions travel by value.
    here = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(here)
    try:
        yield lambda index, marker: dask_cluster.run(_set_crash_hook, index, str(marker))
        dask_cluster.run(_set_crash_hook, None, None)
    finally:
        cloudpickle.unregister_pickle_by_value(here)


def _set_crash_hook(index, marker):
    """In a worker process: die the first time trial ``index`` starts (None: never)."""
    from fastopt.sweep import trial

    trial._on_trial_start = (None if index is None else
                             functools.partial(_crash_once, index, marker))


def _crash_once(index, marker, started):
    from fastopt.sweep import trial

    if started.index != index:
        return
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:  # it crashed once already
        return
    os.write(fd, f"{os.getpid()} {trial.where()[0]}\n".encode())
    os.close(fd)
    os._exit(1)
