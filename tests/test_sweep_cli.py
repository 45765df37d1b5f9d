"""`fastopt sweep`: end to end on a local Dask cluster, resume, the textbook preset's
options, Ctrl-C, bad input."""

import json
import re
import os
import signal
import socket
import subprocess
import sys
import time

import matplotlib
import pytest

matplotlib.use("Agg")

from fastopt import sweep  # noqa: E402
from fastopt.cli import build_parser  # noqa: E402
from fastopt.sweep import command, engine  # noqa: E402
from fastopt.sweep import space as sweepspace  # noqa: E402
from tests.clitools import cli, read_csv  # noqa: E402

TINY = ["--dataset", "digits", "--hidden", "8", "--budget-steps", "20", "--evals", "2",
        "--no-progress"]
SPACE = "optimizer=choice(sgd,momentum) lr=loguniform(1e-3,0.3) wd=loguniform(1e-6,1e-2)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow  # starts Dask worker processes
def test_sweep_on_two_local_workers_then_resume(tmp_path, capsys, sweep_kernels):
    pytest.importorskip("distributed")
    out = tmp_path / "run"
    argv = ["sweep", "--space", SPACE, "--trials", "6", "--workers", "2", "--top", "3",
            "--seed", "1", "--out", str(out), *TINY]
    code, stdout, stderr = cli(argv, capsys)
    assert code == 0, stderr
    for name in ("trials.csv", "best.csv", "sweep_lr.png", "best_curves.png",
                 "settings.json"):
        assert (out / name).stat().st_size > 0
        assert f"wrote {out / name}" in stdout
    assert not (out / "errors.csv").exists()
    trials = read_csv(out / "trials.csv")
    assert list(trials[0]) == list(sweep.TRIAL_COLUMNS)
    assert len(trials) == 6 and len({t["trial_id"] for t in trials}) == 6
    assert {t["optimizer"] for t in trials} <= {"sgd", "momentum"}
    assert len({t["worker"] for t in trials}) == 2
    best = read_csv(out / "best.csv")
    assert list(best[0]) == ["rank", *sweep.TRIAL_COLUMNS]
    assert [b["rank"] for b in best] == ["1", "2", "3"]
    accuracies = [float(b["val_accuracy"]) for b in best]
    assert accuracies == sorted(accuracies, reverse=True)
    assert max(float(t["val_accuracy"]) for t in trials) == accuracies[0]
    assert sorted(p.name for p in (out / "histories").iterdir()) == sorted(
        f"{t['trial_id']}.csv" for t in trials)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["status"] == "complete" and settings["workers"] == 2
    assert settings["resolved"]["sweep"]["space"] == sweepspace.parse_space(SPACE).text()
    assert settings["arguments"]["trials"] == 6
    # the table of the best 3, and trials per minute
    assert "rank" in stdout and "val acc %" in stdout and best[0]["trial_id"] in stdout
    assert "trials/min" in stdout and "2 worker(s)" in stdout

    # the same command again: nothing runs, nothing is written twice
    code, stdout, _ = cli(argv, capsys)
    assert code == 0
    assert "resuming: 6 of the 6 trials" in stdout and "(0 run now, 6 earlier)" in stdout
    assert read_csv(out / "trials.csv") == trials
    # more trials: only the new ones run, in this process this time
    code, stdout, _ = cli([*argv[:4], "8", *argv[5:6], "0", *argv[7:]], capsys)
    assert code == 0 and "(2 run now, 6 earlier)" in stdout
    again = read_csv(out / "trials.csv")
    assert again[:6] == trials and len({t["trial_id"] for t in again}) == 8
    assert [t["worker"] for t in again[6:]] == ["local", "local"]
    # a different sweep in the same folder is refused
    code, _, stderr = cli([*argv[:2], "lr=loguniform(1e-3,0.1)", *argv[3:]], capsys)
    assert code == 2 and "holds a different sweep (it differs in: space" in stderr


