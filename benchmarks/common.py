"""Shared, seeded inputs for the asv suite. Append only: old results must stay comparable."""

import numpy as np

SEED = 20261123

# every optimizer in fastopt.optim; bench_optim.py checks at import that none is missing
OPTIMIZERS = ["sgd", "adagrad", "rmsprop", "adam", "adamw", "adadelta", "adamax", "nadam",
              "radam", "lion"]
# hyperparameters used for benchmarking: defaults, plus momentum so SGD carries state
BENCH_HYPER = {"sgd": {"lr": 1e-3, "momentum": 0.9}}


def arrays(n, dtype, seed=SEED):
    """A parameter vector and a small gradient of n elements."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-3).astype(dtype)
    return p, g
