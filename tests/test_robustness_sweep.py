"""Sweep folders that cannot be recorded twice, trials.csv read by content, and refused or
failing sweeps that leave the folder as it was (no "running" record, no empty trials.csv)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fastopt import runs, sweep
from fastopt.sweep import engine
from fastopt.sweep.triallog import TRIAL_COLUMNS, TrialLog
from tests.clitools import cli, read_csv

TINY = dict(dataset="digits", hidden=(8,), budget_steps=20, evals=2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def files(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------------------------------
# one sweep per folder


def test_a_second_sweep_into_a_folder_in_use_is_refused(tmp_path, sweep_kernels):
    out = tmp_path / "s"
    sweep.run("lr=0.1", trials=2, workers=0, out=out, **TINY)
    before = files(out)
    with engine._locked(out):  # as a running sweep holds it
        with pytest.raises(ValueError, match=rf"{out} is in use by a sweep that is running "
                                             rf"\(pid {os.getpid()} on .*\); wait for it"):
            sweep.run("lr=0.1", trials=4, workers=0, out=out, **TINY)
        assert files(out) == before  # nothing recorded, nothing rewritten
    result = sweep.run("lr=0.1", trials=4, workers=0, out=out, **TINY)  # free again
    assert (result.ran, result.skipped) == (2, 2)
    # called from Python too, the record says how it ended (it said "running")
    assert json.loads((out / "settings.json").read_text())["status"] == "complete"


def _sweep_argv(out):
    return [sys.executable, "-m", "fastopt", "sweep", "--space", "lr=loguniform(1e-3,0.1)",
            "--trials", "40", "--workers", "0", "--dataset", "digits", "--hidden", "8",
            "--budget-steps", "1500", "--evals", "2", "--no-progress", "--out", str(out)]


@pytest.mark.slow  # two sweeps in their own processes
def test_two_sweep_commands_on_one_out_and_a_killed_one_resumed(tmp_path, sweep_kernels):
    out = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    first = subprocess.Popen(_sweep_argv(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    trials = out / "trials.csv"
    deadline = time.time() + 120
    while not (trials.exists() and len(trials.read_text().splitlines()) >= 3):
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline, "no trial finished in 120 s"
        time.sleep(0.05)
    second = subprocess.run(_sweep_argv(out), capture_output=True, text=True, env=env,
                            timeout=120)
    assert second.returncode == 2
    assert f"is in use by a sweep that is running (pid {first.pid} on" in second.stderr
    assert "Traceback" not in second.stderr
    first.send_signal(signal.SIGKILL)  # a killed sweep: the system releases its lock
    first.communicate(timeout=60)
    done = [r["trial_id"] for r in read_csv(trials)]
    assert 2 <= len(done) < 40
    again = subprocess.run(_sweep_argv(out), capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming: {len(done)} of the 40 trials" in again.stdout
    rows = read_csv(trials)
    assert len(rows) == 40 and len({r["trial_id"] for r in rows}) == 40
    assert json.loads((out / "settings.json").read_text())["status"] == "complete"


# ---------------------------------------------------------------------------------------
# trials.csv by content, not by its last newline


def _log_with_rows(tmp_path, n=2):
    out = tmp_path / "s"
    sweep.run("lr=0.1", trials=n, workers=0, out=out, **TINY)
    return out / "trials.csv"


def test_a_whole_last_row_without_its_newline_is_kept(tmp_path, sweep_kernels, capsys):
    path = _log_with_rows(tmp_path)
    text = path.read_bytes()
    path.write_bytes(text.rstrip(b"\n"))  # an editor stripped the final newline
    log = TrialLog(path, TRIAL_COLUMNS)
    assert len(log.rows) == 2
    assert path.read_bytes() == text  # the newline is back, the row kept
    assert "dropped" not in capsys.readouterr().err
    result = sweep.run("lr=0.1", trials=2, workers=0, out=path.parent, **TINY)
    assert (result.ran, result.skipped) == (0, 2)  # nothing runs again


@pytest.mark.parametrize("cut", [2, 5, 20, 40])  # 1: only the newline, a whole row
def test_a_row_cut_short_is_dropped(tmp_path, sweep_kernels, capsys, cut):
    path = _log_with_rows(tmp_path)
    text = path.read_bytes()
    path.write_bytes(text[:-cut])  # power lost while the line was written
    log = TrialLog(path, TRIAL_COLUMNS)
    assert len(log.rows) == 1
    assert "dropped an incomplete last line" in capsys.readouterr().err
    assert path.read_bytes() == text[:text.rstrip(b"\n").rfind(b"\n") + 1]


@pytest.mark.parametrize("column,value,message", [
    ("steps", "twenty", "column steps must be an integer, got 'twenty'"),
    ("val_accuracy", "high", "column val_accuracy must be a number, got 'high'"),
])
def test_a_bad_row_names_the_file_and_line(tmp_path, sweep_kernels, column, value, message):
    path = _log_with_rows(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[2].rstrip("\n").split(",")
    cells[header.index(column)] = value
    lines[2] = ",".join(cells) + "\n"
    path.write_text("".join(lines))
    before = files(path.parent)
    with pytest.raises(ValueError, match=rf"trials.csv line 3: {message}; correct the value "
                                         "or delete the line"):
        sweep.run("lr=0.1", trials=2, workers=0, out=path.parent, **TINY)
    assert files(path.parent) == before
    with pytest.raises(ValueError, match="trials.csv line 3"):
        sweep.read_trials(path)


# ---------------------------------------------------------------------------------------
# refused or failing sweeps leave the folder as it was


def test_an_unreachable_scheduler_writes_nothing(tmp_path, capsys):
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "new"
    code, _, stderr = cli(["sweep", "--dataset", "digits", "--hidden", "8", "--budget-steps",
                           "20", "--no-progress", "--out", str(out), "--scheduler",
                           f"tcp://127.0.0.1:{port}", "--connect-timeout", "1"], capsys)
    assert code == 2 and "cannot reach the Dask scheduler" in stderr
    assert not out.exists()  # no folder, no settings.json saying "running"


def test_a_failed_resume_keeps_the_record_of_a_complete_sweep(tmp_path, sweep_kernels,
                                                             monkeypatch):
    pytest.importorskip("distributed")
    import socket

    out = tmp_path / "s"
    sweep.run("lr=0.1", trials=2, workers=0, out=out, **TINY)
    runs.update_settings(out, status="complete")
    before = files(out)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(sweep.SchedulerError):  # extends the sweep, but cannot connect
        sweep.run("lr=0.1", trials=4, scheduler=f"tcp://127.0.0.1:{port}", connect_timeout=1,
                  out=out, **TINY)
    assert files(out) == before
    assert json.loads((out / "settings.json").read_text())["status"] == "complete"


def test_a_sweep_that_raises_is_recorded_as_failed(tmp_path, sweep_kernels, monkeypatch):
    out = tmp_path / "s"

    def broken(*args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(engine, "_run_here", broken)
    with pytest.raises(RuntimeError):
        sweep.run("lr=0.1", trials=2, workers=0, out=out, **TINY)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["status"] == "failed"
    assert settings["error"] == "RuntimeError: the disk went away"
    assert not (out / "trials.csv").exists()  # no empty log


def test_refused_sweep_command_creates_no_folder(tmp_path, capsys):
    out = tmp_path / "new"
    code, _, stderr = cli(["sweep", "--space", "lr=loguniform(1,0.1)", "--out", str(out),
                           "--no-progress"], capsys)
    assert code == 2 and "space" in stderr
    assert not out.exists()


def test_settings_temporaries_are_unique_and_not_left(tmp_path):
    runs.write_settings(tmp_path, "x", {}, [])
    runs.update_settings(tmp_path, status="complete")
    assert sorted(os.listdir(tmp_path)) == ["settings.json"]
    tag = "settings.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".{tag}-{dead.pid}-aaaaaaaaaaaa.tmp"
    stale.write_text("{")
    old = time.time() - 2 * runs.STALE_SECONDS
    os.utime(stale, (old, old))
    runs.update_settings(tmp_path, status="again")
    assert sorted(os.listdir(tmp_path)) == ["settings.json"]
