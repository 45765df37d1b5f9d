"""`fastopt sensitivity`: the lr grid, the CSV, the figure, divergence, argument errors."""

import json
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt.cli import build_parser  # noqa: E402
from fastopt.experiments import sensitivity, training  # noqa: E402
from tests.clitools import cli, read_csv, run_ok  # noqa: E402

GRID = ["--lr-min", "1e-3", "--lr-max", "1e6", "--points", "4"]  # 1e-3, 1, 1e3, 1e6


def user_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small sweep (digits, 5 steps, sgd and momentum:momentum=0.5 at 4 lrs up to 1e6,
    2 seeds): (out dir, stdout, argv)."""
    out = tmp_path_factory.mktemp("sensitivity") / "run"
    argv = ["sensitivity", "--optimizers", "sgd,momentum:momentum=0.5", *GRID,
            "--steps", "5", "--batch-size", "32", "--hidden", "16", "--seeds", "2",
            "--no-progress", "--out", str(out)]
    stdout = run_ok(argv)
    return out, stdout, argv


@pytest.mark.slow  # compiles the MLP training kernels on a cold cache
def test_csv_settings_and_divergence(finished):
    out, stdout, _ = finished
    for name in ("sensitivity.csv", "sensitivity.png", "settings.json"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in stdout
    rows = read_csv(out / "sensitivity.csv")
    assert list(rows[0]) == sensitivity.CSV_COLUMNS
    assert len(rows) == 2 * 4 * 2
    assert [(r["optimizer"], float(r["lr"]), r["seed"]) for r in rows[:4]] == [
        ("sgd", 1e-3, "0"), ("sgd", 1e-3, "1"), ("sgd", 1.0, "0"), ("sgd", 1.0, "1")]
    assert {r["optimizer"] for r in rows} == {"sgd", "momentum:momentum=0.5"}
    for r in rows:
        if r["diverged"] == "True":
            assert r["final_test_loss"] == "" and float(r["final_test_accuracy"]) == 0.1
            assert r["note"].startswith("diverged")
        else:
            assert r["diverged"] == "False" and r["steps"] == "5"
            assert math.isfinite(float(r["final_test_loss"])) and r["note"] == ""
    # lr 1e6 diverges for both; 1e-3 never does; the command completed anyway
    assert all(r["diverged"] == "True" for r in rows if float(r["lr"]) == 1e6)
    assert all(r["diverged"] == "False" for r in rows if float(r["lr"]) == 1e-3)
    assert "note: diverged (recorded as chance accuracy): sgd at" in stdout
    table = stdout[stdout.index("best lr"):].splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("sgd ")

    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "sensitivity" and settings["status"] == "complete"
    assert settings["resolved"]["lrs"] == [1e-3, 1.0, 1e3, 1e6]
    assert settings["resolved"]["network"] == [64, 16, 10]
    assert settings["resolved"]["optimizers"]["momentum:momentum=0.5"] == {
        "class": "SGD", "momentum": 0.5}
    assert settings["resolved"]["seeds"] == [0, 1] and settings["resolved"]["steps"] == 5


def points_from_csv(path):
    def num(text):
        return float(text) if text else float("nan")

    return [sensitivity.Point(r["optimizer"], float(r["lr"]), int(r["seed"]), int(r["steps"]),
                              num(r["train_seconds"]), num(r["final_train_loss"]),
                              num(r["final_test_loss"]), num(r["final_test_accuracy"]),
                              r["diverged"] == "True", r["note"])
            for r in read_csv(path)]


@pytest.mark.slow
def test_figure_lines_bands_and_diverged_marks(finished):
    out, _, argv = finished
    plan = sensitivity.check_args(build_parser().parse_args(argv))
    points = points_from_csv(out / "sensitivity.csv")
    fig = sensitivity.plot_sensitivity(plan, points)
    ax_loss, ax_acc = fig.axes
    for ax in (ax_loss, ax_acc):
        assert [line.get_label() for line in user_lines(ax)] == ["sgd", "momentum:momentum=0.5"]
        assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()
        xs = user_lines(ax)[0].get_xdata()
        np.testing.assert_allclose(xs, [1e-3, 1.0, 1e3, 1e6])
    assert ax_loss.get_yscale() == "log" and "final test loss" in ax_loss.get_ylabel()
    assert "final test accuracy" in ax_acc.get_ylabel()
    assert ax_loss.get_title().startswith("final test loss")
    assert ax_acc.get_title().startswith("final test accuracy")
    # the diverged lr has no loss point and chance accuracy
    loss = user_lines(ax_loss)[0].get_ydata()
    acc = user_lines(ax_acc)[0].get_ydata()
    assert np.isnan(loss[-1]) and np.isfinite(loss[0]) and acc[-1] == pytest.approx(10.0)
    # two seeds: a min..max band per optimizer on each panel (+ crosses and triangles)
    from matplotlib.collections import PathCollection, PolyCollection

    for ax in (ax_loss, ax_acc):
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 2
        assert any(isinstance(c, PathCollection) for c in ax.collections)  # diverged marks
    assert "2 seeds" in fig.get_suptitle() and "5 steps" in fig.get_suptitle()


def test_grid_and_defaults(capsys):
    args = build_parser().parse_args(["sensitivity", "--no-progress"])
    assert args.dataset == "digits" and args.points == 13 and args.steps is None
    plan = sensitivity.check_args(args)
    assert plan.steps == 300 and len(plan.lrs) == 13
    assert plan.lrs[0] == 1e-5 and plan.lrs[-1] == 10.0 and plan.lrs[2] == 1e-4
    np.testing.assert_allclose(np.diff(np.log10(plan.lrs)), 0.5, rtol=1e-5)
    assert [c.label for c in plan.configs] == training.DEFAULT_OPTIMIZERS.split(",")
    args = build_parser().parse_args(["sensitivity", "--lr-min", "0.1", "--lr-max", "0.1",
                                      "--points", "1"])
    assert list(sensitivity.check_args(args).lrs) == [0.1]
    code, stdout, _ = cli(["sensitivity", "--help"], capsys)
    assert code == 0 and "sensitivity.csv" in stdout and "digits" in stdout


# ---------------------------------------------------------------------------------------
# argument errors: exit code 2, a message naming the option, nothing written


@pytest.mark.parametrize("args, words", [
    (["--optimizers", "adam:lr=0.1"], ["--optimizers", "lr", "grid"]),
    (["--optimizers", "nope"], ["--optimizers", "'nope'", "adam"]),
    (["--optimizers", "sgd:momentum"], ["--optimizers", "key=value"]),
    (["--dataset", "cifar"], ["--dataset", "'cifar'", "mnist, digits"]),
    (["--schedule", "bogus"], ["--schedule", "'bogus'", "cosine"]),
    (["--lr-min", "0"], ["--lr-min", "positive"]),
    (["--lr-max", "-1"], ["--lr-max", "positive"]),
    (["--lr-min", "1", "--lr-max", "0.1"], ["--lr-max", "--lr-min"]),
    (["--lr-min", "1", "--lr-max", "1"], ["--points", "--lr-max"]),
    (["--points", "0"], ["--points", "positive"]),
    (["--steps", "0"], ["--steps", "positive"]),
    (["--seconds", "0"], ["--seconds", "positive"]),
    (["--batch-size", "0"], ["--batch-size", "positive"]),
    (["--batch-size", "5000"], ["--batch-size", "1437"]),
    (["--seeds", "0"], ["--seeds", "positive"]),
    (["--hidden", "0"], ["--hidden"]),
    (["--target", "cuda"], ["--target cuda"]),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["sensitivity", *args, "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith("fastopt: error: ")
    for word in words:
        assert word in err
    assert not out.exists() and stdout == ""


def test_argparse_errors_and_out_file(tmp_path, capsys):
    code, _, err = cli(["sensitivity", "--steps", "5", "--seconds", "1"], capsys)
    assert code == 2 and "--seconds" in err and "not allowed" in err
    code, _, err = cli(["sensitivity", "--points", "many"], capsys)
    assert code == 2 and "--points" in err
    target = tmp_path / "file.txt"
    target.write_text("keep")
    code, _, err = cli(["sensitivity", "--out", str(target)], capsys)
    assert code == 2 and "--out" in err and target.read_text() == "keep"


def test_ctrl_c_keeps_the_csv(tmp_path, capsys, monkeypatch):
    real = sensitivity.run_point

    def third_is_interrupted(plan, config, lr, seed):
        if third_is_interrupted.calls == 2:
            raise KeyboardInterrupt
        third_is_interrupted.calls += 1
        return real(plan, config, lr, seed)

    third_is_interrupted.calls = 0
    monkeypatch.setattr(sensitivity, "run_point", third_is_interrupted)
    out = tmp_path / "cut"
    code, _, err = cli(["sensitivity", "--optimizers", "sgd", "--points", "5", "--steps", "2",
                        "--hidden", "8", "--no-progress", "--out", str(out)], capsys)
    assert code == 130 and str(out) in err
    assert len(read_csv(out / "sensitivity.csv")) == 2
    assert json.loads((out / "settings.json").read_text())["status"] == "interrupted"


def test_blown_up_losses_count_as_diverged():
    from fastopt.train import History

    def history(first, last):
        rows = [dict(step=s, epoch=0.0, wall_time=0.0, train_loss=1.0, test_loss=v,
                     test_accuracy=0.1, lr=0.1) for s, v in ((0, first), (10, last))]
        return History(rows)

    assert training.blown_up(history(2.3, 0.5)) == ""
    assert training.blown_up(history(2.3, 22.0)) == ""  # bad, but not 10x
    assert "over 10x" in training.blown_up(history(2.3, 24.0))
    assert "nan" in training.blown_up(history(2.3, float("nan")))
