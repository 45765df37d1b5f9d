"""Hyperparameter sweeps on Dask distributed: many ``fit`` runs, resumable, fault tolerant.

A sweep draws trials from a search space (random search, or a grid; the spec is
``fastopt.experiments.sweepspace``) over optimizer, learning rate, weight decay, momentum,
batch size, schedule and seed. Each trial trains a fresh MLP with ``fastopt.train.fit`` for
a budget of steps, training seconds or epochs, and is scored on a validation split held out
of the training set (the test set is never used to choose hyperparameters).

    >>> from fastopt import sweep
    >>> result = sweep.run("lr=loguniform(1e-4,1) optimizer=choice(sgd,adam)", trials=8,
    ...                    dataset="digits", budget_steps=200, workers=2, out="runs/demo")
    >>> [(t["optimizer"], t["lr"], t["val_accuracy"]) for t in result.best(3)]

Execution. By default a ``distributed.LocalCluster`` of worker processes on this machine
(``workers``, default one per core, one thread each, one BLAS and one Numba thread each);
``scheduler="tcp://HOST:PORT"`` uses a running cluster (``dask scheduler`` and ``dask
worker``), ``client=`` an existing ``distributed.Client``, and ``workers=0`` runs the trials
one after the other in this process without Dask. Before the trials start, one task per optimizer
class compiles its kernels into Numba's disk cache (or loads them from there), so that the
workers load them from the cache instead of all compiling at once; each worker keeps them
for all its trials. Dask is an optional dependency: ``pip install "fastopt[dist]"``.

Nothing is lost. Only this (the client) process writes files. With ``out``, every finished
trial is appended to ``out/trials.csv`` as one whole line (one ``write`` of the line, then
``fsync``) and its history to ``out/histories/<trial_id>.csv`` just before, so an interrupted
sweep leaves only complete lines. Running the same sweep again with the same ``out`` skips
the trials already in ``trials.csv`` (a larger ``trials`` extends a sweep); a folder that
holds a different sweep is refused. A worker that dies in the middle of a trial is replaced
and its trial runs again on a worker that is alive (Dask retries a task whose worker died up
to ``distributed.scheduler.allowed-failures`` = 3 times); since results are written only
when they reach the client, a trial is recorded once, never twice. A trial that raises (or
kills four workers) goes to ``errors.csv`` instead, and the next run retries it. A trial
whose loss becomes NaN or blows up is a result (status ``diverged``), not an error.

Columns of trials.csv (TRIAL_COLUMNS)
    trial_id, index            ``NNNN-hash``: the trial's place in the sweep and its settings
    optimizer ... seed         the settings (sweepspace.NAMES); momentum is empty for an
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

Nothing here imports dask, numba or matplotlib at module level.
"""

import csv
import datetime
import functools
import io
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import runs
from .experiments import sweepspace
from .experiments.sweepspace import NAMES, parse_space, plan_trials

TRIALS_FILE = "trials.csv"
ERRORS_FILE = "errors.csv"
HISTORIES = "histories"
METRICS = ("status", "val_accuracy", "val_loss", "best_val_accuracy", "best_val_loss",
           "train_loss", "steps", "epochs", "train_seconds", "compile_seconds",
           "trial_seconds", "worker", "pid", "finished", "note")
TRIAL_COLUMNS = ("trial_id", "index", *NAMES, *METRICS)
ERROR_COLUMNS = ("trial_id", "index", *NAMES, "error", "finished")
_INTS = {"index", "batch_size", "seed", "steps", "pid"}
_FLOATS = {"lr", "weight_decay", "momentum", "val_accuracy", "val_loss", "best_val_accuracy",
           "best_val_loss", "train_loss", "epochs", "train_seconds", "compile_seconds",
           "trial_seconds"}

DEFAULT_STEPS = 300
DEFAULT_CONNECT_TIMEOUT = 5.0

