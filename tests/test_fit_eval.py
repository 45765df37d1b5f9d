"""fit's evaluation columns: the training set's loss and accuracy on a fixed subset
(train_eval_loss, train_accuracy) and Keras-style validation (validation_data=,
validation_split=; val_loss, val_accuracy)."""

import math

import numpy as np
import pytest

from fastopt import nn, optim, train

SIZES = [5, 8, 3]


def data(rng, n=30, dtype=np.float64):
    X = rng.standard_normal((n, SIZES[0])).astype(dtype)
    return X, rng.integers(0, SIZES[-1], n)


def run(X, y, model=None, **kw):
    model = model or nn.MLP(SIZES, dtype="float64", seed=2)
    opt = optim.SGD(model.params, lr=0.1)
    kw.setdefault("batch_size", 8)
    kw.setdefault("epochs", 3)
    return model, train.fit(model, opt, (X, y) if "data" not in kw else kw.pop("data"),
                            progress=False, **kw)


def test_default_subset_is_the_whole_small_training_set(rng):
    X, y = data(rng)
    Xt, yt = data(rng, n=9)
    model, h = run(X, y, data=(X, y, Xt, yt))
    assert len(h) == 4
    last = h.records[-1]
    assert (last["train_eval_loss"], last["train_accuracy"]) == model.evaluate(X, y)
    assert (last["test_loss"], last["test_accuracy"]) == model.evaluate(Xt, yt)
    assert np.isnan(h["val_loss"]).all() and np.isnan(h["val_accuracy"]).all()
    # without a test set the test columns are the training set's: the same numbers
    _, h2 = run(X, y)
    np.testing.assert_array_equal(h2["train_accuracy"], h2["test_accuracy"])
    np.testing.assert_array_equal(h2["train_eval_loss"], h2["test_loss"])


def test_subset_is_fixed_seeded_and_leaves_training_unchanged(rng):
    X, y = data(rng, n=40)
    rows = train._train_eval_rows(40, 11, seed=5)
    assert rows.size == 11 and np.unique(rows).size == 11
    np.testing.assert_array_equal(rows, train._train_eval_rows(40, 11, seed=5))
    assert not np.array_equal(rows, train._train_eval_rows(40, 11, seed=6))
    fresh = nn.MLP(SIZES, dtype="float64", seed=2)
    first = fresh.evaluate(X[rows], y[rows])
    model, h = run(X, y, seed=5, train_eval_size=11)
    assert (h.records[0]["train_eval_loss"], h.records[0]["train_accuracy"]) == first
    assert (h.records[-1]["train_eval_loss"], h.records[-1]["train_accuracy"]) == \
        model.evaluate(X[rows], y[rows])
    other, h0 = run(X, y, seed=5, train_eval_size=0)  # off: NaN columns, same training
    assert np.isnan(h0["train_eval_loss"]).all() and np.isnan(h0["train_accuracy"]).all()
    np.testing.assert_array_equal(model.params, other.params)
    np.testing.assert_array_equal(h["train_loss"], h0["train_loss"])
    np.testing.assert_array_equal(h["test_loss"], h0["test_loss"])
    big = train._train_eval_rows(40, 10**6, seed=5)  # more than n: every row
    np.testing.assert_array_equal(big, np.arange(40))
    assert train._train_eval_rows(20_000, None, 0).size == train.TRAIN_EVAL_SIZE


@pytest.mark.parametrize("kw", [dict(dropout=0.5), dict(batch_norm=True)])
def test_subset_is_evaluated_in_inference_mode(kw, rng):
    """Dropout off, batch norm on its running statistics: the columns are evaluate's."""
    X, y = data(rng, n=32)
    model = nn.MLP(SIZES, dtype="float64", seed=2, **kw)
    model, h = run(X, y, model=model, train_eval_size=10, seed=3)
    rows = train._train_eval_rows(32, 10, 3)
    assert h.records[-1]["train_eval_loss"] == model.evaluate(X[rows], y[rows])[0]
    # the mini-batch loss (training mode) is another number
    assert h.records[-1]["train_loss"] != h.records[-1]["train_eval_loss"]


def test_validation_split_takes_the_last_rows_before_shuffling(rng):
    X, y = data(rng, n=30)
    model, h = run(X, y, validation_split=0.2, seed=1)
    twin, h2 = run(X[:24], y[:24], seed=1)  # trained on the first 24 rows only
    np.testing.assert_array_equal(model.params, twin.params)
    last = h.records[-1]
    assert (last["val_loss"], last["val_accuracy"]) == model.evaluate(X[24:], y[24:])
    # no test set: the test columns are the remaining training rows'
    assert (last["test_loss"], last["test_accuracy"]) == model.evaluate(X[:24], y[:24])
    np.testing.assert_array_equal(h["train_loss"], h2["train_loss"])


