"""Shared, seeded inputs for the asv suite. Append only: old results must stay comparable.

What the benchmarks measure (peers, network, per-optimizer facts, steps per call) is
defined once in ``fastopt.bench.definitions``, which ``fastopt bench`` uses too; the names
below that come from there are re-exported with the values they always had."""

import numpy as np

from fastopt.bench import definitions

SEED = 20261123

# every optimizer in fastopt.optim; bench_optim.py checks at import that none is missing
OPTIMIZERS = list(definitions.OPTIMIZERS)
# hyperparameters used for benchmarking: defaults, plus momentum so SGD carries state
BENCH_HYPER = definitions.BENCH_HYPER


def arrays(n, dtype, seed=SEED):
    """A parameter vector and a small gradient of n elements."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-3).astype(dtype)
    return p, g


# ---------------------------------------------------------------------------------------
# appended with the full asv suite (update kernels, MLP, convergence, cold start)

import importlib.util  # noqa: E402  (append-only file: new imports live with new code)
import os  # noqa: E402
import sys  # noqa: E402

#: FASTOPT_ASV_SMOKE=1 shrinks every parameter grid to one or two values and every training
#: run to a handful of steps, so that `asv run --quick` of the whole suite takes minutes (CI).
#: Smoke numbers only prove that each benchmark runs; never save or compare them.
SMOKE = os.environ.get("FASTOPT_ASV_SMOKE", "").strip().lower() not in ("", "0", "false", "no")


def grid(full, smoke):
    """The parameter values of a benchmark: ``full``, or ``smoke`` under FASTOPT_ASV_SMOKE."""
    return list(smoke if SMOKE else full)


# update kernels: N, dtypes, targets and implementations (fastopt and its peers)
SIZES = grid([1000, 100000, 1000000, 10000000], [1000])
DTYPES = grid(["float32", "float64"], ["float32"])
TARGETS = ["cpu", "cuda"]
UPDATE_IMPLS = list(definitions.UPDATE_IMPLS)
UPDATE_OPTIMIZERS = grid(OPTIMIZERS, ["sgd", "adam"])
# torch.optim class names (Lion is not in torch) and the optimizers torch has fused=True for
TORCH_NAMES = definitions.TORCH_NAMES
TORCH_FUSED = definitions.TORCH_FUSED
# optimizer steps per call of OptimizerStep.time_step (the report divides by it)
steps_per_call = definitions.steps_per_call


# MLP: the seeds' network, float32, ReLU, SGD
NETWORK = definitions.NETWORK
MLP_LR = definitions.MLP_LR
BATCH_SIZES = grid(definitions.MLP_BATCH_SIZES, [32])
MLP_IMPLS = list(definitions.MLP_IMPLS)


def batch(n, sizes=NETWORK, dtype="float32", seed=SEED):
    """A random mini-batch (X, y) of n rows for a network of the given layer sizes."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.dtype(dtype).type)
    y = rng.integers(0, sizes[-1], n)
    return X, y


# convergence: fixed runs of fastopt.train.fit, one per (dataset, optimizer, batch size)
CONVERGENCE_OPTIMIZERS = grid(OPTIMIZERS, ["sgd", "adam"])
CONVERGENCE_BATCHES = grid([32, 128, 512], [32])
# steps of each run, evaluation interval (the resolution of "steps to target") and the
# test accuracy that counts as converged
CONVERGENCE = {
    "digits": dict(hidden=(100, 100, 100, 100), max_steps=grid([300], [20])[0],
                   eval_every=grid([10], [10])[0], target=0.95),
    "mnist": dict(hidden=(100, 100, 100, 100), max_steps=grid([1500], [20])[0],
                  eval_every=grid([50], [10])[0], target=0.95),
}
FIT_SEED = SEED  # mini-batch order
MODEL_SEED = 0  # weights


# ---------------------------------------------------------------------------------------
# what is installed: every check raises NotImplementedError, which asv reports as skipped


def require_torch():
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed (pip install torch)") from None
    return torch


