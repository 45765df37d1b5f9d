"""fit: sampling, the compiled chunk loop against per-step training, records, stopping."""

import math

import numpy as np
import pytest

from fastopt import datasets, nn, optim, train


def toy(n=20, features=3, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, features)).astype(np.float32)
    y = np.arange(n) % classes
    return X, y


def test_20_samples_batch_5_three_epochs_is_12_updates():
    X, y = toy()
    m = nn.MLP([3, 4, 2], seed=0)
    o = optim.SGD(m.params, lr=0.1)
    h = train.fit(m, o, (X, y), batch_size=5, epochs=3, progress=False)
    assert o.steps == 12
    assert list(h["step"]) == [0, 4, 8, 12]
    assert list(h["epoch"]) == [0, 1, 2, 3]
    assert h.stopped == "epochs"


def test_full_batch_is_one_update_per_epoch_and_batch_1_is_sgd():
    X, y = toy()
    m = nn.MLP([3, 2], seed=0)
    o = optim.SGD(m.params, lr=0.1)
    train.fit(m, o, (X, y), batch_size=None, epochs=4, progress=False)
    assert o.steps == 4
    o2 = optim.SGD(m.params, lr=0.1)
    train.fit(m, o2, (X, y), batch_size=1, epochs=2, progress=False)
    assert o2.steps == 40


def test_sampling_without_and_with_replacement():
    rng = np.random.default_rng(0)
    b = train.epoch_batches(23, 5, rng)
    assert [len(x) for x in b] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(b)) == list(range(23))  # each sample once per epoch
    assert [len(x) for x in train.epoch_batches(23, 5, rng, drop_last=True)] == [5] * 4
    r = train.epoch_batches(23, 5, rng, replacement=True)
    assert len(r) == 5 and all(len(x) == 5 for x in r)
    e1, e2 = train.epoch_batches(23, 23, rng), train.epoch_batches(23, 23, rng)
    assert not np.array_equal(e1[0], e2[0])  # reshuffled every epoch


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05, momentum=0.9)),
                                     ("Adam", dict(lr=1e-2)),
                                     ("NAdam", dict()),
                                     ("SGD", dict(lr=0.1, convention="keras", momentum=0.5))])
def test_compiled_chunks_equal_per_step_training_bitwise(name, kw):
    X, y = toy(n=37, features=6, classes=3)
    a = nn.MLP([6, 8, 3], seed=4)
    b = nn.MLP([6, 8, 3], seed=4)
    oa = getattr(optim, name)(a.params, **kw)
    ob = getattr(optim, name)(b.params, **kw)
    h = train.fit(a, oa, (X, y), batch_size=8, epochs=3, eval_every=3, seed=9, progress=False)
    rng = np.random.default_rng(9)
    losses = []
    for _ in range(3):
        for idx in train.epoch_batches(37, 8, rng):
            losses.append(b.train_step(X[idx], y[idx], ob))
    np.testing.assert_array_equal(a.params, b.params)
    assert oa.steps == ob.steps == 15
    assert h.records[1]["train_loss"] == pytest.approx(np.mean(losses[:3]), rel=1e-12)


def test_same_seed_same_history():
    X, y = toy(n=50, features=4, classes=3)

    def run():
        m = nn.MLP([4, 6, 3], seed=1, dropout=0.2)
        o = optim.Adam(m.params, lr=1e-2)
        h = train.fit(m, o, (X, y), batch_size=7, epochs=4, seed=3, progress=False)
        return [{k: v for k, v in r.items() if k not in ("wall_time", "cpu_time")}
                for r in h.records]

    assert repr(run()) == repr(run())


