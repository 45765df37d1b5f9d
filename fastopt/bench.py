"""Quick throughput tables without asv: fastopt next to its peers, in the same process.

``python -m fastopt bench update``     every optimizer x N, fastopt vs NumPy vs torch.optim
``python -m fastopt bench crossover``  serial vs prange kernels: where threads start to pay
``python -m fastopt bench mlp``        MLP train_step vs PyTorch and numpy's GEMMs
``python -m fastopt bench coldstart``  import and first train_step in a new process, with an
                                       empty and with a warm Numba cache
``python -m fastopt bench gpu``        on a CUDA GPU: Adam step vs device copy and torch fused,
                                       MLP train_step vs PyTorch on CUDA

Timings are interleaved (each round times every implementation once, in turn) and the
median over rounds is reported, so a noisy neighbour hurts all columns alike. Effective
bandwidth counts the bytes an ideal fused update moves: the parameter (read and write),
the gradient (read) and each state array (read and write).
"""

import math
import os
import statistics
import time

import numpy as np

DEFAULT_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
TORCH_FUSED = {"sgd", "adam", "adamw", "adagrad"}
# torch.optim class names (Lion is not in torch)
TORCH_NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam",
               "adamw": "AdamW", "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "NAdam",
               "radam": "RAdam"}
# hyperparameters used for benchmarking (the defaults, plus momentum for SGD so that SGD
# carries state like its peers)
BENCH_HYPER = {"sgd": dict(lr=1e-3, momentum=0.9)}


