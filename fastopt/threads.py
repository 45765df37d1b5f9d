"""How fastopt's CPU kernels use threads when the cores may be shared with other programs.

Why: a multi-threaded kernel is only as fast as its slowest thread. On a quiet machine
two threads make a training step about 2x faster (``bench contention``, 2 cores), but when
another program keeps the cores busy, a worker thread that was descheduled makes the others
wait for it, and a step that takes 1.4 ms quiet takes 5-40 ms (4-12x; measured on 2
cores, ``python -m fastopt bench contention``). One thread has no partner to wait for: it
only gets its fair share of a core (about 2x slower than quiet two threads, never 10x).

The policy (``config.THREADS``, environment variable ``FASTOPT_THREADS``, read at import):

``auto`` (default)
    *Optimizer steps* (``opt.step`` on arrays large enough for the ``prange`` kernel): a
    ``Governor`` per array size races the serial and the ``prange`` kernel for a few calls
    now and then (a *trial*) and runs the faster one. Both give the same bits
    (``config.FASTMATH`` has no "contract"; tests/test_kernels.py), so this never moves a
    result.
    *Training steps* (``MLP.train_step``, the compiled chunks of ``train.fit``), whose
    threads are the BLAS library's: a ``Guard`` per network and batch size times every
    call and keeps numpy's BLAS on its own thread count until the time per step stays
    above ``STALL`` times the best seen (the cores were taken away); then it runs the
    calls on one BLAS thread and, now and then, tries the threads again (0.25 s after a
    change, backing off to 4 s), going back when they are clearly faster. OpenBLAS rounds
    differently on one and on two threads (46% of the elements of a 32x784 @ 784x100
    float32 product move by an ulp, and no fixed split of the product avoids it), so a
    run that was switched has other last bits than a quiet one: on a quiet machine the
    guard never switches and ``auto`` gives exactly the numbers of ``all``; every switch
    is counted (``STATS``, ``describe()``), and ``all`` or ``1`` keep a run bitwise
    reproducible whatever the load.
``all``
    the ``prange`` kernel from ``PARALLEL_MIN_SIZE`` elements and numpy's BLAS on its own
    thread count, always (fastopt before this policy; the test suite runs this way).
``1``
    serial kernels, and numpy's BLAS limited to one thread (threadpoolctl) for the whole
    process. Deterministic, robust to load, about 2x slower than ``all`` on a quiet
    2-core machine; ``single_thread()`` does the same for a block of code (``fastopt
    compare`` trains this way and times training in CPU seconds).
"""

import os
import time

from . import config

#: trial calls per variant (after one warm-up call of each, which is not counted)
TRIAL_CALLS = 4
#: seconds between trials: right after a change of mind, and the most it backs off to
MIN_PERIOD, MAX_PERIOD = 0.25, 4.0
#: a prange call this many times slower than in the last trial starts a new trial
ALARM = 4.0


