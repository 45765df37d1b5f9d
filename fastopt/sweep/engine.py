"""The sweep engine: check and plan a sweep, run its trials, record them, resume.

``run`` checks everything before any work (the space, the task, every optimizer and
schedule the trials build, the batch sizes against the split), opens or resumes the sweep
folder, runs the trials that are not done yet (on Dask, or in this process with
``workers=0``) and returns a ``SweepResult``.

Execution. By default a ``distributed.LocalCluster`` of worker processes on this machine
(``workers``, default one per core, one thread each, one BLAS and one Numba thread each);
``scheduler="tcp://HOST:PORT"`` uses a running cluster (``dask scheduler`` and ``dask
worker``), ``client=`` an existing ``distributed.Client``, and ``workers=0`` runs the trials
one after the other in this process without Dask (``fastopt.sweep.cluster``). Before the
trials start, one task per optimizer class compiles its kernels into Numba's disk cache (or
loads them from there), so that the workers load them from the cache instead of all
compiling at once; each worker keeps them for all its trials.

Nothing is lost. Only this (the client) process writes files. With ``out``, every finished
trial is appended to ``out/trials.csv`` as one whole line (``fastopt.sweep.triallog``) and
its history to ``out/histories/<trial_id>.csv`` just before, so an interrupted sweep leaves
only complete lines. Running the same sweep again with the same ``out`` skips the trials
already in ``trials.csv`` (a larger ``trials`` extends a sweep); a folder that holds a
different sweep is refused, and so is a folder in use by a sweep that is running (its lock
file, held with ``flock``, goes with the process). The folder is created, and settings.json
says "running", only once everything is checked and the cluster is connected; a sweep that
raises is marked "failed". A worker that dies in the middle of a trial is replaced and its
trial runs again on a worker that is alive (Dask retries a task whose worker died up to
``distributed.scheduler.allowed-failures`` = 3 times); since results are written only when
they reach the client, a trial is recorded once, never twice. A trial that raises (or kills
four workers) goes to ``errors.csv`` instead, and the next run retries it. A trial whose
loss becomes NaN or blows up is a result (status ``diverged``), not an error.

Nothing here imports dask, numba or matplotlib at module level.
"""

import contextlib
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from .. import runs
from . import space as _space
from .cluster import DEFAULT_CONNECT_TIMEOUT, connect, import_distributed, workers_of
from .result import SweepResult
from .space import parse_space, plan_trials
from .trial import make_task, run_trial, task_data, warm_up
from .triallog import (ERROR_COLUMNS, ERRORS_FILE, HISTORIES, TRIAL_COLUMNS, TRIALS_FILE,
                       TrialLog)