def _time_block(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def _reps_for(n, target_seconds=0.01, per_element_seconds=2e-9):
    return max(1, min(1000, int(target_seconds / max(n * per_element_seconds, 1e-7))))


def interleaved(fns, n, rounds):
    """Median seconds per call of each callable in ``fns`` (dict), timed in turn."""
    reps = _reps_for(n)
    samples = {k: [] for k in fns}
    for fn in fns.values():  # warm-up: compile, allocate, fault pages in
        fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(_time_block(fn, reps))
    return {k: statistics.median(v) for k, v in samples.items()}


def _axpy_kernel():
    from numba import njit, prange

    from . import config

    @njit(parallel=True, **config.CPU_JIT)
    def axpy(y, x, a):
        for i in prange(y.size):
            y[i] = y[i] + a * x[i]

    return axpy


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def bench_update(optimizers=None, sizes=DEFAULT_SIZES, dtype="float32", rounds=7,
                 torch_peers=True, numpy_peer=True, progress=True, seed=0):
    """Rows of dicts: optimizer, n, impl, seconds, GB/s, ratio (peer time / fastopt time)."""
    from tqdm.auto import tqdm

    from . import optim
    from .reference import RefOptimizer

    dtype = np.dtype(dtype)
    names = list(optimizers or optim.OPTIMIZERS)
    unknown = [n for n in names if n not in optim.OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {unknown}; choose from "
                         f"{sorted(optim.OPTIMIZERS)}")
    torch = _torch() if torch_peers else None
    axpy = _axpy_kernel()
    rng = np.random.default_rng(seed)
    rows = []
    notes = []
    if torch_peers and torch is None:
        notes.append("torch is not installed: torch.optim rows skipped "
                      "(pip install torch==2.13.0)")
    if torch is not None:
        notes.append("Lion has no torch.optim implementation: no torch rows for it")
    jobs = [(n, name) for n in sizes for name in names]
    for n, name in tqdm(jobs, desc="bench update", disable=not progress, unit="case"):
        hyper = BENCH_HYPER.get(name, {})
        p = rng.standard_normal(n).astype(dtype)
        g = (rng.standard_normal(n) * 1e-3).astype(dtype)
        opt = optim.OPTIMIZERS[name](p, **hyper)
        fns = {"fastopt": lambda opt=opt, g=g: opt.step(g)}
        if numpy_peer:
            ref = RefOptimizer(name, [p.copy()], **hyper)
            fns["numpy"] = lambda ref=ref, g=g: ref.step([g])
        if torch is not None and name in TORCH_NAMES:
            cls = getattr(torch.optim, TORCH_NAMES[name])
            variants = {"torch": dict(foreach=False), "torch foreach": dict(foreach=True)}
            if name in TORCH_FUSED:
                variants["torch fused"] = dict(fused=True)
            for label, kw in variants.items():
                tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
                tp.grad = torch.from_numpy(g.copy())
                topt = cls([tp], **hyper, **kw)
                fns[label] = topt.step
        if name == names[0]:
            y = p.copy()
            a = dtype.type(1e-3)
            fns["axpy (reference)"] = lambda y=y, g=g, a=a: axpy(y, g, a)
        times = interleaved(fns, n, rounds)
        n_state = sum(s.size for s in opt.state[0].values()) // max(n, 1)
        nbytes = n * dtype.itemsize * (3 + 2 * n_state)
        base = times["fastopt"]
        for impl, sec in times.items():
            moved = n * dtype.itemsize * 3 if impl.startswith("axpy") else nbytes
            rows.append(dict(optimizer="-" if impl.startswith("axpy") else name, n=n,
                             impl=impl, seconds=sec, gbps=moved / sec / 1e9,
                             ratio=sec / base if not impl.startswith("axpy") else math.nan))
    return rows, notes


def bench_crossover(names=("sgd", "adam"), sizes=None, dtype="float32", rounds=9, seed=0,
                    progress=True):
    """Serial vs prange kernel times per N; the crossover is the first N where prange wins
    and keeps winning at every larger N."""
    from tqdm.auto import tqdm

    from . import optim
    from .kernels import cpu

    sizes = sizes or [int(round(10 ** e)) for e in np.arange(3, 6.51, 0.25)]
    dtype = np.dtype(dtype)
    rows = []
    for name in tqdm(names, desc="bench crossover", disable=not progress):
        for n in sizes:
            p = np.random.default_rng(seed).standard_normal(n).astype(dtype)
            g = np.full(n, 1e-3, dtype=dtype)
            opt = optim.OPTIMIZERS[name](p, **BENCH_HYPER.get(name, {}))
            rule = opt.rule
            state = [opt.state[0][k].reshape(-1) if k in opt.state[0] else None
                     for k in rule.state] + [None] * (3 - len(rule.state))
            hyper = np.full(len(rule.hyper), 1e-6, dtype=dtype)
            flags = np.zeros(len(rule.flags), dtype=np.int64)
            serial, parallel = cpu.update_kernels(rule.name)
            times = interleaved({
                "serial": lambda: serial(p, g, *state, hyper, flags),
                "parallel": lambda: parallel(p, g, *state, hyper, flags),
            }, n, rounds)
            rows.append(dict(optimizer=name, n=n, serial=times["serial"],
                             parallel=times["parallel"]))
    crossover = {}
    for name in names:
        rs = [r for r in rows if r["optimizer"] == name]
        cross = None
        for i, r in enumerate(rs):
            if all(x["parallel"] < x["serial"] for x in rs[i:]):
                cross = r["n"]
                break
        crossover[name] = cross
    return rows, crossover


def format_table(rows, columns, headers=None):
    headers = headers or columns
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _fmt(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3g}"
    return str(v)


def write_csv(rows, path):
    import csv

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------------------------------
# MLP training step

SEEDS_NETWORK = (784, 100, 100, 100, 100, 10)


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
    fwd = sum(2 * n * fi * fo for fi, fo in zip(sizes[:-1], sizes[1:]))
    dx = sum(2 * n * fi * fo for fi, fo in zip(sizes[1:-1], sizes[2:]))
    return 2 * fwd + dx  # forward, dW, dX


def bench_mlp(batch_sizes=(1, 32, 128, 512), sizes=SEEDS_NETWORK, dtype="float32", rounds=7,
              torch_peer=True, progress=True, seed=0):
    """Rows: batch, impl, seconds per train_step (SGD, lr 0.01), samples/s, GFLOP/s."""
    from tqdm.auto import tqdm

    from . import nn, optim

    torch = _torch() if torch_peer else None
    notes = [] if torch is not None else ["torch is not installed: no PyTorch rows"]
    rng = np.random.default_rng(seed)
    rows = []
    for n in tqdm(batch_sizes, desc="bench mlp", disable=not progress):
        X = rng.random((n, sizes[0]), dtype=np.dtype(dtype).type)
        y = rng.integers(0, sizes[-1], n)
        model = nn.MLP(sizes, dtype=dtype, seed=0)
        opt = optim.SGD(model.params, lr=0.01)
        fns = {"fastopt train_step": lambda: model.train_step(X, y, opt),
               "numpy GEMMs only": _numpy_gemms(sizes, n, np.dtype(dtype), rng)}
        if torch is not None:
            torch.set_num_threads(2)
            fns["torch (Sequential + SGD)"] = _torch_mlp_step(torch, sizes, X, y, "cpu")
        times = _interleaved_mlp(fns, rounds)
        base = times["fastopt train_step"]
        flops = step_flops(sizes, n)
        for impl, sec in times.items():
            rows.append(dict(batch=n, impl=impl, seconds=sec, samples_per_s=n / sec,
                             gflops=flops / sec / 1e9, ratio=sec / base))
    return rows, notes


def _torch_mlp_step(torch, sizes, X, y, device):
    """One PyTorch training step of the same MLP (Sequential of Linear/ReLU, cross-entropy,
    SGD lr 0.01) on X, y moved to ``device`` once; returns the loss as a float (waits)."""
    layers = []
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(fi, fo))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    if X.dtype == np.float64:
        net = net.double()
    net = net.to(device)
    topt = torch.optim.SGD(net.parameters(), lr=0.01)
    lossf = torch.nn.CrossEntropyLoss()
    tX, ty = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)

    def torch_step():
        topt.zero_grad()
        loss = lossf(net(tX), ty)
        loss.backward()
        topt.step()
        return loss.item()

    return torch_step


