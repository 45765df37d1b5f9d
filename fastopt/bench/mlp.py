"""``fastopt bench mlp``: one MLP training step, fastopt next to PyTorch and numpy's GEMMs.

The network and both implementations are ``fastopt.bench.definitions``' (the asv suite's
``bench_nn.MLP`` times the same); numpy's matrix products of one step are the ceiling.
"""

import numpy as np

from .. import runs
from . import definitions
from .timing import interleaved_settled
from .update import _torch


def _numpy_gemms(sizes, n, dtype, rng):
    """The matrix products of one training step, done by numpy (the GEMM ceiling)."""
    xs = [rng.random((n, fi), dtype=dtype) for fi in sizes[:-1]]
    ws = [rng.random((fi, fo), dtype=dtype) for fi, fo in zip(sizes[:-1], sizes[1:])]
    ds = [rng.random((n, fo), dtype=dtype) for fo in sizes[1:]]
    outs = [np.empty((n, fo), dtype=dtype) for fo in sizes[1:]]
    gws = [np.empty_like(w) for w in ws]
    gxs = [np.empty_like(x) for x in xs]

    def run():
        for i in range(len(ws)):
            np.dot(xs[i], ws[i], out=outs[i])          # forward
            np.dot(xs[i].T, ds[i], out=gws[i])         # dW
            if i:
                np.dot(ds[i], ws[i].T, out=gxs[i])     # dX (not for the input layer)
    return run


def step_flops(sizes, n):
    """Floating-point operations of the matrix products of one training step."""
    fwd = sum(2 * n * fi * fo for fi, fo in zip(sizes[:-1], sizes[1:]))
    dx = sum(2 * n * fi * fo for fi, fo in zip(sizes[1:-1], sizes[2:]))
    return 2 * fwd + dx  # forward, dW, dX


def bench_mlp(batch_sizes=definitions.MLP_BATCH_SIZES, sizes=definitions.NETWORK,
              dtype="float32", rounds=7, torch_peer=True, progress=True, seed=0):
    """(rows, notes): batch, impl, seconds per train_step (SGD, lr ``MLP_LR``), samples/s,
    GFLOP/s, ratio (time / fastopt's)."""
    torch = _torch() if torch_peer else None
    notes = [] if torch is not None else ["torch is not installed: no PyTorch rows"]
    rng = np.random.default_rng(seed)
    rows = []
    for n in runs.Progress(batch_sizes, desc="bench mlp", unit="batch sizes", mode=progress):
        X = rng.random((n, sizes[0]), dtype=np.dtype(dtype).type)
        y = rng.integers(0, sizes[-1], n)
        model, opt = definitions.fastopt_mlp(sizes, dtype=dtype, seed=0)
        fns = {"fastopt train_step": lambda: model.train_step(X, y, opt),
               "numpy GEMMs only": _numpy_gemms(sizes, n, np.dtype(dtype), rng)}
        if torch is not None:
            torch.set_num_threads(2)
            fns["torch (Sequential + SGD)"] = definitions.torch_mlp(torch, X, y, sizes).train_step
        times = interleaved_settled(fns, rounds)
        base = times["fastopt train_step"]
        flops = step_flops(sizes, n)
        for impl, sec in times.items():
            rows.append(dict(batch=n, impl=impl, seconds=sec, samples_per_s=n / sec,
                             gflops=flops / sec / 1e9, ratio=sec / base))
    return rows, notes
