"""Helpers shared by the command-line tests (tests/test_cli_*.py, tests/test_sweep_cli.py)."""

import csv

from fastopt.cli import main


def cli(argv, capsys):
    """Run the command; (exit code, stdout, stderr), whether argparse or main decides."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_ok(argv):
    """Run a command that must succeed (exit code 0, else the assertion shows its output);
    returns its stdout."""
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(argv)
    assert code == 0, buf.getvalue()
    return buf.getvalue()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def progress_every_update(monkeypatch):
    """Make runs.Progress write its line at every update instead of every ~10 s (the
    commands' progress without a terminal, tested without waiting)."""
    from fastopt import runs

    class Often(runs.Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "every": 0.0})

    monkeypatch.setattr(runs, "Progress", Often)
