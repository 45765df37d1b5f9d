"""`fastopt init`: activation histograms, statistics, training curves and argument errors."""

import csv
import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt.experiments import weight_init as wi  # noqa: E402
from fastopt.train import COLUMNS, History  # noqa: E402
from tests.clitools import cli, progress_every_update  # noqa: E402

STATS_COLUMNS = ["activation", "weight_init", "layer", "mean", "std", "min", "max",
                 "fraction_zero", "fraction_saturated"]
TINY = ["--samples", "40", "--units", "6", "--layers", "3", "--bins", "8",
        "--inits", "std=0.01,he", "--no-progress"]


def read_csv(path):
    with open(path, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


# ---------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow  # compiles the MLP training kernels
def test_init_end_to_end_with_training(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["init", "--activations", "sigmoid,relu", *TINY, "--train-inits", "std=0.01,he",
            "--dataset", "digits", "--steps", "6", "--batch-size", "16", "--out", str(out)]
    code, stdout, _ = cli(argv, capsys)
    assert code == 0
    for name in ("activations_sigmoid.png", "activations_relu.png", "activation_stats.csv",
                 "train_std0.01.csv", "train_he.csv", "training.png", "settings.json"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in stdout
    assert not (out / "activations_tanh.png").exists()
    for label in ("std0.01", "he"):
        history = History.from_csv(out / f"train_{label}.csv")
        assert [r["step"] for r in history.records] == list(range(7))  # eval every step
        assert list(read_csv(out / f"train_{label}.csv")[0]) == list(COLUMNS)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "init" and settings["status"] == "complete"
    assert settings["arguments"]["train_inits"] == "std=0.01,he"
    assert settings["arguments"]["steps"] == 6 and settings["arguments"]["dataset"] == "digits"
    assert settings["resolved"]["network"] == [64, 100, 100, 100, 100, 10]
    assert settings["resolved"]["train_inits"]["he"] == "he_normal:truncated=false"


def test_histograms_only_end_to_end(tmp_path, capsys):
    out = tmp_path / "hist"
    code, stdout, _ = cli(["init", *TINY, "--no-training", "--svg", "--seed", "5",
                           "--out", str(out)], capsys)
    assert code == 0
    rows = read_csv(out / "activation_stats.csv")
    assert list(rows[0]) == STATS_COLUMNS
    assert len(rows) == 3 * 2 * 3  # activations x inits x layers
    assert {r["activation"] for r in rows} == {"sigmoid", "tanh", "relu"}
    assert [r["layer"] for r in rows[:3]] == ["1", "2", "3"]
    for act in ("sigmoid", "tanh", "relu"):
        assert (out / f"activations_{act}.png").exists()
        assert (out / f"activations_{act}.svg").exists()
    assert not (out / "training.png").exists()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["arguments"]["seed"] == 5 and settings["arguments"]["no_training"] is True
    assert settings["arguments"]["inits"] == "std=0.01,he"


# ---------------------------------------------------------------------------------------
# the experiment against the textbook's computation


def textbook_activations(x, std_of_n, act, layers, seed):
    """The textbook's loop: w = randn(n, n) * scale; z = act(z @ w) (same random stream)."""
    rng = np.random.default_rng([seed, 1])
    z, out = x, []
    for _ in range(layers):
        w = rng.standard_normal(z.shape[1] * z.shape[1]).reshape(z.shape[1], -1)
        z = act(z @ (w * std_of_n(z.shape[1])))
        out.append(z)
    return out


@pytest.mark.parametrize("label, std_of_n", [("std=1", lambda n: 1.0),
                                             ("std=0.01", lambda n: 0.01),
                                             ("xavier", lambda n: np.sqrt(1.0 / n)),
                                             ("he", lambda n: np.sqrt(2.0 / n))])
def test_layer_outputs_follow_the_textbook(label, std_of_n):
    x = np.random.default_rng(7).standard_normal((50, 20))
    (_, spec), = wi.parse_inits("--inits", label)
    sigmoid = wi.ACTIVATIONS["sigmoid"][0]
    got = wi.layer_activations("sigmoid", spec, x, 3, seed=4)
    want = textbook_activations(x, std_of_n, lambda a: 1 / (1 + np.exp(-a)), 3, seed=4)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert sigmoid(np.array([0.0]))[0] == 0.5


def test_statistics_show_the_textbook_effects():
    _, rows = wi.run_histograms(["sigmoid", "tanh", "relu"],
                                wi.parse_inits("--inits", "std=1,std=0.01,xavier,he"),
                                samples=200, units=100, layers=5, seed=0)
    stat = {(r["activation"], r["weight_init"], r["layer"]): r for r in rows}
    # std 1 with sigmoid: outputs pile up at 0 and 1 (vanishing gradients)
    assert stat["sigmoid", "std=1", 5]["fraction_saturated"] > 0.2
    # std 0.01: all outputs the same (representation collapses)
    assert stat["sigmoid", "std=0.01", 5]["std"] < 0.02
    assert stat["tanh", "std=0.01", 5]["std"] < 1e-3
    # He keeps the ReLU outputs' scale from layer to layer; Xavier lets it shrink
    he = [stat["relu", "he", k]["std"] for k in range(1, 6)]
    xavier = [stat["relu", "xavier", k]["std"] for k in range(1, 6)]
    assert max(he) / min(he) < 1.5 and xavier[4] < 0.5 * xavier[0]
    assert 0.4 < stat["relu", "he", 3]["fraction_zero"] < 0.6


def test_histogram_figure_layout():
    results, _ = wi.run_histograms(["tanh"], wi.parse_inits("--inits", "std=1,xavier,he"),
                                   samples=30, units=10, layers=4, seed=0)
    fig = wi.plot_activation_histograms("tanh", results["tanh"], bins=12)
    assert len(fig.axes) == 3 * 4
    top = fig.axes[:4]
    assert [ax.get_title() for ax in top] == ["layer 1", "layer 2", "layer 3", "layer 4"]
    first_column = [fig.axes[r * 4] for r in range(3)]
    assert [ax.get_ylabel().split("\n")[0] for ax in first_column] == [
        "std=1", "Xavier (std 1/sqrt(n))", "He (std sqrt(2/n))"]
    assert all(ax.get_ylabel().endswith("count") for ax in first_column)
    assert all(ax.get_xlabel() == "tanh output" for ax in fig.axes[-4:])
    assert fig.axes[0].get_xlim() == (-1.0, 1.0)
    assert len(fig.axes[0].patches) == 12  # the histogram's bars


def test_training_figure_has_one_line_per_init():
    def fake(rate):
        steps = np.arange(0, 101, 10)
        return History([dict(step=int(s), epoch=s / 12, wall_time=0.0,
                             train_loss=float("nan") if s == 0 else 2.3 * np.exp(-rate * s),
                             test_loss=2.0, test_accuracy=0.1 + rate, lr=0.01)
                        for s in steps])

    curves = [("std=0.01", fake(0.0), ""), ("xavier", fake(0.01), ""),
              ("he", fake(0.03), "diverged at step 90")]
    fig = wi.plot_training(curves, "title")
    loss, acc = fig.axes
    assert loss.get_yscale() == "log"
    assert len(loss.get_lines()) == 3 and len(acc.get_lines()) == 3
    assert loss.get_xlabel().startswith("step") and "loss" in loss.get_ylabel()
    assert "%" in acc.get_ylabel()
    labels = [t.get_text() for t in loss.get_legend().get_texts()]
    assert labels == ["std=0.01", "Xavier (std 1/sqrt(n))",
                      "He (std sqrt(2/n)) (diverged at step 90)"]
    assert loss.get_lines()[0].get_xdata()[0] == 10  # the record before step 1 has no loss


# ---------------------------------------------------------------------------------------
# argument errors: exit code 2, a message naming the argument, nothing written


@pytest.mark.parametrize("args, words", [
    (["--activations", "sigmoid,swish"], ["--activations", "'swish'", "tanh"]),
    (["--inits", "std=1,fancy"], ["--inits", "'fancy'", "xavier", "glorot_uniform"]),
    (["--inits", "std=-1"], ["--inits", "positive"]),
    (["--inits", "std=abc"], ["--inits", "positive"]),
    (["--train-inits", "bogus"], ["--train-inits", "'bogus'"]),
    (["--dataset", "cifar"], ["--dataset", "'cifar'", "digits", "mnist"]),
    (["--steps", "0"], ["--steps", "positive"]),
    (["--samples", "0"], ["--samples"]),
    (["--units", "-2"], ["--units"]),
    (["--layers", "0"], ["--layers"]),
    (["--bins", "0"], ["--bins"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--batch-size", "100000"], ["--batch-size", "1437"]),
    (["--lr", "0"], ["--lr", "positive"]),
    (["--lr", "nan"], ["--lr", "positive"]),
    (["--seed", "-5"], ["--seed"]),
    (["--target", "cuda"], ["CUDA", "--target cpu"]),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["init", *args, "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith("fastopt: error: ")
    for word in words:
        assert word in err
    assert not out.exists() and stdout == ""


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.csv"
    target.write_text("x")
    code, _, err = cli(["init", "--no-training", "--out", str(target)], capsys)
    assert code == 2 and "--out" in err and "existing file" in err
    assert target.read_text() == "x"


def test_ctrl_c_during_training_keeps_the_histograms(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(wi, "train_one", interrupted)
    out = tmp_path / "cut"
    code, _, err = cli(["init", *TINY, "--activations", "relu", "--out", str(out)], capsys)
    assert code == 130 and str(out) in err
    assert (out / "activation_stats.csv").exists() and (out / "activations_relu.png").exists()
    assert json.loads((out / "settings.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_training_progress_lines_without_a_terminal(tmp_path, capsys, monkeypatch):
    """stdout not a terminal: a line every ~10 s per training run (here every update)."""
    progress_every_update(monkeypatch)
    argv = [a for a in TINY if a != "--no-progress"]
    code, stdout, _ = cli(["init", *argv, "--activations", "relu", "--train-inits", "he",
                           "--steps", "300", "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    lines = [line for line in stdout.splitlines() if line.startswith("init: he: ")]
    assert len(lines) >= 3 and " steps (" in lines[0]
    assert lines[-1].startswith("init: he: 300/300 steps (100%)")
