"""What fastopt's benchmarks measure, defined once for both front-ends.

``fastopt bench ...`` (quick tables in one process, fastopt.bench) and the asv suite in
benchmarks/ (tracking across commits) time the same things, built here:

- the per-optimizer facts a benchmark needs (torch.optim name, whether torch has
  ``fused=True`` for it, the hyperparameters it is benchmarked with), read from the
  optimizer catalogue (``fastopt.optim.catalogue``);
- the peers of an optimizer step: fastopt's own (``fastopt_step``), the NumPy reference
  (``numpy_step``) and torch.optim in its variants (``torch_step``);
- the MLP: the seeds' network (``NETWORK``), fastopt's model and optimizer
  (``fastopt_mlp``) and the same network in PyTorch (``torch_mlp``);
- the cold-start child program (``cold_start_program``);
- sizes, batch sizes and the steps per asv call (``steps_per_call``).

The asv suite imports this from the installed fastopt; the names of its benchmarks, as
``fastopt bench asv-report`` reads them, are in ``fastopt.bench.suite``.

Nothing here imports numba or torch at module level: importing it is as light as asv's
benchmark discovery must be. The torch module is passed in by the caller, who decides
what to do when it is missing.
"""

from typing import NamedTuple

from ..optim import catalogue


#: the optimizers of fastopt.optim in the asv grid's order, and what the benchmarks need to
#: know about each (torch.optim name, whether torch has fused=True for it, the
#: hyperparameters it is benchmarked with), all from the optimizer catalogue: each class
#: states them (``Facts``) next to its code. Importing the catalogue loads no Numba.
OPTIMIZERS = tuple(catalogue.facts())
TORCH_NAMES = catalogue.torch_names()
TORCH_FUSED = set(catalogue.torch_fused())
BENCH_HYPER = catalogue.bench_hyper()


def bench_hyper(name):
    """The keyword arguments optimizer ``name`` is benchmarked with (a new dict)."""
    return dict(BENCH_HYPER.get(name, {}))


# ---------------------------------------------------------------------------------------
# optimizer step: fastopt and its peers

#: the implementations of a step, as asv's ``impl`` parameter names them
UPDATE_IMPLS = ("fastopt", "numpy", "torch", "torch-fused")
#: torch.optim's variants (keyword arguments); "torch" is its default for-loop
TORCH_VARIANTS = {"torch": dict(foreach=False), "torch-foreach": dict(foreach=True),
                  "torch-fused": dict(fused=True)}
#: element counts of ``fastopt bench update``
UPDATE_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)


def steps_per_call(n):
    """Optimizer steps per call of asv's ``OptimizerStep.time_step``: asv times one call per
    sample when a benchmark has a setup, so small N loop to keep a sample well above the
    timer's resolution. ``fastopt bench asv-report`` divides by the same number."""
    return max(1, 100000 // n)


def fastopt_step(name, p, g, wait=None):
    """(optimizer, step): fastopt's optimizer ``name`` on ``p`` with its benchmark
    hyperparameters, and a callable doing one ``opt.step(g)`` (then ``wait()``, if given:
    e.g. ``numba.cuda.synchronize`` when each call is timed alone)."""
    from fastopt import optim

    opt = optim.OPTIMIZERS[name](p, **bench_hyper(name))
    if wait is None:
        return opt, lambda: opt.step(g)

    def step():
        opt.step(g)
        wait()

    return opt, step


def numpy_step(name, p, g):
    """One step of the NumPy reference (``fastopt.reference.RefOptimizer``) on ``p``."""
    from fastopt.reference import RefOptimizer

    ref = RefOptimizer(name, [p], **bench_hyper(name))
    return lambda: ref.step([g])


def torch_step(torch, name, p, g, variant="torch", device="cpu", wait=False):
    """One ``torch.optim`` step of optimizer ``name`` in ``variant`` (a ``TORCH_VARIANTS``
    key) on a parameter made from the NumPy array ``p`` (shared on the CPU), gradient ``g``.

    ``wait``: each call waits for a CUDA device (when the call is timed alone); the GPU
    table waits once per block of calls instead."""
    cls = getattr(torch.optim, TORCH_NAMES[name])
    tp = torch.nn.Parameter(torch.from_numpy(p).to(device))
    tp.grad = torch.from_numpy(g).to(device)
    topt = cls([tp], **bench_hyper(name), **TORCH_VARIANTS[variant])
    if not (wait and torch.device(device).type == "cuda"):
        return topt.step

    def step():
        topt.step()
        torch.cuda.synchronize()

    return step


# ---------------------------------------------------------------------------------------
# MLP training step

#: the seeds' network: MNIST-sized input, four hidden ReLU layers of 100, ten classes
NETWORK = (784, 100, 100, 100, 100, 10)
#: plain SGD's learning rate in the MLP benchmarks
MLP_LR = 0.01
#: the implementations of asv's MLP benchmarks (``impl``)
MLP_IMPLS = ("fastopt", "torch")
#: batch sizes of ``fastopt bench mlp`` and of the asv suite's full grid
MLP_BATCH_SIZES = (1, 32, 128, 512)
#: ``fastopt bench gpu``: Adam parameter counts and MLP batch sizes
GPU_SIZES = (10**6, 10**7, 10**8)
GPU_BATCH_SIZES = (128, 1024)


def fastopt_mlp(sizes=NETWORK, dtype="float32", seed=0, target="cpu", optimizer="sgd"):
    """(model, optimizer): fastopt's ReLU MLP of layer ``sizes`` and its optimizer: plain
    SGD at ``MLP_LR`` for "sgd", else ``fastopt.optim.OPTIMIZERS[optimizer]`` with its
    defaults (Adam: lr 1e-3)."""
    from fastopt import nn, optim

    if optimizer not in optim.OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}: choose from {', '.join(optim.OPTIMIZERS)}")
    model = nn.MLP(sizes, activation="relu", dtype=dtype, seed=seed, target=target)
    if optimizer == "sgd":
        return model, optim.SGD(model.params, lr=MLP_LR)
    return model, optim.OPTIMIZERS[optimizer](model.params)


