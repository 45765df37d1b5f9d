"""Instructions per step, counted by valgrind's callgrind: a measure the load cannot move.

Why: on a shared machine a step's seconds move with what else runs (an Adam step at N=1e6
took 12-16 ms on a busy machine, 1.2 ms on a quiet one), so timings alone cannot see a
regression there. The number of instructions a step executes does not depend on the load;
it moves when the code does (or the compiler, or a library's kernel choice). It says
nothing about memory bandwidth or threads: that is what the seconds are for, on a quiet
machine.

How (``measure``):

1. a child Python process builds every case and takes its first step natively: whatever
   is not in Numba's cache compiles now, outside valgrind;
2. the same child program runs under ``valgrind --tool=callgrind --instr-atstart=no``
   (uninstrumented, hence ~4x faster, through start-up and imports), loads the kernels
   from the cache, builds the cases again, then switches instrumentation on with a
   callgrind client request and, per case: K steps (warm-up: CPython's bytecode
   specialisation, first-call paths), zero the counters, K steps, dump, 2K steps, dump;
3. instructions per step = (count(2K) - count(K)) / K: whatever is the same in both parts
   (the client requests, the loop's entry) cancels.

The child's environment pins what would make counts depend on the machine's state or
settings: one BLAS and one Numba thread (``OPENBLAS_NUM_THREADS``, ``NUMBA_NUM_THREADS``),
fastopt's thread policy ``all``, a fixed hash seed, and Numba's code generation for a fixed
CPU (``NUMBA_CPU_NAME=haswell``: AVX2 + FMA, which valgrind runs; the host's own choice
under valgrind would differ from the native run's, so the cache would miss and compile
under valgrind), and OpenBLAS's Sandy Bridge kernels (``OPENBLAS_CORETYPE``: AVX without
FMA; valgrind emulates FMA instructions one call each, which made a train_step of the seeds'
network take 2.4 s instead of 0.02 s under valgrind). So the matrix products counted are
not the ones the host runs natively; they are the same on every x86-64 machine, like the
rest. Counts are comparable across commits on one machine and environment.

Update cases with ``backend="cython"`` count the same ``opt.step(g)`` on the Cython kernels
(``fastopt.kernels.cython``): the native warm-up builds the module into its cache (or loads
it), the callgrind child loads it. The child sets ``FASTOPT_CYTHON_MARCH=haswell`` beside
``NUMBA_CPU_NAME``: gcc's ``-march=native`` on an AVX-512 machine (a Zen 4 here) writes
instructions valgrind 3.19 stops on with SIGILL, so the counted module is a Haswell build
(a cache entry of its own: the flags are part of the key), not the one the host runs.

The client request is the x86-64 instruction sequence of valgrind.h's
``VALGRIND_DO_CLIENT_REQUEST`` placed in an executable page (ctypes); outside valgrind it
does nothing and returns the default. Linux x86-64 only; elsewhere ``why_unavailable``
says so and the asv tracks skip.

The asv suite (``benchmarks/bench_instructions.py``) and tests/test_instructions.py call
``measure``; nothing here imports numba at module level.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple

from . import definitions

#: the update benchmarks: every optimizer of the catalogue at N elements of this dtype
UPDATE_N = 100_000
UPDATE_DTYPE = "float32"
#: the MLP benchmarks: the seeds' network (definitions.NETWORK), one batch, these optimizers
TRAIN_BATCH = 128
TRAIN_OPTIMIZERS = ("sgd", "adam")
#: steps K of the differential count (K and 2K steps per case)
UPDATE_STEPS = 20
TRAIN_STEPS = 3

#: the child's environment (see the module docstring)
CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "NUMBA_NUM_THREADS": "1", "FASTOPT_THREADS": "all", "PYTHONHASHSEED": "0",
             "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
             "FASTOPT_CYTHON_MARCH": "haswell",
             "OPENBLAS_CORETYPE": "Sandybridge"}

_SEED = 20261123


class Case(NamedTuple):
    """One benchmark: ``kind`` "update" (``opt.step(g)`` on ``size`` elements of ``dtype``)
    or "train_step" (``model.train_step`` of the seeds' network on a batch of ``size``)."""

    kind: str
    optimizer: str  # a key of fastopt.optim.OPTIMIZERS
    size: int
    dtype: str = "float32"
    steps: int = 0  # K; 0: UPDATE_STEPS or TRAIN_STEPS
    backend: str = "numba"  # the optimizer's host kernels (update only): "numba" or "cython"


#: the host backends an update case can count (``fastopt.optim`` ``backend=``)
BACKENDS = ("numba", "cython")


def update_case(optimizer, n=UPDATE_N, dtype=UPDATE_DTYPE, steps=UPDATE_STEPS, backend="numba"):
    """``opt.step(g)`` of ``optimizer`` on ``n`` elements; ``backend="cython"``: the Cython
    kernels (``fastopt.kernels.cython``; the module must be buildable here, see
    ``why_cython_unavailable``: ``measure`` builds it, natively, before callgrind starts)."""
    return Case("update", optimizer, n, dtype, steps, backend)


def train_step_case(optimizer, batch=TRAIN_BATCH, steps=TRAIN_STEPS):
    return Case("train_step", optimizer, batch, "float32", steps)


def default_cases():
    """Every optimizer's update and the MLP train_step with SGD and Adam."""
    return ([update_case(name) for name in definitions.OPTIMIZERS]
            + [train_step_case(name) for name in TRAIN_OPTIMIZERS])


def why_unavailable():
    """None when ``measure`` can run here, else why not (and how to fix it)."""
    if not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")):
        return (f"instruction counts need Linux on x86-64 (this is {sys.platform} "
                f"{platform.machine()})")
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)"
    return None


