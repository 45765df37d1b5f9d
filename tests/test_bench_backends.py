"""fastopt bench backends and the crossover sweep (fastopt.bench.backends): tiny runs end to
end and the crossover logic on made-up rows (the numbers themselves are not tested)."""

import csv

import numpy as np
import pytest

from fastopt import cli
from fastopt.bench import backends
from fastopt.kernels import cpu
from fastopt.kernels import cython as cy


def _cython_or_skip():
    ok, why = backends.cython_status()
    if not ok:
        pytest.skip(f"the Cython backend cannot be built here: {why}")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sweep(backend, name, pairs):
    return [dict(backend=backend, optimizer=name, n=n, serial=s * 1e-6, parallel=p * 1e-6)
            for n, s, p in pairs]


def test_crossover_is_the_first_n_from_which_prange_always_wins():
    rows = (_sweep("numba", "adam", [(10, 1, 2), (100, 3, 2), (1000, 5, 6), (10**4, 9, 4),
                                     (10**5, 20, 10)])
            + _sweep("cython", "adam", [(10, 1, 2), (100, 3, 4)])
            + _sweep("numba", "sgd", [(100, 3, 1), (10, 2, 1)]))  # unsorted: sorted by N
    found = backends.crossover_points(rows)
    assert found == {("numba", "adam"): 10**4, ("cython", "adam"): None, ("numba", "sgd"): 10}
    notes = backends.crossover_notes(rows, found)
    assert notes[0].startswith("crossover numba adam: prange faster from N = 10000")
    assert "prange never faster on this machine" in notes[1]
    assert "sweep 1e+01..1e+02; at N = 1e+02: serial 3.0 us, prange 4.0 us" in notes[1]
    assert notes[2].endswith("from N = 10 (at N = 1e+02: serial 3.0 us, prange 1.0 us)")


def test_kernel_case_passes_the_optimizers_first_step_scalars():
    """The kernels get what an optimizer's step passes: one step of the kernel on a copy of
    the case equals that optimizer's second step."""
    from fastopt import optim

    args, nbytes, rule = backends.kernel_case("adam", 257, "float64", seed=3)
    assert rule == "adam" and nbytes == 257 * 8 * (3 + 2 * 2)
    p, g, s0, s1, s2, hyper, flags = args
    assert s2 is None and hyper.dtype == np.float64 and flags.dtype == np.int64
    rng = np.random.default_rng(3)
    q = rng.standard_normal(257)
    grad = rng.standard_normal(257) * 1e-3
    opt = optim.Adam(q, **backends.definitions.bench_hyper("adam"))
    opt.step(grad)
    np.testing.assert_array_equal(q, p)
    rows, _, _ = opt._host_steps(1, 1.0)
    np.testing.assert_array_equal(hyper, rows[0][0][0])


def test_kernel_pair_of_each_backend_gives_the_same_bits():
    _cython_or_skip()
    outs = []
    for b in backends.BACKENDS:
        for k in (0, 1):  # serial, prange
            args, _, rule = backends.kernel_case("adam", 1001, seed=1)
            backends.kernel_pair(b, rule, np.float32)[k](*args)
            outs.append(args[0].view(np.uint32))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    assert backends.kernel_pair("numba", "adam", np.float32) == cpu.update_kernels("adam")
    with pytest.raises(ValueError, match="backend='c'"):
        backends.kernel_pair("c", "adam", np.float32)


def test_bench_backends_writes_the_table(tmp_path, capsys):
    _cython_or_skip()
    out = tmp_path / "b"
    assert cli.main(["bench", "backends", "--optimizers", "sgd", "--sizes", "1e3",
                     "--crossover-sizes", "1e3,2e3", "--rounds", "1", "--no-first-use",
                     "--no-progress", "--out", str(out)]) == 0
    rows = _rows(out / "backends.csv")
    assert [(r["measure"], r["path"]) for r in rows] == [
        ("kernel", "serial"), ("kernel", "prange"), ("sweep", "serial"), ("sweep", "prange"),
        ("sweep", "serial"), ("sweep", "prange"), ("crossover", "prange wins from N")]
    assert all(float(r["numba"]) > 0 and float(r["cython"]) > 0 for r in rows[:6])
    text = capsys.readouterr().out
    assert "crossover numba sgd" in text and "crossover cython sgd" in text
    assert "load average" in text


@pytest.mark.parametrize("argv, match", [
    (["--optimizers", "adamm"], "unknown optimizer(s) ['adamm']"),
    (["--sizes", "1.5"], "sizes must be comma-separated positive whole numbers"),
    (["--seed", "-1"], "--seed"),
])
def test_bench_backends_bad_arguments(argv, match, tmp_path, capsys):
    """Refused with the option named, before anything is measured or written."""
    try:
        rc = cli.main(["bench", "backends", *argv, "--out", str(tmp_path / "x")])
    except SystemExit as exc:  # argparse's own refusal (a --sizes that does not parse)
        rc = exc.code
    assert rc == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_first_use_of_numba_compiles_then_loads():
    """A new process with an empty cache compiles SGD's two loops; the second loads them."""
    use = backends.first_use("numba", names=("sgd",))
    assert use["first_s"] > use["cached_s"] > 0
    with pytest.raises(ValueError, match="backend='c'"):
        backends.first_use("c")


def test_first_use_child_failure_is_reported(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)first-use child failed.*ZeroDivisionError"):
        backends._child("1 / 0", str(tmp_path), timeout=60)


def test_bench_backends_needs_cython(monkeypatch):
    monkeypatch.setattr(cy, "available", lambda: (False, "no compiler here"))
    with pytest.raises(RuntimeError, match="Cython backend is unavailable: no compiler"):
        backends.bench_backends(sizes=[10], crossover_sizes=[10], first_use_runs=False,
                                progress=False)