def run(space, trials=None, *, dataset="digits", budget_steps=None, budget_seconds=None,
        epochs=None, hidden=(100, 100, 100, 100), train_samples=None, val_fraction=0.2,
        evals=10, replacement=False, init="he_normal", seed=0, grid=False, defaults=None,
        out=None, scheduler=None, workers=None, client=None,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT, progress=False, log=None, record=None):
    """Run a sweep; returns a SweepResult (see the module docstring for the files).

    Parameters
    ----------
    space : a spec string (``fastopt.sweep.space``) or a parsed Space
    trials : random trials (default 20), or passes over a grid (default 1)
    dataset : "digits" (default), "mnist", or a fastopt.datasets.Dataset
    budget_steps, budget_seconds, epochs : the budget of each trial, one of them (default
        300 steps); budget_seconds counts training seconds (no evaluation or compilation)
    hidden : hidden layer widths of the ReLU MLP
    train_samples : use the first this many training samples (default all)
    val_fraction : the part of those held out for validation (after a seeded shuffle)
    evals : validation evaluations per trial (steps and epochs budgets; with
        budget_seconds, once per epoch)
    replacement : draw mini-batches with replacement (the textbook's sampling)
    init : weight initialiser spec (``fastopt.init.get``)
    seed : seeds the trial draws, the validation split, and (unless the space sets seed)
        every trial's weights and mini-batch order
    grid : every ``choice`` of the space becomes a ``grid``
    defaults : values for names the space leaves out (e.g. ``{"batch_size": 100}``)
    out : folder for trials.csv, histories/ and settings.json; resumes a sweep there
    scheduler, workers, client, connect_timeout : where the trials run (module docstring);
        ``workers=0``: in this process, without Dask
    progress : True (a tqdm bar over finished trials), "lines" (a line every ~10 s, for
        logs) or False; see ``fastopt.runs.Progress``
    log : called with a line of text about what happens (e.g. ``print``); default silent
    record : ``{"arguments": ..., "argv": ..., "resolved": ...}`` for settings.json (the
        ``fastopt sweep`` command passes its own)
    """
    # Longer than a screen only by the docstring of its public parameters: the steps are
    # the helpers below (checks, the folder, the bookkeeping, where the trials run).
    log = log or (lambda text: None)
    space = _as_space(space, grid)
    _check_where(scheduler, workers, client)
    data = None
    if not isinstance(dataset, str):
        data, dataset = dataset, getattr(dataset, "name", "arrays")
    task = make_task(dataset, budget_steps, budget_seconds, epochs, hidden, train_samples,
                     val_fraction, evals, replacement, init, seed=seed)
    planned = plan_trials(space, trials, seed, defaults)
    _check_trials(planned)
    X, _, X_val, _, _ = task_data(task, data)  # loads the data: a missing extra fails here
    _check_batches(space, planned, len(X), len(X_val))
    definition = _definition(space, task, seed, defaults, data)
    if record is None:  # called from Python: record the call
        record = _python_record(space, trials, task, seed, defaults, scheduler, workers, out)

    book = _Book(planned, out)
    with _locked(out):  # one sweep at a time in a folder; created only now, all checked
        previous = None if out is None else _check_folder(out, definition)
        if out is not None:
            book.open((TrialLog(Path(out) / TRIALS_FILE, TRIAL_COLUMNS),
                       Path(out) / ERRORS_FILE))
        todo = [t for t in planned if t.id not in book.done]
        if book.done:
            log(f"resuming: {len(book.done)} of the {len(planned)} trials are in "
                f"{TRIALS_FILE} already; {len(todo)} to run")
        # connected before settings.json says "running": an unreachable scheduler leaves
        # the folder as it was
        with _connected(todo and workers != 0, scheduler, workers, client, connect_timeout,
                        log) as dask_client:
            if out is not None:
                _record(out, definition, len(planned), record, previous, log)
            t_start = time.perf_counter()
            book.start_bar(progress)
            n_workers = 0
            try:
                if dask_client is not None:
                    n_workers = _run_distributed(task, todo, data, dask_client, book, log)
                elif todo:
                    _run_here(task, todo, data, book)
                    n_workers = 1
                if out is not None:
                    complete = len(book.done) == len(planned) and not book.errors
                    runs.update_settings(out, status="complete" if complete else "incomplete")
            except Exception as exc:
                if out is not None:
                    runs.update_settings(out, status="failed",
                                         error=f"{type(exc).__name__}: {exc}")
                raise
            finally:
                book.bar.close()
    return book.result(len(todo), time.perf_counter() - t_start, n_workers)


# ---------------------------------------------------------------------------------------
# checks before any work


def _as_space(space, grid):
    """A parsed Space from a spec or a Space; ``grid`` turns its choices into grids."""
    if not isinstance(space, _space.Space):
        return parse_space(space, flag="space", grid=grid)
    if grid:
        return _space.Space(tuple(t._replace(dist="grid") if t.dist == "choice" else t
                                  for t in space.terms))
    return space


def _check_where(scheduler, workers, client):
    if scheduler is not None and client is not None:
        raise ValueError("give scheduler or client, not both")
    if workers is not None:
        runs.check_count("workers", workers, low=0)
        if scheduler is not None or client is not None:
            raise ValueError("workers sets the size of a local cluster; it cannot be "
                             "combined with scheduler or client")


def _check_batches(space, planned, n_train, n_val):
    if n_val < 1:
        raise ValueError(f"the validation split is empty: {n_train} samples x val_fraction; "
                         "raise val_fraction or train_samples")
    term = space.term("batch_size")
    top = max(t.settings["batch_size"] for t in planned)
    if term is not None and term.dist in ("int", "intloguniform"):
        top = max(top, term.args[1])  # what the range allows, drawn or not
    if top > n_train and term is None:
        raise ValueError(f"space: the default batch size {top} is more than the {n_train} "
                         f"training samples of the split; set one, e.g. batch={n_train}")
    if top > n_train:
        raise ValueError(f"space: {term.text()} allows batches of {top}, more than the "
                         f"{n_train} training samples of the split; lower the batch sizes")


def _check_trials(planned):
    """Build each distinct optimizer and schedule of the trials once on a scratch array, so
    that a combination the classes reject (nesterov with momentum 0 ...) fails now."""
    from .. import optim
    from ..experiments import training

    seen = set()
    for trial in planned:
        cls, kwargs = _space.optimizer_kwargs(trial.settings)
        key = (cls, repr(sorted(kwargs.items())), trial.settings["schedule"])
        if key in seen:
            continue
        seen.add(key)
        try:
            if trial.settings["schedule"]:
                kwargs["lr"] = training.make_schedule(trial.settings["schedule"],
                                                      kwargs["lr"], flag="schedule")
            getattr(optim, cls)(np.zeros(2, dtype=np.float32), **kwargs)
        except (ValueError, TypeError) as exc:
            shown = " ".join(f"{k}={v}" for k, v in trial.settings.items() if v is not None)
            raise ValueError(f"space: trial {trial.id} ({shown}) cannot be built: {exc}; "
                             "narrow the space") from None


