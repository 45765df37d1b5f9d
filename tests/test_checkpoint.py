"""Checkpoints: exact resume across processes, clear refusals that change nothing."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastopt
from fastopt import optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.05)),
    ("RMSprop", dict(centered=True, momentum=0.5)),
    ("Adam", dict(amsgrad=True, weight_decay=1e-3)),
    ("AdamW", dict()),
    ("Adadelta", dict()),
    ("Adamax", dict()),
    ("NAdam", dict()),
    ("RAdam", dict()),
    ("Lion", dict(weight_decay=0.1)),
    ("Adam", dict(convention="keras")),
]

SCRIPT = textwrap.dedent("""
    import sys, json
    import numpy as np
    import fastopt
    from fastopt import optim

    name, kw, path, phase = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]

    def grads(step):
        r = np.random.default_rng(1000 + step)
        return [r.standard_normal(37).astype(np.float32), r.standard_normal((5, 3))]

    params = [np.zeros(37, dtype=np.float32), np.zeros((5, 3))]
    opt = getattr(optim, name)(params, **kw)
    if phase == "first":
        for s in range(10):
            opt.step(grads(s))
        fastopt.save(path, params, opt)
    elif phase == "second":
        fastopt.load(path, params, opt)
        for s in range(10, 20):
            opt.step(grads(s))
        np.savez(path + ".out.npz", p0=params[0], p1=params[1])
    else:
        for s in range(20):
            opt.step(grads(s))
        np.savez(path + ".out.npz", p0=params[0], p1=params[1])
""")


def run_phase(tmp_path, name, kw, path, phase):
    import json

    script = tmp_path / "resume.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, str(script), name, json.dumps(kw), str(path), phase],
                   check=True, env=env)
    if phase == "first":
        return None
    with np.load(str(path) + ".out.npz") as z:
        return z["p0"], z["p1"]


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", CASES[:4] + CASES[7:8] + CASES[-1:])
def test_resume_in_new_process_is_bitwise_identical(tmp_path, name, kw):
    ckpt = tmp_path / "ckpt.npz"
    straight = tmp_path / "straight"
    run_phase(tmp_path, name, kw, ckpt, "first")
    resumed = run_phase(tmp_path, name, kw, ckpt, "second")
    direct = run_phase(tmp_path, name, kw, straight, "straight")
    for a, b in zip(resumed, direct):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,kw", CASES)
def test_resume_in_process_is_bitwise_identical(tmp_path, name, kw, rng):
    grads = [[rng.standard_normal(11), rng.standard_normal((2, 2)).astype(np.float32)]
             for _ in range(20)]

    def fresh():
        params = [np.linspace(-1, 1, 11), np.ones((2, 2), dtype=np.float32)]
        return params, getattr(optim, name)(params, **kw)

    p_direct, o_direct = fresh()
    for g in grads:
        o_direct.step(g)
    p1, o1 = fresh()
    for g in grads[:10]:
        o1.step(g)
    path = fastopt.save(tmp_path / "c", p1, o1)
    assert path.endswith(".npz")
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        assert "meta" in z.files
    p2, o2 = fresh()
    fastopt.load(path, p2, o2)
    assert o2.steps == 10
    for g in grads[10:]:
        o2.step(g)
    for a, b in zip(p2, p_direct):
        np.testing.assert_array_equal(a, b)


def _saved(tmp_path, rng):
    params = [rng.standard_normal(6), rng.standard_normal(3)]
    opt = optim.Adam(params)
    opt.step([np.ones(6), np.ones(3)])
    return fastopt.save(tmp_path / "adam.npz", params, opt)


@pytest.mark.parametrize("make,match", [
    (lambda: ([np.zeros(6), np.zeros(3)], optim.SGD), "Adam"),
    (lambda: ([np.zeros(6), np.zeros(4)], optim.Adam), "parameter 1"),
    (lambda: ([np.zeros(6), np.zeros(3, dtype=np.float32)], optim.Adam), "parameter 1"),
    (lambda: ([np.zeros(6)], optim.Adam), "2 parameter arrays"),
    (lambda: ([np.zeros(6), np.zeros(3)], lambda p: optim.Adam(p, amsgrad=True)), None),
])
def test_load_mismatch_raises_and_changes_nothing(tmp_path, rng, make, match):
    path = _saved(tmp_path, rng)
    params, factory = make()
    params = [p + 0.5 for p in params]
    opt = factory(params)
    opt.step([np.full_like(p, 0.1) for p in params])
    before = [p.copy() for p in params], [{k: v.copy() for k, v in s.items()} for s in opt.state]
    if match is None:
        # amsgrad differs: the saved hyperparameters win, like torch; state is reshaped
        fastopt.load(path, params, opt)
        assert opt.param_groups[0]["amsgrad"] is False
        assert set(opt.state[0]) == {"exp_avg", "exp_avg_sq"}
        return
    with pytest.raises(ValueError, match=match):
        fastopt.load(path, params, opt)
    for a, b in zip(before[0], params):
        np.testing.assert_array_equal(a, b)
    for sa, sb in zip(before[1], opt.state):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    assert opt.steps == 1


def test_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a fastopt checkpoint"):
        fastopt.load(tmp_path / "x.npz", [np.zeros(2)])


def test_save_is_atomic_and_params_only(tmp_path):
    p = np.arange(4.0)
    path = fastopt.save(tmp_path / "p", p)
    assert [f.name for f in tmp_path.iterdir()] == ["p.npz"]
    q = np.zeros(4)
    fastopt.load(path, q)
    np.testing.assert_array_equal(p, q)
    with pytest.raises(ValueError, match="no optimizer state"):
        fastopt.load(path, q, optim.SGD(q))