def test_history_csv_round_trip(tmp_path):
    X, y = toy()
    m = nn.MLP([3, 2], seed=0)
    h = train.fit(m, optim.SGD(m.params, lr=0.1), (X, y), batch_size=5, epochs=2,
                  progress=False)
    path = h.to_csv(tmp_path / "h.csv")
    g = train.History.from_csv(path)
    assert len(g) == len(h) and g.stopped == h.stopped
    assert g.compile_time == h.compile_time and g.eval_time == h.eval_time
    for col in train.COLUMNS:
        np.testing.assert_array_equal(g[col], h[col])  # NaN-aware, exact floats
    with pytest.raises(KeyError, match="columns"):
        h["accuracy"]


def test_early_stopping_restores_best_parameters():
    data = datasets.load("digits")
    m = nn.MLP([64, 32, 10], seed=0)
    o = optim.SGD(m.params, lr=0.5, momentum=0.9)  # too hot: the test loss soon worsens
    es = train.EarlyStopping(patience=2, restore_best=True)
    h = train.fit(m, o, data, batch_size=16, epochs=40, early_stopping=es, progress=False)
    assert h.stopped == "early_stopping"
    best = np.argmin(h["test_loss"])
    assert h["step"][best] == es.best_step
    loss, _ = m.evaluate(data.X_test, data.y_test)
    assert loss == pytest.approx(h["test_loss"][best], rel=1e-6)


def test_reduce_lr_on_plateau():
    X, y = toy(n=40)
    m = nn.MLP([3, 2], seed=0)
    o = optim.SGD(m.params, lr=1.0)
    rl = train.ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.1, min_delta=0.5)
    h = train.fit(m, o, (X, y), batch_size=40, epochs=30, reduce_lr=rl, progress=False)
    assert h["lr"][-1] < 1.0 and h["lr"].min() >= 0.1


def test_divergence_raises_with_history():
    X, y = toy(n=40)
    m = nn.MLP([3, 16, 2], seed=0)
    o = optim.SGD(m.params, lr=1e30)
    with pytest.raises(train.TrainingDiverged, match="step") as info:
        train.fit(m, o, (X, y), batch_size=8, epochs=50, progress=False)
    assert len(info.value.history) >= 1 and info.value.step >= 1
    assert not math.isfinite(info.value.loss)


def test_time_budget_and_max_steps():
    X, y = toy(n=64)
    m = nn.MLP([3, 2], seed=0)
    o = optim.SGD(m.params, lr=0.1)
    h = train.fit(m, o, (X, y), batch_size=1, max_steps=10, progress=False)
    assert o.steps == 10 and h.stopped == "max_steps"
    h = train.fit(m, o, (X, y), batch_size=1, time_budget=0.05, progress=False)
    assert h.stopped == "time_budget" and h["wall_time"][-1] < 1.0


def test_adam_on_digits_reaches_95_percent():
    data = datasets.load("digits")
    m = nn.MLP([64, 100, 100, 10], seed=0)
    o = optim.Adam(m.params, lr=1e-3)
    h = train.fit(m, o, data, batch_size=32, epochs=30, progress=False)
    assert h["test_accuracy"][-1] >= 0.95
    assert h["wall_time"][-1] < 5.0  # training seconds, compile excluded


@pytest.mark.parametrize("kw,exc,match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=21), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(time_budget=-1.0), ValueError, "time_budget"),
    (dict(eval_every=0), ValueError, "eval_every"),
])
def test_fit_bad_arguments_change_nothing(kw, exc, match):
    X, y = toy()
    m = nn.MLP([3, 2], seed=0)
    o = optim.SGD(m.params, lr=0.1)
    before = m.params.copy()
    with pytest.raises(exc, match=match):
        train.fit(m, o, (X, y), progress=False, **{"batch_size": 5, **kw})
    np.testing.assert_array_equal(m.params, before)
    assert o.steps == 0


