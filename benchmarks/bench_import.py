"""Cold start: ``import fastopt`` and the first training step in a new Python process.

- ``Import.timeraw_import``: importing a fastopt module in a fresh interpreter (asv's
  ``timeraw_``: the code runs in a new process per sample; interpreter start-up excluded).
  ``fastopt`` itself is lazy; ``fastopt.optim`` and ``fastopt.nn`` load Numba.
- ``ColdStart``: import + build the seeds' network + the first ``train_step`` (Adam, batch
  128), with an empty Numba cache (everything the step needs compiles) and with a warm one
  (prepared once in ``setup_cache``: the compiled kernels load from disk).
  ``timeraw_import_and_first_step`` times the whole snippet in a new process;
  ``track_first_train_step`` is the first ``train_step`` call alone, as measured inside its
  process.

The child program is ``fastopt.bench.definitions.cold_start_program()``, the one
``fastopt bench coldstart`` runs. Every Numba cache lives in a folder under asv's working
directory (removed by asv) or a temporary folder removed in ``teardown``; the suite's own
Numba cache is never touched.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from fastopt.bench import definitions, suite


class Import:
    """``import <module>`` in a new interpreter."""

    params = [["fastopt", "fastopt.optim", "fastopt.nn"]]
    param_names = list(suite.IMPORT_PARAMS)

    def timeraw_import(self, module):
        return f"import {module}"


# import + first train_step (the seeds' network, Adam, batch 128); leaves the seconds of the
# first train_step alone in first_step_seconds
_FIRST_STEP = definitions.cold_start_program()


def _set_cache(cache_dir):
    """Code that points Numba's cache at ``cache_dir`` before numba is imported."""
    return f"import os, time\nos.environ['NUMBA_CACHE_DIR'] = {cache_dir!r}\n"


def _run_child(cache_dir):
    """Run import + first step in a new process; returns the first step's seconds."""
    code = _set_cache(cache_dir) + _FIRST_STEP + "print(first_step_seconds)\n"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=600)
    return float(out.stdout.split()[-1])


class ColdStart:
    """A new process: import fastopt, build the network, first ``train_step``."""

    params = [["empty", "warm"]]
    param_names = list(suite.COLD_START_PARAMS)
    timeout = 600
    # an empty-cache sample compiles for 20-30 s: no warm-up call, few samples
    number = 1
    warmup_time = 0
    repeat = (1, 3, 30.0)
    min_run_count = 1
    rounds = 1

    def setup_cache(self):
        # asv runs this once, in a temporary working directory it removes afterwards
        warm = os.path.abspath("numba-cache-warm")
        _run_child(warm)
        return warm

    setup_cache.timeout = 600

    def setup(self, warm, cache):
        self._empty = []

    def teardown(self, warm, cache):
        for path in self._empty:
            shutil.rmtree(path, ignore_errors=True)

    def _cache_dir(self, warm, cache):
        if cache == "warm":
            return warm
        self._empty.append(tempfile.mkdtemp(prefix="fastopt-asv-numba-"))
        return self._empty[-1]

    def timeraw_import_and_first_step(self, warm, cache):
        # (stmt, setup): only the statement is timed; a new cache folder per sample
        return _FIRST_STEP, _set_cache(self._cache_dir(warm, cache))

    def track_first_train_step(self, warm, cache):
        return _run_child(self._cache_dir(warm, cache))

    track_first_train_step.unit = "seconds"