def test_textbook_preset_options():
    args = build_parser().parse_args(["sweep", "--textbook"])
    kwargs, top = command.resolve(args)
    assert top == 20
    assert kwargs["space"] == sweepspace.parse_space(sweep.TEXTBOOK["space"])
    assert {k: kwargs[k] for k in sweep.TEXTBOOK if k != "space"} == {
        k: v for k, v in sweep.TEXTBOOK.items() if k != "space"}
    assert kwargs["trials"] == 100 and kwargs["epochs"] == 50 and kwargs["dataset"] == "mnist"
    # options given with the preset replace its values, a budget replaces its budget
    args = build_parser().parse_args(["sweep", "--textbook", "--trials", "10",
                                      "--budget-steps", "40", "--top", "5"])
    kwargs, top = command.resolve(args)
    assert (kwargs["trials"], kwargs["budget_steps"], top) == (10, 40, 5)
    assert "epochs" not in kwargs and kwargs["train_samples"] == 500
    # without the preset: the defaults
    kwargs, top = command.resolve(build_parser().parse_args(["sweep"]))
    assert kwargs["space"] == sweepspace.parse_space(command.DEFAULT_SPACE)
    assert kwargs["dataset"] == "digits" and top == command.DEFAULT_TOP
    assert "trials" not in kwargs and "epochs" not in kwargs


def test_help_describes_space_preset_and_resume(capsys):
    code, stdout, _ = cli(["sweep", "--help"], capsys)
    assert code == 0
    for text in ("loguniform(a,b)", "grid(x,y,...)", "--textbook", "Deep Learning from Scratch",
                 "--scheduler", "dask scheduler", "same --out", "biases included"):
        assert text in stdout


