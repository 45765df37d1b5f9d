"""Optimizers with fused Numba update kernels; API and formulas follow ``torch.optim``.

>>> import numpy as np
>>> from fastopt import optim
>>> w = np.zeros(10, dtype=np.float32)
>>> opt = optim.Adam(w, lr=1e-3)
>>> opt.step(np.ones(10, dtype=np.float32))
True
"""

from . import catalogue
from .base import Optimizer
from .optimizers import (OPTIMIZERS, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, NAdam,
                         RAdam, RMSprop)

__all__ = ["Optimizer", "OPTIMIZERS", "catalogue", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adadelta",
           "Adamax", "NAdam", "RAdam", "Lion"]
