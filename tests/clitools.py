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


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
