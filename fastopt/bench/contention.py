"""``fastopt bench contention``: how much slower training runs when the cores are shared.

Each row (a ``train_step`` of the seeds' network with SGD or Adam at one batch size, or an
Adam ``opt.step`` on N parameters) is timed quiet and then beside each load, which this
module starts itself as child processes and always stops afterwards (on errors and Ctrl-C
too: every load runs in its own process group, killed as a whole):

- ``busy``: as many busy-looping processes as the process has cores;
- ``blas``: one process running numpy matrix products in a loop on a multi-threaded BLAS
  (as many threads as cores): another numerical program, the case that hurts most.

What is timed is throughput: blocks of consecutive steps (``BLOCK_SECONDS`` each), and the
median block divided by its steps. A median of single calls hides the stalls that make a
loaded machine slow (a thread waiting for a descheduled partner stalls some calls for
milliseconds and leaves the others as fast as ever).
"""

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

from .. import runs, threads
from . import definitions

#: the loads, in the order they are measured
LOADS = ("busy", "blas")
#: the rows: (what, optimizer, batch size or N)
ROWS = (("train_step", "sgd", 32), ("train_step", "sgd", 128), ("train_step", "sgd", 512),
        ("train_step", "adam", 32), ("train_step", "adam", 128), ("train_step", "adam", 512),
        ("opt.step", "adam", 10**5), ("opt.step", "adam", 10**6))
#: the rows' names on the command line (--rows), in ROWS' order
ROW_NAMES = tuple(f"{opt}-{n}" if what == "train_step"
                  else f"{opt}-step-{n:.0e}".replace("+0", "") for what, opt, n in ROWS)
#: seconds of one timed block of steps, and the pause that lets a new load get going
BLOCK_SECONDS = 0.2
SETTLE_SECONDS = 0.5

# Each load program gets the parent's pid and ends by itself once its parent is gone (a
# parent killed with SIGKILL runs no cleanup): the busy loop looks every ~10 ms, the BLAS
# loop after each product.
_BUSY = ("import os, sys\n"
         "parent = int(sys.argv[1])\n"
         "print('ready', flush=True)\n"
         "while os.getppid() == parent:\n"
         "    for _ in range(100000):\n"
         "        pass\n")
# float64 products of 1000 x 1000: ~10 ms each on two cores, enough to keep every BLAS
# thread of the child working
_BLAS = ("import os, sys\n"
         "import numpy as np\n"
         "parent = int(sys.argv[1])\n"
         "a = np.random.default_rng(0).random((1000, 1000))\n"
         "b = a @ a\n"
         "print('ready', flush=True)\n"
         "while os.getppid() == parent:\n"
         "    np.matmul(a, a, out=b)\n")


def cores():
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    return threads.available_cores()


def _start(program):
    # a new session: the child leads its own process group, so stopping it stops anything
    # it started, and a Ctrl-C at the terminal reaches the parent only (which stops it)
    return subprocess.Popen([sys.executable, "-c", program, str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_ready(proc):
    if not proc.stdout.readline().startswith(b"ready"):
        raise RuntimeError(f"a load process did not start ({sys.executable} -c ...: is "
                           "numpy installed there?)")


def stop(procs):
    """Kill each child's process group and reap it (children already gone are fine)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait()
        proc.stdout.close()


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM raises SystemExit while the block runs (so ``finally`` stops the loads);
    only the main thread can set a handler, elsewhere nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def load(kind, n_cores=None):
    """Run load ``kind`` ("busy" or "blas") in child processes for the ``with`` block;
    yields the list of ``subprocess.Popen`` objects. The children are killed on leaving the
    block, whatever ends it (an error, Ctrl-C, SIGTERM)."""
    if kind not in LOADS:
        raise ValueError(f"load must be one of {', '.join(LOADS)}, got {kind!r}")
    n_cores = n_cores or cores()
    procs = []
    with _sigterm_exits():
        try:
            for _ in range(n_cores if kind == "busy" else 1):
                procs.append(_start(_BUSY if kind == "busy" else _BLAS))
            for proc in procs:
                _wait_ready(proc)
            yield procs
        finally:
            stop(procs)


# ---------------------------------------------------------------------------------------
# timing


def block_throughput(step, seconds, block_seconds=BLOCK_SECONDS, clock=time.perf_counter):
    """(median seconds per step over blocks, blocks): ``step`` called in blocks, each as
    many calls as fit in ``block_seconds`` (at least one), until ``seconds`` have passed
    (at least three blocks). The clock is read after every call, so a block never runs
    far past its time however slow the steps become."""
    step()  # compile, allocate, fault pages in
    blocks = []
    start = clock()
    while len(blocks) < 3 or clock() - start < seconds:
        t0 = now = clock()
        calls = 0
        while now - t0 < block_seconds:
            step()
            calls += 1
            now = clock()
        blocks.append((now - t0) / calls)
    return statistics.median(blocks), len(blocks)


def make_step(what, optimizer, n, seed=0):
    """A callable doing one step of row (what, optimizer, n), its kernels compiled."""
    rng = np.random.default_rng(seed)
    if what == "train_step":
        from fastopt import optim

        sizes = definitions.NETWORK
        model, opt = definitions.fastopt_mlp(sizes, seed=seed)
        if optimizer != "sgd":
            opt = optim.OPTIMIZERS[optimizer](model.params, **definitions.bench_hyper(optimizer))
        X = rng.random((n, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], n)
        return lambda: model.train_step(X, y, opt)
    if what == "opt.step":
        p = rng.standard_normal(n).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32) * np.float32(1e-3)
        return definitions.fastopt_step(optimizer, p, g)[1]
    raise ValueError(f"row kind must be 'train_step' or 'opt.step', got {what!r}")


def select_rows(text):
    """The ROWS named in the comma-separated ``text`` (names from ROW_NAMES)."""
    names = runs.split_list("--rows", text, choices=ROW_NAMES)
    return [ROWS[ROW_NAMES.index(name)] for name in names]


def _loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:  # not on this platform
        return float("nan")


def measure_row(row, loads, seconds, seed=0, n_cores=None):
    """One result dict per load: quiet and loaded seconds per step and their ratio, with
    the 1-minute load average before each measurement."""
    what, optimizer, n = row
    step = make_step(what, optimizer, n, seed=seed)
    results = []
    for kind in loads:
        before = _loadavg()
        threads.reset()  # the quiet time starts on the threads, not on a previous decision
        quiet, _ = block_throughput(step, seconds)
        with load(kind, n_cores):
            time.sleep(SETTLE_SECONDS)
            during = _loadavg()
            loaded, _ = block_throughput(step, seconds)
        results.append(dict(what=what, optimizer=optimizer, n=n, load=kind, quiet=quiet,
                            loaded=loaded, ratio=loaded / quiet, loadavg_quiet=before,
                            loadavg_loaded=during, policy=threads.describe()))
    return results


def bench_contention(rows=ROWS, loads=LOADS, seconds=2.0, progress=True, seed=0):
    """(rows, notes): every row quiet and beside every load (``measure_row``)."""
    out = []
    for row in runs.Progress(rows, desc="bench contention", unit="rows", mode=progress):
        out.extend(measure_row(row, loads, seconds, seed=seed))
    notes = [f"{cores()} cores available to this process; thread policy "
             f"{threads.describe()}; 'quiet' means no load of this command's own (the "
             "load average column says what else ran)"]
    return out, notes
