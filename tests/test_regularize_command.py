"""`fastopt regularize`: tiny end-to-end runs, the early-stopping mark, the network and
its settings, and argument errors."""

import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

from fastopt import train  # noqa: E402
from fastopt.experiments import regularize as reg  # noqa: E402
from tests.clitools import cli, progress_every_update, read_csv  # noqa: E402

TINY = ["--dataset", "digits", "--train-size", "40", "--batch-size", "20", "--epochs", "3",
        "--patience", "1"]


def test_regularize_end_to_end(tmp_path, capsys, monkeypatch):
    progress_every_update(monkeypatch)
    out = tmp_path / "run"
    code, stdout, stderr = cli(["regularize", *TINY, "--seed", "3", "--out", str(out)],
                               capsys)
    assert code == 0, stderr
    for name in ("regularize_none.png", "regularize_l2.png", "regularize_dropout.png",
                 "curves.csv", "summary.csv", "settings.json"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in stdout
    assert "regularize: dropout: 3/3 epochs" in stdout  # progress lines
    summary = read_csv(out / "summary.csv")
    assert list(summary[0]) == reg.SUMMARY_COLUMNS
    assert [r["setting"] for r in summary] == ["none", "l2", "dropout"]
    assert [float(r["l2"]) for r in summary] == [0.0, 0.1, 0.0]
    assert [float(r["dropout"]) for r in summary] == [0.0, 0.0, 0.2]
    curves = read_csv(out / "curves.csv")
    assert list(curves[0]) == reg.CURVE_COLUMNS
    for s in summary:  # 3 epochs: records at epochs 0..3; the final gap is the last one's
        rows = [r for r in curves if r["setting"] == s["setting"]]
        assert [float(r["epoch"]) for r in rows] == [0.0, 1.0, 2.0, 3.0]
        assert [int(r["step"]) for r in rows] == [0, 2, 4, 6]  # 40 images / batch 20
        last = rows[-1]
        assert float(s["final_gap"]) == pytest.approx(
            float(last["train_accuracy"]) - float(last["test_accuracy"]))
        assert float(s["final_train_accuracy"]) == float(last["train_accuracy"])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "regularize" and settings["status"] == "complete"
    assert settings["resolved"]["network"] == [64, 100, 100, 100, 100, 100, 100, 10]
    assert settings["resolved"]["train_images"] == 40
    assert settings["resolved"]["epochs"] == {"none": 3, "l2": 3, "dropout": 3}
    assert settings["arguments"]["seed"] == 3


def test_default_epochs_are_the_textbooks():
    args = reg.add_parser(__import__("argparse").ArgumentParser().add_subparsers()) \
        .parse_args([])
    assert [reg.epochs_of(s, args) for s in reg.SETTINGS] == [201, 201, 301]
    assert (args.dataset, args.train_size, args.batch_size, args.lr, args.l2,
            args.dropout) == ("mnist", 300, 100, 0.01, 0.1, 0.2)


def test_early_stop_mark_is_early_stoppings_own_rule():
    def history(losses):
        h = train.History()
        for i, v in enumerate(losses):
            h.append(step=3 * i, epoch=float(i), wall_time=0.0, cpu_time=0.0,
                     train_loss=1.0, test_loss=v, test_accuracy=0.5, lr=0.1)
        return h

    # the step-0 record is not watched; best at epoch 2, no improvement for 2 -> stop at 4
    assert reg.early_stop(history([9.0, 3.0, 2.0, 2.5, 2.1, 1.0]), patience=2) == (2.0, 4.0)
    assert reg.early_stop(history([9.0, 3.0, 2.0, 1.0]), patience=2) == (3.0, None)


def test_one_setting_with_svg(tmp_path, capsys):
    out = tmp_path / "l2"
    code, _, stderr = cli(["regularize", *TINY, "--settings", "l2", "--l2", "0.5", "--svg",
                           "--no-progress", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert (out / "regularize_l2.svg").exists() and not (out / "regularize_none.png").exists()
    (row,) = read_csv(out / "summary.csv")
    assert float(row["l2"]) == 0.5 and not math.isnan(float(row["final_gap"]))


@pytest.mark.parametrize("extra, match", [
    (["--settings", "l3"], "unknown name 'l3'"),
    (["--epochs", "0"], "--epochs"),
    (["--l2", "-1"], "--l2"),
    (["--dropout", "1"], "--dropout"),
    (["--lr", "0"], "--lr"),
    (["--patience", "0"], "--patience"),
    (["--train-size", "100000"], "--train-size must be at most"),
    (["--batch-size", "50"], "--batch-size must be at most --train-size"),
    (["--dataset", "cifar"], "unknown data set"),
    (["--target", "cuda"], "--target cuda"),
])
def test_bad_arguments_exit_2_before_any_work(extra, match, tmp_path, capsys):
    out = tmp_path / "bad"
    code, _, stderr = cli(["regularize", *TINY, *extra, "--out", str(out)], capsys)
    assert code == 2
    assert match in stderr
    assert not out.exists()