def available_cores():
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def physical_cores(sysfs="/sys/devices/system/cpu"):
    """Physical cores among the CPUs this process may run on: two hyperthreads of one core
    count once (they share its arithmetic units, so two single-threaded runs on them slow
    each other down). Where the topology is unknown, the available CPUs."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return available_cores()
    cores = set()
    for cpu in cpus:
        topology = f"{sysfs}/cpu{cpu}/topology"
        try:
            with open(f"{topology}/physical_package_id") as a, open(f"{topology}/core_id") as b:
                cores.add((a.read().strip(), b.read().strip()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def describe():
    """The policy in force, and what ``auto`` did so far, as a short text for tables."""
    mode = config.THREADS
    text = f"FASTOPT_THREADS={mode}"
    if mode == "auto" and STATS["one_thread_steps"]:
        text += (f" (cores busy: {STATS['one_thread_steps']} training steps on one BLAS "
                 f"thread, {STATS['switches']} switches)")
    return text


class Governor:
    """Runs one kind of call (one array size of one kernel) with the faster of two
    variants that compute the same result: ``narrow`` (serial) and ``wide`` (``prange``).

    ``run(narrow, wide, *args)`` calls one of them with ``args``. Between trials it costs
    two clock reads per call; a trial alternates the two variants for
    ``TRIAL_CALLS`` + 1 calls each and keeps the one with the smaller total time.
    """

    __slots__ = ("wide", "next_trial", "period", "alarm", "trial")

    def __init__(self):
        self.wide = True  # as without the policy, until a trial says otherwise
        self.next_trial = 0.0  # perf_counter time of the next trial: the first call
        self.period = MIN_PERIOD
        self.alarm = float("inf")  # seconds per wide call that start a trial early
        self.trial = None  # during a trial: [calls so far, narrow seconds, wide seconds]

    def run(self, narrow, wide, *args):
        clock = _clock
        t0 = clock()
        if self.trial is None and t0 < self.next_trial:
            if self.wide:
                wide(*args)
                if clock() - t0 > self.alarm:  # the cores were taken away: look again
                    self.next_trial = 0.0
            else:
                narrow(*args)
            return
        self._trial_call(narrow, wide, args, clock)

    def _trial_call(self, narrow, wide, args, clock):
        if self.trial is None:
            self.trial = [0, 0.0, 0.0]
        trial = self.trial
        calls = trial[0]
        use_wide = calls % 2 == 1  # narrow, wide, narrow, wide, ...
        t0 = clock()
        (wide if use_wide else narrow)(*args)
        dt = clock() - t0
        if calls >= 2:  # the first call of each is a warm-up
            trial[2 if use_wide else 1] += dt
        trial[0] = calls + 1
        if trial[0] == 2 * (TRIAL_CALLS + 1):
            self._decide(trial[1], trial[2], clock())

    def _decide(self, narrow_seconds, wide_seconds, now):
        wide = wide_seconds < narrow_seconds
        # back off while the answer stays the same; look again soon after a change
        self.period = min(2 * self.period, MAX_PERIOD) if wide == self.wide else MIN_PERIOD
        self.wide = wide
        self.alarm = ALARM * wide_seconds / TRIAL_CALLS
        self.next_trial = now + self.period
        self.trial = None


_GOVERNORS = {}
_clock = time.perf_counter  # a module global so that tests can drive a fake clock


def governor(key):
    """The Governor of one kind of call (created on first use)."""
    gov = _GOVERNORS.get(key)
    if gov is None:
        gov = _GOVERNORS[key] = Governor()
    return gov


def run_sized(key, n, serial, parallel, *args):
    """Call ``serial`` or ``parallel`` (same arguments, same result) for an array of ``n``
    elements, as the policy says: serial below ``config.PARALLEL_MIN_SIZE``; above it,
    per ``config.THREADS`` (``auto``: the Governor of ``(key, n)``)."""
    mode = "1" if _FORCED else _MODE
    if n < config.PARALLEL_MIN_SIZE or mode == "1":
        serial(*args)
    elif mode == "all":
        parallel(*args)
    else:
        governor((key, n)).run(serial, parallel, *args)


#: time per step, over the best seen, that means the cores were taken away
STALL = 2.5
#: calls whose median is compared with the best (one slow call is not a stall)
WINDOW = 5
#: calls with the BLAS threads in a try while on one thread (a stalling call ends it)
PROBE_CALLS = 2
#: the next try waits at least this many times as long as the last try took
PROBE_SHARE = 8
#: the threads must beat one thread by this factor to be taken back
BACK = 1.25
#: what ``auto`` did in this process (``describe`` reports it)
STATS = {"one_thread_steps": 0, "switches": 0}


class Guard:
    """Runs one kind of training call (one network, one batch size) with numpy's BLAS on
    its own threads while that is fast, on one thread while the cores are busy.

    ``run(fn, steps, *args)`` calls ``fn(*args)``, which does ``steps`` training steps, and
    returns its result. Quiet: two clock reads per call, and the BLAS threads are never
    touched. See the module's docstring for the rule."""

    __slots__ = ("one", "best", "recent", "next_try", "period", "probe")

    def __init__(self):
        self.one = False  # on one BLAS thread
        self.best = float("inf")  # the best seconds per step with the threads
        self.recent = []  # seconds per step of the last calls in the current mode
        self.next_try = 0.0
        self.period = MIN_PERIOD
        self.probe = None  # while trying the threads again: their seconds per step

    def run(self, fn, steps, *args):
        clock = _clock
        steps = max(steps, 1)
        if not self.one:
            t0 = clock()
            out = fn(*args)
            self._threads_call((clock() - t0) / steps, clock())
            return out
        if self.probe is not None or clock() >= self.next_try:
            if self.probe is None:
                self.probe = []
            t0 = clock()
            out = fn(*args)
            t1 = clock()
            self._probe_call((t1 - t0) / steps, t1 - t0, t1)
            return out
        t0 = clock()
        out = _on_one_thread(fn, args)
        self._note(self.recent, (clock() - t0) / steps)
        STATS["one_thread_steps"] += steps
        return out

    @staticmethod
    def _note(recent, per_step):
        recent.append(per_step)
        if len(recent) > WINDOW:
            del recent[0]

    def _threads_call(self, per_step, now):
        self.best = min(self.best, per_step)
        self._note(self.recent, per_step)
        if len(self.recent) == WINDOW and _median(self.recent) > STALL * self.best:
            self.one, self.recent = True, []
            self.next_try = now + self.period
            STATS["switches"] += 1

    def _probe_call(self, per_step, seconds, now):
        self.probe.append(per_step)
        busy = per_step > STALL * self.best  # still stalling: no need to look further
        if not busy and len(self.probe) < PROBE_CALLS:
            return
        threads, one = _median(self.probe), _median(self.recent or [float("inf")])
        self.probe = None
        if not busy and threads * BACK < one:  # the cores are back
            self.one, self.recent, self.period = False, [], MIN_PERIOD
            self.best = min(self.best, threads)
            STATS["switches"] += 1
        else:
            self.period = min(2 * self.period, MAX_PERIOD)
        # a try costs at most about 1/PROBE_SHARE of the time, however long the calls
        self.next_try = now + max(self.period, PROBE_SHARE * seconds)