def why_cython_unavailable():
    """None when the Cython update cases can be counted here (the backend's toolchain is
    installed), else why not; the check builds nothing."""
    from ..kernels import cython

    try:
        cython.check_toolchain()
    except cython.BackendUnavailable as exc:
        return str(exc)
    return None


def _check(cases, repeats):
    from .. import optim

    if not cases:
        raise ValueError("cases: give at least one Case (e.g. update_case('adam'))")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r}: give a positive integer")
    for case in cases:
        if not isinstance(case, Case):
            raise TypeError(f"cases: {case!r} is not a Case; build it with update_case() "
                            "or train_step_case()")
        if case.kind not in ("update", "train_step"):
            raise ValueError(f"{case}: kind must be 'update' or 'train_step'")
        if case.optimizer not in optim.OPTIMIZERS:
            raise ValueError(f"{case}: unknown optimizer {case.optimizer!r}; choose from "
                             f"{', '.join(optim.OPTIMIZERS)}")
        if not (isinstance(case.size, int) and case.size >= 1):
            raise ValueError(f"{case}: size must be a positive integer")
        if case.dtype not in ("float32", "float64"):
            raise ValueError(f"{case}: dtype must be 'float32' or 'float64'")
        if not (isinstance(case.steps, int) and case.steps >= 0):
            raise ValueError(f"{case}: steps must be a non-negative integer (0: default)")
        if case.backend not in BACKENDS:
            raise ValueError(f"{case}: backend must be one of {', '.join(BACKENDS)}")
        if case.backend != "numba" and case.kind != "update":
            raise ValueError(f"{case}: backend={case.backend!r} is for update cases only "
                             "(train_step runs Numba's fused kernels whatever the backend)")
    if len(set(cases)) != len(cases):
        raise ValueError("cases: each Case once (ask for repeats= to count one twice)")


def _steps(case):
    return case.steps or (UPDATE_STEPS if case.kind == "update" else TRAIN_STEPS)


def measure(cases, repeats=1, timeout=1800):
    """{case: [instructions per step, one per repeat]} for each ``Case``.

    Two child processes (native warm-up, then callgrind; see the module docstring).
    Raises ValueError for bad arguments, RuntimeError with valgrind's output when the
    child fails, and RuntimeError saying why when ``why_unavailable()`` is not None."""
    cases = list(cases)
    _check(cases, repeats)
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    spec = {"cases": [list(c._replace(steps=_steps(c))) for c in cases], "repeats": repeats}
    env = dict(os.environ, **CHILD_ENV)
    with tempfile.TemporaryDirectory(prefix="fastopt-callgrind-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        child = [sys.executable, "-c", f"from {__name__} import _child; _child({spec_path!r})"]
        _run(child + ["warm"], env, timeout, "the native warm-up")
        out = os.path.join(tmp, "callgrind.out")
        _run(["valgrind", "--tool=callgrind", "--instr-atstart=no",
              f"--callgrind-out-file={out}", *child, "measure"], env, timeout, "callgrind")
        parts = _parts(tmp, "callgrind.out.")
    expected = 2 * repeats * len(cases)
    if len(parts) != expected:
        raise RuntimeError(f"callgrind wrote {len(parts)} dumps, expected {expected} "
                           "(2 per case and repeat)")
    counts = {}
    it = iter(parts)
    for case in cases:
        k = _steps(case)
        counts[case] = []
        for _ in range(repeats):
            c1, c2 = next(it), next(it)  # K steps, then 2K steps
            counts[case].append((c2 - c1) / k)
    return counts


def _run(argv, env, timeout, what):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"instruction count: {what} failed (exit {proc.returncode}):\n"
                           f"{tail}")


