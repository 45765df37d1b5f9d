"""fastopt.tables: the one plain-text table and CSV writer of the commands. The expected
lines are what the three formatters it replaced (bench, asv-report, the experiments) printed."""

import csv
import math

from fastopt import tables

ROWS = [dict(name="adam", n=1000, t=1234.5678, note=""),
        dict(name="sgd", n=10, t=math.nan, note="x")]
COLUMNS, HEADERS = ["name", "n", "t", "note"], ["optimizer", "N", "t", ""]


def test_measurement_table_right_aligns_everything_and_keeps_blanks():
    text = tables.format_table(ROWS, COLUMNS, HEADERS, cell=tables.short, first_left=False,
                               strip=False)
    assert text.splitlines() == ["optimizer     N         t   ",
                                 "---------  ----  --------  -",
                                 "     adam  1000  1.23e+03   ",
                                 "      sgd    10         -  x"]


def test_report_cells_use_thousands_separators():
    text = tables.format_table(ROWS, COLUMNS, HEADERS, cell=tables.readable,
                               first_left=False, strip=False)
    assert text.splitlines()[2] == "     adam  1000  1,235   "
    assert tables.readable(999.4) == "999" and tables.readable(12.345) == "12.3"


def test_default_table_left_aligns_names_and_strips_lines():
    rows = [{k: str(v) for k, v in r.items()} for r in ROWS]
    text = tables.format_table(rows, ["name", "n", "note", "missing"])
    assert text.splitlines() == ["name     n  note  missing",
                                 "----  ----  ----  -------",
                                 "adam  1000",
                                 "sgd     10     x"]


def test_write_csv_header_values_and_no_leftovers(tmp_path):
    path = tmp_path / "new" / "rows.csv"
    assert tables.write_csv(ROWS + [dict(name="lion", extra=1)], path) == path
    with open(path, newline="") as f:
        got = list(csv.reader(f))
    assert got[0] == COLUMNS
    assert got[1] == ["adam", "1000", "1234.5678", ""] and got[2][2] == "nan"
    assert got[3] == ["lion", "", "", ""]  # missing keys empty, extra keys left out
    assert [p.name for p in path.parent.iterdir()] == ["rows.csv"]
    tables.write_csv(ROWS, str(path), ["t", "name"], cell=lambda v: f"<{v}>")
    assert path.read_text().splitlines()[:2] == ["t,name", "<1234.5678>,<adam>"]
