"""`fastopt compare --textbook`: the book's smoothing, its sampling, the files and columns,
and arguments that are refused before anything is written."""

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt.experiments import textbook, training  # noqa: E402
from fastopt.optim import catalogue  # noqa: E402
from fastopt.train import epoch_batches  # noqa: E402
from tests.clitools import cli, read_csv, run_ok  # noqa: E402

ITERATIONS = 20
LABELS = ["SGD", "Momentum", "AdaGrad", "Adam"]


# ---------------------------------------------------------------------------------------
# smoothing and sampling


def kaiser_average(values):
    w = np.kaiser(11, 2.0)
    return float(np.dot(w / w.sum(), values))


def test_smooth_curve_is_a_centred_kaiser_average_with_the_books_mirrors():
    x = np.random.default_rng(0).random(30)
    s = textbook.smooth_curve(x)
    assert s.shape == x.shape and s.dtype == np.float64
    assert s[12] == pytest.approx(kaiser_average(x[7:18]), rel=1e-12)
    # before the first point: x[5], ..., x[1] (the first point is not repeated)
    assert s[0] == pytest.approx(kaiser_average(np.r_[x[5:0:-1], x[:6]]), rel=1e-12)
    # after the last point: x[-1], ..., x[-5] (the last point is repeated)
    assert s[-1] == pytest.approx(kaiser_average(np.r_[x[-6:], x[:-6:-1]]), rel=1e-12)
    assert np.allclose(textbook.smooth_curve(np.full(11, 0.25)), 0.25, rtol=0, atol=1e-15)


@pytest.mark.parametrize("values", [np.ones(10), np.ones((11, 2))])
def test_smooth_curve_refuses_what_the_window_does_not_fit(values):
    with pytest.raises(ValueError, match="at least 11 values"):
        textbook.smooth_curve(values)


def test_batches_are_drawn_with_replacement_like_fit():
    n, seed = 300, 7
    rng = np.random.default_rng(seed)
    want = epoch_batches(n, 128, rng, replacement=True) + epoch_batches(
        n, 128, rng, replacement=True)
    got = [b for b, _ in zip(textbook.batch_indices(n, 128, seed), range(len(want)))]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert all(len(b) == 128 for b in got)


def test_optimizers_are_the_books_with_the_catalogues_formulas():
    by_label = {b.label: b for b in textbook.OPTIMIZERS}
    assert list(by_label) == LABELS
    assert by_label["SGD"].kwargs == dict(lr=0.01, **catalogue.textbook("sgd"))
    assert by_label["Momentum"].kwargs == dict(lr=0.01, momentum=0.9,
                                               **catalogue.textbook("sgd"))
    assert by_label["AdaGrad"].kwargs == dict(lr=0.01, **catalogue.textbook("adagrad"))
    assert by_label["Adam"].kwargs == dict(lr=0.001, **catalogue.textbook("adam"))