#: The textbook's experiment (Saito, "Deep Learning from Scratch", ch. 6,
#: hyperparameter_optimization.py): 100 random trials of SGD with lr = 10**U(-6, -2) and
#: weight decay = 10**U(-8, -4) on the first 500 MNIST training images, shuffled, 20% of
#: them (100) held out for validation, a ReLU network 784-100-100-100-100-100-100-10 with He
#: weights (randn * sqrt(2 / fan_in)), 50 epochs of batch 100 drawn with replacement
#: (np.random.choice: 4 batches per epoch, 200 updates), the best 20 by final validation
#: accuracy shown. One difference: the book's weight decay is an L2 penalty on the weights
#: only; fastopt's SGD(weight_decay=wd) adds wd * p to the gradient of every parameter,
#: biases included (torch.optim's rule). ``run(**TEXTBOOK)`` runs it.
TEXTBOOK = dict(
    space="optimizer=sgd lr=loguniform(1e-6,1e-2) wd=loguniform(1e-8,1e-4) batch=100",
    trials=100, dataset="mnist", train_samples=500, val_fraction=0.2,
    hidden=(100,) * 6, epochs=50, evals=50, replacement=True,
    init="he_normal:truncated=false",
)
TEXTBOOK_TOP = 20


class MissingDaskError(ImportError):
    """dask.distributed is not installed; the message names the pip command."""


class SchedulerError(ConnectionError):
    """The Dask scheduler at the given address cannot be reached."""


class Task(NamedTuple):
    """What every trial of a sweep shares: data, network, budget, evaluation."""

    dataset: str  # a fastopt.datasets name, or the name of a Dataset given to run()
    train_samples: int  # the first this many training samples (None: all)
    val_fraction: float  # held out of those for validation, after a seeded shuffle
    split_seed: int
    hidden: tuple
    activation: str
    init: str
    budget_steps: int  # exactly one of budget_steps, budget_seconds, epochs
    budget_seconds: float
    epochs: int
    evals: int  # evaluations of the validation split per trial (steps and epochs budgets)
    replacement: bool  # mini-batches drawn with replacement (the textbook's sampling)


# ---------------------------------------------------------------------------------------
# data


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise MissingDaskError(
            "sweeps run on Dask distributed, which is not installed; install it with\n"
            '    pip install "fastopt[dist]"\n'
            "(or run the trials in this process, one after the other, with workers=0 / "
            "--workers 0)") from exc
    return distributed


def split_validation(X, y, train_samples, val_fraction, seed):
    """(X_train, y_train, X_val, y_val): the first ``train_samples`` rows (all if None),
    shuffled with ``default_rng(seed)``; the first ``int(n * val_fraction)`` of the shuffled
    rows are the validation split (the textbook's ``shuffle_dataset`` and slicing)."""
    if train_samples is not None:
        X, y = X[:train_samples], y[:train_samples]
    n = len(X)
    n_val = int(n * val_fraction)
    order = np.random.default_rng(seed).permutation(n)
    X, y = X[order], y[order]
    return X[n_val:], y[n_val:], X[:n_val], y[:n_val]


@functools.lru_cache(maxsize=2)
def _named_split(name, train_samples, val_fraction, seed):
    from . import datasets

    data = datasets.load(name, dtype="float32")
    return (*split_validation(data.X_train, data.y_train, train_samples, val_fraction, seed),
            data.n_classes)


def task_data(task, data=None):
    """The task's (X_train, y_train, X_val, y_val, n_classes); ``data``: a Dataset given to
    run() (else the named data set, loaded once per process)."""
    if data is None:
        return _named_split(task.dataset, task.train_samples, task.val_fraction,
                            task.split_seed)
    return (*split_validation(data.X_train, data.y_train, task.train_samples,
                              task.val_fraction, task.split_seed), data.n_classes)


# ---------------------------------------------------------------------------------------
# one trial (runs on a worker)


def _where():
    """(worker address, pid): the Dask worker running this, or ``local``."""
    address = "local"
    if "distributed" in sys.modules:
        try:
            address = sys.modules["distributed"].get_worker().address
        except ValueError:  # not inside a worker
            pass
    return address, os.getpid()


