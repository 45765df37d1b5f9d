"""``fastopt bench backends``: Numba against Cython on the same rules, in one run.

The README's "Numba or Cython?" table comes from one call of ``bench_backends``:

- kernel time per call of the serial and of the prange (OpenMP) loop of each rule, Numba's
  (``fastopt.kernels.cpu.update_kernels``) and Cython's (``fastopt.kernels.cython``) called
  directly on the same arrays, interleaved (``timing.interleaved``: medians of blocks of
  calls): the per-call overhead at N = 1e3, the throughput (GB/s: parameter, gradient and
  each state array read and written, as ``bench update`` counts it) at 1e5 and 1e7;
- the serial/parallel crossover of each backend (``crossover_sweep``): the first N of a
  log-spaced sweep from which the prange loop is faster at that N and every larger one;
- first use (``first_use``): Numba compiling the serial and prange update kernels of the
  measured rules in a new process with an empty ``NUMBA_CACHE_DIR``, then a second new
  process loading them from that cache; Cython building its whole module (every rule, both
  dtypes, both loops) into an empty cache folder, then a new process loading it.

The kernels get the hyperparameters and flags an optimizer with its benchmark settings
(``definitions.bench_hyper``) passes at its first step, and its state arrays.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

from .. import runs
from . import definitions
from .timing import interleaved

BACKENDS = ("numba", "cython")
#: the sweep of the crossover: 1e3 ... 1e7, four points a decade
CROSSOVER_SIZES = tuple(int(round(10 ** (3 + k / 4))) for k in range(17))
#: the README table's rules and sizes
TABLE_OPTIMIZERS = ("sgd", "adam")
TABLE_SIZES = (10**3, 10**5, 10**7)


def kernel_case(name, n, dtype="float32", seed=0):
    """(args, bytes moved per call): the arguments ``(p, g, s0, s1, s2, hyper, flags)`` of
    rule ``name``'s update kernels for optimizer ``name`` on ``n`` elements with its
    benchmark hyperparameters (the hyper and flags of its first step), and the bytes an
    ideal fused pass moves."""
    from .. import optim

    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-3).astype(dtype)
    opt = optim.OPTIMIZERS[name](p, **definitions.bench_hyper(name))
    opt.step(g)  # allocates the state arrays
    rule = opt.rule
    state = [opt.state[0][k].reshape(-1) if k in opt.state[0] else None for k in rule.state]
    state += [None] * (3 - len(state))
    rows, _, error = opt._host_steps(1, 1.0)
    if error is not None:
        raise error
    hvals, fvals = rows[0][0]
    hyper = np.array(hvals, dtype=dtype)
    flags = np.array(fvals, dtype=np.int64)
    n_state = sum(s is not None for s in state)
    return (p, g, *state, hyper, flags), n * dtype.itemsize * (3 + 2 * n_state), rule.name


def kernel_pair(backend, rule, dtype):
    """(serial, parallel) update loops of ``rule`` for ``dtype`` in ``backend``, both taking
    ``(p, g, s0, s1, s2, hyper, flags)`` (Cython's prange loop with the Numba thread
    count, as ``fastopt.kernels.cython.update`` calls it)."""
    if backend == "numba":
        from ..kernels import cpu

        return cpu.update_kernels(rule)
    if backend == "cython":
        from ..kernels import cython

        serial, parallel = cython.update_kernels(rule, dtype)
        return serial, cython._Parallel(parallel)
    raise ValueError(f"backend={backend!r}: choose from {', '.join(BACKENDS)}")


def cython_status():
    """(usable, why not): the Cython backend, built now into its cache if it is not there
    (1-2 minutes on 2 cores, once per machine and generated source)."""
    from ..kernels import cython

    return cython.available()


def _check_backends(backends):
    backends = list(backends)
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise ValueError(f"backends: {bad or 'none'}; choose from {', '.join(BACKENDS)}")
    return backends


def crossover_sweep(names=("sgd", "adam"), sizes=CROSSOVER_SIZES, backends=BACKENDS,
                    dtype="float32", rounds=9, seed=0, progress=True):
    """(rows, crossover): per optimizer and N, the median seconds per call of each backend's
    serial and prange loop, timed interleaved (all four on the same arrays, in turn, so
    that the machine's load hits them alike); crossover[(backend, name)] is the first N
    from which prange is faster at every larger N of the sweep, or None (never here)."""
    from .update import check_sizes, optimizer_names

    names = optimizer_names(names)
    sizes = check_sizes(sizes)
    backends = _check_backends(backends)
    dtype = np.dtype(dtype)
    rows = []
    jobs = [(name, n) for name in names for n in sizes]
    for name, n in runs.Progress(jobs, desc="crossover", unit="cases", mode=progress):
        args, _, rule = kernel_case(name, n, dtype, seed)
        fns = {}
        for b in backends:
            serial, parallel = kernel_pair(b, rule, dtype)
            fns[b, "serial"] = lambda f=serial: f(*args)
            fns[b, "parallel"] = lambda f=parallel: f(*args)
        times = interleaved(fns, n, rounds)
        for b in backends:
            rows.append(dict(backend=b, optimizer=name, n=n, serial=times[b, "serial"],
                             parallel=times[b, "parallel"]))
    return rows, crossover_points(rows)


def crossover_points(rows):
    """{(backend, optimizer): first N from which prange wins at every larger N, or None}."""
    found = {}
    for key in dict.fromkeys((r["backend"], r["optimizer"]) for r in rows):
        rs = sorted((r for r in rows if (r["backend"], r["optimizer"]) == key),
                    key=lambda r: r["n"])
        found[key] = next((r["n"] for i, r in enumerate(rs)
                           if all(x["parallel"] < x["serial"] for x in rs[i:])), None)
    return found


def crossover_notes(rows, found):
    """One line per backend and optimizer: the crossover N, or "never on this machine" with
    the speedup at the largest N."""
    notes = []
    for (backend, name), n in found.items():
        rs = sorted((r for r in rows if (r["backend"], r["optimizer"]) == (backend, name)),
                    key=lambda r: r["n"])
        last = rs[-1]
        tail = (f"at N = {last['n']:.0e}: serial {last['serial'] * 1e6:.1f} us, prange "
                f"{last['parallel'] * 1e6:.1f} us")
        if n is None:
            notes.append(f"crossover {backend} {name}: prange never faster on this machine "
                         f"(sweep {rs[0]['n']:.0e}..{last['n']:.0e}; {tail})")
        else:
            notes.append(f"crossover {backend} {name}: prange faster from N = {n} ({tail})")
    return notes


# ---------------------------------------------------------------------------------------
# first use: compile / build, then load from the cache, each in a new process

_NUMBA_CHILD = """
import json, time
from fastopt.bench import backends
from fastopt.kernels import cpu
total = 0.0
for name in {names!r}:
    t = time.perf_counter()
    args, _, rule = backends.kernel_case(name, 1000)  # its first opt.step: the serial loop
    for f in cpu.update_kernels(rule):
        f(*args)  # the prange loop too (compiled, or loaded from the cache)
    total += time.perf_counter() - t
print(json.dumps(dict(seconds=total)))
"""

_CYTHON_CHILD = """
import json, time
from fastopt.kernels import cython
t0 = time.perf_counter()
cython.module()  # builds into the (empty) cache, or loads it
t1 = time.perf_counter()
print(json.dumps(dict(seconds=t1 - t0, build=cython.BUILD_SECONDS, load=cython.LOAD_SECONDS)))
"""


def _child(code, cache_dir, timeout):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"first-use child failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_use(backend, names=TABLE_OPTIMIZERS, timeout=1800):
    """{"first_s": ..., "cached_s": ..., "what": ...}: seconds to have the kernels ready in a
    new process with an empty cache folder, and in a second new process with the cache the
    first one left (the process's start and imports not counted).

    Numba: the serial and prange update kernels of the rules of optimizers ``names``
    (float32, the state configuration of their benchmark settings: what their first step
    compiles). Cython: the whole module (every rule, float32 and float64, serial and
    prange, every state combination, the gradient loops), built once for all."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose from {', '.join(BACKENDS)}")
    with tempfile.TemporaryDirectory(prefix=f"fastopt-firstuse-{backend}-") as tmp:
        if backend == "numba":
            code = _NUMBA_CHILD.format(names=tuple(names))
            what = f"compile {'+'.join(names)} serial+prange, float32"
        else:
            code = _CYTHON_CHILD
            what = "build the module: every rule x dtype x loop"
        first = _child(code, tmp, timeout)
        cached = _child(code, tmp, timeout)
    if backend == "cython" and first["build"] is None:
        raise RuntimeError("the Cython child did not build into the empty cache folder")
    if backend == "cython":  # module(): the cache key (generating the source) + loading
        what += (f"; cached: {cached['load'] * 1e3:.1f} ms of it loading the .so, the rest "
                 "generating the source for the cache key")
    return dict(backend=backend, what=what, first_s=first["seconds"],
                cached_s=cached["seconds"])


# ---------------------------------------------------------------------------------------
# the table


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def bench_backends(names=TABLE_OPTIMIZERS, sizes=TABLE_SIZES, crossover_sizes=CROSSOVER_SIZES,
                   dtype="float32", rounds=9, seed=0, first_use_runs=True, progress=True):
    """(rows, notes): Numba and Cython in one run (module docstring).

    Rows: ``measure`` "kernel" (optimizer, n, path serial/prange: us per call and GB/s of
    each backend, ratio cython/numba), "sweep" (the crossover sweep: us per call of each
    path), "crossover" (optimizer: the crossover N of each backend, "never") and "first use,
    empty cache" / "cached load" (seconds per backend). Notes: the load average (1 minute)
    before and after each part, the crossover lines, what first use covered. RuntimeError
    naming what is missing where the Cython backend cannot be built (nothing measured)."""
    from .update import check_sizes, optimizer_names

    names = optimizer_names(names)
    sizes = check_sizes(sizes)
    crossover_sizes = check_sizes(crossover_sizes, "crossover_sizes")
    dtype = np.dtype(dtype)
    ok, why = cython_status()  # builds the module before anything is timed
    if not ok:
        raise RuntimeError(f"bench backends compares Numba with Cython, and the Cython "
                           f"backend is unavailable: {why}")
    rows, notes = [], []
    load = [_load()]
    jobs = [(name, n) for name in names for n in sizes]
    for name, n in runs.Progress(jobs, desc="kernels", unit="cases", mode=progress):
        args, nbytes, rule = kernel_case(name, n, dtype, seed)
        fns = {}
        for b in BACKENDS:
            serial, parallel = kernel_pair(b, rule, dtype)
            fns[b, "serial"] = lambda f=serial: f(*args)
            fns[b, "prange"] = lambda f=parallel: f(*args)
        times = interleaved(fns, n, rounds)
        for path in ("serial", "prange"):
            nb, cy = times["numba", path], times["cython", path]
            rows.append(dict(measure="kernel", optimizer=name, n=n, path=path,
                             numba=nb * 1e6, cython=cy * 1e6, numba_gbps=nbytes / nb / 1e9,
                             cython_gbps=nbytes / cy / 1e9, ratio=cy / nb))
    load.append(_load())
    cross_rows, found = crossover_sweep(names, crossover_sizes, BACKENDS, dtype, rounds, seed,
                                        progress)
    load.append(_load())
    for r, c in zip(cross_rows[::2], cross_rows[1::2]):  # numba's row, then cython's
        for path, key in (("serial", "serial"), ("prange", "parallel")):
            rows.append(dict(measure="sweep", optimizer=r["optimizer"], n=r["n"], path=path,
                             numba=r[key] * 1e6, cython=c[key] * 1e6, ratio=c[key] / r[key]))
    for name in names:
        nb, cy = found["numba", name], found["cython", name]
        rows.append(dict(measure="crossover", optimizer=name, path="prange wins from N",
                         numba=nb if nb is not None else "never",
                         cython=cy if cy is not None else "never",
                         ratio=cy / nb if nb and cy else math.nan))
    notes += crossover_notes(cross_rows, found)
    if first_use_runs:
        uses = {b: first_use(b, names) for b in BACKENDS}
        load.append(_load())
        for key, label in (("first_s", "first use, empty cache"), ("cached_s", "cached load")):
            nb, cy = uses["numba"][key], uses["cython"][key]
            rows.append(dict(measure=label, optimizer="-", path="s", numba=nb, cython=cy,
                             ratio=cy / nb))
        notes += [f"first use {b}: {u['what']}" for b, u in uses.items()]
    notes.append("load average (1 min) before / after kernels / after crossover"
                 + (" / after first use" if first_use_runs else "") + ": "
                 + " / ".join(f"{x:.2f}" for x in load))
    return rows, notes
