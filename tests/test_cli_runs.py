"""fastopt.runs: output folders, settings.json, figures; the experiment modules stay light."""

import datetime
import json
import subprocess
import sys

import pytest

from fastopt import runs


def test_default_out_dir_is_timestamped_and_never_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = datetime.datetime(2026, 11, 23, 16, 15, 0)
    first = runs.make_out_dir(None, "paths", now=now)
    second = runs.make_out_dir(None, "paths", now=now)
    assert first.as_posix() == "runs/paths-20261123-161500"
    assert second.as_posix() == "runs/paths-20261123-161500-2"
    assert first.is_dir() and second.is_dir()


def test_out_dir_is_created_or_reused_but_never_a_file(tmp_path):
    out = runs.make_out_dir(tmp_path / "a" / "b", "x")
    assert out.is_dir()
    assert runs.make_out_dir(out, "x") == out  # an existing folder is fine
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="--out .* is an existing file"):
        runs.make_out_dir(tmp_path / "f", "x")
    with pytest.raises(ValueError, match="--out .* is a file"):
        runs.make_out_dir(tmp_path / "f" / "sub", "x")


def test_settings_record_and_update(tmp_path):
    path = runs.write_settings(tmp_path, "demo", {"steps": 3, "out": tmp_path, "func": print,
                                                  "_argv": ["x"]},
                               argv=["demo", "--steps", "3", "--out", "my dir"],
                               resolved={"lr": 0.1})
    record = json.loads(path.read_text())
    assert record["command"] == "demo"
    assert record["arguments"] == {"steps": 3, "out": str(tmp_path)}
    assert record["command_line"] == "fastopt demo --steps 3 --out 'my dir'"
    assert record["resolved"] == {"lr": 0.1} and record["status"] == "running"
    assert {"fastopt", "numpy", "numba", "python"} <= set(record["versions"])
    assert datetime.datetime.fromisoformat(record["date"])
    runs.update_settings(tmp_path, status="complete")
    assert json.loads(path.read_text())["status"] == "complete"


def test_save_figure_png_and_svg(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    assert runs.save_figure(fig, tmp_path, "a") == [tmp_path / "a.png"]
    written = runs.save_figure(fig, tmp_path, "b", svg=True)
    assert written == [tmp_path / "b.png", tmp_path / "b.svg"]
    assert all(p.stat().st_size > 0 for p in written)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_target_seed_and_counts():
    with pytest.raises(ValueError, match="CUDA target is not available.*--target cpu"):
        runs.check_target("cuda")
    with pytest.raises(ValueError, match="--steps must be a positive integer"):
        runs.check_count("--steps", 0)
    assert runs.check_count("--seed", 0, low=0) == 0
    with pytest.raises(ValueError, match="--seed must be an integer >= 0"):
        runs.check_count("--seed", -1, low=0)
    with pytest.raises(ValueError, match="--x: unknown name 'c'; valid: a, b"):
        runs.split_list("--x", "a,c", choices=["a", "b"])


def test_progress_is_off_without_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert runs.progress_enabled(False) and not runs.progress_enabled(True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert not runs.progress_enabled(False)


def test_command_modules_load_neither_numba_nor_matplotlib():
    code = ("import sys, fastopt, fastopt.runs, fastopt.cli, fastopt.experiments.paths, "
            "fastopt.experiments.weight_init; fastopt.cli.build_parser(); "
            "print('numba' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_command_frame_records_complete_failed_and_the_body_status(tmp_path):
    import argparse

    def args(name):
        return argparse.Namespace(out=str(tmp_path / name), seed=0, _argv=["demo"])

    with runs.command_frame(args("ok"), "demo", resolved={"x": 1}) as frame:
        assert (frame.out / runs.SETTINGS_FILE).exists()
        assert runs.read_settings(frame.out)["status"] == "running"
    record = runs.read_settings(frame.out)
    assert record["status"] == "complete" and record["resolved"] == {"x": 1}

    with runs.command_frame(args("partial"), "demo") as frame:
        frame.status, frame.fields = "incomplete", {"seconds": 2.5}
    record = runs.read_settings(frame.out)
    assert (record["status"], record["seconds"]) == ("incomplete", 2.5)

    with pytest.raises(RuntimeError, match="boom"):
        with runs.command_frame(args("bad"), "demo") as frame:
            raise RuntimeError("boom")
    record = runs.read_settings(frame.out)
    assert (record["status"], record["error"]) == ("failed", "RuntimeError: boom")

    with pytest.raises(KeyboardInterrupt):
        with runs.command_frame(args("stop"), "demo") as frame:
            raise KeyboardInterrupt
    assert runs.read_settings(frame.out)["status"] == "running"  # main() marks interrupted


def test_progress_lines_when_not_a_terminal(capsys):
    now = [0.0]
    bar = runs.Progress(total=4, desc="compare", unit="runs", mode="lines", every=10.0,
                        clock=lambda: now[0])
    bar.set_postfix_str("adam b128 s0")
    now[0] = 4.0
    bar.update(1)  # within 10 s of the start: nothing yet
    now[0] = 12.0
    bar.update(1)
    now[0] = 15.0
    bar.update(1)  # within 10 s of the last line
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["compare: 2/4 runs (50%), adam b128 s0; 12 s so far, about 12 s left"]
    assert runs._duration(130) == "2 min 10 s" and runs._duration(7200) == "2 h 0 min"


def test_progress_modes(monkeypatch, capsys):
    assert runs.progress_mode(True) == "off"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert runs.progress_mode(False) == "lines"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert runs.progress_mode(False) == "bar"
    assert list(runs.Progress([1, 2, 3], desc="x", mode="off")) == [1, 2, 3]
    with pytest.raises(ValueError, match="progress mode"):
        runs.Progress(total=1, mode="loud")
