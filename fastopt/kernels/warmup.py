"""Compiling the kernels of a first call on several cores at once.

Numba compiles under one lock per process, so with an empty cache the first
``MLP.train_step`` or ``fit`` of a network compiled its forward pass, loss, backward pass and
update one after the other on one core (issue 17: 5-7 s in a new process). ``once(key,
jobs)`` starts helper processes (``python -m fastopt.kernels.warmup``) that compile some of
those kernels into Numba's on-disk cache while this process compiles the others; this
process then waits for them, and its own first call loads their kernels from the cache
(milliseconds) instead of compiling them. The kernels and their bits are the same either way:
a helper compiles the same dispatcher for the same argument types, and anything a helper did
not finish (it failed, was too slow, or there is no cache) is compiled here on demand as
before.

Helpers are used only where they can help: a cache that can be written, at least two cores
this process may run on, and a kernel of the helpers' share missing from the cache (a warm
cache starts none). ``FASTOPT_COMPILE_PROCESSES`` caps the processes compiling at once,
this one included (default: the cores this process may use, at most 1 + the helpers' jobs);
``1`` turns helpers off (tests pin it, the helpers and compare's worker processes set it).
"""

import importlib
import logging
import os
import pickle
import subprocess
import sys
import time

ENV = "FASTOPT_COMPILE_PROCESSES"
#: seconds to wait for a helper before compiling its share here
TIMEOUT = 300.0

log = logging.getLogger(__name__)

_done = set()
#: what the last ``once`` that started helpers did (for tests and ``bench coldstart``)
LAST = None


def processes():
    """How many processes may compile at once (this one included): FASTOPT_COMPILE_PROCESSES,
    default the cores this process may run on."""
    from .. import config

    value = config.env_int(ENV, None, minimum=1, what="a whole number of processes")
    if value is not None:
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def job(ref, *args):
    """One kernel to compile for the types of ``args``: ``ref`` = (module name, attribute,
    key) names its dispatcher in a way a new process can rebuild: the module's attribute,
    indexed by ``key`` if it is a dict, called with ``*key`` if it is a factory (key None:
    the attribute itself)."""
    import numba

    return ref, tuple(numba.typeof(a) for a in args)


def _dispatcher(ref):
    module, attr, key = ref
    obj = getattr(importlib.import_module(module), attr)
    if key is None:
        return obj
    return obj[key] if isinstance(obj, dict) else obj(*key)


def _cached(dispatcher, sig):
    """True if ``dispatcher`` has ``sig`` compiled in this process or in its disk cache;
    None if it has no disk cache (helpers could not hand it over)."""
    from numba.core.caching import NullCache
    from numba.core.compiler_lock import global_compiler_lock

    if sig in dispatcher.overloads:
        return True
    cache = getattr(dispatcher, "_cache", None)
    if cache is None or isinstance(cache, NullCache):
        return None
    with global_compiler_lock:
        return cache.load_overload(sig, dispatcher.targetctx) is not None


def once(key, make_jobs):
    """Compile the jobs of ``make_jobs() -> (here, elsewhere)`` once per ``key`` in this
    process: ``elsewhere`` in helper processes, ``here`` in this one meanwhile, then wait for
    the helpers. Returns quickly when ``key`` was seen or nothing is missing."""
    global LAST
    if key in _done:
        return
    _done.add(key)
    limit = processes()
    if limit < 2:
        return
    here, elsewhere = make_jobs()
    # a helper is worth starting only if a kernel of its share is not in the cache yet
    missing = []
    for ref, sig in elsewhere:
        state = _cached(_dispatcher(ref), sig)
        if state is None:
            return  # no disk cache: helpers could not hand anything over
        if not state:
            missing.append((ref, sig))
    if not missing:
        return
    groups = [missing[k::limit - 1] for k in range(min(limit - 1, len(missing)))]
    start = time.perf_counter()
    helpers = [_start(group) for group in groups]
    for ref, sig in here:
        _dispatcher(ref).compile(sig)
    here_s = time.perf_counter() - start
    failed = sum(not _wait(h) for h in helpers)
    LAST = dict(helpers=len(helpers), jobs_elsewhere=len(missing), jobs_here=len(here),
                here_s=here_s, wall_s=time.perf_counter() - start, failed=failed)
    log.debug("fastopt: compiled %d kernels in %d helper processes beside %d here: %s",
              len(missing), len(helpers), len(here), LAST)


def _start(group):
    env = dict(os.environ, **{ENV: "1"})
    proc = subprocess.Popen([sys.executable, "-m", "fastopt.kernels.warmup"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        with proc.stdin:
            proc.stdin.write(pickle.dumps(group))
    except OSError:  # it died at start; _wait reports it
        pass
    proc.stdin = None  # closed: communicate() must not flush it
    return proc


def _wait(proc):
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        log.warning("fastopt: a compile helper took over %.0f s and was stopped; its "
                    "kernels compile here", TIMEOUT)
        return False
    if proc.returncode:
        log.warning("fastopt: a compile helper failed (exit %s); its kernels compile here:"
                    "\n%s", proc.returncode, err.decode(errors="replace")[-2000:])
        return False
    return True


def _main():
    for ref, sig in pickle.loads(sys.stdin.buffer.read()):
        _dispatcher(ref).compile(sig)


if __name__ == "__main__":
    _main()