# ---------------------------------------------------------------------------------------
# the sweep folder and the bookkeeping


def _definition(space, task, seed, defaults, data):
    """What identifies a sweep (everything but the number of trials), as JSON values."""
    task_fields = task._asdict()
    if data is not None:
        task_fields["dataset"] = {"name": data.name, "train": list(data.X_train.shape),
                                  "classes": data.n_classes}
    return json.loads(json.dumps({"space": space.text(), "seed": seed, "task": task_fields,
                                  "defaults": defaults or {}}))


def _python_record(space, trials, task, seed, defaults, scheduler, workers, out):
    """settings.json's record of a call of ``run`` from Python."""
    arguments = dict(space=space.text(), trials=trials, dataset=task.dataset,
                     **{k: v for k, v in task._asdict().items() if k != "dataset"},
                     seed=seed, defaults=defaults, scheduler=scheduler, workers=workers,
                     out=out)
    return {"arguments": arguments, "argv": [],
            "command_line": "fastopt.sweep.run(...) from Python"}


LOCK_FILE = ".sweep.lock"  # held (flock) by the sweep that runs in the folder


@contextlib.contextmanager
def _locked(out):
    """Create the sweep folder ``out`` and hold its lock file for the duration: a second
    sweep into the same folder is refused at once, naming the running one. The lock is the
    operating system's (``flock``): it goes with the process, so the folder of a killed
    sweep is free again and the same command resumes it. Nothing without ``out``; no lock
    where ``fcntl`` is missing (Windows)."""
    if out is None:
        yield
        return
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise ValueError(f"{out} is in use by a sweep that is running ({holder}); wait "
                             "for it to finish or stop it (the same command then resumes "
                             "the sweep), or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f"pid {os.getpid()} on {platform.node()}, started "
                       f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}"
                       f": {shlex.join(sys.argv)}\n").encode(), 0)
        try:
            yield
        except BaseException:
            if created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
                path.unlink()  # refused before anything was recorded: leave no folder
                out.rmdir()
            raise
    finally:
        os.close(fd)  # releases the lock


def _check_folder(out, definition):
    """The earlier record of the sweep in ``out`` (None for a new sweep), checked to be the
    same sweep; writes nothing."""
    out = Path(out)
    previous = runs.read_settings(out)
    if previous is None and (out / TRIALS_FILE).exists():
        raise ValueError(f"{out} holds a {TRIALS_FILE} but no {runs.SETTINGS_FILE}; it is not "
                         "a sweep folder that can be resumed; use another --out")
    if previous is not None:
        runs.check_resume(previous, out, "sweep", definition, key="sweep")
    return previous


def _record(out, definition, trials, record, previous, log):
    """settings.json of this run (status "running", the earlier runs listed) and the
    histories folder, once the trials are about to run."""
    out = Path(out)
    path = runs.write_settings(out, "sweep", record.get("arguments", {}),
                               record.get("argv", []),
                               resolved={"sweep": definition, "trials": trials,
                                         **record.get("resolved", {})})
    if "command_line" in record:
        runs.update_settings(out, command_line=record["command_line"])
    log(f"wrote {path}: the exact settings of this sweep")
    if previous is not None:
        earlier = previous.get("earlier_runs", []) + [
            {k: previous.get(k) for k in ("date", "status", "command_line")}]
        runs.update_settings(out, earlier_runs=earlier)
    (out / HISTORIES).mkdir(exist_ok=True)


