"""train.Training: a run advanced in slices equals fit; cpu_time; explicit evaluation steps."""

import math

import numpy as np
import pytest

from fastopt import nn, optim, train


def toy(n=60, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, features)).astype(np.float32)
    return X, np.arange(n) % classes


def build(name="Adam", dropout=0.0, **kw):
    m = nn.MLP([5, 8, 3], seed=2, dropout=dropout)
    return m, getattr(optim, name)(m.params, **({"lr": 1e-2} | kw))


def untimed(history):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "cpu_time")}
            for r in history.records]


def assert_same_run(a, b):
    """Two (model, optimizer, history) triples hold the same numbers, bit for bit."""
    np.testing.assert_array_equal(a[0].params, b[0].params)
    assert repr(a[1].state_dict()) == repr(b[1].state_dict())
    assert repr(untimed(a[2])) == repr(untimed(b[2]))
    assert a[2].stopped == b[2].stopped


@pytest.mark.parametrize("name,dropout,slices", [
    ("Adam", 0.0, dict(steps=1)), ("Adam", 0.0, dict(steps=4)),
    ("SGD", 0.0, dict(seconds=1e-4)), ("Adam", 0.2, dict(steps=3)),
])
def test_training_in_slices_equals_fit(name, dropout, slices):
    X, y = toy()
    kw = dict(batch_size=7, epochs=3, eval_every=4, seed=5, progress=False)
    m, o = build(name, dropout)
    h = train.fit(m, o, (X, y), **kw)
    m2, o2 = build(name, dropout)
    t = train.Training(m2, o2, (X, y), **kw)
    calls = 0
    while not t.advance(**slices):
        calls += 1
    assert calls >= 3 and t.finished and t.steps == o2.steps == 27
    assert t.advance(steps=5) is True and o2.steps == 27  # an ended run stays put
    assert_same_run((m, o, h), (m2, o2, t.history))


def test_slice_ends_at_its_step_count_and_evaluations_stay_where_they_were():
    X, y = toy()
    m, o = build()
    t = train.Training(m, o, (X, y), batch_size=6, max_steps=20, eval_every=8,
                       progress=False)
    assert len(t.history) == 1 and t.history.records[0]["step"] == 0
    assert t.advance(steps=5) is False and t.steps == 5
    assert t.advance(steps=5) is False and t.steps == 10
    assert t.advance() is True and t.history.stopped == "max_steps"
    assert list(t.history["step"]) == [0, 8, 16, 20]


def test_cpu_time_column_and_csv(tmp_path):
    X, y = toy()
    m, o = build()
    h = train.fit(m, o, (X, y), batch_size=6, epochs=4, progress=False)
    cpu, wall = h["cpu_time"], h["wall_time"]
    assert cpu[0] == 0.0 and np.all(np.diff(cpu) >= 0) and cpu[-1] > 0
    assert np.all(np.isfinite(wall))
    g = train.History.from_csv(h.to_csv(tmp_path / "h.csv"))
    np.testing.assert_array_equal(g["cpu_time"], cpu)
    # a file written before the column existed still reads; its cpu_time is NaN
    old = tmp_path / "old.csv"
    old.write_text("# compile_time=0.5 eval_time=0.1 stopped=epochs\n"
                   "step,epoch,wall_time,train_loss,test_loss,test_accuracy,lr\n"
                   "0,0.0,0.0,nan,2.3,0.1,0.1\n10,1.0,0.25,1.5,1.4,0.6,0.1\n")
    g = train.History.from_csv(old)
    assert list(g["step"]) == [0, 10] and np.isnan(g["cpu_time"]).all()
    assert g.stopped == "epochs" and g["wall_time"][-1] == 0.25


def test_eval_at_list_and_callable():
    X, y = toy()
    m, o = build()
    h = train.Training(m, o, (X, y), batch_size=6, max_steps=30, eval_at=[20, 1, 2, 5, 5, 99],
                       progress=False)
    h.advance()
    assert list(h.history["step"]) == [0, 1, 2, 5, 20, 30]

    seen = []

    def doubling(record):
        seen.append(record["step"])
        return max(1, 2 * record["step"])

    m, o = build()
    t = train.Training(m, o, (X, y), batch_size=6, max_steps=30, eval_at=doubling,
                       progress=False)
    t.advance()
    assert list(t.history["step"]) == [0, 1, 2, 4, 8, 16, 30]
    assert seen == [0, 1, 2, 4, 8, 16]  # the final record needs no next step


@pytest.mark.parametrize("kw,match", [
    (dict(eval_every=3, eval_at=[1, 2]), "not both"),
    (dict(eval_at=[0, 5]), "positive whole step"),
    (dict(eval_at=[2.5]), "positive whole step"),
    (dict(eval_at="often"), "positive whole step"),
    (dict(eval_at=[float("inf")]), "positive whole step"),
])
def test_eval_at_bad_values_change_nothing(kw, match):
    X, y = toy()
    m, o = build()
    before = m.params.copy()
    with pytest.raises(ValueError, match=match):
        train.Training(m, o, (X, y), batch_size=6, progress=False, **kw)
    np.testing.assert_array_equal(m.params, before)
    assert o.steps == 0


def test_eval_at_callable_must_move_forward():
    X, y = toy()
    m, o = build()
    with pytest.raises(ValueError, match="later step"):
        train.Training(m, o, (X, y), batch_size=6, eval_at=lambda record: record["step"],
                       progress=False)


@pytest.mark.parametrize("kw,match", [(dict(seconds=0.0), "seconds"),
                                      (dict(steps=0), "steps")])
def test_advance_bad_arguments(kw, match):
    X, y = toy()
    m, o = build()
    t = train.Training(m, o, (X, y), batch_size=6, progress=False)
    with pytest.raises(ValueError, match=match):
        t.advance(**kw)
    assert t.steps == 0


def test_divergence_in_a_slice_raises_once_then_the_run_has_ended():
    X, y = toy()
    m, o = build("SGD", lr=1e30)
    t = train.Training(m, o, (X, y), batch_size=6, epochs=50, progress=False)
    with pytest.raises(train.TrainingDiverged) as info:
        while not t.advance(steps=2):
            pass
    assert t.finished and t.advance() is True
    assert not math.isfinite(info.value.loss) and info.value.history is t.history


def test_round_robin_equals_one_run_after_another():
    """Several Trainings taking turns give the runs they give alone (each has its own
    seeds), which is what lets fastopt compare interleave its runs."""
    X, y = toy()
    kw = dict(batch_size=5, max_steps=40, eval_at=[1, 3, 9, 27], progress=False)
    alone = []
    for seed in (0, 1, 2):
        m, o = build("Adam")
        t = train.Training(m, o, (X, y), seed=seed, **kw)
        t.advance()
        alone.append((m, o, t.history))
    turns = []
    for seed in (0, 1, 2):
        m, o = build("Adam")
        turns.append((m, o, train.Training(m, o, (X, y), seed=seed, **kw)))
    while not all(t.finished for _, _, t in turns):
        for _, _, t in turns:
            t.advance(steps=3)
    for a, (m, o, t) in zip(alone, turns):
        assert_same_run(a, (m, o, t.history))
