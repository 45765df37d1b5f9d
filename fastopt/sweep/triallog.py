"""A sweep's files: trials.csv and errors.csv, append-only logs of whole lines.

Only the client process writes them. ``TrialLog.append`` writes one finished trial as one
line with a single ``os.write`` on an O_APPEND descriptor, then ``fsync``, so an interrupted
sweep leaves only complete lines; reopening a log checks its header and drops a trailing
partial line (a machine that lost power). ``read_trials`` and ``parse_row`` read the rows
back with their numbers as numbers.

Columns of trials.csv (TRIAL_COLUMNS)
    trial_id, index            ``NNNN-hash``: the trial's place in the sweep and its settings
    optimizer ... seed         the settings (``space.NAMES``); momentum is empty for an
                               optimizer without one, schedule empty for a constant lr
    status                     ok or diverged
    val_accuracy, val_loss     on the validation split after the last step
    best_val_accuracy, best_val_loss   best over the trial's evaluations
    train_loss                 mean mini-batch loss since the previous evaluation
    steps, epochs              updates done, passes over the training split
    train_seconds              training time (fit's clock: no evaluation, no compilation)
    compile_seconds            kernel compilation or cache loading in the trial
    trial_seconds              the whole trial on its worker (data, model, fit)
    worker, pid                the Dask worker's address (``local`` without Dask) and pid
    finished, note             when it ended (ISO 8601), why it diverged
"""

import csv
import io
import math
import os
import re
import sys
from pathlib import Path

from .space import NAMES

TRIALS_FILE = "trials.csv"
ERRORS_FILE = "errors.csv"
HISTORIES = "histories"  # the folder of histories/<trial_id>.csv
METRICS = ("status", "val_accuracy", "val_loss", "best_val_accuracy", "best_val_loss",
           "train_loss", "steps", "epochs", "train_seconds", "compile_seconds",
           "trial_seconds", "worker", "pid", "finished", "note")
TRIAL_COLUMNS = ("trial_id", "index", *NAMES, *METRICS)
ERROR_COLUMNS = ("trial_id", "index", *NAMES, "error", "finished")
_END_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")  # as written
_INTS = {"index", "batch_size", "seed", "steps", "pid"}
_FLOATS = {"lr", "weight_decay", "momentum", "val_accuracy", "val_loss", "best_val_accuracy",
           "best_val_loss", "train_loss", "epochs", "train_seconds", "compile_seconds",
           "trial_seconds"}


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _line(values):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(v) for v in values])
    return buf.getvalue().encode()


def _parse(column, text):
    if column in _INTS:
        return int(text) if text else None
    if column in _FLOATS:
        if text == "":
            return None if column == "momentum" else float("nan")
        return float(text)
    if column == "schedule":
        return text or None
    return text


def parse_row(raw, where=None):
    """A row of trials.csv or errors.csv (strings) with its numbers as numbers. ``where``
    (``"trials.csv line 7"``) names the row in the ValueError of a cell that is not the
    number its column holds."""
    row = {}
    for k, v in raw.items():
        if k is None:
            continue
        try:
            row[k] = _parse(k, v)
        except (TypeError, ValueError):
            kind = "an integer" if k in _INTS else "a number"
            raise ValueError(f"{where or 'a row'}: column {k} must be {kind}, got {v!r}; "
                             "correct the value or delete the line (its trial then runs "
                             "again)") from None
    return row


def _complete(line, columns):
    """True if ``line`` (a last line without its newline) holds a whole row: every column,
    each cell what its column holds, and a whole end time in the column finished. An editor that strips the final newline leaves such a row; a crash mid-write
    leaves one cut short."""
    try:
        cells, = list(csv.reader(io.StringIO(line.decode())))
        row = parse_row(dict(zip(columns, cells)))
    except (ValueError, UnicodeDecodeError):  # also a quote left open
        return False
    if len(cells) != len(columns):
        return False
    return "finished" not in row or bool(_END_TIME.fullmatch(row["finished"]))


class TrialLog:
    """An append-only CSV file: the header, then one whole line per ``append`` (one
    ``os.write`` on an O_APPEND descriptor, then ``fsync``); the file is created with the
    first line, so a sweep that records nothing leaves no empty log. Opening an existing
    file checks its header and the rows (a bad cell names its line); a last line without
    its newline is kept if it holds a whole row (the newline is added), and dropped if it
    was cut short (a machine that lost power)."""

    def __init__(self, path, columns):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.rows = []
        self._header = not (self.path.exists() and self.path.stat().st_size)
        if not self._header:
            self._read()

    def _read(self):
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            if cut and _complete(data[cut:], self.columns):
                self._write(b"\n")  # a whole row whose newline an editor removed
                data += b"\n"
            else:
                print(f"note: {self.path}: dropped an incomplete last line", file=sys.stderr)
                with open(self.path, "r+b") as f:
                    f.truncate(cut)
                data = data[:cut]
                if not data:  # not even the header was whole
                    self._header = True
                    return
        reader = csv.DictReader(io.StringIO(data.decode()))
        if tuple(reader.fieldnames or ()) != self.columns:
            raise ValueError(f"{self.path} has the columns {reader.fieldnames}, not those of "
                             f"this version of fastopt ({', '.join(self.columns)}); use "
                             "another --out")
        self.rows = [parse_row(r, f"{self.path} line {reader.line_num}") for r in reader]

    def _write(self, line):
        if self._header:  # the first line of a new log: the header with it, in one write
            line = _line(self.columns) + line
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._header = False

    def append(self, row):
        self._write(_line([row.get(c) for c in self.columns]))
        self.rows.append(dict(row))


def read_trials(path):
    """The rows of a trials.csv (or errors.csv) as dicts with numbers as numbers."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return [parse_row(r, f"{path} line {reader.line_num}") for r in reader]
