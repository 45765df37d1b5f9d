"""``fastopt bench update`` and ``bench crossover``: the optimizer step, timed in one process.

update: every optimizer x N, fastopt next to the peers of ``fastopt.bench.definitions``
(NumPy reference, torch.optim for-loop, foreach and fused) and an axpy as the memory
ceiling. Effective bandwidth counts the bytes an ideal fused update moves: the parameter
(read and write), the gradient (read) and each state array (read and write).

update also sweeps N (1e3..1e7) for the serial/parallel crossover of the Numba and the
Cython kernels (``fastopt.bench.backends.crossover_sweep``).

crossover: the serial and the prange kernel of one rule per N, to place
``FASTOPT_PARALLEL_MIN_SIZE``.
"""

import math

import numpy as np

from .. import runs
from . import definitions
from .timing import interleaved


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _axpy_kernel():
    from numba import njit, prange

    from .. import config

    @njit(parallel=True, **config.CPU_JIT)
    def axpy(y, x, a):
        for i in prange(y.size):
            y[i] = y[i] + a * x[i]

    return axpy


def optimizer_names(optimizers, option="optimizers"):
    """The optimizers to measure (default all), each a name of ``optim.OPTIMIZERS``;
    ValueError naming ``option`` and the valid names otherwise (before any output)."""
    from .. import optim

    names = list(optimizers or optim.OPTIMIZERS)
    unknown = [n for n in names if n not in optim.OPTIMIZERS]
    if unknown:
        raise ValueError(f"{option}: unknown optimizer(s) {unknown}; choose from "
                         f"{', '.join(sorted(optim.OPTIMIZERS))}")
    return names


def check_sizes(sizes, option="sizes"):
    """Element counts: whole numbers >= 1 (1e3 counts, 1.5 or -5 does not); a list of ints."""
    from .. import _checks

    result = []
    for n in sizes:
        value = _checks.as_int(n)
        if value is None or value < 1:
            raise ValueError(f"{option} must be positive whole numbers such as 1e3,1e5, got "
                             f"{n!r}")
        result.append(value)
    if not result:
        raise ValueError(f"{option} needs at least one size, such as 1e3,1e5")
    return result


def _cython():
    """(usable, note): the Cython backend, built on first use (fastopt.kernels.cython)."""
    from ..kernels import cython

    ok, why = cython.available()
    return ok, [] if ok else [f"no cython rows: {why}"]


def _update_notes(torch_peers, torch):
    if torch_peers and torch is None:
        return ["torch is not installed: torch.optim rows skipped (pip install torch==2.13.0)"]
    missing = [name for name in definitions.OPTIMIZERS if name not in definitions.TORCH_NAMES]
    if torch is not None and missing:
        return [f"{', '.join(missing)}: no torch.optim implementation, no torch rows"]
    return []


def _update_peers(name, p, g, torch, numpy_peer, cython_peer=False):
    """(fastopt's optimizer, {label: step}): fastopt on ``p`` and each peer on a copy."""
    opt, step = definitions.fastopt_step(name, p, g)
    fns = {"fastopt": step}
    if cython_peer:  # the same optimizer on the Cython kernels (backend="cython")
        from .. import optim

        cy_opt = optim.OPTIMIZERS[name](p.copy(), backend="cython",
                                        **definitions.bench_hyper(name))
        fns["cython"] = lambda: cy_opt.step(g)
    if numpy_peer:
        fns["numpy"] = definitions.numpy_step(name, p.copy(), g)
    if torch is not None and name in definitions.TORCH_NAMES:
        variants = ["torch", "torch-foreach"]
        if name in definitions.TORCH_FUSED:
            variants.append("torch-fused")
        for variant in variants:
            fns[variant.replace("-", " ")] = definitions.torch_step(
                torch, name, p.copy(), g.copy(), variant)
    return opt, fns


def _update_rows(name, n, dtype, opt, times):
    n_state = sum(s.size for s in opt.state[0].values()) // max(n, 1)
    nbytes = n * dtype.itemsize * (3 + 2 * n_state)
    base = times["fastopt"]
    rows = []
    for impl, sec in times.items():
        axpy = impl.startswith("axpy")
        moved = n * dtype.itemsize * 3 if axpy else nbytes
        rows.append(dict(optimizer="-" if axpy else name, n=n, impl=impl, seconds=sec,
                         gbps=moved / sec / 1e9, ratio=math.nan if axpy else sec / base))
    return rows


