"""``fastopt bench gpu``: on a CUDA GPU, the Adam step next to a device-to-device copy and
torch.optim's fused and foreach Adam, and the MLP train_step next to PyTorch on CUDA.

Each time is the median over rounds of blocks of calls between two waits for the device.
The peers are ``fastopt.bench.definitions``'.
"""

import math
import os

import numpy as np

from .. import runs
from . import definitions
from .timing import gpu_median
from .update import _torch

ADAM_BYTES = 28  # float32 Adam per parameter: p, m, v read and written, g read
COLUMNS = ("kind", "size", "impl", "us", "gbps", "of_copy", "samples_per_s", "speedup")


def require_gpu():
    """ValueError unless a real CUDA GPU can run kernels here."""
    from ..kernels import cuda as gpu

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise ValueError("bench gpu times a real GPU, but Numba's CUDA simulator is on: "
                         "unset NUMBA_ENABLE_CUDASIM")
    try:
        gpu.require()
    except gpu.CudaUnavailableError as exc:
        raise ValueError(f"bench gpu needs a CUDA GPU: {exc}") from None


def _adam_rows(cuda, torch, n, rng, rounds):
    """fastopt's Adam at N parameters, the d2d copy of N floats, torch's fused and foreach."""
    p = cuda.to_device(rng.standard_normal(n, dtype=np.float32))
    g = cuda.to_device((rng.standard_normal(n, dtype=np.float32) * 1e-3))
    _, step = definitions.fastopt_step("adam", p, g)
    t_fast = gpu_median(step, cuda.synchronize, rounds)
    dst = cuda.device_array_like(p)
    t_copy = gpu_median(lambda: dst.copy_to_device(p), cuda.synchronize, rounds)
    copy_gbps = 8 * n / t_copy / 1e9
    fast_gbps = ADAM_BYTES * n / t_fast / 1e9
    rows = [dict(kind="adam", size=n, impl="fastopt", us=t_fast * 1e6, gbps=fast_gbps,
                 of_copy=fast_gbps / copy_gbps, speedup=1.0),
            dict(kind="adam", size=n, impl="d2d copy", us=t_copy * 1e6, gbps=copy_gbps,
                 of_copy=1.0, speedup=math.nan)]
    if torch is not None:
        for variant in ("torch-fused", "torch-foreach"):
            tstep = definitions.torch_step(torch, "adam", p.copy_to_host(), g.copy_to_host(),
                                           variant, device="cuda")
            t = gpu_median(tstep, torch.cuda.synchronize, rounds)
            gb = ADAM_BYTES * n / t / 1e9
            rows.append(dict(kind="adam", size=n, impl=variant.replace("-", " "), us=t * 1e6,
                             gbps=gb, of_copy=gb / copy_gbps, speedup=t / t_fast))
            del tstep  # free the device memory before the next variant
    return rows


def _mlp_rows(cuda, torch, batch, rng, rounds, seed):
    """The seeds' network's train_step (loss read back every step), fastopt and torch."""
    sizes = definitions.NETWORK
    X = rng.random((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    model, opt = definitions.fastopt_mlp(seed=seed, target="cuda")
    dX, dy = cuda.to_device(X), cuda.to_device(y)
    t_fast = gpu_median(lambda: float(model.train_step(dX, dy, opt)), cuda.synchronize, rounds)
    rows = [dict(kind="mlp", size=batch, impl="fastopt", us=t_fast * 1e6,
                 samples_per_s=batch / t_fast, speedup=1.0)]
    if torch is not None:
        step = definitions.torch_mlp(torch, X, y, sizes, "cuda").train_step
        t = gpu_median(step, torch.cuda.synchronize, rounds)
        rows.append(dict(kind="mlp", size=batch, impl="torch", us=t * 1e6,
                         samples_per_s=batch / t, speedup=t / t_fast))
    return rows


def bench_gpu(sizes=definitions.GPU_SIZES, batch_sizes=definitions.GPU_BATCH_SIZES, rounds=7,
              torch_peers=True, progress=True, seed=0):
    """Rows for a CUDA GPU (not the simulator): (1) the Adam float32 step at each N, its
    effective GB/s (28 bytes per parameter), the same-run device-to-device copy's GB/s and
    the ratio of the two, and torch.optim.Adam(fused=True) on CUDA; (2) the seeds' MLP
    train_step (loss read back every step) next to the same network in PyTorch on CUDA.
    Returns (rows, notes)."""
    require_gpu()
    from numba import cuda

    torch = _torch() if torch_peers else None
    if torch is not None and not torch.cuda.is_available():
        torch = None
    name = getattr(cuda.get_current_device(), "name", "the CUDA simulator")
    notes = [f"device: {name.decode() if isinstance(name, bytes) else name}"]
    if torch_peers and torch is None:
        notes.append("torch with CUDA is not available: no torch rows")
    rng = np.random.default_rng(seed)
    rows = []
    for n in runs.Progress(sizes, desc="bench gpu adam", unit="sizes", mode=progress):
        rows += _adam_rows(cuda, torch, n, rng, rounds)
    for b in runs.Progress(batch_sizes, desc="bench gpu mlp", unit="batch sizes",
                           mode=progress):
        rows += _mlp_rows(cuda, torch, b, rng, rounds, seed)
    return [{k: r.get(k, math.nan) for k in COLUMNS} for r in rows], notes