def _interleaved_mlp(fns, rounds, target_seconds=0.05, settle=0.3):
    """Interleaved like ``interleaved``, with a pause before each block: after a block the
    previous library's worker threads (torch's OpenMP, OpenBLAS) keep spinning for a while
    and would steal the cores from whichever implementation runs next."""
    for fn in fns.values():
        fn()
    reps = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        reps[k] = max(1, min(2000, int(target_seconds / max(time.perf_counter() - t0, 1e-6))))
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            time.sleep(settle)
            samples[k].append(_time_block(fn, reps[k]))
    return {k: statistics.median(v) for k, v in samples.items()}


# ---------------------------------------------------------------------------------------
# cold start: a new process, empty vs warm Numba cache

_COLD_CHILD = """
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
print(t1 - t0, t3 - t2)
"""


def bench_coldstart(sizes=SEEDS_NETWORK, batch=128, optimizer="Adam", warm_runs=3,
                    cache_dir=None):
    """Rows: cache ("empty"/"warm"), import seconds, first train_step seconds, total.

    Each row is a new Python process. The empty-cache run compiles every kernel the step
    needs (the cold compile time); the warm runs load them from the cache it left."""
    import subprocess
    import sys
    import tempfile

    code = _COLD_CHILD.format(batch=batch, n_in=sizes[0], n_out=sizes[-1],
                              sizes=tuple(sizes), optimizer=optimizer)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir or tmp)
        for k in range(1 + warm_runs):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            total = time.perf_counter() - t0
            imp, step = float(out[0]), float(out[1])
            rows.append(dict(cache="empty" if k == 0 else "warm", import_s=imp,
                             first_step_s=step, process_s=total))
    return rows


# ---------------------------------------------------------------------------------------
# GPU


