"""fastopt.sweep and its space spec: parsing, the trial list, the textbook preset, trials.csv,
and sweeps on a two-worker Dask LocalCluster: resume, a killed worker, a missing scheduler."""

import ast
import csv
import inspect
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastopt import runs, sweep
from fastopt.sweep import space as sweepspace
from fastopt.sweep.cluster import workers_of
from fastopt.sweep.result import rank_key
from fastopt.sweep.space import parse_space, plan_trials
from fastopt.sweep.trial import eval_every, split_validation, task_data
from fastopt.sweep.triallog import TrialLog

TINY = dict(dataset="digits", hidden=(8,), budget_steps=20, evals=2)
SPACE = "lr=loguniform(1e-3,0.3) wd=loguniform(1e-6,1e-2)"


def read_lines(path):
    text = path.read_text()
    assert text.endswith("\n")
    return text.splitlines()


def ids_in(path):
    with open(path, newline="") as f:
        return [row["trial_id"] for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------
# the space spec


def test_space_terms_in_canonical_order():
    space = parse_space("wd=loguniform(1e-8, 1e-4)  lr=loguniform(1e-6,1e-2) "
                        "optimizer=choice(sgd, adam) batch=int(16,64) seed=grid(0,1)")
    assert [t.name for t in space.terms] == ["optimizer", "lr", "weight_decay", "batch_size",
                                             "seed"]
    assert space.term("lr") == sweepspace.Term("lr", "loguniform", (1e-6, 1e-2))
    assert space.term("optimizer").args == ("sgd", "adam")
    assert space.term("batch_size") == sweepspace.Term("batch_size", "int", (16, 64))
    assert space.text() == ("optimizer=choice(sgd,adam) lr=loguniform(1e-06,0.01) "
                            "weight_decay=loguniform(1e-08,0.0001) batch_size=int(16,64) "
                            "seed=grid(0,1)")
    assert parse_space(space.text()) == space  # the canonical text reads back the same


def test_space_fixed_values_quotes_schedules_and_optimizer_arguments():
    space = parse_space('optimizer=choice(sgd,"adam:beta1=0.8,beta2=0.99") lr=0.05 '
                        "schedule=choice(none,'cosine:decay_steps=100,alpha=0.1') "
                        "momentum=uniform(0.5,0.99) batch=choice(32,128)")
    assert space.term("optimizer").args == ("sgd", "adam:beta1=0.8,beta2=0.99")
    assert space.term("lr") == sweepspace.Term("lr", "fixed", (0.05,))
    assert space.term("schedule").args == (None, "cosine:decay_steps=100,alpha=0.1")
    assert space.varies("schedule") and not space.varies("lr") and not space.varies("seed")
    assert parse_space(space.text()) == space
    for trial in plan_trials(space, 10, seed=3):
        s = trial.settings
        assert s["lr"] == 0.05 and s["batch_size"] in (32, 128)
        if s["optimizer"] == "sgd":
            assert 0.5 <= s["momentum"] <= 0.99
        else:
            assert s["momentum"] is None  # Adam has no momentum argument
            assert sweepspace.optimizer_kwargs(s) == (
                "Adam", {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.0})


@pytest.mark.parametrize("spec, message", [
    ("", "is empty"),
    ("   ", "is empty"),
    ("lr", r"cannot read the term 'lr'; write NAME=VALUE"),
    ("lr=", "cannot read the term"),
    ("learningrate=0.1", r"unknown name 'learningrate'.*valid: optimizer, lr, weight_decay"),
    ("lr=logunifrom(1e-3,1)", r"unknown distribution 'logunifrom'.*valid for lr: loguniform"),
    ("lr=loguniform(1e-2,1e-6)", r"range of .* is empty; loguniform\(a,b\) needs a < b"),
    ("lr=loguniform(1e-3,1e-3)", "is empty"),
    ("batch=int(64,16)", "is empty"),
    ("wd=loguniform(0,1e-4)", r"needs 0 < a < b"),
    ("lr=loguniform(1e-3)", r"needs two numbers"),
    ("lr=uniform(1e-3,1,2)", r"needs two numbers"),
    ("lr=choice()", r"choice\(\) in 'lr=choice\(\)' is empty"),
    ("lr=choice(0.1,,0.2)", "an empty value"),
    ("lr=choice(0.1,0.1)", "lists 0.1 twice"),
    ("lr=loguniform(1e-3,abc)", r"cannot read 'abc' .* as a number"),
    ("lr=choice(0.1,inf)", "not a finite number"),
    ("lr=uniform(0,1)", r"lr must be > 0.0"),
    ("wd=-1e-4", r"weight_decay must be >= 0.0"),
    ("momentum=uniform(0.5,1)", r"momentum must be >= 0.0 and < 1.0"),
    ("batch=int(1.5,8)", "takes whole numbers"),
    ("batch=loguniform(8,64)", r"batch_size cannot be drawn from loguniform"),
    ("optimizer=uniform(1,2)", r"optimizer cannot be drawn from uniform"),
    ("optimizer=choice(sgd,adamm)", r"unknown optimizer 'adamm'; valid: sgd, momentum"),
    ("optimizer=adam:lr=0.1", r"sets lr; sweep it as a term of its own"),
    ("optimizer=adam:gamma=2", r"adam has no option 'gamma'"),
    ("schedule=cosin", r"unknown schedule 'cosin'"),
    ("lr=0.1 lr=0.2", r"'lr' is set twice"),
    ("lr=0.1 learning_rate=0.2", r"'lr' is set twice"),
    ("lr=choice(0.1", r"'\(' is not closed"),
    ("lr=0.1)", r"'\)' without its '\('"),
    ("schedule='cosine", "quote is not closed"),
    ("optimizer=momentum:momentum=0.5 momentum=0.9", "sets momentum, and so does"),
])
def test_space_errors_name_the_term_and_the_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_space(spec)


def test_space_error_names_the_flag():
    with pytest.raises(ValueError, match=r"^--space: unknown name"):
        parse_space("foo=1")
    with pytest.raises(ValueError, match=r"^space: unknown name"):
        parse_space("foo=1", flag="space")
    with pytest.raises(TypeError, match="must be a string"):
        parse_space(None)


# ---------------------------------------------------------------------------------------
# the trial list


def test_trial_list_is_deterministic_and_extends():
    space = parse_space("optimizer=choice(sgd,adam) lr=loguniform(1e-6,1e-2) "
                        "wd=loguniform(1e-8,1e-4) batch=intloguniform(16,512) seed=int(0,9)")
    first = plan_trials(space, 50, seed=7)
    assert first == plan_trials(space, 50, seed=7)
    assert first[:20] == plan_trials(space, 20, seed=7)  # a longer list starts the same
    assert plan_trials(space, 5, seed=8) != first[:5]
    # the order of the terms in the spec does not matter
    shuffled = parse_space("seed=int(0,9) batch=intloguniform(16,512) wd=loguniform(1e-8,1e-4) "
                           "lr=loguniform(1e-6,1e-2) optimizer=choice(sgd,adam)")
    assert plan_trials(shuffled, 50, seed=7) == first
    assert [t.index for t in first] == list(range(50))
    assert len({t.id for t in first}) == 50
    assert first[3].id.startswith("0003-") and len(first[3].id) == 13
    assert first[3].id == sweepspace.trial_id(3, first[3].settings)
    lr = np.array([t.settings["lr"] for t in first])
    assert lr.min() >= 1e-6 and lr.max() <= 1e-2
    assert {t.settings["optimizer"] for t in first} == {"sgd", "adam"}
    batches = {t.settings["batch_size"] for t in first}
    assert min(batches) >= 16 and max(batches) <= 512
    assert {t.settings["seed"] for t in first} <= set(range(10))
    # the textbook's draw: 10 ** U(log10 a, log10 b) from default_rng([seed, index])
    rng = np.random.default_rng([7, 0])
    rng.integers(2)  # the optimizer's draw comes first
    assert first[0].settings["lr"] == 10 ** rng.uniform(-6, -2)


def test_defaults_of_names_left_out():
    adam, = plan_trials(parse_space("optimizer=adam"), 1, seed=4)
    assert adam.settings == {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                             "momentum": None, "batch_size": 128, "schedule": None, "seed": 4}
    adamw, = plan_trials(parse_space("optimizer=adamw"), 1)
    assert adamw.settings["weight_decay"] == 1e-2
    nesterov, = plan_trials(parse_space("optimizer=nesterov"), 1, defaults={"batch_size": 100})
    assert nesterov.settings["momentum"] == 0.9 and nesterov.settings["batch_size"] == 100
    assert sweepspace.optimizer_kwargs(nesterov.settings) == (
        "SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0})


def test_grid_is_the_cartesian_product():
    space = parse_space("optimizer=grid(sgd,adam) lr=grid(0.01,0.1,1.0) seed=grid(0,1)")
    assert space.grid_points == 12
    trials = plan_trials(space, seed=0)
    assert len(trials) == 12
    combos = {(t.settings["optimizer"], t.settings["lr"], t.settings["seed"]) for t in trials}
    assert combos == {(o, lr, s) for o in ("sgd", "adam") for lr in (0.01, 0.1, 1.0)
                      for s in (0, 1)}
    # --trials passes over the grid; random terms are drawn afresh for each trial
    mixed = parse_space("optimizer=grid(sgd,adam) lr=loguniform(1e-3,1)")
    trials = plan_trials(mixed, 3, seed=0)
    assert [t.settings["optimizer"] for t in trials] == ["sgd", "adam"] * 3
    assert len({t.settings["lr"] for t in trials}) == 6
    assert trials[:4] == plan_trials(mixed, 2, seed=0)
    # --grid turns every choice into a grid
    switched = parse_space("optimizer=choice(sgd,adam) lr=choice(0.1,0.01)", grid=True)
    assert [t.dist for t in switched.terms] == ["grid", "grid"]
    assert len(plan_trials(switched)) == 4
    assert len(plan_trials(parse_space("lr=loguniform(1e-3,1)"))) == 20  # random default


def test_plan_rejects_bad_counts():
    space = parse_space("lr=0.1")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="trials must be a positive integer"):
            plan_trials(space, bad)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        plan_trials(space, 1, seed=-1)


# ---------------------------------------------------------------------------------------
# the textbook preset


def test_textbook_preset_settings():
    book = sweep.TEXTBOOK
    assert book["trials"] == 100 and sweep.TEXTBOOK_TOP == 20
    assert book["dataset"] == "mnist" and book["train_samples"] == 500
    assert book["val_fraction"] == 0.2
    assert book["hidden"] == (100, 100, 100, 100, 100, 100)
    assert book["epochs"] == 50 and book["replacement"] is True
    assert book["init"] == "he_normal:truncated=false"  # randn * sqrt(2 / fan_in)
    space = parse_space(book["space"])
    assert space.term("optimizer") == sweepspace.Term("optimizer", "fixed", ("sgd",))
    assert space.term("lr") == sweepspace.Term("lr", "loguniform", (1e-6, 1e-2))
    assert space.term("weight_decay") == sweepspace.Term("weight_decay", "loguniform",
                                                         (1e-8, 1e-4))
    assert space.term("batch_size").args == (100,)
    trials = plan_trials(space, book["trials"], seed=0)
    assert len(trials) == 100
    assert all(t.settings["optimizer"] == "sgd" and t.settings["batch_size"] == 100
               and t.settings["momentum"] == 0.0 and t.settings["schedule"] is None
               for t in trials)
    wd = np.log10([t.settings["weight_decay"] for t in trials])
    assert -8 <= wd.min() < -7.5 and -4.5 < wd.max() <= -4
    task = sweep.make_task(**{k: v for k, v in book.items() if k not in ("space", "trials")})
    # 50 epochs of 4 batches of 100 drawn with replacement from 400 samples: 200 updates,
    # one evaluation of the validation split per epoch
    assert (task.epochs, task.budget_steps, task.budget_seconds) == (50, None, None)
    assert eval_every(task, 400, 100) == 4


def test_textbook_split_first_500_shuffled_20_percent_held_out():
    from fastopt import datasets

    try:
        mnist = datasets.load("mnist")
    except datasets.MissingExtraError:
        pytest.skip("MNIST needs fastopt[mnist]")
    task = sweep.make_task(**{k: v for k, v in sweep.TEXTBOOK.items()
                              if k not in ("space", "trials")})
    X, y, X_val, y_val, classes = task_data(task)
    assert X.shape == (400, 784) and X_val.shape == (100, 784) and classes == 10
    # together they are the first 500 training images, each once
    first = mnist.X_train[:500]
    rows = {r.tobytes() for r in first}
    both = np.concatenate([X, X_val])
    assert {r.tobytes() for r in both} == rows and len(rows) == 500
    assert not np.array_equal(both, first)  # shuffled


def test_split_validation_shuffles_then_holds_out_the_first_part():
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    X_tr, y_tr, X_val, y_val = split_validation(X, y, 8, 0.25, seed=1)
    order = np.random.default_rng(1).permutation(8)
    assert y_val.tolist() == order[:2].tolist() and y_tr.tolist() == order[2:].tolist()
    assert np.array_equal(X_tr, X[order[2:]])


# ---------------------------------------------------------------------------------------
# trials.csv


def test_trial_log_appends_whole_lines_and_repairs_a_partial_one(tmp_path, capsys):
    path = tmp_path / "t.csv"
    log = TrialLog(path, ("a", "b", "c"))
    log.append({"a": 1, "b": "x,y", "c": 0.1})
    log.append({"a": 2, "b": None, "c": float("nan")})
    assert read_lines(path) == ["a,b,c", '1,"x,y",0.1', "2,,"]
    with open(path, "ab") as f:
        f.write(b"3,half a li")  # a line cut short by a crash
    again = TrialLog(path, ("a", "b", "c"))
    assert "dropped an incomplete last line" in capsys.readouterr().err
    assert read_lines(path) == ["a,b,c", '1,"x,y",0.1', "2,,"]
    assert len(again.rows) == 2
    with pytest.raises(ValueError, match="has the columns"):
        TrialLog(path, ("a", "b"))


def test_rank_puts_diverged_and_nan_last():
    rows = [dict(index=0, status="ok", val_accuracy=0.5, val_loss=1.0),
            dict(index=1, status="diverged", val_accuracy=0.9, val_loss=float("nan")),
            dict(index=2, status="ok", val_accuracy=0.7, val_loss=0.8),
            dict(index=3, status="ok", val_accuracy=0.7, val_loss=0.6),
            dict(index=4, status="ok", val_accuracy=float("nan"), val_loss=float("nan"))]
    assert [r["index"] for r in sorted(rows, key=rank_key)] == [3, 2, 0, 4, 1]


# ---------------------------------------------------------------------------------------
# sweeps in this process (workers=0): the files, resume checks, bad input


def test_in_process_sweep_writes_each_trial_and_its_history(tmp_path, sweep_kernels):
    out = tmp_path / "s"
    result = sweep.run(SPACE, trials=3, workers=0, out=out, seed=2, **TINY)
    assert result.complete and (result.ran, result.skipped) == (3, 0)
    assert read_lines(out / "trials.csv")[0] == ",".join(sweep.TRIAL_COLUMNS)
    assert sorted(ids_in(out / "trials.csv")) == [t.id for t in result.planned]
    for row in result.trials:
        assert row["worker"] == "local" and row["pid"] == os.getpid()
        assert row["steps"] == 20 and row["status"] in ("ok", "diverged")
        assert 0 <= row["val_accuracy"] <= 1
        history = result.history(row["trial_id"])
        assert history.records[-1]["step"] == 20 and len(history) == 3  # 0, 10, 20
        assert (out / "histories" / f"{row['trial_id']}.csv").exists()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "sweep" and settings["resolved"]["trials"] == 3
    assert settings["resolved"]["sweep"]["space"] == parse_space(SPACE).text()
    # read back from the file: the same values
    back = sorted(sweep.read_trials(out / "trials.csv"), key=lambda r: r["index"])
    assert back == result.trials


def test_diverged_trial_is_a_result(tmp_path, sweep_kernels):
    result = sweep.run("lr=choice(1e6)", trials=1, workers=0, **TINY)
    row, = result.trials
    assert row["status"] == "diverged" and row["note"]
    assert not result.errors


def test_resume_refuses_a_different_sweep(tmp_path, sweep_kernels):
    out = tmp_path / "s"
    sweep.run("lr=0.1", trials=1, workers=0, out=out, **TINY)
    with pytest.raises(ValueError, match=r"holds a different sweep \(it differs in: space"):
        sweep.run("lr=0.2", trials=1, workers=0, out=out, **TINY)
    with pytest.raises(ValueError, match="differs in: task"):
        sweep.run("lr=0.1", trials=1, workers=0, out=out, **dict(TINY, budget_steps=21))
    result = sweep.run("lr=0.1", trials=1, workers=0, out=out, **TINY)
    assert (result.ran, result.skipped) == (0, 1)
    (tmp_path / "other").mkdir()
    runs.write_settings(tmp_path / "other", "compare", {}, [])
    with pytest.raises(ValueError, match="holds the results of `fastopt compare`"):
        sweep.run("lr=0.1", trials=1, workers=0, out=tmp_path / "other", **TINY)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "trials.csv").write_text("x\n")
    with pytest.raises(ValueError, match="no settings.json"):
        sweep.run("lr=0.1", trials=1, workers=0, out=tmp_path / "bare", **TINY)


