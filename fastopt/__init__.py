"""fastopt: fused Numba kernels for neural-network optimizers, and benchmarks that measure them.

Importing ``fastopt`` is light: submodules (and Numba) load on first use, and kernels
compile on their first call.

>>> import numpy as np, fastopt
>>> w = np.zeros(1000, dtype=np.float32)
>>> opt = fastopt.optim.AdamW(w, lr=1e-3)
>>> opt.step(np.ones_like(w))
True
"""

import importlib

__version__ = "0.1.0"

#: the library: what a training script imports (``from fastopt import optim, nn, ...``)
LIBRARY = ("optim", "schedules", "nn", "init", "datasets", "train", "kernels")
#: the tooling around it, under its own names: the benchmark definitions and ``fastopt
#: bench``, hyperparameter sweeps, the experiment commands, the configuration
TOOLING = ("bench", "sweep", "experiments", "config")
_FUNCTIONS = {
    "clip_grad_norm": "fastopt.clip",
    "clip_grad_value": "fastopt.clip",
    "save": "fastopt.checkpoint",
    "load": "fastopt.checkpoint",
}

__all__ = [*LIBRARY, *_FUNCTIONS, "__version__"]


def __getattr__(name):
    if name in LIBRARY or name in TOOLING:
        return importlib.import_module(f"fastopt.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'fastopt' has no attribute {name!r}")


def __dir__():
    return [*__all__, *TOOLING]
