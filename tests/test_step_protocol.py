"""The optimizer's step protocol: plan k steps, apply them in a loop, commit those applied.

Table-driven over every optimizer in ``fastopt.optim.OPTIMIZERS``, each configured so that
it keeps host-side group state where it has any (SGD's momentum start, NAdam's mu
product). The GPU side of the same checks is tests/cuda_sim/test_step_protocol_sim.py.
"""

import copy

import numpy as np
import pytest

from fastopt import nn, optim, train
from fastopt.kernels import cpu

# per optimizer: constructor arguments that exercise its state and flags
CONFIG = {
    "sgd": dict(momentum=0.9, nesterov=True),
    "adagrad": dict(lr_decay=0.01),
    "rmsprop": dict(centered=True, momentum=0.5),
    "adam": dict(amsgrad=True),
    "adamw": dict(),
    "adadelta": dict(),
    "adamax": dict(),
    "nadam": dict(),
    "radam": dict(),
    "lion": dict(weight_decay=0.1),
}
ALL = sorted(optim.OPTIMIZERS)
FAIL_AT = 5  # the schedule's argument (0-based step) at which it fails


def test_the_table_covers_every_optimizer():
    assert set(CONFIG) == set(optim.OPTIMIZERS)


def good_lr(step):
    return 0.01 / (1.0 + 0.1 * step)


def failing_lr(failure):
    """A schedule equal to good_lr before step FAIL_AT that raises or returns NaN there."""

    def lr(step):
        if step < FAIL_AT:
            return good_lr(step)
        if failure == "raise":
            raise RuntimeError("the schedule broke")
        return float("nan")

    return lr


def make(name, params, lr=good_lr):
    return optim.OPTIMIZERS[name](params, lr=lr, **CONFIG[name])


def snapshot(params, opt):
    """Everything a step may change: parameters, state arrays, steps, group state."""
    return (np.array(params, copy=True), copy.deepcopy(opt.state), opt.steps,
            copy.deepcopy(opt.group_state))


def assert_same(a, b):
    pa, sa, na, ga = a
    pb, sb, nb, gb = b
    np.testing.assert_array_equal(pa, pb)
    assert na == nb and ga == gb
    assert [st.keys() for st in sa] == [st.keys() for st in sb]
    for x, y in zip(sa, sb):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def grads(rng, n, k):
    return [rng.standard_normal(n) for _ in range(k)]


def apply(plan, gs):
    """What a compiled loop does with a plan: step j's row on every array."""
    for j, g in enumerate(gs):
        for p, (s0, s1, s2), h, f in zip(plan.params, plan.slots, plan.hypers, plan.flags):
            cpu.update(plan.rule, p, g, s0, s1, s2, h[j], f[j])


# ---------------------------------------------------------------------------------------
# the protocol on host arrays


@pytest.mark.parametrize("name", ALL)
def test_a_plan_run_and_committed_equals_step_bitwise(name, rng):
    p = rng.standard_normal(20)
    q = p.copy()
    a, b = make(name, p), make(name, q)
    gs = grads(rng, 20, 4)
    plan = a.plan_steps(4)
    assert plan.count == 4 and plan.error is None and plan.rule == a.rule.name
    assert plan.hypers[0].shape == (4, len(a.rule.hyper)) and plan.hypers[0].dtype == p.dtype
    assert plan.flags[0].shape == (4, len(a.rule.flags)) and plan.flags[0].dtype == np.int64
    apply(plan, gs)
    a.commit_steps(plan, 4)
    for g in gs:
        b.step(g)
    assert_same(snapshot(p, a), snapshot(q, b))


@pytest.mark.parametrize("name", ALL)
def test_a_plan_that_is_not_committed_changes_nothing(name, rng):
    p = rng.standard_normal(20)
    q = p.copy()
    a, b = make(name, p), make(name, q)
    g = rng.standard_normal(20)
    a.step(g)
    b.step(g)
    before = snapshot(p, a)
    for k in (0, 1, 7):
        plan = a.plan_steps(k)
        assert plan.count == k
        assert_same(snapshot(p, a), before)
    a.step(g)  # as if no plan had been made
    b.step(g)
    assert_same(snapshot(p, a), snapshot(q, b))


@pytest.mark.parametrize("name", ALL)
def test_committing_part_of_a_plan_keeps_the_steps_applied(name, rng):
    p = rng.standard_normal(20)
    q = p.copy()
    a, b = make(name, p), make(name, q)
    gs = grads(rng, 20, 3)
    plan = a.plan_steps(5)
    apply(plan, gs[:2])
    a.commit_steps(plan, 2)
    for g in gs[:2]:
        b.step(g)
    assert_same(snapshot(p, a), snapshot(q, b))
    a.step(gs[2])  # the next steps follow on from step 2, not from the plan's end
    b.step(gs[2])
    assert_same(snapshot(p, a), snapshot(q, b))