@pytest.mark.parametrize("n, split", [(30, 0.2), (7, 0.3), (10, 0.55), (3, 0.5)])
def test_validation_split_rows_are_keras_rows(n, split, rng):
    pytest.importorskip("torch")
    slicing = pytest.importorskip("keras.src.trainers.data_adapters.array_slicing")
    X = np.arange(n * SIZES[0], dtype=float).reshape(n, SIZES[0])  # exact in float32
    y = np.arange(n) % SIZES[-1]
    (kx, ky), (vx, vy) = slicing.train_validation_split((X, y), split)
    model = nn.MLP(SIZES, dtype="float64")
    Xa, ya, Xv, yv = train._validation(model, X, y, None, split)
    np.testing.assert_array_equal(Xa, np.asarray(kx))
    np.testing.assert_array_equal(Xv, np.asarray(vx))
    np.testing.assert_array_equal(yv, np.asarray(vy))


def test_validation_data_overrides_split_and_keeps_the_test_columns(rng):
    X, y = data(rng, n=30)
    Xt, yt = data(rng, n=6)
    Xv, yv = data(rng, n=5)
    model, h = run(X, y, data=(X, y, Xt, yt), validation_data=(Xv, yv),
                   validation_split=0.5)
    plain, h0 = run(X, y, data=(X, y, Xt, yt))
    np.testing.assert_array_equal(model.params, plain.params)  # all 30 rows trained on
    np.testing.assert_array_equal(h["test_loss"], h0["test_loss"])
    last = h.records[-1]
    assert (last["val_loss"], last["val_accuracy"]) == model.evaluate(Xv, yv)


def test_early_stopping_on_val_loss(rng):
    X, y = data(rng, n=30)
    Xv, yv = data(rng, n=10)
    stop = train.EarlyStopping(patience=1, monitor="val_loss", restore_best=False)
    model = nn.MLP(SIZES, dtype="float64", seed=2)
    h = train.fit(model, optim.SGD(model.params, lr=5.0), (X, y), batch_size=30, epochs=200,
                  validation_data=(Xv, yv), early_stopping=stop, progress=False)
    assert h.stopped == "early_stopping"
    assert stop.best == min(h["val_loss"][1:])  # the step-0 record is not watched
    with pytest.raises(ValueError, match="validation_data= or validation_split="):
        run(X, y, early_stopping=train.EarlyStopping(monitor="val_accuracy"))
    with pytest.raises(ValueError, match="train_eval_size=0"):
        run(X, y, train_eval_size=0, reduce_lr=train.ReduceLROnPlateau(
            monitor="train_accuracy"))


def test_history_csv_keeps_the_new_columns_and_reads_old_files(tmp_path, rng):
    X, y = data(rng)
    _, h = run(X, y, validation_split=0.25)
    back = train.History.from_csv(h.to_csv(tmp_path / "h.csv"))
    for col in ("train_eval_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_array_equal(back[col], h[col])
    old = tmp_path / "old.csv"
    old.write_text("step,epoch,wall_time,train_loss,test_loss,test_accuracy,lr\n"
                   "0,0.0,0.0,nan,1.0,0.5,0.1\n")
    rec = train.History.from_csv(old).records[0]
    assert math.isnan(rec["val_loss"]) and math.isnan(rec["train_accuracy"])
    hand = train.History()  # records appended without the new columns: NaN
    hand.append(step=1, epoch=1.0, wall_time=0.1, cpu_time=0.1, train_loss=1.0,
                test_loss=1.0, test_accuracy=0.5, lr=0.1)
    assert math.isnan(hand.records[0]["val_accuracy"])


@pytest.mark.parametrize("kw, error, match", [
    (dict(validation_split=0.0), ValueError, "validation_split"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=-0.2), ValueError, "validation_split"),
    (dict(validation_split=float("nan")), ValueError, "validation_split"),
    (dict(validation_split=True), TypeError, "validation_split"),
    (dict(validation_split="0.2"), TypeError, "validation_split"),
    (dict(validation_split=0.99), ValueError, "leaves 0 for training"),
    (dict(validation_data=(np.zeros((4, 3)), np.zeros(4, int))), ValueError,
     r"validation_data\[0\] must have shape \(n, 5\)"),
    (dict(validation_data=(np.zeros((4, 5)), np.zeros(3, int))), ValueError,
     r"validation_data\[1\] must have shape \(4,\)"),
    (dict(validation_data=(np.zeros((4, 5)), np.full(4, 7))), ValueError,
     r"validation_data\[1\] has labels outside"),
    (dict(validation_data=(np.zeros((4, 5)), np.zeros(4, int), 1)), ValueError, "pair"),
    (dict(validation_data=np.zeros(3)), ValueError, "pair"),
    (dict(validation_data=5), TypeError, "pair"),
    (dict(validation_data=(np.full((4, 5), np.nan), np.zeros(4, int))), ValueError,
     "NaN"),
    (dict(train_eval_size=-1), ValueError, "train_eval_size"),
    (dict(train_eval_size=2.0), ValueError, "train_eval_size"),
    (dict(train_eval_size=True), ValueError, "train_eval_size"),
])
def test_bad_arguments_refused_before_anything_changes(kw, error, match, rng):
    X, y = data(rng, n=10)
    model = nn.MLP(SIZES, dtype="float64", seed=2)
    before = model.params.copy()
    opt = optim.SGD(model.params, lr=0.1)
    with pytest.raises(error, match=match):
        train.fit(model, opt, (X, y), batch_size=5, progress=False, **kw)
    np.testing.assert_array_equal(model.params, before)
    assert opt.steps == 0
