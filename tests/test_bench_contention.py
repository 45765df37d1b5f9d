"""fastopt bench contention and the thread policy (fastopt.threads).

The load processes must always stop: after the command, after an error inside a load,
after Ctrl-C. The Governor is driven by a fake clock, so nothing here depends on how busy
the machine is (speed goals live in the benchmark)."""

import numpy as np
import pytest

from fastopt import cli, config, threads
from fastopt.bench import contention
from fastopt.kernels import cpu
from tests.clitools import read_csv


@pytest.fixture
def started(monkeypatch):
    """Every load process the code under test starts."""
    procs = []
    real = contention._start

    def start(program):
        proc = real(program)
        procs.append(proc)
        return proc

    monkeypatch.setattr(contention, "_start", start)
    return procs


def _all_stopped(procs):
    return all(proc.poll() is not None for proc in procs)


def test_command_tiny_writes_rows_and_stops_its_loads(tmp_path, capsys, started):
    out = tmp_path / "c"
    assert cli.main(["bench", "contention", "--rows", "adam-step-1e5,sgd-32",
                     "--loads", "busy,blas", "--seconds", "0.01", "--no-progress",
                     "--out", str(out)]) == 0
    rows = read_csv(out / "contention.csv")
    assert [(r["what"], r["n"], r["load"]) for r in rows] == [
        ("opt.step", "100000", "busy"), ("opt.step", "100000", "blas"),
        ("train_step", "32", "busy"), ("train_step", "32", "blas")]
    for r in rows:
        assert float(r["quiet"]) > 0 and float(r["loaded"]) > 0
        assert float(r["ratio"]) == pytest.approx(float(r["loaded"]) / float(r["quiet"]))
    assert "loaded / quiet" in capsys.readouterr().out
    assert len(started) == 2 * (threads.available_cores() + 1)  # per row: busy per core, blas
    assert _all_stopped(started)


@pytest.mark.parametrize("error", [RuntimeError("measurement failed"), KeyboardInterrupt()])
def test_loads_stop_when_the_measurement_raises(error, started):
    with pytest.raises(type(error)):
        with contention.load("busy", 2):
            assert len(started) == 2 and not any(p.poll() is not None for p in started)
            raise error
    assert _all_stopped(started)


def test_measure_row_stops_the_load_when_timing_raises(monkeypatch, started):
    calls = []

    def timing(step, seconds):
        calls.append(seconds)
        if len(calls) == 2:  # the loaded measurement
            raise RuntimeError("boom")
        return 1e-3, 3

    monkeypatch.setattr(contention, "block_throughput", timing)
    monkeypatch.setattr(contention, "SETTLE_SECONDS", 0.0)
    with pytest.raises(RuntimeError, match="boom"):
        contention.measure_row(("opt.step", "adam", 1000), ["blas"], 0.01)
    assert len(started) == 1 and _all_stopped(started)


@pytest.mark.parametrize("argv, match", [
    (["--rows", "sgd-7"], "--rows"), (["--loads", "disk"], "--loads"),
    (["--seconds", "0"], "--seconds")])
def test_bad_arguments_name_the_option(argv, match, tmp_path, capsys, started):
    assert cli.main(["bench", "contention", *argv, "--out", str(tmp_path / "x")]) == 2
    assert match in capsys.readouterr().err
    assert not started


def test_block_throughput_counts_the_stalls_a_per_call_median_hides():
    fake = FakeClock()
    calls = []

    def step():  # 1 ms, and every fifth call stalls for 10 ms
        calls.append(None)
        fake.now += 10e-3 if len(calls) % 5 == 0 else 1e-3

    seconds, blocks = contention.block_throughput(step, 1.0, 0.1, clock=fake)
    assert blocks >= 3
    assert seconds == pytest.approx(14e-3 / 5, rel=0.1)  # throughput, not the 1 ms median


# ---------------------------------------------------------------------------------------
# the Governor, on a fake clock


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def variant(self, seconds, log, name):
        def call():
            self.now += seconds() if callable(seconds) else seconds
            log.append(name)
        return call


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(threads, "_clock", fake)
    return fake


