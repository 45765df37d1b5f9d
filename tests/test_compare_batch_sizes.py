"""`fastopt compare --batch-sizes 1,32,full`: batch GD vs SGD vs mini-batch, the epochs
axis, the verdict by epochs, and the errors of bad batch sizes."""

import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")

from fastopt.cli import build_parser  # noqa: E402
from fastopt.experiments import compare, training, verdict  # noqa: E402
from fastopt.train import History  # noqa: E402
from tests.clitools import cli, read_csv, run_ok  # noqa: E402

N_DIGITS = 1437  # training samples of the digits set


@pytest.fixture(scope="module")
def three_way(tmp_path_factory):
    """SGD at batch 1, 32 and the whole set, 2 epochs, one seed: (out, stdout, argv)."""
    out = tmp_path_factory.mktemp("batches") / "run"
    argv = ["compare", "--dataset", "digits", "--optimizers", "sgd", "--batch-sizes",
            "1,32,full", "--hidden", "8", "--epochs", "2", "--seeds", "1", "--workers", "1",
            "--target-accuracy", "0.5", "--no-progress", "--out", str(out)]
    stdout = run_ok(argv)
    return out, stdout, argv


def test_full_is_the_whole_training_set_and_each_run_has_its_batch(three_way):
    out, stdout, _ = three_way
    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == compare.SUMMARY_COLUMNS
    assert [r["batch_size"] for r in rows] == ["1", "32", str(N_DIGITS)]
    for r, batch in zip(rows, (1, 32, N_DIGITS)):
        assert float(r["steps"]) == 2 * math.ceil(N_DIGITS / batch)  # 2874, 90, 2
        assert float(r["epochs"]) == pytest.approx(2.0)
        # the same samples per second whatever the batch: epochs x n / seconds
        assert float(r["samples_per_s"]) == pytest.approx(
            2 * N_DIGITS / float(r["train_seconds"]))
        if r["reached_target"] == "1":  # epochs to target = steps to target / steps per epoch
            assert float(r["epochs_to_target"]) == pytest.approx(
                float(r["steps_to_target"]) / math.ceil(N_DIGITS / batch))
    # one full-batch step per epoch: evaluated after each of them
    full = History.from_csv(out / "histories" / f"sgd_b{N_DIGITS}_s0.csv")
    assert [r["step"] for r in full.records] == [0, 1, 2]
    assert [r["epoch"] for r in full.records] == [0.0, 1.0, 2.0]
    sgd = History.from_csv(out / "histories" / "sgd_b1_s0.csv")
    steps = [r["step"] for r in sgd.records]  # log-spaced from the first step
    assert steps[:3] == [0, 1, 2] and steps[-1] == 2 * N_DIGITS and len(steps) < 40
    table = stdout[stdout.index("final test acc %"):].split("\n\n")[0].splitlines()
    assert table[-1].split()[:2] == ["sgd", "full"]
    assert "epochs to 50%" in table[0]
    settings = json.loads((out / "settings.json").read_text())["resolved"]
    assert settings["batch_sizes"] == [1, 32, N_DIGITS]
    assert settings["full_batch"] == N_DIGITS
    assert settings["x_axes"] == ["time", "steps"]
    assert settings["x_axes_batch_sizes"] == ["time", "steps", "epochs"]


def test_verdict_ranks_by_epochs_across_batch_sizes(three_way):
    out, stdout, _ = three_way
    said = (out / "verdict.txt").read_text()
    rows = read_csv(out / "summary.csv")
    if any(r["reached_target"] == "1" for r in rows):
        assert "by epochs " in said.splitlines()[0] and "by epochs (mean" in said
        assert all("epochs: " in r["verdict"] for r in rows)
        assert f"sgd b{N_DIGITS}" in said
    else:  # pragma: no cover - 50% on digits in 2 epochs is reached by batch 1
        assert said.startswith("no run reached")