def test_fit_bad_data():
    X, y = toy()
    m = nn.MLP([3, 2], seed=0)
    o = optim.SGD(m.params, lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        train.fit(m, o, (X, y[:-1]), progress=False)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        train.fit(m, o, (X[:, :2], y), progress=False)
    with pytest.raises(ValueError, match="X_test"):
        train.fit(m, o, (X, y, X[:, :2], y), progress=False)
    with pytest.raises(ValueError, match="model.params"):
        train.fit(m, optim.SGD(np.zeros(3), lr=0.1), (X, y), progress=False)
    with pytest.raises(TypeError, match="Dataset"):
        train.fit(m, o, 5, progress=False)


def test_fit_with_batch_norm_on_digits():
    data = datasets.load("digits")
    m = nn.MLP([64, 64, 10], batch_norm=True, seed=0)
    o = optim.SGD(m.params, lr=0.1, momentum=0.9)
    h = train.fit(m, o, data, batch_size=32, epochs=10, progress=False)
    assert h["test_accuracy"][-1] >= 0.93
    with pytest.raises(ValueError, match="drop_last"):
        train.fit(m, o, data, batch_size=1436, epochs=1, progress=False)  # 1437 = 1436 + 1


def test_integer_arguments_of_any_integer_type_and_never_rounded():
    from fastopt import datasets, nn, optim, train

    data = datasets.load("digits")
    model = nn.MLP([64, 8, 10], seed=0)
    opt = optim.SGD(model.params, lr=0.1)
    history = train.fit(model, opt, data, batch_size=np.int32(256), epochs=np.int64(1),
                        eval_every=np.int16(3), progress=False)
    assert history.records[-1]["step"] == 6 and [r["step"] for r in history.records] == [
        0, 3, 6]
    before = model.params.copy()
    for name, value in (("epochs", 2.0), ("max_steps", np.float64(3)), ("epochs", True),
                        ("eval_every", np.bool_(True))):
        with pytest.raises(ValueError, match=name):
            train.fit(model, opt, data, progress=False, **{name: value})
    assert model.params.tobytes() == before.tobytes() and opt.steps == 6


_EVERY_SLOT_PATTERN = ([(name, {}) for name in optim.OPTIMIZERS]
                       + [("Adam", dict(amsgrad=True)), ("RMSprop", dict(centered=True, momentum=0.9)),
                          ("Adagrad", dict(convention="keras")), ("NAdam", dict(convention="keras")),
                          ("Adamax", dict(convention="keras")), ("Adadelta", dict(convention="keras"))])


@pytest.mark.parametrize("name,kw", _EVERY_SLOT_PATTERN)
def test_fit_chunk_calls_every_rule_like_train_step(name, kw):
    """fit's chunk loop is compiled once and calls each rule's update kernel through its
    address (cpu.update_entry / call_update, one call site per state-slot pattern): every
    rule and slot pattern gives train_step's bits."""
    cls = optim.OPTIMIZERS[name] if name in optim.OPTIMIZERS else getattr(optim, name)
    X, y = toy(n=29, features=5, classes=3)
    a, b = nn.MLP([5, 7, 3], seed=2), nn.MLP([5, 7, 3], seed=2)
    oa, ob = cls(a.params, **kw), cls(b.params, **kw)
    train.fit(a, oa, (X, y), batch_size=8, epochs=2, eval_every=8, seed=5, progress=False)
    rng = np.random.default_rng(5)
    for _ in range(2):
        for idx in train.epoch_batches(29, 8, rng):
            b.train_step(X[idx], y[idx], ob)
    np.testing.assert_array_equal(a.params, b.params)
    for sa, sb in zip(oa.state_dict()["state"].values(), ob.state_dict()["state"].values()):
        for key in sa:
            np.testing.assert_array_equal(np.asarray(sa[key]), np.asarray(sb[key]))


def test_update_entry_refuses_arrays_its_address_was_not_compiled_for():
    from fastopt.kernels import cpu

    p = np.zeros(8, np.float32)
    hyper, flags = np.zeros(5, np.float32), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="C-contiguous"):
        cpu.update_entry("sgd", p[::2], p[::2], (None, None, None), hyper, flags)
    ro = p.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        cpu.update_entry("sgd", ro, p, (None, None, None), hyper, flags)