@pytest.mark.parametrize("change, message", [
    (dict(epochs=2), "give one budget"),
    (dict(budget_steps=0), "budget_steps must be a positive integer"),
    (dict(budget_steps=None, budget_seconds=-1.0), "budget_seconds must be a positive number"),
    (dict(val_fraction=1.0), r"val_fraction must be in \(0, 1\)"),
    (dict(hidden=()), "hidden must be one or more"),
    (dict(workers=-1), "workers must be an integer >= 0"),
    (dict(workers=2, scheduler="tcp://127.0.0.1:1"), "cannot be combined"),
    (dict(dataset="cifar"), "unknown data set 'cifar'"),
    (dict(space="batch=choice(32,4096)"), r"allows batches of 4096, more than the \d+ "),
    (dict(space="lr=loguniform(1,0.1)"), r"^space: the range of"),
])
def test_bad_arguments_fail_before_any_work(change, message, tmp_path):
    kwargs = dict(dict(TINY, space="lr=0.1", trials=1, out=tmp_path / "s"), **change)
    with pytest.raises(ValueError, match=message):
        sweep.run(**kwargs)
    assert not (tmp_path / "s").exists()


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(sweep.MissingDaskError, match=r'pip install "fastopt\[dist\]"'):
        sweep.connect(workers=1)
    with pytest.raises(ImportError, match="--workers 0"):
        sweep.run("lr=0.1", trials=1, workers=1, **TINY)


