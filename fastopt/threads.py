"""How fastopt's CPU kernels use threads when the cores may be shared with other programs.

Why: a multi-threaded kernel is only as fast as its slowest thread. On a quiet machine the
``prange`` kernels beat the serial ones from about 32k elements (``bench crossover``), but
when another program keeps the cores busy, a worker thread that was descheduled makes the
others wait for it, and a step that takes 0.4 ms quiet takes 10-20 ms
(``python -m fastopt bench contention``; measured on 2 cores). A serial kernel has no
partner to wait for: it only gets its fair share of a core.

The policy (``config.THREADS``, environment variable ``FASTOPT_THREADS``):

``all`` (default)
    always the ``prange`` kernel from ``PARALLEL_MIN_SIZE`` elements (fastopt before this
    policy): results do not depend on the load.
``auto``
    every array that is large enough for the ``prange`` kernel gets a ``Governor``: it
    races the serial and the ``prange`` kernel for a few calls each (a *trial*) and runs
    the faster one until the next trial. Trials come 0.25 s apart after a change of mind
    and back off to 4 s while the answer stays the same; a call of the ``prange`` kernel
    that takes more than ``ALARM`` times the trial's time (the cores were taken away)
    brings the next trial forward to the next call. Not the default because the two
    kernels are not bitwise twins for every rule: for most they agree, but Adam with
    amsgrad and SGD with Nesterov differ in some elements by an ulp (measured at HEAD:
    619 of 40,001; the vectorised body and the scalar remainder of a loop contract
    ``a*b + c`` differently, and which elements fall in the remainder depends on the
    split), so under ``auto`` a run's last bits would depend on the load. Even the
    ``prange`` kernel alone moves 1-2 elements between one and two Numba threads (Lion
    with weight decay, SGD-Nesterov). Kernels that split their loops into blocks of a
    fixed size, whatever the thread count, would remove both and let ``auto`` become the
    default.
``1``
    always the serial kernels, and numpy's BLAS limited to one thread (through
    threadpoolctl) for the whole process, so no thread of fastopt or of its matrix
    products waits for another. Deterministic, but its numbers differ from ``all``'s in
    the last bits.

What the policy does not switch by itself: the threads of the matrix products inside
``MLP.train_step`` and ``train.fit``. OpenBLAS rounds differently with one thread and with
two (46% of the elements of a 32x784 @ 784x100 float32 product differ in the last bits,
measured), so switching them with the load would make a run's numbers depend on what else
the machine does. ``FASTOPT_THREADS=1`` is the deterministic way to choose one thread.
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


def describe():
    """The policy in force, as a short text for tables and settings."""
    return f"FASTOPT_THREADS={config.THREADS}"


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
    if n < config.PARALLEL_MIN_SIZE or _MODE == "1":
        serial(*args)
    elif _MODE == "all":
        parallel(*args)
    else:
        governor((key, n)).run(serial, parallel, *args)


def _limit_blas_to_one_thread():
    try:
        import threadpoolctl
    except ImportError:
        raise ImportError("FASTOPT_THREADS=1 needs threadpoolctl to limit numpy's BLAS: "
                          "pip install threadpoolctl (or set OPENBLAS_NUM_THREADS=1 before "
                          "starting Python)") from None
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl is to find)

    threadpoolctl.threadpool_limits(1, user_api="blas")


_MODE = config.THREADS
if _MODE == "1":
    _limit_blas_to_one_thread()