def test_figures_against_epochs(three_way):
    out, stdout, argv = three_way
    for name in ("compare_b1.png", "compare_b32.png", f"compare_b{N_DIGITS}.png",
                 "compare_batch_sizes.png"):
        assert (out / name).stat().st_size > 0 and str(out / name) in stdout
    plan = compare.check_args(build_parser().parse_args(argv))
    results = [training.Run("sgd", b, 0, 0.1,
                            History.from_csv(out / "histories" / f"sgd_b{b}_s0.csv"),
                            False, "")
               for b in plan.batch_sizes]
    fig = compare.plot_batch_sizes(plan, results)
    assert [ax.get_title() for ax in fig.axes] == [
        "test loss vs training time", "test loss vs steps", "test loss vs epochs",
        "test accuracy vs training time", "test accuracy vs steps", "test accuracy vs epochs"]
    epochs_ax = fig.axes[2]
    assert "epoch" in epochs_ax.get_xlabel()
    labels = [line.get_label() for line in epochs_ax.get_lines()
              if not line.get_label().startswith("_")]
    assert labels == ["sgd (batch 1, lr 0.1)", "sgd (batch 32, lr 0.1)",
                      f"sgd (batch full ({N_DIGITS}), lr 0.1)"]
    # every curve ends at 2 epochs on the epochs axis, at its own step count on the steps axis
    for line in epochs_ax.get_lines()[:3]:
        assert line.get_xdata()[-1] == pytest.approx(2.0)
    assert [line.get_xdata()[-1] for line in fig.axes[1].get_lines()[:3]] == [
        2 * N_DIGITS, 90, 2]
    assert "batch sizes 1, 32, full (1437)" in fig.get_suptitle()
    # the step axes logarithmic: 2 full-batch steps next to 2,874 batch-1 steps
    assert fig.axes[1].get_xscale() == "symlog" and fig.axes[2].get_xscale() == "linear"
    # --x picks the axes of the per-batch figures too
    plan = plan._replace(xs=("epochs",))
    fig = compare.plot_comparison(plan, results[:1], 1)
    assert [ax.get_title() for ax in fig.axes] == ["test loss vs epochs",
                                                   "test accuracy vs epochs"]


def test_axes_option_and_defaults():
    assert compare.parse_axes(None) is None
    assert compare.parse_axes("epochs,time") == ("epochs", "time")
    assert compare.parse_batch_sizes("1, 32,FULL") == [1, 32, compare.FULL]
    args = build_parser().parse_args(["compare", "--dataset", "digits", "--batch-sizes",
                                      "full", "--x", "steps,epochs"])
    plan = compare.check_args(args)
    assert plan.batch_sizes == [N_DIGITS] and plan.xs == ("steps", "epochs")
    assert compare.figure_axes(plan) == compare.figure_axes(plan, True) == ("steps", "epochs")
    default = plan._replace(xs=None)
    assert compare.figure_axes(default) == ("time", "steps")
    assert compare.figure_axes(default, batch_sizes=True) == ("time", "steps", "epochs")
    assert compare.batch_text(plan, N_DIGITS) == "full (1437)"
    assert compare.batch_text(plan, 32) == "32"
    assert compare.metrics(plan) == verdict.METRICS  # one batch size: no epochs ranking
    assert compare.metrics(plan._replace(batch_sizes=[1, 2]))[-1] == verdict.EPOCHS


@pytest.mark.parametrize("args, words", [
    (["--batch-sizes", "0"], ["--batch-sizes", "positive integers or full", "'0'"]),
    (["--batch-sizes", "full,full"], ["--batch-sizes", "twice", "'full,full'"]),
    (["--batch-sizes", "32,abc"], ["--batch-sizes", "'abc'", "1,32,full"]),
    (["--batch-sizes", "5000"], ["--batch-sizes", "1437 training samples", "5000"]),
    (["--batch-sizes", "1437,full"], ["--batch-sizes", "twice", "full is 1437"]),
    (["--batch-sizes", ","], ["--batch-sizes", "at least one"]),
    (["--x", "epoch"], ["--x", "'epoch'", "time, steps, epochs"]),
    (["--x", "steps,steps"], ["--x", "twice"]),
])
def test_bad_batch_sizes_and_axes_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["compare", "--dataset", "digits", *args, "--out", str(out)],
                            capsys)
    assert code == 2 and err.startswith("fastopt: error: ") and stdout == ""
    for word in words:
        assert word in err
    assert not out.exists()


def test_x_does_not_apply_to_textbook(tmp_path, capsys):
    code, _, err = cli(["compare", "--textbook", "--dataset", "digits", "--x", "epochs",
                        "--out", str(tmp_path / "never")], capsys)
    assert code == 2 and "--x does not apply to --textbook" in err
    assert not (tmp_path / "never").exists()


def test_crossing_interpolates_epochs_and_the_verdict_ranks_them():
    records = [dict(step=s, epoch=s / 10, wall_time=s / 100, cpu_time=s / 100, train_loss=1.0,
                    test_loss=1.0 - a, test_accuracy=a, lr=0.1)
               for s, a in ((0, 0.1), (10, 0.5), (20, 0.9))]
    c = verdict.crossing(History(records), 0.7)
    assert c.steps == pytest.approx(15.0) and c.epochs == pytest.approx(1.5)
    fast = verdict.Crossing(1.0, 1000.0, 0.01, 0.7)  # many small steps, few epochs
    slow = verdict.Crossing(0.5, 20.0, 0.01, 20.0)  # few full-batch steps, many epochs
    v = verdict.decide({"b1": [fast], "full": [slow]}, 0.9,
                       verdict.METRICS + (verdict.EPOCHS,))
    assert [e.label for e in v.rankings["steps"]] == ["full", "b1"]
    assert [e.label for e in v.rankings["epochs"]] == ["b1", "full"]
    assert "by epochs b1 reaches 90% first (0.70 epochs)" in verdict.headline(v)
    assert verdict.cell(v, "full").endswith("epochs: 28.57x (+19.30 epochs), separable")
