"""The runs of one comparison on several worker processes, one thread each.

Why: ``fastopt compare`` times training in CPU seconds on one thread
(``fastopt.threads.single_thread``), which a neighbour on the other cores cannot inflate.
One thread per run leaves the machine's other cores idle, so the runs are dealt to
``workers`` processes (one per core by default), each running its share round robin in
short turns as the single-process comparison does. A run's numbers do not depend on which
worker trains it or how many there are: every run is single-threaded and seeded.

A worker is a fresh Python process (``spawn``: no copy of the parent's threads or BLAS
state); it loads the data set itself from the command's arguments, builds its runs (the
kernels come from Numba's cache) and sends back, through one queue:

``("progress", worker, (cpu_ms, steps))`` training CPU milliseconds and steps the worker has
                                        done so far (sent after every turn)
``("result", index, Run)``              a run that ended (its place in the comparison)
``("done", worker, None)``              the worker has nothing more to send
``("error", worker, text)``             the worker failed (its traceback)

On Ctrl-C every worker (same process group) stops, sends what its unfinished runs did
(``Runner.partial()``, stopped "interrupted") as results, and ends.
"""

import multiprocessing
import os
import queue as queue_module
import time
import traceback

from ..kernels import warmup

#: seconds the parent waits for the workers' partial runs after Ctrl-C
INTERRUPT_GRACE = 10.0


def deal(jobs, workers):
    """The jobs of each worker: round robin, so each gets every optimizer alike."""
    return [jobs[k::workers] for k in range(workers) if jobs[k::workers]]


def run_workers(args, jobs, build, workers, on_message, turn_seconds):
    """Train ``jobs`` (a list of (index, job)) on ``workers`` processes, each advancing
    its runs in turns of ``turn_seconds`` of training.

    ``build(args, job)`` is a module-level function the workers call to make a Runner;
    ``on_message(kind, key, value)`` sees every message in the parent as it arrives.
    Returns {index: Run}. A worker's error raises RuntimeError with its traceback; Ctrl-C
    collects the partial runs, hands them to ``on_message`` and raises KeyboardInterrupt.
    """
    ctx = multiprocessing.get_context("spawn")
    inbox = ctx.Queue()
    shares = deal(jobs, workers)
    procs = [ctx.Process(target=_worker, args=(k, args, share, build, inbox, turn_seconds),
                         daemon=True) for k, share in enumerate(shares)]
    # the workers already keep the cores busy: each gets its share of the compile helpers
    # (fastopt.kernels.warmup), none at two workers on two cores
    previous = os.environ.get(warmup.ENV)
    os.environ[warmup.ENV] = str(max(1, warmup.processes() // max(1, len(procs))))
    try:
        for p in procs:
            p.start()
    finally:
        if previous is None:
            os.environ.pop(warmup.ENV, None)
        else:
            os.environ[warmup.ENV] = previous
    results, running = {}, set(range(len(procs)))
    try:
        while running:
            kind, key, value = _receive(inbox, procs, running)
            if kind == "result":
                results[key] = value
            elif kind == "done":
                running.discard(key)
            elif kind == "error":
                raise RuntimeError(f"compare: worker {key} failed:\n{value}")
            on_message(kind, key, value)
    except KeyboardInterrupt:
        deadline = time.monotonic() + INTERRUPT_GRACE
        while running and time.monotonic() < deadline:
            try:
                kind, key, value = inbox.get(timeout=0.2)
            except (queue_module.Empty, KeyboardInterrupt):
                continue
            if kind == "result":
                results[key] = value
                on_message(kind, key, value)
            elif kind in ("done", "error"):
                running.discard(key)
        raise
    finally:
        for p in procs:
            p.join(timeout=INTERRUPT_GRACE if not running else 0.5)
            if p.is_alive():
                p.terminate()
                p.join()
    return results


def _receive(inbox, procs, running):
    """The next message; a worker that died without saying so is an error."""
    while True:
        try:
            return inbox.get(timeout=1.0)
        except queue_module.Empty:
            for k in running:
                if not procs[k].is_alive() and procs[k].exitcode not in (0, None):
                    return ("error", k, f"the process ended with exit code "
                                        f"{procs[k].exitcode} without a word")


def _worker(k, args, share, build, outbox, turn_seconds):
    from .. import threads
    from . import training

    runners, sent = {}, set()

    def send_ended(runner, _round=None):
        outbox.put(("progress", k, (_cpu_ms(runners.values()),
                                    sum(r.training.steps for r in runners.values()))))
        for index, r in runners.items():
            if r.result is not None and index not in sent:
                sent.add(index)
                outbox.put(("result", index, r.result))

    try:
        with threads.single_thread():
            for index, job in share:
                runners[index] = build(args, job)
            training.interleave(list(runners.values()), turn_seconds, send_ended)
        outbox.put(("done", k, None))
    except KeyboardInterrupt:
        for index, runner in runners.items():
            if index not in sent:
                outbox.put(("result", index, runner.partial()))
        outbox.put(("done", k, None))
    except BaseException:  # noqa: BLE001  (reported to the parent, which raises)
        outbox.put(("error", k, traceback.format_exc()))


def _cpu_ms(runners):
    return sum(int(1e3 * r.training.cpu_time) for r in runners)