def _gpu_device_files():
    """False when this Linux machine certainly has no NVIDIA GPU (no device files), so that a
    skip does not need to import torch or numba.cuda; True when a GPU may be present."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


def require_fastopt_cuda():
    """The ``numba.cuda`` module, or NotImplementedError when fastopt's CUDA target cannot
    run here: no ``fastopt.kernels.cuda`` module, no GPU, or only Numba's simulator (far too
    slow to time). Checked from the cheapest test up, so a skip imports nothing heavy.

    The parameter exists before every piece of the target does, so that the results light
    up once it works, without a benchmark change or renamed results."""
    if importlib.util.find_spec("fastopt.kernels.cuda") is None:
        raise NotImplementedError("fastopt has no CUDA target (no fastopt.kernels.cuda)")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise NotImplementedError("NUMBA_ENABLE_CUDASIM is set: the simulator is not timed")
    if not _gpu_device_files():
        raise NotImplementedError("no GPU")
    from fastopt.kernels import cuda as fastopt_cuda

    reason = fastopt_cuda.why_unavailable()
    if reason is not None:
        raise NotImplementedError(reason)
    from numba import cuda

    return cuda


def unsupported(what, build):
    """``build()``, turning the errors fastopt raises for an unsupported argument (TypeError,
    ValueError) into NotImplementedError: for targets that exist in the suite before the
    library supports them everywhere (e.g. the MLP on the GPU)."""
    try:
        return build()
    except (TypeError, ValueError) as exc:
        raise NotImplementedError(f"{what} is not supported yet: {exc}") from None


def torch_device(torch, target):
    """The torch device of a target; NotImplementedError for cuda without a GPU."""
    if target == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise NotImplementedError("torch.cuda.is_available() is False")
    return torch.device("cuda")


def require_torch_target(target):
    """torch, after a cheap check that a cuda target can run at all."""
    if target == "cuda" and not _gpu_device_files():
        raise NotImplementedError("no GPU")
    return require_torch()


def load_dataset(name):
    """``fastopt.datasets.load(name)``; NotImplementedError when its extra is missing."""
    from fastopt import datasets

    try:
        return datasets.load(name)
    except ImportError as exc:  # datasets.MissingExtraError: its first line says what is missing
        raise NotImplementedError(f"data set {name!r} unavailable: "
                                  f"{str(exc).splitlines()[0]}") from None


# peak memory of a short training run (bench_train.TrainingMemory)
PEAKMEM_STEPS = grid([300], [20])[0]


# ---------------------------------------------------------------------------------------
# appended with issue 17: a default suite of about ten minutes on 2 cores, the wide grids
# behind FASTOPT_ASV_FULL=1 (the convention of scipy's SCIPY_XSLOW), one class per
# implementation and target (no row that can never run), one optimizer step per call.
# The names above stay as they were (the full grids are theirs); the classes use these.


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


#: FASTOPT_ASV_FULL=1: every grid at its full width (the suite before issue 17: about
#: 30-45 minutes on 2 cores, README "Tracking performance with asv")
FULL = _flag("FASTOPT_ASV_FULL")
if FULL and SMOKE:
    raise ValueError("FASTOPT_ASV_FULL and FASTOPT_ASV_SMOKE are both set: choose one (full "
                     "grids, or the CI smoke run), or unset both for the default suite")


def tier(default, full, smoke):
    """A benchmark's parameter values: ``default``, ``full`` under FASTOPT_ASV_FULL,
    ``smoke`` under FASTOPT_ASV_SMOKE."""
    return list(smoke if SMOKE else full if FULL else default)


# optimizer steps: fastopt on the CPU; the peers at fewer sizes (their ratios to fastopt
# need only the two ends: per-call overhead at 1e3, memory bandwidth at 1e6); the GPU at
# sizes where it pays (definitions.GPU_SIZES)
STEP_OPTIMIZERS = tier(OPTIMIZERS, OPTIMIZERS, ["sgd", "adam"])
STEP_SIZES = tier([1000, 100000, 1000000], SIZES, [1000])
STEP_DTYPES = tier(["float32"], DTYPES, ["float32"])
PEER_SIZES = tier([1000, 1000000], SIZES, [1000])
CUDA_SIZES = tier([1000000], list(definitions.GPU_SIZES), [1000000])
#: torch rows only for the optimizers torch.optim has (for-loop), and has fused=True for
TORCH_STEP_OPTIMIZERS = [name for name in STEP_OPTIMIZERS if name in TORCH_NAMES]
TORCH_FUSED_OPTIMIZERS = [name for name in STEP_OPTIMIZERS if name in TORCH_FUSED]


def calls_per_sample(n):
    """asv's ``number`` of the optimizer step benchmarks: steps per timed sample, so that a
    sample is about a millisecond or more (100 at N = 1e3). asv divides each sample by it:
    its time per call is the time per step, and the report takes it as it is."""
    return max(1, 10**5 // n)


# MLP: batch sizes on the CPU and on the GPU
MLP_BATCHES = tier([32, 128, 512], BATCH_SIZES, [32])
MLP_CUDA_BATCHES = tier([128], [32, 128, 512, 1024], [128])

# convergence: every optimizer at batch 128 by default, the three batch sizes in full
CONVERGENCE_BATCH_GRID = tier([128], CONVERGENCE_BATCHES, [32])

# instruction counts (fastopt.bench.instructions): the update of every optimizer and the
# MLP train_step with SGD and Adam; repeats of the differential count (the median is the
# result: the first repeat of a case is sometimes 1-2% off, CPython warming up)
INSTRUCTION_OPTIMIZERS = tier(OPTIMIZERS, OPTIMIZERS, ["sgd", "adam"])
INSTRUCTION_TRAIN_OPTIMIZERS = tier(["sgd", "adam"], ["sgd", "adam"], ["sgd"])
INSTRUCTION_REPEATS = tier([3], [3], [1])[0]

# torch, when installed, imported here once: asv's forkserver (asv.conf.json) imports the
# suite once and forks a process per benchmark, so that the torch rows do not each pay for
# `import torch` (2-3 s on 2 cores, twice per row: asv's two rounds). Loaded but unused it
# does not change fastopt's steps (Adam, N = 1e6: the same median with and without it).
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: E402, F401

#: MNIST convergence (60,000 images, 1,500 steps a run: the slowest setup_cache of the suite)
#: for SGD and Adam by default, every optimizer under FASTOPT_ASV_FULL
MNIST_OPTIMIZERS = tier(["sgd", "adam"], OPTIMIZERS, ["sgd", "adam"])


# ---------------------------------------------------------------------------------------
# appended with issue 16: the Cython backend (bench_optim.CythonStep)


def require_cython_built():
    """None once the Cython kernels are built into their cache (built now if they are not:
    call this from a ``setup_cache``, never inside a timed region), else why they cannot
    be (what is missing and how to install it), for ``setup`` to raise as
    NotImplementedError."""
    from fastopt.kernels import cython

    ok, why = cython.available()
    return None if ok else why
