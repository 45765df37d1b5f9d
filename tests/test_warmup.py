"""fastopt.kernels.warmup: a first train_step / fit on an empty cache compiles the backward
pass in a helper process beside the forward pass here, with the same results.

Each case is a new Python process with its own empty Numba cache (the tests themselves pin
FASTOPT_COMPILE_PROCESSES=1, tests/conftest.py); the child listens to Numba's compile
events, so it can say which kernels it compiled itself and which it loaded from the cache
the helper left."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastopt.kernels import warmup

_CHILD = r"""
import json, sys
from numba.core import event
import numpy as np
from fastopt import nn, optim, train
from fastopt.kernels import warmup

compiled = []
class Listener(event.Listener):
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Listener())

scenario = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.random((64, 12), dtype=np.float32)
y = rng.integers(0, 3, 64)
model = nn.MLP([12, 8, 3], seed=0, l2=float(sys.argv[2]))
opt = optim.Adam(model.params, lr=1e-2)
if scenario == "fit":
    train.fit(model, opt, (X, y, X[:16], y[:16]), batch_size=16, epochs=1, progress=False)
    loss = None
else:
    loss = float(model.train_step(X[:16], y[:16], opt))
print(json.dumps(dict(params=model.params.view(np.uint32).tolist(), loss=loss,
                      last=warmup.LAST, compiled=compiled)))
"""


def child(tmp_path, scenario, processes, cache="cache", l2=0.0):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / cache),
               FASTOPT_COMPILE_PROCESSES=str(processes))
    done = subprocess.run([sys.executable, "-c", _CHILD, scenario, str(l2)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("scenario,l2", [("train_step", 0.0), ("train_step", 0.01),
                                         ("fit", 0.0), ("fit", 0.01)])
def test_helper_compiles_the_backward_pass_with_the_same_bits(tmp_path, scenario, l2):
    alone = child(tmp_path, scenario, 1, cache="alone", l2=l2)
    helped = child(tmp_path, scenario, 2, cache="helped", l2=l2)
    assert alone["last"] is None  # FASTOPT_COMPILE_PROCESSES=1: no helper
    assert helped["last"]["helpers"] == 1 and helped["last"]["failed"] == 0
    assert helped["params"] == alone["params"] and helped["loss"] == alone["loss"]
    backward = [n for n in alone["compiled"] if n.startswith("mlp_backward_")]
    assert backward  # compiled here without a helper ...
    assert not [n for n in helped["compiled"] if n.startswith("mlp_backward_")]  # ... not with
    # the weight penalty compiles only for a network with l1/l2 (fit's chunk: at compile time)
    assert bool([n for n in alone["compiled"] if n.startswith("weight_penalty")]) == bool(l2)
    # a warm cache starts no helper
    again = child(tmp_path, scenario, 2, cache="helped", l2=l2)
    assert again["last"] is None and again["compiled"] == []
    assert again["params"] == alone["params"]


def test_processes_setting(monkeypatch):
    monkeypatch.setenv(warmup.ENV, "3")
    assert warmup.processes() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(warmup.ENV, bad)
        with pytest.raises(ValueError, match="FASTOPT_COMPILE_PROCESSES"):
            warmup.processes()
    monkeypatch.delenv(warmup.ENV)
    assert warmup.processes() >= 1


def test_no_helper_without_a_disk_cache(monkeypatch):
    """A dispatcher without an on-disk cache cannot hand kernels over: no helper."""
    from numba import njit

    @njit
    def plain(a):
        return a.sum()

    monkeypatch.setenv(warmup.ENV, "2")
    monkeypatch.setattr(warmup, "_dispatcher", lambda ref: plain)
    monkeypatch.setattr(warmup, "_start", lambda group: pytest.fail("a helper was started"))
    warmup.once(("test", object()), lambda: ([], [warmup.job(("x", "y", None),
                                                               np.zeros(3))]))