def _parts(folder, prefix):
    """The instruction totals of callgrind's numbered dumps ``<prefix>1``, ``2``, ... in
    order (the final dump at exit, without a number, is not one of them)."""
    found = []
    for name in os.listdir(folder):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            found.append((int(name[len(prefix):]), os.path.join(folder, name)))
    totals = []
    for _, path in sorted(found):
        totals.append(_total(path))
    return totals


def _total(path):
    """The ``totals:`` (or ``summary:``) line of a callgrind dump: instructions (Ir)."""
    summary = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
            if line.startswith("summary:"):
                summary = int(line.split()[1])
    if summary is None:
        raise RuntimeError(f"{path}: no totals or summary line; not a callgrind dump?")
    return summary


# ---------------------------------------------------------------------------------------
# the child process


#: callgrind's client requests (callgrind.h: VG_USERREQ_TOOL_BASE('C', 'T') + n) and the
#: core's RUNNING_ON_VALGRIND (valgrind.h)
_DUMP_STATS, _ZERO_STATS, _START_INSTRUMENTATION = 0x43540000, 0x43540001, 0x43540004
_RUNNING_ON_VALGRIND = 0x1001

# x86-64: request(args, default) -> result, as valgrind.h's VALGRIND_DO_CLIENT_REQUEST:
# %rax = &args, %rdx = default, the four rotations of %rdi (by 128 bits in all: a no-op)
# that mark the request, then xchg %rbx,%rbx; valgrind leaves the result in %rdx
_REQUEST_CODE = bytes([
    0x48, 0x89, 0xF8,  # mov rax, rdi
    0x48, 0x89, 0xF2,  # mov rdx, rsi
    0x48, 0xC1, 0xC7, 0x03,  # rol rdi, 3
    0x48, 0xC1, 0xC7, 0x0D,  # rol rdi, 13
    0x48, 0xC1, 0xC7, 0x3D,  # rol rdi, 61
    0x48, 0xC1, 0xC7, 0x33,  # rol rdi, 51
    0x48, 0x87, 0xDB,  # xchg rbx, rbx
    0x48, 0x89, 0xD0,  # mov rax, rdx
    0xC3,  # ret
])


def _client_request():
    """``request(code) -> int``: a valgrind client request (0 outside valgrind)."""
    import ctypes
    import mmap

    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_REQUEST_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    fn = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)(address)
    args = (ctypes.c_size_t * 6)()

    def request(code):
        args[0] = code
        return fn(ctypes.addressof(args), 0)

    request.page = page  # keep the code alive as long as the function
    return request


def _stepper(kind, optimizer, size, dtype, backend="numba"):
    """A callable taking one step of the case (built and stepped once: compiled or loaded
    from Numba's cache; the Cython module built or loaded from its cache)."""
    import numpy as np

    rng = np.random.default_rng(_SEED)
    if kind == "update" and backend != "numba":
        from .. import optim

        p = rng.standard_normal(size).astype(dtype)
        g = (rng.standard_normal(size) * 1e-3).astype(dtype)
        opt = optim.OPTIMIZERS[optimizer](p, backend=backend,
                                          **definitions.bench_hyper(optimizer))

        def step():
            opt.step(g)
    elif kind == "update":
        p = rng.standard_normal(size).astype(dtype)
        g = (rng.standard_normal(size) * 1e-3).astype(dtype)
        step = definitions.fastopt_step(optimizer, p, g)[1]
    else:
        model, opt = definitions.fastopt_mlp(optimizer=optimizer)
        X = rng.random((size, definitions.NETWORK[0]), dtype=np.float32)
        y = rng.integers(0, definitions.NETWORK[-1], size)

        def step():
            model.train_step(X, y, opt)
    step()
    return step


def _loop(step, k):
    for _ in range(k):
        step()


def _child(spec_path):
    """The child program: ``warm`` builds and steps every case once; ``measure`` (under
    callgrind) then counts K and 2K steps of each, ``repeats`` times."""
    import gc

    with open(spec_path) as f:
        spec = json.load(f)
    mode = sys.argv[-1]
    cases = [(_stepper(kind, name, size, dtype, backend), k)
             for kind, name, size, dtype, k, backend in spec["cases"]]
    if mode == "warm":
        return
    request = _client_request()
    if request(_RUNNING_ON_VALGRIND) == 0:
        raise SystemExit("instructions._child measure: not running under valgrind")
    gc.collect()
    gc.disable()  # a collection in one part but not the other would not cancel
    request(_START_INSTRUMENTATION)
    for step, k in cases:
        for _ in range(spec["repeats"]):
            _loop(step, k)  # warm-up
            request(_ZERO_STATS)
            _loop(step, k)
            request(_DUMP_STATS)
            _loop(step, 2 * k)
            request(_DUMP_STATS)