class _Book:
    """What the client process keeps of a sweep as its trials finish: the rows done (this
    run's and, with ``out``, earlier runs'), the histories, this run's errors, the files
    and the progress bar. ``finished`` and ``failed`` are called once per trial."""

    def __init__(self, planned, out):
        self.planned = planned
        self.out = None if out is None else Path(out)
        self.trial_log = self.errors_path = self.bar = None
        self.done, self.histories, self.errors = {}, {}, []

    def open(self, logs):
        """Take the sweep folder's logs; the rows of this sweep already there are done."""
        self.trial_log, self.errors_path = logs
        ids = {t.id for t in self.planned}
        for row in self.trial_log.rows:
            if row["trial_id"] in ids:
                self.done.setdefault(row["trial_id"], row)

    def start_bar(self, progress):
        self.bar = runs.Progress(total=len(self.planned), initial=len(self.done),
                                 desc="sweep", unit="trials", mode=progress)
        self.best = max((r["val_accuracy"] for r in self.done.values()
                         if r["status"] == "ok"), default=float("nan"))

    def finished(self, trial, result):
        if trial.id in self.done:  # a second copy of a trial (never expected): keep the first
            return
        from ..train import History

        history = History(result.pop("history"), compile_time=result.pop("compile_time"),
                          eval_time=result.pop("eval_time"), stopped=result.pop("stopped"))
        row = {"trial_id": trial.id, "index": trial.index, **trial.settings, **result}
        if self.out is not None:
            history.to_csv(self.out / HISTORIES / f"{trial.id}.csv")
            self.trial_log.append(row)  # the line that says the trial is done, after its history
        self.histories[trial.id] = history
        self.done[trial.id] = row
        if row["status"] == "ok" and not row["val_accuracy"] <= self.best:
            self.best = row["val_accuracy"]
            self.bar.set_postfix_str(f"best val acc {self.best:.4f}")
        self.bar.update(1)

    def failed(self, trial, exc):
        from tqdm.auto import tqdm

        row = {"trial_id": trial.id, "index": trial.index, **trial.settings,
               "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
               "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        self.errors.append(row)
        if self.out is not None:
            TrialLog(self.errors_path, ERROR_COLUMNS).append(row)
        tqdm.write(f"trial {trial.id} failed: {row['error']}", file=sys.stderr)

    def result(self, n_todo, seconds, n_workers):
        rows = [self.done[t.id] for t in self.planned if t.id in self.done]
        return SweepResult(self.planned, rows, self.errors, n_todo - len(self.errors),
                           len(self.planned) - n_todo, self.out, self.histories, seconds,
                           n_workers)


# ---------------------------------------------------------------------------------------
# running the trials


def _run_here(task, todo, data, book):
    """The trials one after the other in this process (``workers=0``)."""
    for trial in todo:
        try:
            result = run_trial(task, trial, data)
        except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
            book.failed(trial, exc)
            continue
        book.finished(trial, result)


def _one_per_class(trials):
    """The settings of the first trial of each optimizer class."""
    seen = {}
    for trial in trials:
        cls, _ = _space.optimizer_kwargs(trial.settings)
        seen.setdefault(cls, trial.settings)
    return list(seen.values())


def _warm_up_workers(client, task, todo, arg, log):
    """Compile once: one task per optimizer class compiles its kernels into Numba's disk
    cache, then every worker (on this machine, or sharing its cache) loads them from there
    instead of all compiling at the same time. Returns the warm-up futures."""
    t0 = time.perf_counter()
    warm = [client.submit(warm_up, task, settings, arg, pure=False,
                          key=f"fastopt-warm-up-{os.urandom(4).hex()}")
            for settings in _one_per_class(todo)]
    client.gather(warm, errors="skip")  # a failing warm-up shows again in its trials
    log(f"kernels compiled or loaded from Numba's cache in {time.perf_counter() - t0:.1f} s")
    return warm


@contextlib.contextmanager
def _connected(needed, scheduler, workers, client, connect_timeout, log):
    """The Dask client the trials run on (None if not ``needed``: nothing to run, or
    ``workers=0``): ``client``, or one connected to ``scheduler`` or to a local cluster
    of ``workers`` started here, closed at the end with that cluster."""
    if not needed:
        yield None
        return
    if client is not None:
        yield client
        return
    import_distributed()
    t0 = time.perf_counter()
    client, cluster = connect(scheduler, workers, connect_timeout)
    try:
        log(f"{'local cluster' if cluster is not None else scheduler}: "
            f"{len(workers_of(client))} worker(s) ready in {time.perf_counter() - t0:.1f} s")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_distributed(task, todo, data, client, book, log):
    """Submit every trial, hand each to ``book`` as it finishes; returns the number of
    workers."""
    distributed = import_distributed()
    futures, warm = [], []
    try:
        arg = None if data is None else client.scatter(data, broadcast=True)
        warm = _warm_up_workers(client, task, todo, arg, log)
        started = set(workers_of(client))
        by_key = {}
        for trial in todo:
            future = client.submit(run_trial, task, trial, arg, pure=False,
                                   key=f"fastopt-trial-{trial.id}-{os.urandom(4).hex()}")
            by_key[future.key] = trial
            futures.append(future)
        for future in distributed.as_completed(futures, loop=client.loop):
            trial = by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a trial error or KilledWorker
                book.failed(trial, exc)
            else:
                book.finished(trial, result)
            future.release()
        lost = started - set(workers_of(client))
        if lost:
            log(f"note: {len(lost)} worker(s) left during the sweep (died or were "
                "stopped); their trials ran again on other workers and each is recorded once")
        return len(started)
    finally:
        _cancel(client, futures + warm)


def _cancel(client, futures):
    """Cancel what is left of the sweep's tasks."""
    if futures:
        try:
            client.cancel(futures)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