# ---------------------------------------------------------------------------------------
# end to end


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One short textbook run on digits: (out dir, stdout)."""
    out = tmp_path_factory.mktemp("textbook") / "run"
    argv = ["compare", "--textbook", "--dataset", "digits", "--iterations", str(ITERATIONS),
            "--seed", "3", "--no-progress", "--out", str(out)]
    stdout = run_ok(argv)
    return out, stdout


@pytest.mark.slow  # compiles the MLP training kernels on a cold cache
def test_files_columns_and_settings(finished):
    out, stdout = finished
    for name in ("textbook.csv", "textbook.png", "settings.json"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in stdout
    rows = read_csv(out / "textbook.csv")
    assert list(rows[0]) == textbook.CSV_COLUMNS
    assert [r["optimizer"] for r in rows] == [x for x in LABELS for _ in range(ITERATIONS)]
    for label in LABELS:
        mine = [r for r in rows if r["optimizer"] == label]
        assert [int(r["iteration"]) for r in mine] == list(range(1, ITERATIONS + 1))
        loss = np.array([float(r["loss"]) for r in mine])
        assert np.isfinite(loss).all() and (loss > 0).all()
        assert np.array_equal([float(r["smoothed_loss"]) for r in mine],
                              textbook.smooth_curve(loss))
        seconds = np.array([float(r["train_seconds"]) for r in mine])
        assert (seconds > 0).all() and (np.diff(seconds) > 0).all()

    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "compare" and settings["status"] == "complete"
    resolved = settings["resolved"]
    assert resolved["textbook"] is True and resolved["iterations"] == ITERATIONS
    assert resolved["network"] == [64, 100, 100, 100, 100, 10]
    assert resolved["init"] == "he_normal:truncated=false" and resolved["batch_size"] == 128
    assert resolved["optimizers"]["Adam"] == {"class": "Adam", "lr": 0.001,
                                              "betas": [0.9, 0.999], "eps": 1e-7,
                                              "convention": "keras"}


@pytest.mark.slow
def test_loss_is_the_books_after_the_update_on_the_iterations_batch(finished):
    """The recorded loss of SGD's first iteration: one train_step on the first batch drawn
    with replacement from seed 3, then the loss of that batch."""
    out, _ = finished
    first = read_csv(out / "textbook.csv")[0]
    plan = textbook.Plan(training.load_data("digits"), ITERATIONS, 3, "cpu")
    model, opt = textbook.build(plan, textbook.OPTIMIZERS[0])
    idx = next(textbook.batch_indices(plan.data.n_train, 128, 3))
    X, y = plan.data.X_train[idx], plan.data.y_train[idx]
    model.train_step(X, y, opt)
    assert float(first["loss"]) == model.evaluate(X, y)[0]


@pytest.mark.slow
def test_table_and_the_slowest(finished):
    out, stdout = finished
    assert "final smoothed loss" in stdout and "ms/iteration" in stdout
    rows = read_csv(out / "textbook.csv")
    finals = {r["optimizer"]: float(r["smoothed_loss"]) for r in rows
              if int(r["iteration"]) == ITERATIONS}
    for label, value in finals.items():
        assert any(line.split()[:1] == [label] and f"{value:.4f}" in line
                   for line in stdout.splitlines())
    worst = max(finals, key=finals.get)
    assert f"highest final smoothed loss: {worst} {finals[worst]:.4f}" in stdout


@pytest.mark.slow
def test_figure_has_both_panels(finished):
    plan = textbook.Plan(training.load_data("digits"), ITERATIONS, 3, "cpu")
    rows = read_csv(finished[0] / "textbook.csv")
    curves = []
    for book in textbook.OPTIMIZERS:
        mine = [r for r in rows if r["optimizer"] == book.label]
        loss = np.array([float(r["loss"]) for r in mine])
        curves.append(textbook.Curve(book, loss, textbook.smooth_curve(loss),
                                     np.array([float(r["train_seconds"]) for r in mine])))
    fig = textbook.plot_textbook(plan, curves)
    by_iteration, by_time = fig.axes
    assert [line.get_label() for line in by_iteration.get_lines()] == LABELS
    assert by_iteration.get_xlabel() == "iterations"
    assert "training seconds" in by_time.get_xlabel()
    assert np.array_equal(by_time.get_lines()[0].get_xdata(), curves[0].seconds)


# ---------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize("extra, message", [
    (["--textbook", "--iterations", "10"], "--iterations must be"),
    (["--textbook", "--optimizers", "sgd"], "--optimizers does not apply to --textbook"),
    (["--textbook", "--batch-sizes", "32"], "--batch-sizes does not apply to --textbook"),
    (["--textbook", "--seconds", "2"], "--seconds does not apply to --textbook"),
    (["--iterations", "50"], "--iterations applies to --textbook only"),
    (["--textbook", "--dataset", "nope"], "--dataset: unknown data set"),
    (["--textbook", "--seed", "-1"], "--seed"),
])
def test_bad_arguments_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code, stdout, err = cli(["compare", *extra, "--out", str(out)], capsys)
    assert code == 2
    assert message in err
    assert not out.exists() and stdout == ""
