"""Timing for ``fastopt bench``: implementations interleaved, medians over rounds.

Each round times every implementation once, in turn, and the median over rounds is
reported, so a noisy neighbour hurts all columns alike.
"""

import statistics
import time


def time_block(fn, reps):
    """Seconds per call of ``fn`` over ``reps`` calls in a row."""
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def _reps_for(n, target_seconds=0.01, per_element_seconds=2e-9):
    return max(1, min(1000, int(target_seconds / max(n * per_element_seconds, 1e-7))))


def interleaved(fns, n, rounds):
    """Median seconds per call of each callable in ``fns`` (dict), timed in turn; the
    calls per block follow from the element count ``n``."""
    reps = _reps_for(n)
    samples = {k: [] for k in fns}
    for fn in fns.values():  # warm-up: compile, allocate, fault pages in
        fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(time_block(fn, reps))
    return {k: statistics.median(v) for k, v in samples.items()}


def interleaved_settled(fns, rounds, target_seconds=0.05, settle=0.3):
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
            samples[k].append(time_block(fn, reps[k]))
    return {k: statistics.median(v) for k, v in samples.items()}


def gpu_median(fn, sync, rounds, target_seconds=0.02):
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