def _crash_once(index, crash):
    """Test hook: ``crash = (index, marker)`` kills this process the first time trial
    ``index`` starts (the marker file, holding the pid, says it happened)."""
    if crash is None or crash[0] != index:
        return
    marker = Path(crash[1])
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()} {_where()[0]}\n".encode())
    os.close(fd)
    os._exit(1)


def build(task, settings, n_features, n_classes):
    """The trial's MLP and optimizer."""
    from . import nn, optim
    from .experiments import training

    model = nn.MLP([n_features, *task.hidden, n_classes], activation=task.activation,
                   init=task.init, seed=settings["seed"], dtype="float32")
    cls, kwargs = sweepspace.optimizer_kwargs(settings)
    if settings["schedule"]:
        kwargs["lr"] = training.make_schedule(settings["schedule"], settings["lr"],
                                              flag="schedule")
    return model, getattr(optim, cls)(model.params, **kwargs)


def eval_every(task, n_train, batch_size):
    """Steps between evaluations: about ``task.evals`` per trial; once per epoch with a
    time budget."""
    per_epoch = math.ceil(n_train / batch_size)
    if task.budget_seconds is not None:
        return per_epoch
    total = task.budget_steps if task.budget_steps is not None else task.epochs * per_epoch
    return max(1, total // task.evals)


def run_trial(task, trial, data=None, _crash=None):
    """Train and score one trial; a dict of METRICS plus ``history`` (the fit records),
    ``compile_time``, ``eval_time`` and ``stopped``. Divergence is a result, not an error."""
    t0 = time.perf_counter()
    _crash_once(trial.index, _crash)
    from . import train
    from .experiments import training

    X, y, X_val, y_val, n_classes = task_data(task, data)
    settings = trial.settings
    model, opt = build(task, settings, X.shape[1], n_classes)
    batch = min(settings["batch_size"], len(X))
    note = ""
    with np.errstate(all="ignore"):
        try:
            history = train.fit(model, opt, (X, y, X_val, y_val), batch_size=batch,
                                epochs=task.epochs, max_steps=task.budget_steps,
                                time_budget=task.budget_seconds,
                                eval_every=eval_every(task, len(X), batch),
                                seed=settings["seed"], progress=False,
                                replacement=task.replacement)
            note = training.blown_up(history)
        except train.TrainingDiverged as exc:
            history = exc.history
            note = f"diverged at step {exc.step} (training loss {exc.loss})"
    records = history.records
    last = records[-1]
    finite = [r for r in records if math.isfinite(r["test_loss"])]
    train_losses = [r["train_loss"] for r in records if math.isfinite(r["train_loss"])]
    worker, pid = _where()
    return dict(
        status="diverged" if note else "ok",
        val_accuracy=float(last["test_accuracy"]), val_loss=float(last["test_loss"]),
        best_val_accuracy=max((r["test_accuracy"] for r in finite), default=float("nan")),
        best_val_loss=min((r["test_loss"] for r in finite), default=float("nan")),
        train_loss=train_losses[-1] if train_losses else float("nan"),
        steps=int(last["step"]), epochs=float(last["epoch"]),
        train_seconds=float(last["wall_time"]), compile_seconds=history.compile_time,
        trial_seconds=time.perf_counter() - t0, worker=worker, pid=pid,
        finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        note=note, history=records, compile_time=history.compile_time,
        eval_time=history.eval_time, stopped="diverged" if note else history.stopped)


def warm_up(task, settings, data=None):
    """Compile (or load from Numba's cache) the kernels of the trial ``settings`` (one per
    optimizer class) with two steps of a tiny network; returns the seconds spent."""
    from . import train

    t0 = time.perf_counter()
    X, y, _, _, n_classes = task_data(task, data)
    settings = dict(settings, schedule=None, lr=1e-6)
    model, opt = build(task._replace(hidden=(2,)), settings, X.shape[1], n_classes)
    with np.errstate(all="ignore"):
        try:
            train.fit(model, opt, (X[:8], y[:8], X[:8], y[:8]), batch_size=4, max_steps=2,
                      progress=False, replacement=task.replacement)
        except train.TrainingDiverged:
            pass
    return time.perf_counter() - t0


def _one_per_class(trials):
    """The settings of the first trial of each optimizer class."""
    seen = {}
    for trial in trials:
        cls, _ = sweepspace.optimizer_kwargs(trial.settings)
        seen.setdefault(cls, trial.settings)
    return list(seen.values())


# ---------------------------------------------------------------------------------------
# trials.csv: an append-only log of whole lines


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


def parse_row(raw):
    """A row of trials.csv or errors.csv (strings) with its numbers as numbers."""
    return {k: _parse(k, v) for k, v in raw.items() if k is not None}


class TrialLog:
    """An append-only CSV file: the header once, then one whole line per ``append``
    (one ``os.write`` on an O_APPEND descriptor, then ``fsync``). Opening an existing file
    checks its header and drops a trailing partial line (a machine that lost power)."""

    def __init__(self, path, columns):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.rows = []
        if self.path.exists() and self.path.stat().st_size:
            self._read()
        else:
            self._write(_line(self.columns), os.O_TRUNC)

    def _read(self):
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            print(f"note: {self.path}: dropped an incomplete last line", file=sys.stderr)
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            data = data[:cut]
        reader = csv.DictReader(io.StringIO(data.decode()))
        if tuple(reader.fieldnames or ()) != self.columns:
            raise ValueError(f"{self.path} has the columns {reader.fieldnames}, not those of "
                             f"this version of fastopt ({', '.join(self.columns)}); use "
                             "another --out")
        self.rows = [parse_row(r) for r in reader]

    def _write(self, line, extra=0):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | extra, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, row):
        self._write(_line([row.get(c) for c in self.columns]))
        self.rows.append(dict(row))