def _median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


_GUARDS = {}


def run_training(key, steps, fn, *args):
    """``fn(*args)``, a call that does ``steps`` training steps whose matrix products run
    on numpy's BLAS, under the policy (``auto``: the Guard of ``key``)."""
    if _FORCED or _MODE != "auto":
        return fn(*args)
    guard = _GUARDS.get(key)
    if guard is None:
        guard = _GUARDS[key] = Guard()
    return guard.run(fn, steps, *args)


def reset():
    """Forget every Governor's and Guard's decisions (the next calls start afresh, on the
    threads): for benchmarks that time a quiet machine right after a loaded one, where a
    Guard would otherwise stay on one thread until its next try (up to MAX_PERIOD s)."""
    _GOVERNORS.clear()
    _GUARDS.clear()


_BLAS = None  # threadpoolctl's controllers of the BLAS libraries, found on first use


def _blas():
    global _BLAS
    if _BLAS is None:
        import numpy  # noqa: F401  (loads the BLAS that threadpoolctl is to find)
        import threadpoolctl

        libs = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
        _BLAS = [(lib, lib.num_threads) for lib in libs]
    return _BLAS


def _set_blas_threads(one):
    for lib, own in _blas():
        lib.set_num_threads(1 if one else own)


def _on_one_thread(fn, args):
    _set_blas_threads(True)
    try:
        return fn(*args)
    finally:
        _set_blas_threads(False)


_FORCED = 0  # single_thread() blocks open


class single_thread:
    """A block of code run as under ``FASTOPT_THREADS=1``: serial update kernels and
    numpy's BLAS on one thread; the threads come back when the block ends. All the work
    of fastopt's training calls then runs on the calling thread, so its CPU time
    (``time.process_time``) is the work itself, which a neighbour on the other cores
    cannot inflate (``fastopt compare`` measures training time this way)."""

    def __enter__(self):
        global _FORCED
        if _FORCED == 0 and _MODE != "1":
            _set_blas_threads(True)
        _FORCED += 1
        return self

    def __exit__(self, *exc):
        global _FORCED
        _FORCED -= 1
        if _FORCED == 0 and _MODE != "1":
            _set_blas_threads(False)
        return False


def _limit_blas_to_one_thread():
    import threadpoolctl
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl is to find)

    threadpoolctl.threadpool_limits(1, user_api="blas")


_MODE = config.THREADS
if _MODE == "1":
    _limit_blas_to_one_thread()
