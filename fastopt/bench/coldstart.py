"""``fastopt bench coldstart``: import and the first train_step in a new process, with an
empty and with a warm Numba cache (the child program is ``definitions.cold_start_program``,
the one asv's ``bench_import.ColdStart`` runs)."""

import os
import time

from . import definitions


def bench_coldstart(sizes=definitions.NETWORK, batch=definitions.COLD_START_BATCH,
                    optimizer=definitions.COLD_START_OPTIMIZER, warm_runs=3, cache_dir=None):
    """Rows: cache ("empty"/"warm"), import seconds, first train_step seconds, total.

    Each row is a new Python process. The empty-cache run compiles every kernel the step
    needs (the cold compile time); the warm runs load them from the cache it left."""
    import subprocess
    import sys
    import tempfile

    code = (definitions.cold_start_program(sizes, batch, optimizer)
            + "print(import_seconds, first_step_seconds)\n")
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
