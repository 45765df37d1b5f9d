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