def test_import_loads_no_dask():
    code = ("import sys, fastopt, fastopt.sweep, fastopt.cli; fastopt.cli.build_parser(); "
            "print(sorted(m for m in ('dask', 'distributed', 'numba', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_public_names_and_no_test_hook_in_signatures():
    assert set(sweep.__all__) >= {"run", "SweepResult", "TEXTBOOK", "make_task", "parse_space"}
    assert all(hasattr(sweep, name) for name in sweep.__all__)
    from fastopt.sweep import engine, trial

    for function in (sweep.run, trial.run_trial, engine._run_distributed):
        assert not any(p.startswith("_") for p in inspect.signature(function).parameters)


def _imported_modules(path, package):
    """The absolute names of the modules a source file imports (``from .. import x`` gives
    both the package and ``package.x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def test_nothing_below_the_sweep_imports_it():
    root = Path(sweep.__file__).parents[1]
    below = [*root.glob("experiments/*.py"), root / "train.py", *root.glob("nn/*.py"),
             *root.glob("optim/*.py"), *root.glob("kernels/*.py")]
    for path in below:
        package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
        imported = _imported_modules(path, package)
        assert not any(n == "fastopt.sweep" or n.startswith("fastopt.sweep.")
                       for n in imported), path


def test_unreachable_scheduler_fails_fast():
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(sweep.SchedulerError,
                       match=rf"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} "
                             r"within 2 s.*`dask scheduler`.*leave out --scheduler"):
        sweep.run("lr=0.1", trials=1, scheduler=f"tcp://127.0.0.1:{port}",
                  connect_timeout=2, **TINY)
    assert time.perf_counter() - t0 < 10


def test_silent_server_is_no_scheduler_and_no_hang():
    """Something listens at the address but never speaks: distributed.Client alone would
    wait forever for the handshake; the sweep gives up after the timeout."""
    pytest.importorskip("distributed")
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    t0 = time.perf_counter()
    try:
        with pytest.raises(sweep.SchedulerError, match="sent no Dask handshake in 1 s"):
            sweep.connect(address, timeout=1)
    finally:
        server.close()
        for conn, _ in accepted:
            conn.close()
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------------------------
# on a two-worker Dask LocalCluster


@pytest.mark.slow  # starts Dask worker processes
def test_two_worker_sweep(tmp_path, dask_cluster):
    out = tmp_path / "s"
    result = sweep.run(SPACE + " batch=choice(16,64)", trials=8, client=dask_cluster,
                       out=out, **TINY)
    assert result.complete and result.ran == 8 and result.workers == 2
    rows = sweep.read_trials(out / "trials.csv")
    assert sorted(r["trial_id"] for r in rows) == [t.id for t in result.planned]
    assert len({r["worker"] for r in rows}) == 2  # both workers ran trials
    assert all(r["worker"].startswith("tcp://") and r["pid"] != os.getpid() for r in rows)
    assert {r["batch_size"] for r in rows} <= {16, 64}
    for r in rows:
        planned = result.planned[r["index"]]
        assert {k: r[k] for k in sweepspace.NAMES} == planned.settings
        assert r["steps"] == 20 and r["trial_seconds"] > 0 and r["finished"]
        assert (out / "histories" / f"{r['trial_id']}.csv").exists()
    # the same trials in this process give the same numbers (only the clock differs)
    local = sweep.run(SPACE + " batch=choice(16,64)", trials=8, workers=0, **TINY)
    for a, b in zip(sorted(rows, key=lambda r: r["index"]), local.trials):
        assert a["val_accuracy"] == b["val_accuracy"]
        assert a["val_loss"] == b["val_loss"] or math.isnan(a["val_loss"] + b["val_loss"])


@pytest.mark.slow  # starts Dask worker processes
def test_resume_skips_trials_already_done(tmp_path, dask_cluster):
    out = tmp_path / "s"
    first = sweep.run(SPACE, trials=4, client=dask_cluster, out=out, **TINY)
    assert (first.ran, first.skipped) == (4, 0)
    before = read_lines(out / "trials.csv")
    # the same sweep, longer: only the new trials run
    second = sweep.run(SPACE, trials=6, client=dask_cluster, out=out, **TINY)
    assert (second.ran, second.skipped) == (2, 4) and second.complete
    after = read_lines(out / "trials.csv")
    assert after[:len(before)] == before and len(after) == 1 + 6
    assert sorted(ids_in(out / "trials.csv")) == [t.id for t in second.planned]
    # nothing left to run
    third = sweep.run(SPACE, trials=6, client=dask_cluster, out=out, **TINY)
    assert (third.ran, third.skipped) == (0, 6)
    assert read_lines(out / "trials.csv") == after
    assert [r["trial_id"] for r in third.trials] == [t.id for t in third.planned]
    settings = json.loads((out / "settings.json").read_text())
    assert len(settings["earlier_runs"]) == 2


@pytest.mark.slow  # starts Dask worker processes
def test_killed_worker_trial_runs_again_once(tmp_path, dask_cluster, crash_trial):
    out = tmp_path / "s"
    marker = tmp_path / "crashed"
    crash_trial(2, marker)
    lines = []
    result = sweep.run(SPACE, trials=6, client=dask_cluster, out=out, log=lines.append,
                       **dict(TINY, budget_steps=200))
    # the worker running trial 2 died (os._exit) the first time it started it
    assert marker.exists()
    dead_pid, dead_address = marker.read_text().split()
    assert result.complete and not result.errors and result.ran == 6
    ids = ids_in(out / "trials.csv")
    assert sorted(ids) == [t.id for t in result.planned]  # every trial, each once
    row, = [r for r in sweep.read_trials(out / "trials.csv") if r["index"] == 2]
    assert row["pid"] != int(dead_pid) and row["worker"] != dead_address
    assert any("left during the sweep" in line for line in lines)
    # the nanny replaced the dead worker: the shared cluster has two workers again
    deadline = time.time() + 30
    while len(workers_of(dask_cluster)) < 2:
        assert time.time() < deadline
        time.sleep(0.2)


def test_dataset_object_is_sent_to_the_workers(dask_cluster):
    from fastopt import datasets

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    data = datasets.from_arrays(X, (X[:, 0] > 0).astype(int), name="mine")
    result = sweep.run("lr=choice(0.1,0.3)", grid=True, dataset=data, client=dask_cluster,
                       hidden=(4,), budget_steps=30, evals=1)
    assert len(result.trials) == 2 and all(math.isfinite(r["val_loss"])
                                            for r in result.trials)
    assert max(r["val_accuracy"] for r in result.trials) > 0.8
