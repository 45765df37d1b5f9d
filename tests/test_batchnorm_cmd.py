"""`fastopt batchnorm`: the textbook's batch-norm experiment on tiny settings (digits),
its files, figure, the per-epoch training accuracy and argument errors."""

import json
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt import datasets  # noqa: E402
from fastopt.cli import build_parser  # noqa: E402
from fastopt.experiments import batchnorm as B  # noqa: E402
from tests.clitools import cli, progress_every_update, read_csv, run_ok  # noqa: E402

ARGV = ["batchnorm", "--dataset", "digits", "--epochs", "2", "--scales", "0.3,0.05",
        "--train-size", "200", "--seed", "1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny run: 2 scales x (without, with batch norm), 2 epochs of 2 steps."""
    out = tmp_path_factory.mktemp("bn") / "run"
    stdout = run_ok([*ARGV, "--no-progress", "--out", str(out)])
    return out, stdout


def test_files_rows_and_settings(finished):
    out, stdout = finished
    rows = read_csv(out / "batchnorm.csv")
    assert list(rows[0]) == B.CSV_COLUMNS
    # per scale and setting: before training, then after each of 2 epochs
    keys = [(r["weight_scale"], r["batch_norm"], r["epoch"], r["step"]) for r in rows]
    assert keys == [(s, bn, e, st) for s in ("0.3", "0.05") for bn in ("no", "yes")
                    for e, st in (("0.0", "0"), ("1.0", "2"), ("2.0", "4"))]
    for r in rows:
        if not r["note"]:
            assert 0.0 <= float(r["train_accuracy"]) <= 1.0
            assert float(r["train_loss"]) > 0
    summary = read_csv(out / "batchnorm_summary.csv")
    assert list(summary[0]) == B.SUMMARY_COLUMNS
    assert [r["weight_scale"] for r in summary] == ["0.3", "0.05"]
    for r in summary:
        d = float(r["final_accuracy_with"]) - float(r["final_accuracy_without"])
        assert float(r["difference"]) == pytest.approx(d)
        assert r["rescued"] == ("yes" if d >= B.RESCUE_MARGIN else "no")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "batchnorm" and settings["status"] == "complete"
    resolved = settings["resolved"]
    assert resolved["network"] == [64, 100, 100, 100, 100, 100, 10]
    assert resolved["weight_scales"] == [0.3, 0.05] and resolved["steps_per_epoch"] == 2
    assert (out / "batchnorm.png").stat().st_size > 0
    assert "weight scale" in stdout and "batch norm rescued the training at" in stdout


def test_accuracy_is_the_training_accuracy_of_the_trained_network(finished):
    """The recorded accuracy is model.evaluate on the first train-size images after each
    epoch: retrain one network the same way epoch by epoch and compare."""
    from fastopt import nn, optim, train

    out, _ = finished
    data = datasets.load("digits")
    X, y = data.X_train[:200], data.y_train[:200]
    model = nn.MLP([64, *B.HIDDEN, 10], init="normal:std=0.05", batch_norm=True, seed=1)
    opt = optim.SGD(model.params, lr=B.LR)
    history = train.fit(model, opt, (X, y, X, y), batch_size=B.BATCH_SIZE, epochs=2,
                        replacement=True, seed=1, progress=False)
    assert model.evaluate(X, y)[1] == history.records[-1]["test_accuracy"]
    rows = [r for r in read_csv(out / "batchnorm.csv")
            if r["weight_scale"] == "0.05" and r["batch_norm"] == "yes"]
    assert [float(r["train_accuracy"]) for r in rows] == [
        r["test_accuracy"] for r in history.records]


def test_weights_are_drawn_with_the_scale_as_std():
    from fastopt import nn

    model = nn.MLP([64, *B.HIDDEN, 10], init="normal:std=0.05", seed=0)
    W = np.concatenate([w.ravel() for w in model.weights])
    assert W.std() == pytest.approx(0.05, rel=0.02) and abs(W.mean()) < 0.002
    assert all(np.all(b == 0) for b in model.biases)


def test_figure_grid():
    data = datasets.load("digits")
    scales = B.parse_scales("5")
    fake = [[(_history(0.1 + 0.1 * i), ""), (_history(0.5), "")] for i in range(5)]
    fig = B.plot_grid(scales, fake, data, 200, 2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and len(visible) == 5  # a 2 x 3 grid for 5 scales
    assert [ax.get_title() for ax in visible] == ["W: 1", "W: 0.1", "W: 0.01", "W: 0.001",
                                                  "W: 0.0001"]
    for ax in visible:
        lines = ax.get_lines()
        assert len(lines) == 2 and [line.get_linestyle() for line in lines] == ["--", "-"]
        assert ax.get_ylim() == (0.0, 1.0)
    assert [line.get_label() for line in visible[0].get_lines()] == [
        "without batch norm", "with batch norm"]


def test_a_diverged_run_is_marked_where_it_stopped():
    data = datasets.load("digits")
    fig = B.plot_grid([1.0], [[(_history(0.1), "diverged at step 4"), (_history(0.5), "")]],
                      data, 200, 2)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["without batch norm (diverged at step 4)", "_diverged",
                      "with batch norm"]


def _history(acc):
    from fastopt.train import History

    return History([dict(step=s, epoch=float(s), wall_time=0.0, cpu_time=0.0, train_loss=1.0,
                         test_loss=1.0, test_accuracy=acc, lr=0.01) for s in range(3)])


def test_scales_option():
    book = B.parse_scales("16")
    assert len(book) == 16 and book[0] == 1.0 and book[-1] == pytest.approx(1e-4)
    np.testing.assert_allclose(book, np.logspace(0, -4, 16))  # the book's weight_scale_list
    assert B.parse_scales("1,0.01, 1e-4") == [1.0, 0.01, 1e-4]
    assert B.parse_scales("1") == [1.0]
    args = build_parser().parse_args(["batchnorm"])
    assert (args.dataset, args.epochs, args.scales, args.train_size) == ("mnist", 20, "16",
                                                                         1000)


def test_progress_lines(tmp_path, capsys, monkeypatch):
    progress_every_update(monkeypatch)
    code, stdout, _ = cli(["batchnorm", "--dataset", "digits", "--scales", "0.1", "--epochs",
                           "1", "--train-size", "100", "--out", str(tmp_path / "p")], capsys)
    assert code == 0
    lines = [line for line in stdout.splitlines() if line.startswith("batchnorm: ")]
    assert any("1/2 runs" in line for line in lines) and any("2/2 runs" in line
                                                             for line in lines)


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], ["--epochs", "positive"]),
    (["--scales", "0"], ["--scales", "count must be positive"]),
    (["--scales", "1,-0.1"], ["--scales", "'-0.1'", "positive"]),
    (["--scales", "1,abc"], ["--scales", "'abc'"]),
    (["--scales", "0.1,0.1"], ["--scales", "twice"]),
    (["--scales", ","], ["--scales", "count or weight scales"]),
    (["--train-size", "50"], ["--train-size", "100"]),
    (["--train-size", "5000"], ["--train-size", "1437", "5000"]),
    (["--dataset", "cifar"], ["--dataset", "'cifar'"]),
    (["--seed", "-1"], ["--seed"]),
    (["--target", "cuda"], ["--target cuda", "--target cpu"]),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["batchnorm", "--dataset", "digits", *args, "--out", str(out)],
                            capsys)
    assert code == 2 and err.startswith("fastopt: error: ") and stdout == ""
    for word in words:
        assert word in err
    assert not out.exists()


