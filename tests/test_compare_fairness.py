"""compare's runs take turns: the same numbers as one run after another, and progress
lines in a log."""

import matplotlib
import pytest

matplotlib.use("Agg")

from fastopt.experiments import compare, load, training  # noqa: E402
from fastopt.train import History  # noqa: E402
from tests.clitools import cli, progress_every_update  # noqa: E402


def untimed(history):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "cpu_time")}
            for r in history.records]


@pytest.mark.slow  # compiles the MLP training kernels on a cold cache
def test_interleaved_comparison_equals_one_run_after_another(tmp_path):
    data = training.load_data("digits")
    configs = training.configs_from_text("sgd,adam")
    plan = compare.Plan(data, configs, [64], [16], [0, 1], None, 3, None, 0.9, None,
                        slice_seconds=1e-4)
    runners = compare.start_runners(plan, tmp_path, "off")
    rounds = compare.interleave(plan, runners, tmp_path, load.LoadMeter(), "off")
    assert rounds > 3  # the runs did take turns
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adam_b64_s0.csv", "adam_b64_s1.csv", "sgd_b64_s0.csv", "sgd_b64_s1.csv"]
    for runner in runners:
        alone = training.train_run(data, [16], runner.config, 64, runner.seed, epochs=3,
                                   eval_at=training.LogSpacedEvaluations(0.9))
        together = runner.result
        assert repr(untimed(together.history)) == repr(untimed(alone.history))  # NaN too
        assert together.history.records[-1]["step"] == 3 * 23  # 1437 / 64: 23 steps/epoch
        assert [r["step"] for r in together.history.records][:5] == [0, 1, 2, 4, 8]


@pytest.mark.slow
def test_progress_lines_without_a_terminal(tmp_path, capsys, monkeypatch):
    progress_every_update(monkeypatch)
    code, stdout, _ = cli(["compare", "--dataset", "digits", "--optimizers", "sgd,adam",
                           "--hidden", "16", "--seconds", "1", "--seeds", "1",
                           "--workers", "1", "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    lines = stdout.splitlines()
    assert any(line.startswith("compare: starting: 1/2 runs (50%), sgd b128 s0; ")
               for line in lines)
    turns = [line for line in lines if line.startswith("compare: ")
             and " ms of training (" in line]
    assert len(turns) >= 4 and all(", round " in line for line in turns)
    assert all(" left" in line for line in turns[2:])  # once the first turn is done
    assert any(", adam b128 s0;" in line for line in turns)
    assert turns[-1].startswith("compare: 2000/2000 ms of training (100%), round ")


# ---------------------------------------------------------------------------------------
# worker processes (fastopt.experiments.parallel)


@pytest.mark.slow
def test_workers_give_the_numbers_of_one_process(tmp_path, capsys):
    """Runs dealt to two worker processes: the histories of the same runs in one process,
    bit for bit apart from the times (every run is single-threaded and seeded)."""
    argv = ["compare", "--dataset", "digits", "--optimizers", "sgd,adam", "--hidden", "16",
            "--epochs", "2", "--seeds", "2", "--no-progress"]
    got = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        code, stdout, err = cli(argv + ["--workers", workers, "--out", str(out)], capsys)
        assert code == 0, err
        assert ("worker processes" in stdout) == (workers == "2")
        got[workers] = {p.name: untimed(History.from_csv(p))
                        for p in sorted((out / "histories").iterdir())}
        got[workers + "verdict"] = (out / "verdict.txt").read_text().split("by training")[0]
    assert sorted(got["1"]) == ["adam_b128_s0.csv", "adam_b128_s1.csv", "sgd_b128_s0.csv",
                                "sgd_b128_s1.csv"]
    assert repr(got["1"]) == repr(got["2"])
    assert got["1verdict"] == got["2verdict"]


def _failing_build(args, job):
    raise ValueError(f"no runner for {job!r}")


def test_a_failing_worker_raises_with_its_traceback():
    from fastopt.experiments import parallel

    seen = []
    with pytest.raises(RuntimeError, match=r"worker \d failed:(.|\n)*ValueError: no runner"):
        parallel.run_workers(None, [(0, "a"), (1, "b")], _failing_build, 2,
                             lambda *m: seen.append(m), 0.1)
    assert seen == []


def test_jobs_are_dealt_round_robin():
    from fastopt.experiments import parallel

    assert parallel.deal(list(range(7)), 2) == [[0, 2, 4, 6], [1, 3, 5]]
    assert parallel.deal([1], 4) == [[1]]


@pytest.mark.slow
def test_progress_lines_with_workers(tmp_path, capsys, monkeypatch):
    progress_every_update(monkeypatch)
    code, stdout, _ = cli(["compare", "--dataset", "digits", "--optimizers", "sgd,adam",
                           "--hidden", "16", "--seconds", "1", "--seeds", "1",
                           "--workers", "2", "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    turns = [line for line in stdout.splitlines()
             if line.startswith("compare (2 workers): ") and " ms of training (" in line]
    assert len(turns) >= 3
    assert turns[-1].startswith("compare (2 workers): 2000/2000 ms of training (100%)")