def read_trials(path):
    """The rows of a trials.csv (or errors.csv) as dicts with numbers as numbers."""
    with open(path, newline="") as f:
        return [parse_row(r) for r in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------
# results


def rank_key(row):
    """Best first: not diverged, highest final validation accuracy, lowest validation loss,
    lowest index."""
    acc = row["val_accuracy"]
    loss = row["val_loss"]
    return (row["status"] != "ok", -acc if math.isfinite(acc) else math.inf,
            loss if math.isfinite(loss) else math.inf, row["index"])


class SweepResult:
    """What a sweep returns.

    ``trials``: every finished trial of the sweep (this run's and earlier runs' in the same
    ``out``), a dict per trial with TRIAL_COLUMNS, in index order. ``errors``: trials that
    raised in this run (dicts with ERROR_COLUMNS). ``ran``/``skipped``: trials run now and
    found done. ``planned``: the sweep's trial list. ``out``: the folder, or None.
    ``best(k)`` ranks the trials; ``history(trial_id)`` returns one trial's
    ``fastopt.train.History``.
    """

    def __init__(self, planned, trials, errors, ran, skipped, out, histories, seconds,
                 workers):
        self.planned = planned
        self.trials = sorted(trials, key=lambda r: r["index"])
        self.errors = errors
        self.ran = ran
        self.skipped = skipped
        self.out = out
        self._histories = histories
        self.seconds = seconds
        self.workers = workers

    def __repr__(self):
        return (f"SweepResult({len(self.trials)}/{len(self.planned)} trials, ran {self.ran}, "
                f"skipped {self.skipped}, errors {len(self.errors)})")

    @property
    def complete(self):
        return len(self.trials) == len(self.planned)

    def best(self, k=10):
        return sorted(self.trials, key=rank_key)[:k]

    def history(self, trial_id):
        from .train import History

        if trial_id in self._histories:
            return self._histories[trial_id]
        if self.out is None:
            raise KeyError(f"no history of trial {trial_id!r} in memory and no out folder")
        return History.from_csv(Path(self.out) / HISTORIES / f"{trial_id}.csv")


# ---------------------------------------------------------------------------------------
# the cluster


def connect(scheduler=None, workers=None, timeout=DEFAULT_CONNECT_TIMEOUT):
    """A ``distributed.Client``: to the scheduler at ``scheduler`` (within ``timeout``
    seconds, else SchedulerError), or to a new LocalCluster of ``workers`` processes (default
    one per core) with one thread, one BLAS thread and one Numba thread each. Returns
    (client, cluster or None)."""
    distributed = _import_distributed()
    if scheduler is not None:
        try:
            _probe(scheduler, timeout)
            client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - whatever it was, there is no scheduler
            why = str(exc).splitlines()[0] if str(exc) else ""
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
                f"({type(exc).__name__}: {why}); check that `dask scheduler` runs there and "
                "the address (tcp://HOST:PORT, port 8786 by default) and firewall are right, "
                "or leave out --scheduler to use a local cluster") from None
        return client, None
    import logging

    n = workers or os.cpu_count() or 1
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    cluster = distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True,
        # no dashboard; the scheduler's HTTP endpoints on any free port (not 8787, which
        # another cluster may hold)
        dashboard_address=":0", scheduler_kwargs={"dashboard": False},
        silence_logs=logging.CRITICAL, env=one)  # the sweep reports lost workers itself
    try:
        client = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def _probe(address, timeout):
    """Check that a Dask server answers at a tcp:// address within ``timeout`` seconds.

    ``distributed.Client(address, timeout=...)`` bounds the TCP connection but not the
    handshake that follows (distributed 2026.8): a port where something accepts connections
    and says nothing (a proxy, another service) makes it wait forever, and one that answers
    in another protocol makes it allocate whatever its first bytes say. A Dask server speaks
    first: its handshake starts with an 8-byte little-endian frame length. Other schemes
    (tls://, ucx://) are left to distributed."""
    import struct

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    deadline = time.monotonic() + timeout
    while True:  # a scheduler that is starting refuses connections: retry until the deadline
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() + 0.2 > deadline:
                raise
            time.sleep(0.2)
    with sock:
        head = b""
        while len(head) < 8:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(8 - len(head))
            except TimeoutError:
                raise TimeoutError(f"something accepted the connection but sent no Dask "
                                   f"handshake in {timeout:g} s") from None
            if not chunk:
                raise ConnectionError("the connection was closed before a Dask handshake")
            head += chunk
    (length,) = struct.unpack("<Q", head)
    if not 0 < length < 2**24:
        raise ConnectionError(f"the server there does not speak Dask's protocol (its first "
                              f"bytes are {head!r})")