def test_ctrl_c_keeps_the_runs_so_far(tmp_path, capsys, monkeypatch):
    real = B.train_pair_member
    calls = []

    def third_run_is_interrupted(*args):
        calls.append(args[2:4])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(B, "train_pair_member", third_run_is_interrupted)
    out = tmp_path / "cut"
    code, _, err = cli(["batchnorm", "--dataset", "digits", "--scales", "0.1,0.05",
                        "--epochs", "1", "--train-size", "100", "--no-progress", "--out",
                        str(out)], capsys)
    assert code == 130 and "interrupted" in err and str(out) in err
    assert json.loads((out / "settings.json").read_text())["status"] == "interrupted"
    rows = read_csv(out / "batchnorm.csv")
    assert {(r["weight_scale"], r["batch_norm"]) for r in rows} == {("0.1", "no"),
                                                                    ("0.1", "yes")}
    assert [r["weight_scale"] for r in read_csv(out / "batchnorm_summary.csv")] == ["0.1"]
    assert not (out / "batchnorm.png").exists()


def test_diverged_run_counts_as_chance():
    h = _history(0.9)
    assert B.final_accuracy(h, "diverged at step 3", 0.1) == 0.1
    assert B.final_accuracy(h, "", 0.1) == 0.9
    row = B.summary_row(1.0, (h, "diverged at step 3"), (h, ""), 0.1)
    assert row["difference"] == pytest.approx(0.8) and row["rescued"] == "yes"
    assert not math.isnan(row["final_accuracy_without"])