@pytest.mark.parametrize("failure", ["raise", "nan"])
@pytest.mark.parametrize("name", ALL)
def test_a_failing_schedule_ends_the_plan_at_the_good_steps(name, failure, rng):
    p = rng.standard_normal(8)
    opt = make(name, p, lr=failing_lr(failure))
    plan = opt.plan_steps(FAIL_AT + 3)
    assert plan.count == FAIL_AT and plan.hypers[0].shape[0] == FAIL_AT
    assert isinstance(plan.error, RuntimeError if failure == "raise" else ValueError)
    with pytest.raises(type(plan.error), match=f"step {FAIL_AT}"):
        raise plan.error
    assert opt.steps == 0


def test_plans_of_several_groups_and_dtypes(rng):
    w, b = rng.standard_normal(6), rng.standard_normal(3).astype(np.float32)
    w2, b2 = w.copy(), b.copy()
    groups = [{"params": [w]}, {"params": [b], "lr": 0.5, "weight_decay": 0.0}]
    a = optim.AdamW(groups, lr=0.1, weight_decay=0.1)
    ref = optim.AdamW([{"params": [w2]}, {"params": [b2], "lr": 0.5, "weight_decay": 0.0}],
                      lr=0.1, weight_decay=0.1)
    plan = a.plan_steps(2)
    assert plan.params[0].base is w or plan.params[0] is w
    assert plan.hypers[1].dtype == np.float32 and plan.hypers[0].dtype == np.float64
    gw, gb = rng.standard_normal(6), rng.standard_normal(3).astype(np.float32)
    for j in range(2):
        for p, g, (s0, s1, s2), h, f in zip(plan.params, (gw, gb), plan.slots, plan.hypers,
                                            plan.flags):
            cpu.update(plan.rule, p, g, s0, s1, s2, h[j], f[j])
        ref.step([gw, gb])
    a.commit_steps(plan, 2)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(b, b2)
    assert a.steps == ref.steps == 2


def test_misuse_of_the_protocol_is_refused(rng):
    p = rng.standard_normal(4)
    opt = optim.Adam(p)
    plan = opt.plan_steps(3)
    with pytest.raises(ValueError, match="plan.count"):
        opt.commit_steps(plan, 4)
    with pytest.raises(ValueError, match="plan.count"):
        opt.commit_steps(plan, -1)
    opt.commit_steps(plan, 1)
    with pytest.raises(ValueError, match="commit a plan once"):
        opt.commit_steps(plan, 1)
    with pytest.raises(TypeError, match="this optimizer"):
        optim.Adam(p.copy()).commit_steps(plan, 0)
    with pytest.raises(ValueError, match="integer >= 0"):
        opt.plan_steps(-1)
    with pytest.raises(ValueError, match="max_grad_norm"):
        optim.Adam(p.copy(), max_grad_norm=1.0).plan_steps(1)
    first = opt.plan_steps(1)
    opt.commit_steps(first, 1)
    second = opt.plan_steps(1)
    opt.commit_steps(second, 1)
    opt.revert_steps(first)  # the GPU step's undo of steps the device did not apply
    assert opt.steps == 1
    with pytest.raises(ValueError, match="nothing of it was committed"):
        opt.revert_steps(second)


# ---------------------------------------------------------------------------------------
# a schedule failing inside a compiled fit chunk (and in train_step)


def toy(n=40, features=5, classes=3, seed=0):
    r = np.random.default_rng(seed)
    return r.random((n, features)).astype(np.float32), np.arange(n) % classes


def fitted(name, lr, **kw):
    """(model, optimizer, error) after fit on the toy set: batches of 4, chunks of 10."""
    X, y = toy()
    model = nn.MLP([5, 6, 3], seed=2)
    opt = make(name, model.params, lr=lr)
    try:
        train.fit(model, opt, (X, y), batch_size=4, seed=1, progress=False, **kw)
    except Exception as exc:
        return model, opt, exc
    return model, opt, None


@pytest.mark.parametrize("failure", ["raise", "nan"])
@pytest.mark.parametrize("name", ALL)
def test_schedule_failing_inside_a_fit_chunk_leaves_the_step_before(name, failure):
    model, opt, error = fitted(name, failing_lr(failure), epochs=2)
    assert isinstance(error, RuntimeError if failure == "raise" else ValueError)
    with pytest.raises(type(error), match=f"step {FAIL_AT}"):
        raise error
    ref_model, ref_opt, ref_error = fitted(name, good_lr, max_steps=FAIL_AT)
    assert ref_error is None and ref_opt.steps == FAIL_AT
    assert_same(snapshot(model.params, opt), snapshot(ref_model.params, ref_opt))


@pytest.mark.parametrize("name", ["nadam", "sgd"])
def test_schedule_failing_in_train_step_changes_nothing(name):
    X, y = toy()
    model = nn.MLP([5, 6, 3], seed=2)
    opt = make(name, model.params, lr=failing_lr("raise"))
    for k in range(FAIL_AT):
        model.train_step(X[k:k + 4], y[k:k + 4], opt)
    before = snapshot(model.params, opt)
    with pytest.raises(RuntimeError, match=f"step {FAIL_AT}"):
        model.train_step(X[:4], y[:4], opt)
    assert_same(snapshot(model.params, opt), before)