# ---------------------------------------------------------------------------------------
# the sweep


def _check_budget(budget_steps, budget_seconds, epochs):
    given = [(n, v) for n, v in (("budget_steps", budget_steps),
                                 ("budget_seconds", budget_seconds), ("epochs", epochs))
             if v is not None]
    if len(given) > 1:
        raise ValueError("give one budget: budget_steps, budget_seconds or epochs, not "
                         + " and ".join(n for n, _ in given))
    if not given:
        return DEFAULT_STEPS, None, None
    if budget_seconds is not None:
        return None, runs.check_positive("budget_seconds", budget_seconds), None
    if budget_steps is not None:
        return runs.check_count("budget_steps", budget_steps), None, None
    return None, None, runs.check_count("epochs", epochs)


def make_task(dataset="digits", budget_steps=None, budget_seconds=None, epochs=None,
              hidden=(100, 100, 100, 100), train_samples=None, val_fraction=0.2, evals=10,
              replacement=False, init="he_normal", activation="relu", seed=0):
    """Check the shared settings of a sweep; a Task (no data loaded)."""
    steps, seconds, epochs = _check_budget(budget_steps, budget_seconds, epochs)
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be one or more positive layer widths, got {hidden}")
    if train_samples is not None:
        runs.check_count("train_samples", train_samples, low=2)
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), e.g. 0.2, got {val_fraction!r}")
    runs.check_count("evals", evals)
    from . import init as initializers

    initializers.get(init)
    return Task(dataset, train_samples, float(val_fraction), int(seed), hidden, activation,
                init, steps, seconds, epochs, int(evals), bool(replacement))


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
    from . import optim
    from .experiments import training

    seen = set()
    for trial in planned:
        cls, kwargs = sweepspace.optimizer_kwargs(trial.settings)
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


