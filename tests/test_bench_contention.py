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
    # the policy end to end; every rule: tests/test_kernels.py::test_paths_agree_bitwise
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


# the Guard (training calls: BLAS threads or one thread), on a fake clock


def _guarded(guard, clock, threads_s, one_s, calls, steps=1):
    """calls of guard.run; returns 't' (threads) / '1' (one BLAS thread) per call."""
    log = []

    def call():
        one = bool(threads._BLAS_STATE)
        clock.now += (one_s if one else threads_s) * steps
        log.append("1" if one else "t")

    for _ in range(calls):
        guard.run(call, steps)
    return log


@pytest.fixture
def fake_blas(monkeypatch):
    """threads._set_blas_threads records the state instead of changing the library."""
    monkeypatch.setattr(threads, "_BLAS_STATE", [], raising=False)

    def set_blas(one):
        threads._BLAS_STATE[:] = [1] if one else []

    monkeypatch.setattr(threads, "_set_blas_threads", set_blas)
    monkeypatch.setattr(threads, "STATS", {"one_thread_steps": 0, "switches": 0})


def test_guard_never_switches_on_a_quiet_machine(clock, fake_blas):
    guard = threads.Guard()
    log = _guarded(guard, clock, 1e-3, 2e-3, 200, steps=7)
    assert log == ["t"] * 200 and not guard.one
    assert threads.STATS == {"one_thread_steps": 0, "switches": 0}


def test_guard_one_slow_call_is_not_a_stall(clock, fake_blas):
    guard = threads.Guard()
    _guarded(guard, clock, 1e-3, 2e-3, 10)
    _guarded(guard, clock, 50e-3, 2e-3, 1)  # one stall
    log = _guarded(guard, clock, 1e-3, 2e-3, 10)
    assert log == ["t"] * 10 and not guard.one


def test_guard_switches_to_one_thread_while_the_cores_are_busy_and_back_after(clock,
                                                                             fake_blas):
    guard = threads.Guard()
    _guarded(guard, clock, 1e-3, 2e-3, 10)
    # the cores are taken: threads 10x slower, one thread 1.5x its quiet time
    log = _guarded(guard, clock, 10e-3, 3e-3, threads.WINDOW + 20)
    # the median of the last WINDOW calls turns once more than half of them are slow
    first = threads.WINDOW // 2 + 1
    assert log[:first] == ["t"] * first and guard.one
    assert log[first:first + 5] == ["1"] * 5
    assert threads.STATS["switches"] == 1 and threads.STATS["one_thread_steps"] >= 5
    # tries come back and fail while busy, backing off
    period = guard.period
    while guard.period == period:
        _guarded(guard, clock, 10e-3, 3e-3, 1)
    assert guard.one and guard.period == 2 * period
    # quiet again: the next try takes the threads back
    for _ in range(10_000):
        if not guard.one:
            break
        _guarded(guard, clock, 1e-3, 2e-3, 1)
    assert not guard.one and guard.period == threads.MIN_PERIOD
    assert threads.STATS["switches"] == 2
    assert _guarded(guard, clock, 1e-3, 2e-3, 20) == ["t"] * 20


def test_guard_per_step_times_compare_chunks_of_different_lengths(clock, fake_blas):
    guard = threads.Guard()
    for steps in (1, 50, 3, 200, 9, 17, 64):
        _guarded(guard, clock, 1e-3, 2e-3, 1, steps=steps)
    assert not guard.one and guard.best == pytest.approx(1e-3)


def test_run_training_uses_the_guard_only_under_auto(monkeypatch, clock, fake_blas):
    calls = []
    fn = lambda: calls.append(1) or 5  # noqa: E731
    monkeypatch.setattr(threads, "_GUARDS", {})
    for mode in ("all", "1"):
        monkeypatch.setattr(threads, "_MODE", mode)
        assert threads.run_training("k", 1, fn) == 5
    assert threads._GUARDS == {}
    monkeypatch.setattr(threads, "_MODE", "auto")
    assert threads.run_training("k", 1, fn) == 5 and "k" in threads._GUARDS
    assert len(calls) == 3


def test_single_thread_limits_blas_for_the_block_and_gives_the_threads_back(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(threads, "_MODE", "auto")
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    log = []
    serial, parallel = (lambda: log.append("s")), (lambda: log.append("p"))
    with threads.single_thread():
        with threads.single_thread():  # nests
            pass
        inside = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        threads.run_sized("x", config.PARALLEL_MIN_SIZE, serial, parallel)
    after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert inside == [1] * len(before) and after == before and log == ["s"]


def test_train_step_numbers_equal_under_all_and_auto_on_a_quiet_run(monkeypatch):
    """auto without a switch is all: the Guard only times the calls."""
    from fastopt import nn, optim

    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 20)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    results = []
    for mode in ("all", "auto"):
        monkeypatch.setattr(threads, "_MODE", mode)
        monkeypatch.setattr(threads, "_GUARDS", {})
        model = nn.MLP([20, 30, 5], seed=1)
        opt = optim.Adam(model.params, lr=1e-2)
        losses = [model.train_step(X, y, opt) for _ in range(5)]
        results.append((losses, model.params.copy()))
    assert results[0][0] == results[1][0]
    assert results[0][1].tobytes() == results[1][1].tobytes()


def test_physical_cores_counts_hyperthreads_of_a_core_once(tmp_path, monkeypatch):
    for cpu, (package, core) in enumerate([(0, 0), (0, 0), (0, 1), (1, 0)]):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert threads.physical_cores(str(tmp_path)) == 3
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.physical_cores(str(tmp_path)) == 1
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 7})  # no cpu7
    assert threads.physical_cores(str(tmp_path)) == 2