def _run(gov, clock, narrow_s, wide_s, calls):
    log = []
    narrow, wide = clock.variant(narrow_s, log, "n"), clock.variant(wide_s, log, "w")
    for _ in range(calls):
        gov.run(narrow, wide)
    return log


TRIAL = 2 * (threads.TRIAL_CALLS + 1)


def test_governor_keeps_the_faster_variant_after_a_trial(clock):
    gov = threads.Governor()
    log = _run(gov, clock, 1.0e-3, 0.5e-3, TRIAL + 10)
    assert log[:TRIAL] == ["n", "w"] * (TRIAL // 2)  # the trial alternates
    assert log[TRIAL:] == ["w"] * 10 and gov.wide
    gov = threads.Governor()
    log = _run(gov, clock, 1.0e-3, 20e-3, TRIAL + 10)
    assert log[TRIAL:] == ["n"] * 10 and not gov.wide


def test_governor_backs_off_while_the_answer_holds_and_looks_again_after(clock):
    gov = threads.Governor()
    _run(gov, clock, 1e-3, 0.5e-3, TRIAL)
    assert gov.period == threads.MIN_PERIOD * 2  # same answer as the start: wide
    first = gov.next_trial
    # steady calls until the next trial is due, then one more trial: period doubles again
    while clock.now < first:
        _run(gov, clock, 1e-3, 0.5e-3, 1)
    _run(gov, clock, 1e-3, 0.5e-3, TRIAL)
    assert gov.period == threads.MIN_PERIOD * 4
    for _ in range(10):
        gov._decide(1.0, 0.5, clock.now)
    assert gov.period == threads.MAX_PERIOD
    gov._decide(0.5, 1.0, clock.now)  # a change of mind: look again soon
    assert gov.period == threads.MIN_PERIOD and not gov.wide


def test_governor_a_collapsing_wide_call_brings_the_trial_forward(clock):
    gov = threads.Governor()
    _run(gov, clock, 1e-3, 0.5e-3, TRIAL)
    assert gov.wide and gov.next_trial > clock.now
    log = _run(gov, clock, 1e-3, 0.5e-3 * threads.ALARM * 2, 1)  # the cores are gone
    assert log == ["w"] and gov.next_trial == 0.0
    log = _run(gov, clock, 1e-3, 50e-3, TRIAL + 3)
    assert log[:TRIAL] == ["n", "w"] * (TRIAL // 2) and log[TRIAL:] == ["n"] * 3


def test_run_sized_follows_the_size_threshold_and_the_mode(monkeypatch, clock):
    log = []
    serial, parallel = clock.variant(1e-3, log, "s"), clock.variant(1e-3, log, "p")
    threads.run_sized("x", config.PARALLEL_MIN_SIZE - 1, serial, parallel)
    monkeypatch.setattr(threads, "_MODE", "all")
    threads.run_sized("x", config.PARALLEL_MIN_SIZE, serial, parallel)
    monkeypatch.setattr(threads, "_MODE", "1")
    threads.run_sized("x", config.PARALLEL_MIN_SIZE, serial, parallel)
    assert log == ["s", "p", "s"]


def test_serial_or_prange_plain_adam_updates_give_the_same_bits(monkeypatch, rng):
    # true of plain Adam; not of every rule (fastopt.threads: why auto is not the default)
    from fastopt import optim

    n = config.PARALLEL_MIN_SIZE + 77
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    results = {}
    for m in ("1", "all"):
        monkeypatch.setattr(threads, "_MODE", m)
        p = p0.copy()
        opt = optim.Adam(p, lr=1e-2)
        for g in grads:
            opt.step(g)
        results[m] = p
    assert results["1"].tobytes() == results["all"].tobytes()


def test_threads_setting_is_checked(monkeypatch):
    monkeypatch.setenv("FASTOPT_THREADS", "many")
    with pytest.raises(ValueError, match="FASTOPT_THREADS"):
        config._env_choice("FASTOPT_THREADS", "auto", ("auto", "all", "1"))