def _definition(space, task, seed, defaults, data):
    """What identifies a sweep (everything but the number of trials), as JSON values."""
    task_fields = task._asdict()
    if data is not None:
        task_fields["dataset"] = {"name": data.name, "train": list(data.X_train.shape),
                                  "classes": data.n_classes}
    return json.loads(json.dumps({"space": space.text(), "seed": seed, "task": task_fields,
                                  "defaults": defaults or {}}))


def _open_out(out, definition, trials, record, log):
    """Create or reopen the sweep folder; returns (trials log, errors log)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = runs.read_settings(out)
    if previous is None and (out / TRIALS_FILE).exists():
        raise ValueError(f"{out} holds a {TRIALS_FILE} but no {runs.SETTINGS_FILE}; it is not "
                         "a sweep folder that can be resumed; use another --out")
    if previous is not None:
        runs.check_resume(previous, out, "sweep", definition, key="sweep")
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
    return TrialLog(out / TRIALS_FILE, TRIAL_COLUMNS), out / ERRORS_FILE


def run(space, trials=None, *, dataset="digits", budget_steps=None, budget_seconds=None,
        epochs=None, hidden=(100, 100, 100, 100), train_samples=None, val_fraction=0.2,
        evals=10, replacement=False, init="he_normal", seed=0, grid=False, defaults=None,
        out=None, scheduler=None, workers=None, client=None,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT, progress=False, log=None, record=None,
        _crash=None):
    """Run a sweep; returns a SweepResult (see the module docstring for the files).

    Parameters
    ----------
    space : a spec string (``fastopt.experiments.sweepspace``) or a parsed Space
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
    progress : a tqdm bar over finished trials (shown only on a terminal)
    log : called with a line of text about what happens (e.g. ``print``); default silent
    record : ``{"arguments": ..., "argv": ..., "resolved": ...}`` for settings.json (the
        ``fastopt sweep`` command passes its own)
    """
    from tqdm.auto import tqdm

    log = log or (lambda text: None)
    if not isinstance(space, sweepspace.Space):
        space = parse_space(space, flag="space", grid=grid)
    elif grid:
        space = sweepspace.Space(tuple(t._replace(dist="grid") if t.dist == "choice" else t
                                       for t in space.terms))
    if scheduler is not None and client is not None:
        raise ValueError("give scheduler or client, not both")
    if workers is not None:
        runs.check_count("workers", workers, low=0)
        if scheduler is not None or client is not None:
            raise ValueError("workers sets the size of a local cluster; it cannot be "
                             "combined with scheduler or client")
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
        arguments = dict(space=space.text(), trials=trials, dataset=task.dataset,
                         **{k: v for k, v in task._asdict().items() if k != "dataset"},
                         seed=seed, defaults=defaults, scheduler=scheduler, workers=workers,
                         out=out)
        record = {"arguments": arguments, "argv": [],
                  "command_line": "fastopt.sweep.run(...) from Python"}

    trial_log = errors_path = None
    done = {}
    if out is not None:
        trial_log, errors_path = _open_out(out, definition, len(planned), record, log)
        ids = {t.id for t in planned}
        for row in trial_log.rows:
            if row["trial_id"] in ids:
                done.setdefault(row["trial_id"], row)
    todo = [t for t in planned if t.id not in done]
    if done:
        log(f"resuming: {len(done)} of the {len(planned)} trials are in {TRIALS_FILE} already; "
            f"{len(todo)} to run")
    histories, errors = {}, []
    t_start = time.perf_counter()
    bar = tqdm(total=len(planned), initial=len(done), desc="sweep", unit="trial",
               disable=not progress)
    best = max((r["val_accuracy"] for r in done.values() if r["status"] == "ok"),
               default=float("nan"))

    def finished(trial, result):
        nonlocal best
        if trial.id in done:  # a second copy of a trial (never expected): keep the first
            return
        from .train import History

        history = History(result.pop("history"), compile_time=result.pop("compile_time"),
                          eval_time=result.pop("eval_time"), stopped=result.pop("stopped"))
        row = {"trial_id": trial.id, "index": trial.index, **trial.settings, **result}
        if out is not None:
            history.to_csv(Path(out) / HISTORIES / f"{trial.id}.csv")
            trial_log.append(row)  # the line that says the trial is done, after its history
        histories[trial.id] = history
        done[trial.id] = row
        if row["status"] == "ok" and not row["val_accuracy"] <= best:
            best = row["val_accuracy"]
            bar.set_postfix_str(f"best val acc {best:.4f}")
        bar.update(1)

    def failed(trial, exc):
        row = {"trial_id": trial.id, "index": trial.index, **trial.settings,
               "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
               "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        errors.append(row)
        if out is not None:
            TrialLog(errors_path, ERROR_COLUMNS).append(row)
        tqdm.write(f"trial {trial.id} failed: {row['error']}", file=sys.stderr)

    n_workers = 0
    try:
        if not todo:
            pass
        elif workers == 0:
            for trial in todo:
                try:
                    result = run_trial(task, trial, data, _crash)
                except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                    failed(trial, exc)
                    continue
                finished(trial, result)
            n_workers = 1
        else:
            n_workers = _run_distributed(task, todo, data, scheduler, workers, client,
                                         connect_timeout, finished, failed, _crash, log)
    finally:
        bar.close()
    rows = [done[t.id] for t in planned if t.id in done]
    return SweepResult(planned, rows, errors, len(todo) - len(errors), len(planned) - len(todo),
                       None if out is None else Path(out), histories,
                       time.perf_counter() - t_start, n_workers)


def workers_of(client):
    """The scheduler's workers: {address: info} (all of them; newer distributed versions
    list only the first few unless asked)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before 2025: no n_workers, always all of them
        info = client.scheduler_info()
    return info["workers"]