#: the optimizers whose serial/parallel crossover ``bench update`` measures (those of them
#: that are measured; else the first measured one)
CROSSOVER_OPTIMIZERS = ("sgd", "adam")


def bench_update(optimizers=None, sizes=definitions.UPDATE_SIZES, dtype="float32", rounds=7,
                 torch_peers=True, numpy_peer=True, progress=True, seed=0, cython_peer=True,
                 crossover_sizes=None):
    """(rows, notes): one row per optimizer, N and implementation: seconds per step,
    GB/s, ratio (peer time / fastopt time). ``cython_peer``: a "cython" row (the same
    optimizer with backend="cython") where that backend can be built, else a note.

    Then the serial/parallel crossover of each backend (Numba, and Cython where it can be
    built), ``fastopt.bench.backends.crossover_sweep`` over ``crossover_sizes`` (default
    ``backends.CROSSOVER_SIZES``, 1e3..1e7; an empty list: not measured) for sgd and adam:
    notes giving the N from which the prange loop is faster, or "never on this machine",
    with the speedups measured."""
    from . import backends

    names = optimizer_names(optimizers)
    sizes = check_sizes(sizes)
    crossover_sizes = (list(backends.CROSSOVER_SIZES) if crossover_sizes is None
                       else list(crossover_sizes))
    if crossover_sizes:
        crossover_sizes = check_sizes(crossover_sizes, "crossover_sizes")
    dtype = np.dtype(dtype)
    torch = _torch() if torch_peers else None
    cython_peer, cython_notes = _cython() if cython_peer else (False, [])
    axpy = _axpy_kernel()
    rng = np.random.default_rng(seed)
    rows = []
    jobs = [(n, name) for n in sizes for name in names]
    for n, name in runs.Progress(jobs, desc="bench update", unit="cases", mode=progress):
        p = rng.standard_normal(n).astype(dtype)
        g = (rng.standard_normal(n) * 1e-3).astype(dtype)
        opt, fns = _update_peers(name, p, g, torch, numpy_peer, cython_peer)
        if name == names[0]:
            y = p.copy()
            a = dtype.type(1e-3)
            fns["axpy (reference)"] = lambda y=y, g=g, a=a: axpy(y, g, a)
        rows += _update_rows(name, n, dtype, opt, interleaved(fns, n, rounds))
    notes = _update_notes(torch_peers, torch) + cython_notes
    if crossover_sizes:
        chosen = [n for n in names if n in CROSSOVER_OPTIMIZERS] or names[:1]
        which = ["numba"] + (["cython"] if cython_peer else [])
        cross, found = backends.crossover_sweep(chosen, crossover_sizes, which, dtype,
                                                max(3, rounds), seed, progress)
        notes += backends.crossover_notes(cross, found) + _speedup_notes(cross)
    return rows, notes


def _speedup_notes(cross):
    """The sweep behind the crossover: prange speedup (serial time / prange time) per N."""
    notes = []
    for key in dict.fromkeys((r["backend"], r["optimizer"]) for r in cross):
        rs = [r for r in cross if (r["backend"], r["optimizer"]) == key]
        notes.append(f"{key[0]} {key[1]} prange speedup by N: "
                     + ", ".join(f"{r['n']:.2g} {r['serial'] / r['parallel']:.2f}" for r in rs))
    return notes


def bench_crossover(names=("sgd", "adam"), sizes=None, dtype="float32", rounds=9, seed=0,
                    progress=True):
    """(rows, crossover): serial vs prange kernel times per N; the crossover is the first N
    where prange wins and keeps winning at every larger N (None if it never does)."""
    from .. import optim
    from ..kernels import cpu

    names = optimizer_names(names)
    sizes = check_sizes(sizes or [int(round(10 ** e)) for e in np.arange(3, 6.51, 0.25)])
    dtype = np.dtype(dtype)
    rows = []
    for name in runs.Progress(names, desc="bench crossover", unit="optimizers",
                             mode=progress):
        for n in sizes:
            p = np.random.default_rng(seed).standard_normal(n).astype(dtype)
            g = np.full(n, 1e-3, dtype=dtype)
            opt = optim.OPTIMIZERS[name](p, **definitions.bench_hyper(name))
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
    return rows, _crossover(rows, names)


def _crossover(rows, names):
    crossover = {}
    for name in names:
        rs = [r for r in rows if r["optimizer"] == name]
        crossover[name] = next((r["n"] for i, r in enumerate(rs)
                                if all(x["parallel"] < x["serial"] for x in rs[i:])), None)
    return crossover