def _gpu_time(fn, sync, rounds, target_seconds=0.02):
    """Median seconds per call of fn on the GPU: blocks of calls between two waits."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    reps = max(1, min(1000, int(target_seconds / max(time.perf_counter() - t0, 1e-6))))
    samples = []
    for _ in range(rounds):
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples)


def require_gpu():
    """ValueError unless a real CUDA GPU can run kernels here."""
    from .kernels import cuda as gpu

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise ValueError("bench gpu times a real GPU, but Numba's CUDA simulator is on: "
                         "unset NUMBA_ENABLE_CUDASIM")
    try:
        gpu.require()
    except gpu.CudaUnavailableError as exc:
        raise ValueError(f"bench gpu needs a CUDA GPU: {exc}") from None


def bench_gpu(sizes=(10**6, 10**7, 10**8), batch_sizes=(128, 1024), rounds=7,
              torch_peers=True, progress=True, seed=0):
    """Rows for a CUDA GPU (not the simulator): (1) the Adam float32 step at each N, its
    effective GB/s (28 bytes per parameter), the same-run device-to-device copy's GB/s and
    the ratio of the two, and torch.optim.Adam(fused=True) on CUDA; (2) the seeds' MLP
    train_step (loss read back every step) next to the same network in PyTorch on CUDA.
    Returns (rows, notes)."""
    from tqdm.auto import tqdm

    from . import nn, optim

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
    sync = cuda.synchronize
    tsync = torch.cuda.synchronize if torch is not None else sync
    for n in tqdm(sizes, desc="bench gpu adam", disable=not progress, unit="N"):
        p = cuda.to_device(rng.standard_normal(n, dtype=np.float32))
        g = cuda.to_device((rng.standard_normal(n, dtype=np.float32) * 1e-3))
        opt = optim.Adam(p, lr=1e-3)
        t_fast = _gpu_time(lambda: opt.step(g), sync, rounds)
        dst = cuda.device_array_like(p)
        t_copy = _gpu_time(lambda: dst.copy_to_device(p), sync, rounds)
        copy_gbps = 8 * n / t_copy / 1e9
        fast_gbps = 28 * n / t_fast / 1e9
        rows.append(dict(kind="adam", size=n, impl="fastopt", us=t_fast * 1e6,
                         gbps=fast_gbps, of_copy=fast_gbps / copy_gbps, speedup=1.0))
        rows.append(dict(kind="adam", size=n, impl="d2d copy", us=t_copy * 1e6,
                         gbps=copy_gbps, of_copy=1.0, speedup=math.nan))
        if torch is not None:
            for label, kw in (("torch fused", dict(fused=True)),
                              ("torch foreach", dict(foreach=True))):
                tp = torch.nn.Parameter(torch.from_numpy(p.copy_to_host()).cuda())
                tp.grad = torch.from_numpy(g.copy_to_host()).cuda()
                topt = torch.optim.Adam([tp], lr=1e-3, **kw)
                t = _gpu_time(topt.step, tsync, rounds)
                gb = 28 * n / t / 1e9
                rows.append(dict(kind="adam", size=n, impl=label, us=t * 1e6, gbps=gb,
                                 of_copy=gb / copy_gbps, speedup=t / t_fast))
                del tp, topt
        del p, g, dst, opt
    for b in tqdm(batch_sizes, desc="bench gpu mlp", disable=not progress, unit="batch"):
        X = rng.random((b, SEEDS_NETWORK[0]), dtype=np.float32)
        y = rng.integers(0, SEEDS_NETWORK[-1], b)
        model = nn.MLP(SEEDS_NETWORK, seed=seed, target="cuda")
        opt = optim.SGD(model.params, lr=0.01)
        dX, dy = cuda.to_device(X), cuda.to_device(y)
        t_fast = _gpu_time(lambda: float(model.train_step(dX, dy, opt)), sync, rounds)
        rows.append(dict(kind="mlp", size=b, impl="fastopt", us=t_fast * 1e6,
                         samples_per_s=b / t_fast, speedup=1.0))
        if torch is not None:
            t = _gpu_time(_torch_mlp_step(torch, SEEDS_NETWORK, X, y, "cuda"), tsync, rounds)
            rows.append(dict(kind="mlp", size=b, impl="torch", us=t * 1e6,
                             samples_per_s=b / t, speedup=t / t_fast))
    keys = ("kind", "size", "impl", "us", "gbps", "of_copy", "samples_per_s", "speedup")
    return [{k: r.get(k, math.nan) for k in keys} for r in rows], notes
