"""Loads that are all or nothing, gradients that may not overlap what the optimizer writes,
hyperparameters and widths that would poison the numbers: refused, with nothing changed.

Every refusal here is checked the same way: the error type, a fragment of its message, and
every parameter, state array, step count, group state and hyperparameter bit for bit as
before."""

import json
import os
import time

import numpy as np
import pytest

import fastopt
from fastopt import checkpoint, nn, optim, runs


def snapshot(params, opt):
    return dict(
        params=[p.copy() for p in params],
        state=[{k: v.copy() for k, v in st.items()} for st in opt.state],
        steps=opt.steps, skipped=opt.skipped_steps,
        group_state=json.dumps(opt.group_state, sort_keys=True),
        groups=[{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])


def assert_same(before, params, opt):
    after = snapshot(params, opt)
    for a, b in zip(before["params"], after["params"]):
        assert a.tobytes() == b.tobytes()
    assert [sorted(s) for s in before["state"]] == [sorted(s) for s in after["state"]]
    for sa, sb in zip(before["state"], after["state"]):
        for k in sa:
            assert sa[k].tobytes() == sb[k].tobytes(), k
    for key in ("steps", "skipped", "group_state", "groups"):
        assert before[key] == after[key], key


def trained(name, **kw):
    """An optimizer three steps in (and one skipped), on two arrays."""
    params = [np.linspace(-1, 1, 7), np.full((2, 3), 0.5)]
    opt = getattr(optim, name)(params, skip_nonfinite=True, **kw)
    for s in range(3):
        opt.step([np.full(7, 0.1 * (s + 1)), np.full((2, 3), -0.2)])
    opt.step([np.full(7, np.nan), np.zeros((2, 3))])  # skipped
    return params, opt


def other_state_dict(name, **kw):
    """A valid state dict of the same optimizer one step in, from other arrays."""
    params = [np.zeros(7), np.zeros((2, 3))]
    opt = getattr(optim, name)(params, skip_nonfinite=True, **kw)
    opt.step([np.ones(7), np.ones((2, 3))])
    return opt.state_dict()


def _set(path, value):
    def edit(sd):
        target = sd
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(key):
    return lambda sd: sd.pop(key)


# (optimizer, mutation of a valid state dict, error type, message fragment)
BAD_STATE_DICTS = [
    ("Adam", _set(["skipped_steps"], "x"), TypeError, "skipped_steps must be a non-negative"),
    ("Adam", _set(["skipped_steps"], -1), ValueError, "skipped_steps must be a non-negative"),
    ("Adam", _set(["skipped_steps"], 1.5), ValueError, "skipped_steps"),
    ("Adam", _set(["steps"], "3"), TypeError, "steps must be a non-negative"),
    ("Adam", _set(["steps"], -2), ValueError, "steps must be a non-negative"),
    ("Adam", _set(["group_state"], [5]), TypeError, r"group_state\[0\] must be a dict"),
    ("Adam", _set(["group_state"], {}), ValueError, "group_state must be a list"),
    ("Adam", _set(["group_state"], [{"mu_product": 0.5}]), ValueError,
     "Adam does not keep"),
    ("NAdam", _set(["group_state"], [{"mu_product": "x"}]), TypeError,
     r"group_state\[0\]\['mu_product'\] must be a real number"),
    ("NAdam", _set(["group_state"], [{"mu_product": float("nan")}]), ValueError,
     "mu_product'] must be finite"),
    ("NAdam", _set(["group_state"], [{"mu_product": 2.0}]), ValueError, "must be <= 1"),
    ("SGD", _set(["group_state"], [{"started": "yes"}]), TypeError,
     "started'] must be True or False"),
    ("Adam", _set(["param_groups"], 3), TypeError, "param_groups must be a list of dicts"),
    ("Adam", _set(["param_groups"], [[]]), TypeError, "param_groups must be a list of dicts"),
    ("Adam", _set(["param_groups", 0, "params"], 2), ValueError, "lists the arrays 2"),
    ("Adam", _set(["param_groups", 0, "eps"], 0.0), ValueError,
     "parameter group 0: eps must be > 0"),
    ("Adam", _set(["param_groups", 0, "betas"], 0.9), TypeError, "betas must be a pair"),
    ("Adam", _set(["param_groups", 0, "lr"], -1.0), ValueError, "parameter group 0: lr"),
    ("Adam", _set(["state"], [1, 2]), TypeError, "state must be a dict"),
    ("Adam", _set(["state", 1], [1]), TypeError, "state of parameter 1 must be a dict"),
    ("Adam", _set(["state", 1, "exp_avg"], np.zeros(5)), ValueError,
     "state 'exp_avg' of parameter 1"),
    ("Adam", _set(["state", 0, "exp_avg"], np.zeros(7, dtype=np.float32)), ValueError,
     "state 'exp_avg' of parameter 0 is float32"),
    ("Adam", _set(["state", 0, "exp_avg"], ["a"] * 7), ValueError, "exp_avg"),
    ("Adam", _drop("group_state"), ValueError, "lacks 'group_state'"),
    ("Adam", _set(["convention"], "keras"), ValueError, "convention"),
    ("SGD", lambda sd: None, ValueError, "state_dict is for Adam"),
]


def _ids(cases):
    return [f"{c[0]}-{i}" for i, c in enumerate(cases)]


@pytest.mark.parametrize("name,edit,error,match", BAD_STATE_DICTS, ids=_ids(BAD_STATE_DICTS))
def test_a_refused_state_dict_changes_nothing(name, edit, error, match):
    source = "Adam" if match == "state_dict is for Adam" else name
    kw = dict(momentum=0.9) if name == "SGD" else {}
    sd = other_state_dict(source, **({} if source != name else kw))
    edit(sd)
    params, opt = trained(name, **kw)
    before = snapshot(params, opt)
    with pytest.raises(error, match=match):
        opt.load_state_dict(sd)
    assert_same(before, params, opt)
    opt.step([np.ones(7), np.ones((2, 3))])  # and it still works
    assert opt.steps == before["steps"] + 1


def _write_checkpoint(path, params, sd):
    """The layout of fastopt.save, from a (possibly broken) state dict."""
    sd = dict(sd)
    state = sd.pop("state")
    arrays = {f"param/{i}": p for i, p in enumerate(params)}
    for i, st in (state.items() if isinstance(state, dict) else []):
        for k, v in (st.items() if isinstance(st, dict) else []):
            arrays[f"state/{i}/{k}"] = np.asarray(v)
    meta = {"format": checkpoint.FORMAT, "n_params": len(params), "optimizer": sd}
    np.savez(path, meta=np.array(json.dumps(meta, default=lambda v: v.tolist())), **arrays)


FILE_CASES = [c for c in BAD_STATE_DICTS
              if "state must be a dict" not in c[3] and "parameter 1 must be" not in c[3]
              and "float32" not in c[3] and "['a']" not in repr(c)]


@pytest.mark.parametrize("name,edit,error,match", FILE_CASES, ids=_ids(FILE_CASES))
def test_a_refused_checkpoint_changes_neither_params_nor_optimizer(tmp_path, name, edit,
                                                                   error, match):
    source = "Adam" if match == "state_dict is for Adam" else name
    kw = dict(momentum=0.9) if name == "SGD" else {}
    sd = other_state_dict(source, **({} if source != name else kw))
    edit(sd)
    path = tmp_path / "bad.npz"
    _write_checkpoint(path, [np.full(7, 9.0), np.full((2, 3), 9.0)], sd)
    params, opt = trained(name, **kw)
    before = snapshot(params, opt)
    with pytest.raises((TypeError, ValueError), match=match) as info:
        fastopt.load(path, params, opt)
    assert str(path) in str(info.value)
    assert_same(before, params, opt)


def _checkpoint_bytes(tmp_path):
    params, opt = trained("Adam")
    return open(fastopt.save(tmp_path / "good.npz", params, opt), "rb").read()


def _npz(**entries):
    def make(path, good):
        np.savez(path, **{k: (v(good) if callable(v) else v) for k, v in entries.items()})
    return make


META = json.dumps({"format": checkpoint.FORMAT, "n_params": 2, "optimizer": None})
PARAMS = {"param/0": np.zeros(7), "param/1": np.zeros((2, 3))}

# (how the file is made, message fragment): files that are not checkpoints
BAD_FILES = [
    (lambda path, good: path.write_bytes(good[:len(good) // 2]), "truncated"),
    (lambda path, good: path.write_bytes(b""), "the file is empty"),
    (lambda path, good: path.write_bytes(np.random.default_rng(0).bytes(3000)),
     "not an .npz archive"),
    (lambda path, good: path.write_bytes(b"\x80\x04\x95" + good[:200]), "not an .npz archive"),
    (_npz(meta=np.array("{not json"), **PARAMS), "meta entry is not JSON"),
    (_npz(meta=np.array("[1, 2]"), **PARAMS), "not a JSON object"),
    (_npz(meta=np.array(META.replace('"n_params": 2', '"n_params": "2"')), **PARAMS),
     "n_params is '2'"),
    (_npz(meta=np.array(META), **{"param/0": np.array([{}], dtype=object),
                                  "param/1": np.zeros((2, 3))}), "holds Python objects"),
    (_npz(meta=np.array(META), **{"param/0": np.zeros(7)}), "lacks the entry param/1"),
    (_npz(**PARAMS), "no 'meta' entry"),
]


@pytest.mark.parametrize("make,match", BAD_FILES)
def test_a_file_that_is_not_a_checkpoint_is_named_and_changes_nothing(tmp_path, make, match):
    path = tmp_path / "bad.npz"
    make(path, _checkpoint_bytes(tmp_path))
    params, opt = trained("Adam")
    before = snapshot(params, opt)
    with pytest.raises(ValueError, match=match) as info:
        fastopt.load(path, params, opt)
    message = str(info.value)
    assert str(path) in message
    assert "pickle" not in message  # never advice to unpickle a file one cannot trust
    assert_same(before, params, opt)


def test_a_bad_state_entry_name_is_refused(tmp_path):
    params, opt = trained("Adam")
    good = tmp_path / "good.npz"
    fastopt.save(good, params, opt)
    with np.load(good) as z:
        entries = {k: z[k] for k in z.files}
    entries["state/x/exp_avg"] = entries.pop("state/0/exp_avg")
    np.savez(tmp_path / "bad.npz", **entries)
    before = snapshot(params, opt)
    with pytest.raises(ValueError, match="'state/x/exp_avg', which is not state/"):
        fastopt.load(tmp_path / "bad.npz", params, opt)
    assert_same(before, params, opt)


# ---------------------------------------------------------------------------------------
# save: the process's umask, synced, and no temporaries left behind by killed saves


def test_checkpoints_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = fastopt.save(tmp_path / "c.npz", np.zeros(3))
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_save_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(runs.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode),
                                                      real(fd)))
    fastopt.save(tmp_path / "c.npz", np.zeros(3))
    import stat

    assert any(stat.S_ISREG(m) for m in synced) and any(stat.S_ISDIR(m) for m in synced)


def _dead_pid():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    old = time.time() - 2 * runs.STALE_SECONDS
    dead = _dead_pid()
    stale = tmp_path / f".fastopt-{dead}-0123456789ab.tmp"  # a killed save of this version
    recent = tmp_path / f".fastopt-{dead}-ba9876543210.tmp"  # maybe still being written
    alive = tmp_path / f".fastopt-{os.getppid()}-00112233aabb.tmp"  # a live writer
    legacy = tmp_path / ".fastopt-ab12cd_9.npz"  # tempfile's name, from earlier versions
    for f in (stale, recent, alive, legacy):
        f.write_bytes(b"x" * 100)
    for f in (stale, alive):
        os.utime(f, (old, old))
    os.utime(legacy, (time.time() - 7200,) * 2)
    fastopt.save(tmp_path / "next.npz", np.zeros(3))
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        [recent.name, alive.name, "next.npz"])


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    path = fastopt.save(tmp_path / "c.npz", np.arange(3.0))
    before = open(path, "rb").read()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        fastopt.save(path, np.zeros(3))
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["c.npz"]


# ---------------------------------------------------------------------------------------
# gradients that overlap what the optimizer writes


def _buffer_cases():
    """(params, grads, message fragment or None if accepted), built on fresh buffers."""
    def partial_own():
        buf = np.zeros(11)
        return buf[1:11], buf[0:10], "grads shares memory with params"

    def other_param():
        ps = [np.ones(4), np.ones(4)]
        return ps, [np.ones(4), ps[0]], r"grads\[1\] shares memory with params\[0\]"

    def own_param():
        p = np.ones(4)
        return p, p, None

    def one_grad_for_two():
        g = np.ones(4)
        return [np.ones(4), np.ones(4)], [g, g], None

    def reshaped_view():
        buf = np.zeros(24)
        return buf[:12].reshape(3, 4), buf[6:18].reshape(3, 4), "shares memory with params"

    def foreign_memory():  # two arrays over one bytearray, neither owning its memory
        raw = bytearray(8 * 11)
        p = np.frombuffer(raw, dtype=np.float64, count=10, offset=8)
        return p, np.frombuffer(raw, dtype=np.float64, count=10), "shares memory with params"

    return [partial_own, other_param, own_param, one_grad_for_two, reshaped_view,
            foreign_memory]


@pytest.mark.parametrize("make", _buffer_cases(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_gradients_that_overlap_a_parameter(name, make):
    params, grads, match = make()
    params_list = params if isinstance(params, list) else [params]
    for p in params_list:
        p[...] = 1.0
    opt = getattr(optim, name)(params, lr=0.1, momentum=0.9) if name == "SGD" else \
        getattr(optim, name)(params, lr=0.1)
    before = snapshot(params_list, opt)
    if match is None:
        assert opt.step(grads) is True
        return
    with pytest.raises(ValueError, match=match):
        opt.step(grads)
    assert_same(before, params_list, opt)
    with pytest.raises(ValueError, match=match):  # refused again, not remembered as good
        opt.step(grads)


def test_a_gradient_that_overlaps_a_state_array_is_refused():
    params = [np.ones(5), np.ones(5)]
    opt = optim.Adam(params)
    before = snapshot(params, opt)
    with pytest.raises(ValueError, match=r"grads\[1\] shares memory with the optimizer's "
                                         r"state 'exp_avg' of params\[0\]"):
        opt.step([np.ones(5), opt.state[0]["exp_avg"]])
    assert_same(before, params, opt)


def test_new_state_arrays_are_checked_again():
    """amsgrad switched on allocates a state array; a gradient may not be a view of it."""
    params = [np.ones(6), np.ones(6)]
    opt = optim.Adam(params)
    grads = [np.ones(6), np.ones(6)]
    opt.step(grads)
    opt.param_groups[0]["amsgrad"] = True
    opt.step(grads)  # allocates max_exp_avg_sq
    with pytest.raises(ValueError, match=r"grads\[1\] shares memory with the optimizer's "
                                         r"state 'max_exp_avg_sq' of params\[0\]"):
        opt.step([grads[0], opt.state[0]["max_exp_avg_sq"]])


# ---------------------------------------------------------------------------------------
# values that would poison the numbers later


EPS_OPTIMIZERS = sorted(n for n, cls in optim.OPTIMIZERS.items()
                        if "eps" in cls.__init__.__code__.co_varnames)


def test_every_optimizer_with_eps_is_listed():
    assert {"adam", "adagrad", "rmsprop", "adadelta", "adamax", "nadam",
            "radam"} <= set(EPS_OPTIMIZERS)


@pytest.mark.parametrize("eps", [0.0, -1e-8, 0])
@pytest.mark.parametrize("name", EPS_OPTIMIZERS)
def test_eps_must_be_positive(name, eps):
    with pytest.raises(ValueError, match="eps must be > 0.*NaN"):
        optim.OPTIMIZERS[name](np.zeros(3), eps=eps)


@pytest.mark.parametrize("name", EPS_OPTIMIZERS)
def test_eps_zero_set_on_a_group_is_refused_at_the_next_step(name):
    p = np.ones(3)
    opt = optim.OPTIMIZERS[name](p)
    opt.step(np.zeros(3))
    before = snapshot([p], opt)
    opt.param_groups[0]["eps"] = 0.0
    with pytest.raises(ValueError, match="eps must be > 0"):
        opt.step(np.zeros(3))
    opt.param_groups[0]["eps"] = before["groups"][0]["eps"]
    assert_same(before, [p], opt)


@pytest.mark.parametrize("sizes,error,match", [
    ([64, 2.7, 10], ValueError, r"sizes\[1\] must be an integer >= 1.*never rounded"),
    ([64, 0, 10], ValueError, r"sizes\[1\] must be an integer >= 1"),
    ([64, "8", 10], TypeError, r"sizes\[1\] must be an integer"),
    ([64, True, 10], TypeError, r"sizes\[1\]"),
    ("64,10", TypeError, "sequence of integers"),
])
def test_mlp_widths_are_whole_numbers(sizes, error, match):
    with pytest.raises(error, match=match):
        nn.MLP(sizes)


def test_mlp_widths_of_any_integer_type():
    model = nn.MLP([np.int64(6), 4.0, np.int32(3)])
    assert model.weights[0].shape == (6, 4) and model.weights[1].shape == (4, 3)
