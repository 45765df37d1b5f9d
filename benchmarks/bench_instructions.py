"""Instructions per step under valgrind's callgrind: tracks that a busy machine cannot move.

- ``UpdateInstructions.track_instructions``: one ``opt.step(g)`` of every optimizer on
  N = 1e5 float32 elements (fastopt's CPU kernels, validation included);
- ``CythonUpdateInstructions.track_instructions``: the same ``opt.step(g)`` with
  ``backend="cython"`` (the Cython kernels; skipped where Cython or a C compiler is missing);
- ``TrainStepInstructions.track_instructions``: one ``model.train_step`` of the seeds'
  network 784-100-100-100-100-10, batch 128, with SGD and with Adam.

Measured by ``fastopt.bench.instructions.measure``: a differential count (K and 2K steps in
one process, so start-up, imports and compilation cancel) with one BLAS and one Numba
thread, the median of ``INSTRUCTION_REPEATS`` counts. Every case is counted by one child
process, once, in ``setup_cache`` (shared by the three classes: about a minute here, plus
the Cython module's build, 1-2 minutes, when its cache is empty: the native warm-up child
builds it, never the counted one); the tracks only read it. Skipped where valgrind is
missing (or not Linux on x86-64).

Use these to see whether a commit changed the work a step does, on any machine and under
any load; use the ``time_`` benchmarks for what instructions cannot show (memory bandwidth,
threads), on a quiet machine.
"""

import statistics

from fastopt.bench import instructions, suite

from .common import (INSTRUCTION_OPTIMIZERS, INSTRUCTION_REPEATS,
                     INSTRUCTION_TRAIN_OPTIMIZERS)

_TRAIN_BATCHES = [instructions.TRAIN_BATCH]


def _cases(cython=True):
    return ([instructions.update_case(name) for name in INSTRUCTION_OPTIMIZERS]
            + [instructions.update_case(name, backend="cython") for name in INSTRUCTION_OPTIMIZERS
               if cython]
            + [instructions.train_step_case(name, batch) for name in INSTRUCTION_TRAIN_OPTIMIZERS
               for batch in _TRAIN_BATCHES])


class _Instructions:
    """The shared count: ``setup_cache`` is defined once here, so asv runs it once for all
    classes (its key is the function's place in the source)."""

    timeout = 60

    def setup_cache(self):
        reason = instructions.why_unavailable()
        if reason is not None:
            return {"skip": reason}
        no_cython = instructions.why_cython_unavailable()
        counts = instructions.measure(_cases(cython=no_cython is None),
                                      repeats=INSTRUCTION_REPEATS)
        result = {(c.kind, c.optimizer, c.size, c.backend): round(statistics.median(v))
                  for c, v in counts.items()}
        if no_cython is not None:
            result["skip cython"] = no_cython
        return result

    setup_cache.timeout = 1200

    def setup(self, counts, *params):
        if "skip" in counts:
            raise NotImplementedError(counts["skip"])


class UpdateInstructions(_Instructions):
    """Instructions per ``opt.step(g)``, N = 1e5, float32."""

    params = [INSTRUCTION_OPTIMIZERS]
    param_names = list(suite.INSTRUCTION_UPDATE_PARAMS)

    def track_instructions(self, counts, name):
        return counts["update", name, instructions.UPDATE_N, "numba"]

    track_instructions.unit = suite.INSTRUCTION_UNIT


class CythonUpdateInstructions(_Instructions):
    """Instructions per ``opt.step(g)`` with ``backend="cython"``, N = 1e5, float32 (the
    module is ``-march=native``: counts of this machine's code, see
    ``fastopt.bench.instructions``)."""

    params = [INSTRUCTION_OPTIMIZERS]
    param_names = list(suite.INSTRUCTION_UPDATE_PARAMS)

    def setup(self, counts, *params):
        super().setup(counts, *params)
        if "skip cython" in counts:
            raise NotImplementedError(counts["skip cython"])

    def track_instructions(self, counts, name):
        return counts["update", name, instructions.UPDATE_N, "cython"]

    track_instructions.unit = suite.INSTRUCTION_UNIT


class TrainStepInstructions(_Instructions):
    """Instructions per ``model.train_step`` of the seeds' network."""

    params = (INSTRUCTION_TRAIN_OPTIMIZERS, _TRAIN_BATCHES)
    param_names = list(suite.INSTRUCTION_TRAIN_PARAMS)

    def track_instructions(self, counts, name, batch):
        return counts["train_step", name, batch, "numba"]

    track_instructions.unit = suite.INSTRUCTION_UNIT
