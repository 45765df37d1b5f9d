"""Plain-text tables and CSV files: the one formatter and the one writer of every command.

``format_table`` lays dict rows out in columns; how a value becomes a cell is the caller's
choice (``cell``): ``str`` for rows the caller formatted itself, ``short`` for measurements
(3 significant digits), ``readable`` for report tables (thousands separators instead of
exponents). ``write_csv`` writes the same rows as CSV, atomically.

Nothing here imports numpy, numba or matplotlib.
"""

import csv
import math
import os


def short(value):
    """A float in 3 significant digits, NaN as ``-``; anything else as ``str``."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}"
    return str(value)


def readable(value):
    """Like ``short``, with thousands separators from 1,000 up instead of exponents."""
    if isinstance(value, float) and not math.isnan(value) and abs(value) >= 999.5:
        return f"{value:,.0f}"  # what .3g would print as 1e+03 and up
    return short(value)


def format_table(rows, columns, headers=None, cell=str, first_left=True, strip=True):
    """Plain-text table of dict ``rows``: one line per row, the ``columns`` in order.

    ``headers`` (default: the column names) head the columns, over a rule of dashes.
    ``cell(value)`` turns a value into its text (a missing key is ``""``). Columns are
    right-aligned, the first left-aligned if ``first_left`` (a column of names);
    ``strip`` removes trailing blanks from each line."""
    headers = headers or columns
    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(items):
        text = "  ".join(c.ljust(w) if i == 0 and first_left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(items, widths)))
        return text.rstrip() if strip else text

    return "\n".join([line(headers), line(["-" * w for w in widths])]
                     + [line(row) for row in cells])


def write_csv(rows, path, columns=None, cell=None):
    """Write dict ``rows`` to ``path`` as CSV and return ``path``.

    The header is ``columns`` (default: the first row's keys); other keys are left out,
    missing ones and None are empty cells; ``cell(value)``, if given, converts each value
    first. The parent folder is created if needed, and the file appears whole or not at
    all (written next to it, then renamed), even after Ctrl-C."""
    from .runs import atomic_file

    columns = list(columns or rows[0])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path, "w") as f:  # a unique temporary name: two writers never share it
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([cell(r.get(c)) if cell else r.get(c) for c in columns])
    return path
