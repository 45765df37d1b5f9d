"""``fastopt bench coldstart``: the first training calls in a new process, with an empty
and with a warm Numba cache, and where the cold compile goes.

Each row is a new Python process (the child program is ``_PROGRAM``). It imports fastopt,
then, on the seeds' network (``definitions.NETWORK``, float32, lr 1e-3), takes the
scenario's first call with the first optimizer (``fit``: one epoch of a random data set
with a test set, the way ``fastopt compare`` trains; ``train_step``: one mini-batch), then
the same with a second optimizer on a new model: what one more optimizer costs once the
network's kernels exist. With an empty cache this is the cold compile; the warm runs
load everything from the cache the first run left.

The child listens to Numba's ``numba:compile`` events, so the empty-cache run also says
which compiled specialisations took the time (``specialisations``): one row per
specialisation with its total seconds (including what it compiled inside it) and its
own seconds (without those), in CPU seconds of the compiling thread, so a busy machine
inflates them less than the wall-clock columns. ``helpers``: the compile helper processes
the first call started (``fastopt.kernels.warmup``; FASTOPT_COMPILE_PROCESSES=1 in the
environment turns them off); what a helper compiled is not in this process's table. asv's ``bench_import.ColdStart`` times
the simpler ``definitions.cold_start_program``.
"""

import json
import os
import time

from . import definitions

SCENARIOS = ("fit", "train_step")
FIRST_OPTIMIZER = definitions.COLD_START_OPTIMIZER  # "Adam"
NEXT_OPTIMIZER = "RMSprop"
FIT_ROWS = 1024  # one epoch of 8 steps at batch 128, and a 256-row test set

_PROGRAM = r"""
import json, sys, time
t0 = time.perf_counter()
from numba.core import event
import numpy as np
from fastopt import nn, optim, train
import_s = time.perf_counter() - t0

records = []

class Listener(event.Listener):
    def __init__(self):
        self.stack = []
    def on_start(self, ev):
        self.stack.append([time.thread_time(), 0.0])
    def on_end(self, ev):
        start, inner = self.stack.pop()
        total = time.thread_time() - start
        if self.stack:
            self.stack[-1][1] += total
        d = ev.data["dispatcher"]
        records.append(dict(phase=PHASE, depth=len(self.stack),
                            name=getattr(d.py_func, "__qualname__", str(d)),
                            args=", ".join(map(str, ev.data["args"])),
                            total_s=total, self_s=total - inner))

event.register("numba:compile", Listener())
PHASE = ""
scenario, sizes, batch, rows = {scenario!r}, {sizes!r}, {batch!r}, {rows!r}
rng = np.random.default_rng(0)
X = rng.random((rows, sizes[0]), dtype=np.float32)
y = rng.integers(0, sizes[-1], rows)

def first(name):
    model = nn.MLP(sizes, seed=0)
    opt = getattr(optim, name)(model.params, lr=1e-3)
    t = time.perf_counter()
    if scenario == "fit":
        train.fit(model, opt, (X, y, X[:rows // 4], y[:rows // 4]), batch_size=batch,
                  epochs=1, progress=False)
    else:
        model.train_step(X[:batch], y[:batch], opt)
    return time.perf_counter() - t

from fastopt.kernels import warmup
PHASE = {first_optimizer!r}
first_s = first({first_optimizer!r})
helpers = (warmup.LAST or {{}}).get("helpers", 0)
PHASE = {next_optimizer!r}
next_s = first({next_optimizer!r})
print(json.dumps(dict(import_s=import_s, first_s=first_s, next_s=next_s, helpers=helpers,
                      specialisations=records)))
"""


def program(scenario, sizes=definitions.NETWORK, batch=definitions.COLD_START_BATCH,
            rows=FIT_ROWS, first_optimizer=FIRST_OPTIMIZER, next_optimizer=NEXT_OPTIMIZER):
    """The child program of one row (prints one JSON line)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    return _PROGRAM.format(scenario=scenario, sizes=tuple(sizes), batch=batch, rows=rows,
                           first_optimizer=first_optimizer, next_optimizer=next_optimizer)


def bench_coldstart(scenarios=SCENARIOS, batch=definitions.COLD_START_BATCH, warm_runs=2,
                    cache_dir=None, progress="off"):
    """(rows, specialisations).

    rows: scenario, cache ("empty"/"warm"), import seconds, the first optimizer's first
    call, the next optimizer's first call, the whole process (wall clock). Per scenario
    the first process starts with an empty Numba cache (a new folder unless ``cache_dir``
    is given), the ``warm_runs`` after it reuse what it left.

    specialisations: the empty-cache runs' compiled specialisations (scenario, phase: the
    optimizer whose call compiled it, depth, name, argument types, total_s, self_s)."""
    import subprocess
    import sys
    import tempfile

    from .. import runs

    rows, specs = [], []
    bar = runs.Progress(total=len(scenarios) * (1 + warm_runs), desc="bench coldstart",
                        unit="processes", mode=progress)
    for scenario in scenarios:
        code = program(scenario, batch=batch)
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir or tmp)
            for k in range(1 + warm_runs):
                cache = "empty" if k == 0 else "warm"
                bar.set_postfix_str(f"{scenario}, {cache} cache")
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", code], env=env,
                                      capture_output=True, text=True)
                total = time.perf_counter() - t0
                if done.returncode:
                    raise RuntimeError(f"the coldstart child ({scenario}) failed:\n"
                                       f"{done.stderr[-2000:]}")
                out = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(dict(scenario=scenario, cache=cache, import_s=out["import_s"],
                                 first_s=out["first_s"], next_s=out["next_s"],
                                 process_s=total, helpers=out["helpers"]))
                if k == 0:
                    specs += [dict(scenario=scenario, **r) for r in out["specialisations"]]
                bar.update(1)
    bar.close()
    return rows, specs


def summary(specs, top=12):
    """The ``top`` specialisations by own seconds per scenario and phase, then the totals
    (rows for the table under the main one)."""
    out = []
    keys = []
    for s in specs:
        if (s["scenario"], s["phase"]) not in keys:
            keys.append((s["scenario"], s["phase"]))
    for scenario, phase in keys:
        mine = [s for s in specs if s["scenario"] == scenario and s["phase"] == phase]
        for s in sorted(mine, key=lambda s: -s["self_s"])[:top]:
            out.append(dict(scenario=scenario, phase=phase, depth=s["depth"],
                            name=_short(s["name"]), total_s=s["total_s"], self_s=s["self_s"]))
        out.append(dict(scenario=scenario, phase=phase, depth="",
                        name=f"all {len(mine)} specialisations",
                        total_s=sum(s["total_s"] for s in mine if s["depth"] == 0),
                        self_s=sum(s["self_s"] for s in mine)))
    return out


def _short(name):
    """A kernel's name without the source tag (``mlp_forward_relu_1a2b3c4d5e``)."""
    head, _, tag = name.rpartition("_")
    return head if len(tag) == 10 and all(c in "0123456789abcdef" for c in tag) else name