class TorchMLP(NamedTuple):
    """The same network in PyTorch, three callables on one batch (on the device)."""

    train_step: object  # zero_grad, forward, loss, backward, step; returns the loss (waits)
    forward: object  # the logits under no_grad (waits for a CUDA device)
    forward_backward: object  # the loss and every gradient, no update (waits likewise)


def torch_mlp(torch, X, y, sizes=NETWORK, device="cpu"):
    """``nn.Sequential`` of Linear/ReLU layers of ``sizes`` (float64 when ``X`` is),
    ``CrossEntropyLoss`` and ``torch.optim.SGD`` (``MLP_LR``) on X, y moved to ``device``
    once. The weights come from torch's global generator (seed it first to fix them)."""
    layers = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(fi, fo))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    if X.dtype == "float64":
        net = net.double()
    net = net.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=MLP_LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    tX, ty = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    on_gpu = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)

    def forward_backward():
        opt.zero_grad()
        loss = loss_fn(net(tX), ty)
        loss.backward()
        return loss

    def train_step():
        loss = forward_backward()
        opt.step()
        return loss.item()  # the loss on the host, like fastopt's (synchronises)

    def forward():
        with torch.no_grad():
            out = net(tX)
        sync()
        return out

    def forward_backward_waited():
        loss = forward_backward()
        sync()
        return loss

    return TorchMLP(train_step, forward, forward_backward_waited)


# ---------------------------------------------------------------------------------------
# cold start: import and the first training step in a new process

COLD_START_BATCH = 128
COLD_START_OPTIMIZER = "Adam"  # with lr=1e-3

_COLD_START = """
import time
t0 = time.perf_counter()
import numpy as np
import fastopt
from fastopt import nn, optim
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.random(({batch}, {n_in}), dtype=np.float32)
y = rng.integers(0, {n_out}, {batch})
model = nn.MLP({sizes!r}, seed=0)
opt = optim.{optimizer}(model.params, lr=1e-3)
t2 = time.perf_counter()
model.train_step(X, y, opt)
t3 = time.perf_counter()
import_seconds = t1 - t0
first_step_seconds = t3 - t2
"""


def cold_start_program(sizes=NETWORK, batch=COLD_START_BATCH, optimizer=COLD_START_OPTIMIZER):
    """Python code for a new interpreter: import fastopt, build the network and its
    optimizer (``fastopt.optim.<optimizer>``, lr 1e-3) on a random float32 batch, take the
    first ``train_step``; it leaves ``import_seconds`` (numpy and fastopt.nn) and
    ``first_step_seconds`` (the first train_step alone: compiling or loading from Numba's
    cache) in its namespace."""
    return _COLD_START.format(batch=batch, n_in=sizes[0], n_out=sizes[-1],
                              sizes=tuple(sizes), optimizer=optimizer)
