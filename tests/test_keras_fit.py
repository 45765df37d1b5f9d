"""The README's fit row against Keras 3's own ``fit`` (torch backend), run for real:

    model.fit(X, y, batch_size=15, epochs=..., validation_data=(X_val, y_val))
    train.fit(model, opt, data, batch_size=15, epochs=..., validation_data=(X_val, y_val))

A Dense 8-16-3 network (relu, softmax cross-entropy from logits), the same float32 initial
weights copied into Keras, ``SGD(0.1, momentum=0.9)`` (fastopt: convention="keras"),
batch size 15 with a partial last batch. Compared: the final weights and every epoch's
val_loss / val_accuracy, and Keras's epoch loss (the batch losses weighted by their rows;
fit's train_loss is their plain mean, so it differs when the last batch is partial).

fastopt's fit always shuffles: every epoch is a fresh permutation of the training rows
from ``np.random.default_rng(seed)`` split by ``train.epoch_batches`` (there is no
``shuffle=False``). So the Keras side is fed, epoch by epoch with ``shuffle=False``, the
rows in fastopt's order (``epoch_batches`` with a generator seeded the same way); and
Keras's one-call ``fit(..., shuffle=False)`` is compared with what fit does per batch:
``model.train_step`` on consecutive 15-row batches, ``model.evaluate`` on the validation
rows after each epoch. Both with ``validation_data=`` and with ``validation_split=``
(Keras's split rows themselves: tests/test_fit_eval.py).

Tolerance 1e-6 in float32 (the weights are O(0.1..1): a few float32 ulps; the largest
difference measured is noted at TOL): the two sides sum the GEMMs and the batch means in
different orders. No float64 variant: Keras 3.15 with float64 layers and floatx did not
reproduce a float64 torch autograd step (8e-9 off after one step, its loss tensor float32),
while fastopt's float64 train_step did (1e-16), so Keras cannot serve as a float64
reference. Skipped where Keras (or torch, its backend here) is not installed.
"""

import os

import numpy as np
import pytest

from fastopt import nn, optim, train

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported
pytest.importorskip("torch", reason="Keras runs on its torch backend here")
keras = pytest.importorskip("keras", reason="Keras 3 is the oracle: pip install keras")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras runs on {keras.backend.backend()!r}; these tests need "
                "KERAS_BACKEND=torch", allow_module_level=True)

SIZES = [8, 16, 3]
BATCH = 15
EPOCHS = 4
N = 65          # 4 full batches of 15 and one of 5 (65 * 0.8 = 52: 3 full and one of 7)
N_VAL = 20      # Keras evaluates it in batches of 15 and 5
SPLIT = 0.2
TOL = 1e-6  # measured max |difference| / max(1, |Keras|): 2.4e-7 (weights), 1.1e-7 (losses)
DTYPE = "float32"


def problem(rng):
    """A learnable 3-class problem: labels from a random linear teacher."""
    teacher = rng.standard_normal((SIZES[0], SIZES[-1]))
    X = rng.standard_normal((N + N_VAL, SIZES[0])).astype(DTYPE)
    y = np.argmax(X @ teacher, axis=1)
    return X[:N], y[:N], X[N:], y[N:]


def models():
    """The fastopt MLP (he_normal weights, small non-zero biases so that the biases'
    copy is checked too), its optimizer, and a compiled Keras model with the same weights."""
    model = nn.MLP(SIZES, activation="relu", dtype=DTYPE, seed=3)
    for i, b in enumerate(model.biases):
        b[:] = 0.05 * np.arange(b.size) / b.size - 0.02 * i
    opt = optim.SGD(model.params, 0.1, momentum=0.9, convention="keras")
    km = keras.Sequential([keras.Input((SIZES[0],), dtype=DTYPE),
                           keras.layers.Dense(SIZES[1], activation="relu", dtype=DTYPE),
                           keras.layers.Dense(SIZES[2], dtype=DTYPE)])
    km.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               metrics=["accuracy"])
    km.set_weights([a for W, b in zip(model.weights, model.biases)
                    for a in (np.array(W), np.array(b))])
    return model, opt, km


def keras_weights(km):
    return [np.asarray(w) for w in km.get_weights()]


def ours(model):
    return [np.array(a) for W, b in zip(model.weights, model.biases) for a in (W, b)]


def assert_close(a, b, tol, what):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=tol, atol=tol, err_msg=what)