def _n_workers(client):
    return len(workers_of(client))


def _run_distributed(task, todo, data, scheduler, workers, client, connect_timeout,
                     finished, failed, crash, log):
    """Submit every trial, handle each as it finishes; returns the number of workers."""
    distributed = _import_distributed()
    own_client = client is None
    cluster = None
    futures, warm = [], []
    try:
        if own_client:
            t0 = time.perf_counter()
            client, cluster = connect(scheduler, workers, connect_timeout)
            log(f"{'local cluster' if cluster is not None else scheduler}: "
                f"{_n_workers(client)} worker(s) ready in {time.perf_counter() - t0:.1f} s")
        # Compile once: one task per optimizer class compiles its kernels into Numba's disk
        # cache, then every worker (on this machine, or sharing its cache) loads them from
        # there instead of all compiling at the same time.
        arg = None if data is None else client.scatter(data, broadcast=True)
        t0 = time.perf_counter()
        warm = [client.submit(warm_up, task, settings, arg, pure=False,
                              key=f"fastopt-warm-up-{os.urandom(4).hex()}")
                for settings in _one_per_class(todo)]
        client.gather(warm, errors="skip")  # a failing warm-up shows again in its trials
        log(f"kernels compiled or loaded from Numba's cache in "
            f"{time.perf_counter() - t0:.1f} s")
        started = set(workers_of(client))
        by_key = {}
        for trial in todo:
            future = client.submit(run_trial, task, trial, arg, crash, pure=False,
                                   key=f"fastopt-trial-{trial.id}-{os.urandom(4).hex()}")
            by_key[future.key] = trial
            futures.append(future)
        for future in distributed.as_completed(futures, loop=client.loop):
            trial = by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a trial error or KilledWorker
                failed(trial, exc)
            else:
                finished(trial, result)
            future.release()
        now = set(workers_of(client))
        if started - now:
            log(f"note: {len(started - now)} worker(s) left during the sweep (died or were "
                "stopped); their trials ran again on other workers and each is recorded once")
        return len(started)
    finally:
        if (futures or warm) and client is not None:
            try:
                client.cancel(futures + warm)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if own_client and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