# ---------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("extra, message", [
    (["--space", "lr=loguniform(1e-2,1e-6)"], r"--space: the range of .* is empty"),
    (["--space", "lr=choice()"], r"choice\(\) .* is empty"),
    (["--space", "rate=0.1"], r"unknown name 'rate' in 'rate=0.1'; valid: optimizer, lr"),
    (["--space", "optimizer=choice(sgd,sdg)"], r"unknown optimizer 'sdg'"),
    (["--trials", "0"], "--trials must be a positive integer"),
    (["--workers", "-1"], "--workers must be an integer >= 0"),
    (["--top", "0"], "--top must be a positive integer"),
    (["--budget-seconds", "0"], "--budget-seconds must be a positive number"),
    (["--val-fraction", "1.5"], r"--val-fraction must be in \(0, 1\)"),
    (["--dataset", "cifar"], "--dataset: unknown data set 'cifar'; valid: mnist, digits"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "leave out --workers"),
    (["--connect-timeout", "3"], "--connect-timeout applies to --scheduler only"),
    (["--target", "cuda"], "--target cuda"),
])
def test_bad_arguments(extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    options = [x for x in TINY if x not in ("--budget-steps", "20")]
    code, stdout, stderr = cli(["sweep", *options, "--out", str(out), *extra], capsys)
    assert code == 2
    assert stderr.startswith("fastopt: error: ")
    assert re.search(message, stderr), stderr
    assert not out.exists()


def test_unreachable_scheduler_is_a_clear_error_within_seconds(tmp_path, capsys):
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    code, _, stderr = cli(["sweep", *TINY, "--out", str(tmp_path / "run"), "--scheduler",
                           address, "--connect-timeout", "2"], capsys)
    assert time.perf_counter() - t0 < 10
    assert code == 2
    assert f"cannot reach the Dask scheduler at {address} within 2 s" in stderr
    assert "dask scheduler" in stderr and "leave out --scheduler" in stderr


def test_missing_dask_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, _, stderr = cli(["sweep", *TINY, "--out", str(tmp_path / "run"), "--workers", "2"],
                          capsys)
    assert code == 2 and 'pip install "fastopt[dist]"' in stderr


def test_failed_trial_goes_to_errors_csv_and_is_retried_next_time(tmp_path, capsys,
                                                                    monkeypatch, sweep_kernels):
    out = tmp_path / "run"
    argv = ["sweep", "--space", "lr=choice(0.1,0.05,0.02)", "--grid", "--workers", "0",
            "--out", str(out), *TINY]
    run_trial = engine.run_trial

    def failing(task, trial, *args):
        if trial.index == 1:
            raise RuntimeError("out of memory (a test)")
        return run_trial(task, trial, *args)

    monkeypatch.setattr(engine, "run_trial", failing)
    code, stdout, stderr = cli(argv, capsys)
    assert code == 1
    assert "trial 0001-" in stderr and "RuntimeError: out of memory (a test)" in stderr
    assert "1 trial(s) failed (errors.csv); run the same command again" in stdout
    assert [r["index"] for r in read_csv(out / "trials.csv")] == ["0", "2"]
    error, = read_csv(out / "errors.csv")
    assert error["index"] == "1" and error["lr"] == "0.05" and "out of memory" in error["error"]
    assert json.loads((out / "settings.json").read_text())["status"] == "incomplete"
    monkeypatch.setattr(engine, "run_trial", run_trial)
    code, stdout, _ = cli(argv, capsys)
    assert code == 0 and "(1 run now, 2 earlier)" in stdout
    assert [r["index"] for r in read_csv(out / "trials.csv")] == ["0", "2", "1"]


def test_space_combination_the_optimizer_rejects_fails_before_work(tmp_path, capsys):
    code, _, stderr = cli(["sweep", "--space", "optimizer=nesterov momentum=grid(0,0.9)",
                           "--out", str(tmp_path / "run"), *TINY], capsys)
    assert code == 2
    assert "trial 0000-" in stderr and "nesterov=True requires momentum > 0" in stderr


# ---------------------------------------------------------------------------------------
# Ctrl-C


@pytest.mark.slow  # starts Dask worker processes
def test_ctrl_c_leaves_whole_lines_and_the_rerun_completes(tmp_path, dask_cluster):
    """SIGINT to a running sweep: exit 130, settings.json says interrupted, trials.csv holds
    only whole lines; the same command then runs only the missing trials."""
    out = tmp_path / "run"
    address = dask_cluster.scheduler.address
    argv = [sys.executable, "-m", "fastopt", "sweep", "--space", "lr=loguniform(1e-3,0.3)",
            "--trials", "60", "--scheduler", address, "--out", str(out), "--dataset",
            "digits", "--hidden", "8", "--budget-steps", "1500", "--evals", "2",
            "--no-progress"]
    env = dict(os.environ, MPLBACKEND="Agg")
    # A shell without job control starts background commands (`cmd &`, nohup) with SIGINT
    # ignored; the ignored disposition survives exec and the child's Python then installs no
    # KeyboardInterrupt handler. A handled signal is reset to the default at exec, so handle
    # it here while the child starts (preexec_fn is unsafe with the Dask client's threads).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    trials = out / "trials.csv"
    deadline = time.time() + 60
    while not (trials.exists() and len(trials.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no trial finished in 60 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted; what was written so far is in" in stderr
    assert json.loads((out / "settings.json").read_text())["status"] == "interrupted"
    text = trials.read_text()
    assert text.endswith("\n")
    rows = read_csv(trials)
    # 60 trials of 1500 steps take about 7 s on 2 cores: the signal comes mid-run
    assert 2 <= len(rows) < 60 and all(len(r) == len(sweep.TRIAL_COLUMNS)
                                       and None not in r.values() for r in rows)
    done = [r["trial_id"] for r in rows]
    # the same command finishes the sweep: every trial once
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resuming: {len(done)} of the 60 trials" in result.stdout
    rows = read_csv(trials)
    assert [r["trial_id"] for r in rows[:len(done)]] == done
    assert len(rows) == 60 and len({r["trial_id"] for r in rows}) == 60
    assert json.loads((out / "settings.json").read_text())["status"] == "complete"