def check_weights(model, km, tol):
    for k, (a, b) in enumerate(zip(ours(model), keras_weights(km))):
        assert a.dtype == b.dtype
        assert_close(a, b, tol, f"weight array {k}")


@pytest.mark.parametrize("validation", ["data", "split"])
def test_fit_matches_keras_fit_in_fits_batch_order(validation, rng):
    """train.fit itself, against Keras's fit given the same batch order: each epoch Keras
    gets the training rows in the order fit draws (shuffle=False) and the same validation
    rows. Final weights and per-epoch val_loss / val_accuracy agree; the training loss is
    averaged differently (below)."""
    X, y, Xv, yv = problem(rng)
    model, opt, km = models()
    seed = 7
    if validation == "data":
        kw, Xt, yt = dict(validation_data=(Xv, yv)), X, y
    else:  # Keras's split: the last 20% of the rows, before any shuffling
        at = int(N * (1 - SPLIT))
        kw, Xt, yt, Xv, yv = dict(validation_split=SPLIT), X[:at], y[:at], X[at:], y[at:]
    h = train.fit(model, opt, (X, y), batch_size=BATCH, epochs=EPOCHS, seed=seed,
                  progress=False, **kw)
    n = Xt.shape[0]
    order = np.random.default_rng(seed)  # fit's mini-batch order (see the module doc)
    val_loss, val_acc, loss, sizes = [], [], [], []
    for _ in range(EPOCHS):
        batches = train.epoch_batches(n, BATCH, order)
        rows = np.concatenate(batches)
        kh = km.fit(Xt[rows], yt[rows], batch_size=BATCH, epochs=1, shuffle=False,
                    validation_data=(Xv, yv), verbose=0).history
        val_loss += kh["val_loss"]
        val_acc += kh["val_accuracy"]
        loss += kh["loss"]
        sizes.append([len(b) for b in batches])
    tol = TOL
    check_weights(model, km, tol)
    assert len(h) == EPOCHS + 1 and h["epoch"][-1] == EPOCHS
    assert_close(h["val_loss"][1:], val_loss, tol, "val_loss")
    assert_close(h["val_accuracy"][1:], val_acc, tol, "val_accuracy")
    # Keras's epoch loss weights each batch by its rows; fit's train_loss is the plain
    # mean of the batch losses: equal without a partial batch, not with one
    assert all(len(set(s)) == 2 for s in sizes)  # each epoch here ends on a partial batch
    assert not np.allclose(h["train_loss"][1:], loss, rtol=1e-3)
    # the validation rows are not trained on: val numbers are those of model.evaluate
    assert (h.records[-1]["val_loss"], h.records[-1]["val_accuracy"]) == \
        model.evaluate(Xv, yv)
    assert 0.0 < val_acc[-1] <= 1.0 and val_loss[-1] < val_loss[0] * 1.5


@pytest.mark.parametrize("validation", ["data", "split"])
def test_keras_unshuffled_fit_is_train_step_on_consecutive_batches(validation, rng):
    """The README row as Keras runs it without shuffling (one fit call, epochs=EPOCHS,
    shuffle=False), against what fastopt's fit does per batch: train_step on consecutive
    15-row batches (the last one partial), then evaluate on the validation rows. With
    validation_split Keras holds out the last rows itself."""
    X, y, Xv, yv = problem(rng)
    model, opt, km = models()
    if validation == "data":
        kh = km.fit(X, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False,
                    validation_data=(Xv, yv), verbose=0).history
        Xt, yt = X, y
    else:
        kh = km.fit(X, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False,
                    validation_split=SPLIT, verbose=0).history
        Xt, yt, Xv, yv = train._validation(model, X, y, None, SPLIT)  # Keras's rows
    n = Xt.shape[0]
    tol = TOL
    for epoch in range(EPOCHS):
        losses, rows = [], []
        for lo in range(0, n, BATCH):
            losses.append(model.train_step(Xt[lo:lo + BATCH], yt[lo:lo + BATCH], opt))
            rows.append(min(BATCH, n - lo))
        vl, va = model.evaluate(Xv, yv)
        assert_close(vl, kh["val_loss"][epoch], tol, f"val_loss, epoch {epoch}")
        assert_close(va, kh["val_accuracy"][epoch], tol, f"val_accuracy, epoch {epoch}")
        # Keras's epoch loss: the batch losses weighted by their rows
        assert_close(np.average(losses, weights=rows), kh["loss"][epoch], tol,
                     f"loss, epoch {epoch}")
    check_weights(model, km, tol)
