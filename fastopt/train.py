"""Mini-batch training: sampling, the training loop, evaluation records, early stopping.

``fit`` trains a ``fastopt.nn.MLP`` with any ``fastopt.optim`` optimizer and returns a
``History`` of evaluation records. Training wall time excludes evaluation and JIT
compilation (both recorded separately), so convergence-versus-time curves are honest.
``Training`` is the same run, resumable: ``advance(seconds=, steps=)`` trains a slice of
it and returns, so that several runs can take turns (``fastopt compare`` interleaves its
runs that way); ``fit`` builds a Training and advances it to the end.

Between two evaluations the steps run in one compiled loop (``_chunk_kernel``): the host
computes each step's optimizer scalars (learning rate, bias corrections) into a table, the
kernel gathers every mini-batch and runs forward, backward and the update, so even
batch-size-1 SGD runs at kernel speed. Dropout and optimizers that need the gradient norm
(``skip_nonfinite``, ``max_grad_norm``) use the per-step ``model.train_step`` instead.

With a ``target="cuda"`` model the data go to the device once; each chunk sends its
mini-batch indices, gathers every batch on the device and queues the steps, and the
chunk's losses are read (one wait for the device) when it ends.
"""

import bisect
import csv
import functools
import math
import time
from typing import NamedTuple

import numpy as np

from . import _checks, threads
from .kernels import cpu, warmup
from .kernels.jit import variant
from .nn import kernels as K

COLUMNS = ("step", "epoch", "wall_time", "cpu_time", "train_loss", "test_loss",
           "test_accuracy", "lr", "train_eval_loss", "train_accuracy", "val_loss",
           "val_accuracy")
#: columns that files written before they existed may lack (read as NaN), and that a
#: record appended without them gets as NaN
OPTIONAL_COLUMNS = ("cpu_time", "train_eval_loss", "train_accuracy", "val_loss",
                    "val_accuracy")
#: default size of the fixed evaluation subset of the training set (train_eval_size)
TRAIN_EVAL_SIZE = 10_000
#: what EarlyStopping and ReduceLROnPlateau can watch; accuracies improve upwards
MONITORS = ("test_loss", "test_accuracy", "train_loss", "train_eval_loss", "train_accuracy",
            "val_loss", "val_accuracy")


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or inf; ``history`` holds the records up to then."""

    def __init__(self, step, loss, history):
        super().__init__(f"training diverged at step {step}: loss {loss}; lower the learning "
                         "rate, clip gradients (max_grad_norm=) or check the data")
        self.step = step
        self.loss = loss
        self.history = history


class History:
    """Evaluation records of a training run (one row per evaluation).

    Columns: step (updates done), epoch (fractional), wall_time (training seconds, without
    evaluation and compilation), cpu_time (the process's CPU seconds during those
    training seconds, all threads; below wall_time when the process waited for a core),
    train_loss (mean mini-batch loss since the previous record, training mode: dropout
    on), test_loss, test_accuracy, lr (learning rate of the next step), train_eval_loss
    and train_accuracy (evaluation mode, on the fixed evaluation subset of the training
    set: ``fit(train_eval_size=)``; NaN when it is 0), val_loss and val_accuracy (on
    ``validation_data`` / ``validation_split``; NaN without). Losses include the model's
    weight penalty (``nn.MLP(l2=, l1=)``), as Keras's do. Attributes
    ``compile_time`` and ``eval_time`` (seconds) and ``stopped`` (why training ended).
    """

    def __init__(self, records=None, compile_time=0.0, eval_time=0.0, stopped=""):
        self.records = list(records or [])
        self.compile_time = compile_time
        self.eval_time = eval_time
        self.stopped = stopped

    def append(self, **record):
        self.records.append({k: record[k] if k not in OPTIONAL_COLUMNS
                             else record.get(k, math.nan) for k in COLUMNS})

    def __len__(self):
        return len(self.records)

    def __getitem__(self, column):
        if column not in COLUMNS:
            raise KeyError(f"unknown column {column!r}; columns: {', '.join(COLUMNS)}")
        return np.array([r.get(column, math.nan) for r in self.records], dtype=float)

    def __repr__(self):
        last = self.records[-1] if self.records else {}
        return (f"History({len(self)} records, steps={last.get('step', 0)}, "
                f"test_accuracy={last.get('test_accuracy', float('nan')):.4f}, "
                f"stopped={self.stopped!r})")

    def to_csv(self, path):
        """Write the records; the comment line carries compile/eval time and the stop reason."""
        with open(path, "w", newline="") as f:
            f.write(f"# compile_time={self.compile_time!r} eval_time={self.eval_time!r} "
                    f"stopped={self.stopped}\n")
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in self.records:
                w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()
                            if k in COLUMNS})
        return path

    @classmethod
    def from_csv(cls, path):
        with open(path, newline="") as f:
            first = f.readline()
            meta = {}
            if first.startswith("#"):
                for item in first[1:].split():
                    key, _, value = item.partition("=")
                    meta[key] = value
            else:
                f.seek(0)
            rows = list(csv.DictReader(f))
        missing = set(COLUMNS) - set(OPTIONAL_COLUMNS) - set(rows[0] if rows else COLUMNS)
        if missing:
            raise ValueError(f"{path} lacks the column(s) {sorted(missing)}")
        records = [{k: _cell(r, k) for k in COLUMNS} for r in rows]
        return cls(records, compile_time=float(meta.get("compile_time", 0.0)),
                   eval_time=float(meta.get("eval_time", 0.0)),
                   stopped=meta.get("stopped", ""))


def _cell(row, column):
    """One value of a History CSV row: the step an int, the rest floats (an optional
    column missing or empty: NaN)."""
    if column == "step":
        return int(row[column])
    if column in OPTIONAL_COLUMNS and not row.get(column):
        return math.nan
    return float(row[column])


class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    evaluations; with ``restore_best`` the parameters of the best evaluation are restored."""

    def __init__(self, patience=5, min_delta=0.0, restore_best=True, monitor="test_loss"):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        self.min_delta = _checks.real("min_delta", min_delta, low=0.0)
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(map(repr, MONITORS))}, "
                             f"got {monitor!r}")
        self.patience = patience
        self.restore_best = _checks.flag("restore_best", restore_best)
        self.monitor = monitor
        self.reset()

    def reset(self):
        self.best = None
        self.best_params = None
        self.best_step = None
        self.bad = 0

    def _improved(self, value):
        if self.best is None:
            return True
        if self.monitor.endswith("accuracy"):
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, record, params):
        """Record an evaluation; returns True when training should stop."""
        value = record[self.monitor]
        if self._improved(value):
            self.best, self.best_step, self.bad = value, record["step"], 0
            if self.restore_best:
                self.best_params = (params.copy_to_host() if hasattr(params, "copy_to_host")
                                    else params.copy())
            return False
        self.bad += 1
        return self.bad >= self.patience


class ReduceLROnPlateau:
    """Multiply every group's learning rate by ``factor`` after ``patience`` evaluations
    without improvement of ``monitor`` (test_loss by default), not below ``min_lr``.
    Works with float learning rates (a schedule owns its own values)."""

    def __init__(self, factor=0.1, patience=3, min_lr=0.0, min_delta=0.0, monitor="test_loss"):
        self.factor = _checks.real("factor", factor, low=0.0, high=1.0, low_open=True,
                                   high_open=True)
        self.min_lr = _checks.real("min_lr", min_lr, low=0.0)
        self._plateau = EarlyStopping(patience, min_delta, restore_best=False, monitor=monitor)

    def update(self, record, optimizer):
        if self._plateau.update(record, None):
            for gi, group in enumerate(optimizer.param_groups):
                if callable(group["lr"]):
                    raise TypeError(f"ReduceLROnPlateau needs float learning rates; parameter "
                                    f"group {gi} uses a schedule")
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
            self._plateau.bad = 0
            self._plateau.best = None


# ---------------------------------------------------------------------------------------
# sampling


def epoch_batches(n, batch_size, rng, drop_last=False, replacement=False):
    """Index arrays of one epoch's mini-batches.

    Without replacement (default): a fresh permutation split into batches of ``batch_size``,
    the final partial batch kept unless ``drop_last``. With ``replacement=True`` (the
    textbook's ``np.random.choice(n, batch_size)``): ``ceil(n / batch_size)`` batches drawn
    independently with replacement.
    """
    if replacement:
        return [rng.choice(n, batch_size) for _ in range(math.ceil(n / batch_size))]
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


# ---------------------------------------------------------------------------------------
# the compiled chunk loop


# bound per variant (fastopt.kernels.jit.variant)
loss_and_grad = update = None


def _run_chunk(losses, grads, ws, batch, params, data, order, net, plan, calls):
    """Steps k = 0..len(starts)-2 of one chunk, llm.c's argument order (outputs, inputs,
    parameters, sizes) with the related arrays grouped in tuples (unpacked at compile
    time: same machine code as separate arguments):

    losses (k,), grads, ws (the workspace), batch = (xb, yb, yb2) row buffers of the
    largest batch (yb2: yb's memory as rows x columns): outputs. data = (X, y2), the
    training set (y2: y as rows x columns); order = (starts, index): batch k is
    X[index[starts[k]:starts[k+1]]]. params; net: the network description. plan =
    (address, used, s0, s1, s2, hypers, flags): the update kernel's entry point and slot
    mask (``cpu.update_entry``), the optimizer's state slots and the step scalars of
    ``Optimizer.plan_steps``, step k using hypers[k], flags[k]. calls: the entry points
    of the forward pass, loss and backward pass (``K.chunk_calls``): called, not linked.

    Returns the number of updates applied: a non-finite loss stops the loop before its
    update (losses[k] holds it). The rows are copied element by element: a row slice
    assignment would compile Numba's shape-mismatch message formatting (3.6 s)."""
    xb, yb, yb2 = batch
    X, y2 = data
    starts, index = order
    address, used, s0, s1, s2, hypers, flags = plan
    f = X.shape[1]
    c = y2.shape[1]
    for k in range(starts.size - 1):
        lo, hi = starts[k], starts[k + 1]
        nb = hi - lo
        for r in range(nb):
            src = index[lo + r]
            for j in range(f):
                xb[r, j] = X[src, j]
            for j in range(c):
                yb2[r, j] = y2[src, j]
        value = loss_and_grad(grads, ws, params, xb[:nb], yb[:nb], net, calls)
        losses[k] = value
        if not math.isfinite(value):
            return k
        cpu.call_update(address, used, params, grads, s0, s1, s2, hypers[k], flags[k])
    return starts.size - 1


@functools.cache
def _chunk_kernel(loss, activation, bn=False, mask=False, residual=False, penalty=True):
    """The compiled chunk loop for one loss, activation and network kind, with or without
    the weight penalty, shared by every update rule (``cpu.call_update``; the serial
    update: see fastopt.nn.mlp.MLP.train_step)."""
    return variant(_run_chunk,
                   f"run_chunk_{loss}_{K._suffix(activation, bn, mask, residual)}"
                   + ("_penalty" if penalty else ""),
                   loss_and_grad=K.loss_and_grad_inline(loss, activation, bn, mask, residual,
                                                        penalty))


def _run_compiled(model, optimizer, X, y, batch, raise_plan_error=True):
    """Run the mini-batches ``batch`` (index arrays) in one compiled call; returns (losses,
    updates applied). If the optimizer cannot plan step j of the chunk (its lr schedule
    failed), the j steps before it run and are committed, then the error is raised."""
    net = model._net(True, min(len(b) for b in batch))  # checks before anything changes
    plan = optimizer.plan_steps(len(batch))
    batch = batch[:plan.count]
    done = 0
    losses = np.empty(len(batch))
    if batch:
        index = np.concatenate(batch)
        starts = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in batch], out=starts[1:])
        nb = max(len(b) for b in batch)
        ws = model._workspace(nb)
        xb = np.empty((nb, X.shape[1]), dtype=model.dtype)
        yb = np.empty((nb,) + y.shape[1:], dtype=y.dtype)
        hypers, flags = plan.hypers[0], plan.flags[0]
        address, used, slots = cpu.update_entry(plan.rule, model.params, model.grads,
                                                plan.slots[0], hypers[0], flags[0])
        vkey = K.variant_key(net)
        penalty = bool(net[6] or net[7])
        warmup.once(("fit", model.loss, model.activation, vkey, penalty, plan.rule,
                     model.dtype.char, X.dtype.char, y.dtype.char, y.ndim,
                     tuple(s is None for s in plan.slots[0])),
                    lambda: model._warm_jobs(xb, yb, net, ws, vkey, plan, False))
        kernel = _chunk_kernel(model.loss, model.activation, *vkey, penalty)
        calls = model._calls(("fit", vkey, xb.dtype.char, yb.dtype.char, yb.ndim), xb, yb,
                             net, ws, vkey)  # xb, yb: C-contiguous buffers made above
        done = threads.run_training(
            ("fit", model.sizes, nb, model.dtype.char, plan.rule), len(batch), kernel, losses,
            model.grads, ws, (xb, yb, yb.reshape(nb, -1)), model.params,
            (X, y.reshape(len(y), -1)), (starts, index), net,
            (address, used, *slots, hypers, flags), calls)
        optimizer.commit_steps(plan, done)
    if plan.error is not None and done == plan.count and raise_plan_error:
        raise plan.error
    return list(losses[:min(done + 1, len(batch))]), done


def _run_device(model, optimizer, X, y, batch):
    """Queue the mini-batches ``batch`` (index arrays) on the GPU; X, y are on the device.
    Each step is planned and committed by the GPU train step (a failing lr schedule
    raises there, after the steps before it were queued)."""
    from numba import cuda

    net = model._gpu
    index = cuda.to_device(np.concatenate(batch))
    losses = cuda.device_array(len(batch), model.dtype)
    start = 0
    try:
        for k, idx in enumerate(batch):
            plan = net.plan(len(idx))
            xb, yb = net.gather(plan, X, y, index, start, len(idx))
            net.train_step(xb, yb, optimizer, losses, k, plan)
            start += len(idx)
    finally:  # waits for the chunk; a batch rejected on the device raises here first
        net.confirm()
    values = losses.copy_to_host()
    bad = np.flatnonzero(~np.isfinite(values))
    done = int(bad[0]) if bad.size else len(batch)
    return list(values[:min(done + 1, len(batch))]), done


def _run_per_step(model, optimizer, X, y, batch):
    """One ``model.train_step`` per mini-batch (dropout, or an optimizer that needs the
    gradient norm); stops after a non-finite loss."""
    losses = []
    for idx in batch:
        losses.append(model.train_step(X[idx], y[idx], optimizer))
        if not math.isfinite(losses[-1]):
            break
    return losses, len(losses)


def _warm_up(model, optimizer, X, y, batch_size, compiled):
    """Compile the kernels fit will use on throwaway copies; returns the seconds spent."""
    import copy

    t0 = time.perf_counter()
    if model.target == "cuda":  # one step, then parameters and optimizer state put back
        saved = model.params.copy_to_host(), optimizer.state_dict()
        nb = min(batch_size, X.shape[0])
        _run_device(model, optimizer, X, y, [np.arange(nb)])
        model.params.copy_to_device(saved[0])
        optimizer.load_state_dict(saved[1])
        model.evaluate(X[:nb], y.copy_to_host()[:nb])
        return time.perf_counter() - t0
    m, o = copy.deepcopy((model, optimizer))
    nb = min(batch_size, X.shape[0])
    if compiled:  # a schedule failing at a later step is fit's to report, not the warm-up's
        _run_compiled(m, o, X, y, [np.arange(nb), np.arange(nb)], raise_plan_error=False)
    else:
        m.train_step(X[:nb], y[:nb], o)
    m.evaluate(X[:nb], y[:nb])
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# fit and Training: argument checks, the chunk planner, the recorder, the loop


class _Limits(NamedTuple):
    """fit's sizes and stopping rules, checked and derived from its arguments."""

    batch_size: int
    steps_per_epoch: int
    eval_every: int          # steps between evaluations
    total: int | None        # steps to run (epochs and max_steps), None: time budget only
    max_steps: int | None
    time_budget: float | None  # training seconds


def _split_data(data):
    if hasattr(data, "X_train"):
        return data.X_train, data.y_train, data.X_test, data.y_test
    try:
        parts = tuple(data)
    except TypeError:
        raise TypeError("data must be a fastopt.datasets.Dataset or a tuple (X, y) or "
                        f"(X, y, X_test, y_test), got {type(data).__name__}") from None
    if len(parts) == 2:
        return parts[0], parts[1], None, None
    if len(parts) == 4:
        return parts
    raise ValueError(f"data must be (X, y) or (X, y, X_test, y_test), got {len(parts)} items")


def _check_data(model, data):
    """(X, y, X_test, y_test) checked against the model; the training set stands in for a
    missing test set."""
    X, y, X_test, y_test = _split_data(data)
    X = model._check_X(np.asarray(X), "X")
    y = model._check_y(y, X.shape[0], "y")
    if X_test is None:
        return X, y, X, y
    X_test = model._check_X(np.asarray(X_test), "X_test")
    return X, y, X_test, model._check_y(y_test, X_test.shape[0], "y_test")


def _validation(model, X, y, validation_data, validation_split):
    """(X, y, X_val, y_val) as Keras's fit: ``validation_data`` (X_val, y_val) if given
    (it overrides ``validation_split``), else the LAST ``validation_split`` fraction of the
    training rows, taken before any shuffling (floor(n * (1 - split)) rows stay for
    training); X_val, y_val None without either. Checked before anything changes."""
    if validation_split is not None:
        validation_split = _checks.real("validation_split", validation_split, low=0.0,
                                        high=1.0, low_open=True, high_open=True)
    if validation_data is not None:
        if isinstance(validation_data, (str, bytes)) or not hasattr(validation_data,
                                                                    "__len__"):
            raise TypeError("validation_data must be a pair (X_val, y_val), got "
                            f"{type(validation_data).__name__}")
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val), got "
                             f"{len(validation_data)} items")
        X_val = model._check_X(np.asarray(validation_data[0]), "validation_data[0]")
        y_val = model._check_y(validation_data[1], X_val.shape[0], "validation_data[1]")
        return X, y, X_val, y_val
    if validation_split is None:
        return X, y, None, None
    n = X.shape[0]
    at = math.floor(n * (1.0 - validation_split))
    if at == 0 or at == n:
        raise ValueError(f"validation_split={validation_split} of {n} training samples "
                         f"leaves {at} for training and {n - at} for validation; both need "
                         "at least one: choose a split between 1/n and 1 - 1/n")
    return X[:at], y[:at], X[at:], y[at:]


def _train_eval_rows(n, size, seed):
    """The rows of the fixed evaluation subset of n training samples: all of them in order
    if ``size`` >= n, else ``size`` distinct rows (sorted) drawn once from a generator of
    its own spawned from ``seed`` (the mini-batch order is not disturbed)."""
    size = _checks.count("train_eval_size", size, low=0, optional=True)
    size = min(n, TRAIN_EVAL_SIZE if size is None else size)
    if size == n:
        return np.arange(n)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    return np.sort(rng.choice(n, size, replace=False))


def _check_monitors(validation, train_eval, *rules):
    """An early-stopping or plateau rule that watches a column fit will not fill."""
    for rule in rules:
        if rule is None:
            continue
        monitor = getattr(rule, "monitor", None) or rule._plateau.monitor
        if monitor.startswith("val_") and not validation:
            raise ValueError(f"{type(rule).__name__} monitors {monitor!r} but fit has no "
                             "validation data: pass validation_data= or validation_split=")
        if monitor in ("train_eval_loss", "train_accuracy") and not train_eval:
            raise ValueError(f"{type(rule).__name__} monitors {monitor!r} but "
                             "train_eval_size=0 turns that evaluation off")


def _check_limits(model, n, batch_size, epochs, max_steps, time_budget, eval_every,
                  drop_last, replacement):
    """fit's integer and budget arguments for n training samples, checked before anything
    changes; returns the _Limits."""
    batch_size = _checks.integer("batch_size", n if batch_size is None else batch_size,
                                 optional=True)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the number of training samples "
                         f"({n}), got {batch_size}")
    epochs, max_steps, eval_every = (_checks.count(name, value, optional=True) for name, value
                                     in (("epochs", epochs), ("max_steps", max_steps),
                                         ("eval_every", eval_every)))
    if time_budget is not None:
        time_budget = _checks.real("time_budget", time_budget, low=0.0, low_open=True)
    if epochs is None and max_steps is None and time_budget is None:
        epochs = 1
    if model.batch_norm and (batch_size < 2 or (n % batch_size == 1 and not drop_last
                                                 and not replacement)):
        raise ValueError(f"batch norm needs at least 2 rows per batch: batch_size={batch_size} "
                         f"with {n} samples leaves a batch of 1; change batch_size or pass "
                         "drop_last=True")
    steps_per_epoch = (n // batch_size if drop_last else math.ceil(n / batch_size))
    if steps_per_epoch == 0:
        raise ValueError("drop_last=True with batch_size > n leaves no batch")
    total = None
    if epochs is not None:
        total = epochs * steps_per_epoch
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    return _Limits(batch_size, steps_per_epoch, eval_every or steps_per_epoch, total,
                   max_steps, time_budget)


def _eval_schedule(eval_every, eval_at):
    """When the next evaluation comes, as a function of the last evaluation's record:
    every ``eval_every`` steps, at the steps listed in ``eval_at``, or where a callable
    ``eval_at(record) -> step`` puts it (None: no more before the end). Checked here,
    before anything changes."""
    if eval_at is None:
        return lambda record: (record["step"] // eval_every + 1) * eval_every
    if eval_every is not None:
        raise ValueError("pass eval_every or eval_at, not both (eval_at lists every "
                         "evaluation step)")
    if callable(eval_at):
        return functools.partial(_asked, eval_at)
    try:
        values = [float(v) for v in eval_at]
    except (TypeError, ValueError):
        values = None
    if values is None or not all(math.isfinite(v) and v >= 1 and v == int(v) for v in values):
        raise ValueError("eval_at must be positive whole step numbers, e.g. [1, 2, 5, 10], "
                         "or a callable record -> next step; got " + repr(eval_at)[:80])
    return functools.partial(_listed, sorted({int(v) for v in values}))


def _listed(steps, record):
    """The first of the sorted ``steps`` after the record's step, or None."""
    i = bisect.bisect_right(steps, record["step"])
    return steps[i] if i < len(steps) else None


def _asked(eval_at, record):
    """The next evaluation step from a callable ``eval_at``, checked."""
    step = eval_at(dict(record))
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) \
            or step <= record["step"]:
        raise ValueError(f"eval_at returned {step!r} after the evaluation at step "
                         f"{record['step']}; it must return a later step (an int), or None "
                         "for no more evaluations before the end")
    return int(step)


class _ChunkPlanner:
    """The mini-batches of each compiled call: the steps until the next evaluation, the
    end of the epoch's shuffled queue, the step limit or the end of the caller's slice,
    whichever comes first."""

    def __init__(self, n, limits, seed, drop_last, replacement, next_eval):
        self.n = n
        self.limits = limits
        self.rng = np.random.default_rng(seed)
        self.drop_last = drop_last
        self.replacement = replacement
        self.queue = []  # the rest of the current epoch's mini-batches
        self.next_eval_after = next_eval  # record -> step of the next evaluation
        self.next_eval = None

    def scheduled(self, record):
        """After an evaluation: when the next one comes."""
        self.next_eval = self.next_eval_after(record)

    def stop_reason(self, steps, train_time):
        """Why training ends before the next chunk ("" while it goes on)."""
        lim = self.limits
        if lim.total is not None and steps >= lim.total:
            return "max_steps" if lim.max_steps == lim.total else "epochs"
        if lim.time_budget is not None and train_time >= lim.time_budget:
            return "time_budget"
        return ""

    def next_chunk(self, steps, train_time, per_step, steps_left=None, seconds_left=None):
        """Index arrays of the next chunk; ``per_step``: seconds per step so far, or None;
        ``steps_left``, ``seconds_left``: what remains of the caller's slice, or None."""
        lim = self.limits
        if not self.queue:
            self.queue = epoch_batches(self.n, lim.batch_size, self.rng, self.drop_last,
                                       self.replacement)
        chunk = len(self.queue)
        for limit in (None if self.next_eval is None else self.next_eval - steps,
                      None if lim.total is None else lim.total - steps, steps_left):
            if limit is not None:
                chunk = min(chunk, limit)
        seconds = [] if seconds_left is None else [seconds_left]
        if lim.time_budget is not None:
            # keep the budget check frequent: about a quarter second of work per chunk
            seconds.append(min(0.25, lim.time_budget - train_time))
        if seconds and per_step:
            chunk = max(1, min(chunk, int(min(seconds) / per_step)))
        batch, self.queue = self.queue[:chunk], self.queue[chunk:]
        return batch

    def evaluates_at(self, steps):
        lim = self.limits
        return steps == self.next_eval or (lim.total is not None and steps >= lim.total)


class _Recorder:
    """The History of a fit: one record per evaluation, with the mean training loss of
    the steps since the previous one; evaluation time counted apart.

    ``extra``: (loss column, accuracy column, X, y) of the other evaluations (the training
    subset, the validation set); X None: the column stays NaN; X the test set's X (the
    same object, with the same y): the test evaluation's numbers, not computed twice."""

    def __init__(self, model, optimizer, X_test, y_test, steps_per_epoch, extra=()):
        self.model, self.optimizer = model, optimizer
        self.X_test, self.y_test = X_test, y_test
        self.extra = extra
        self.steps_per_epoch = steps_per_epoch
        self.history = History()
        self.losses = []  # training losses since the last record

    def add(self, losses):
        self.losses.extend(losses)

    def record(self, steps, train_time, cpu_time):
        t0 = time.perf_counter()
        test_loss, test_acc = self.model.evaluate(self.X_test, self.y_test)
        more = {}
        for loss_col, acc_col, X, y in self.extra:
            if X is None:
                value = (math.nan, math.nan)
            elif X is self.X_test and y is self.y_test:
                value = (test_loss, test_acc)
            else:
                value = self.model.evaluate(X, y)
            more[loss_col], more[acc_col] = value
        self.history.eval_time += time.perf_counter() - t0
        rec = dict(step=steps, epoch=steps / self.steps_per_epoch, wall_time=train_time,
                   cpu_time=cpu_time,
                   train_loss=float(np.mean(self.losses)) if self.losses else float("nan"),
                   test_loss=test_loss, test_accuracy=test_acc, lr=self.optimizer.lr, **more)
        self.history.append(**rec)
        self.losses.clear()
        return rec


def fit(model, optimizer, data, batch_size=128, epochs=None, max_steps=None, time_budget=None,
        eval_every=None, early_stopping=None, reduce_lr=None, seed=0, progress=True,
        drop_last=False, replacement=False, validation_data=None, validation_split=None,
        train_eval_size=None):
    """Train ``model`` with ``optimizer`` on ``data``; returns a ``History``.

    Parameters
    ----------
    data : Dataset, (X, y) or (X, y, X_test, y_test); without a test set the records'
        test columns are computed on the training set.
    batch_size : int, or None for full-batch gradient descent (1 = stochastic GD)
    epochs, max_steps, time_budget : when to stop (the first reached); if none is given,
        one epoch. time_budget counts training seconds (not evaluation or compilation).
    eval_every : evaluate every this many steps (default: once per epoch); also before
        the first step and after the last.
    early_stopping : EarlyStopping or None;  reduce_lr : ReduceLROnPlateau or None
    seed : seeds the mini-batch order (the model's own generator seeds dropout)
    progress : tqdm progress bar (shown only on a terminal)
    drop_last, replacement : see ``epoch_batches``
    validation_data : (X_val, y_val) or None, evaluated at every record into the val_loss
        and val_accuracy columns (Keras's ``fit(validation_data=)``); overrides
        ``validation_split``.
    validation_split : float in (0, 1) or None: as Keras, the LAST fraction of the
        training rows (before any shuffling) is held out as validation data and not
        trained on; floor(n * (1 - validation_split)) rows remain for training.
        Without a test set in ``data`` the test columns are those rows' numbers.
        The test columns keep the test set of ``data``: existing callers see no change.
    train_eval_size : int >= 0 or None: the training set's loss and accuracy in
        evaluation mode (no dropout, batch norm's running statistics) on a fixed subset
        of this many rows, the same rows at every record (drawn once with ``seed``), into
        train_eval_loss and train_accuracy (next to the test columns, for train/test
        gaps). Default min(n, 10000); 0 turns it off (NaN columns); all rows when >= n.

    With a ``target="cuda"`` model, ``data`` (host arrays) is checked and copied to the
    device once. The losses of a chunk of steps (up to the next evaluation) are read when
    the chunk ends, so a divergence is reported at its first non-finite loss but the
    parameters are those after the whole chunk. If the learning-rate schedule fails at
    some step, the steps before it are applied and its error is raised.

    The same as ``Training(model, optimizer, data, ...).advance()``, then its history.
    """
    training = Training(model, optimizer, data, batch_size=batch_size, epochs=epochs,
                        max_steps=max_steps, time_budget=time_budget, eval_every=eval_every,
                        early_stopping=early_stopping, reduce_lr=reduce_lr, seed=seed,
                        progress=progress, drop_last=drop_last, replacement=replacement,
                        validation_data=validation_data, validation_split=validation_split,
                        train_eval_size=train_eval_size)
    training.advance()
    return training.history


class Training:
    """A training run that advances in slices, so that several runs can take turns.

    Takes ``fit``'s arguments, plus ``eval_at`` instead of ``eval_every``: the evaluation
    steps as a list (e.g. log-spaced: [1, 2, 4, 8, ...]) or a callable ``record -> step``
    that picks the next one from the last evaluation's record (None: no more before the
    end). Building it checks everything, compiles the kernels and evaluates the untrained
    network (the first record). ``advance(seconds=None, steps=None)`` trains on and
    returns True once the run has ended (``finished``); ``history`` holds the records so
    far, ``steps``, ``train_time`` and ``cpu_time`` the totals so far. Slicing
    changes no number: the same arguments give the same steps, losses and parameters
    however the run is advanced (only the times differ).

    ``clock`` is what ``time_budget`` and ``advance(seconds=)`` count: ``"wall"`` (default,
    ``train_time``; the cpu_time column then holds the process's CPU seconds) or ``"cpu"``
    (``cpu_time``: the calling thread's CPU seconds of training, which under
    ``fastopt.threads.single_thread()`` is the work itself, whatever else runs on the
    machine or in the process). Both columns are recorded either way.
    """

    def __init__(self, model, optimizer, data, batch_size=128, epochs=None, max_steps=None,
                 time_budget=None, eval_every=None, early_stopping=None, reduce_lr=None,
                 seed=0, progress=True, drop_last=False, replacement=False, eval_at=None,
                 clock="wall", validation_data=None, validation_split=None,
                 train_eval_size=None):
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
        self._cpu_clock = clock == "cpu"
        # "cpu": the calling thread's CPU time, which under threads.single_thread() is all
        # the training work (other threads of the process, busy or not, do not count);
        # "wall": the cpu_time column is the whole process's (BLAS threads work too)
        self._cpu = time.thread_time if self._cpu_clock else time.process_time
        X, y, X_test, y_test = _check_data(model, data)
        same = X_test is X
        X, y, X_val, y_val = _validation(model, X, y, validation_data, validation_split)
        if same:  # no test set: the (remaining) training rows stand in for it
            X_test, y_test = X, y
        model._check_optimizer(optimizer)
        n = X.shape[0]
        rows = _train_eval_rows(n, train_eval_size, seed)
        X_eval, y_eval = (X, y) if rows.size == n else (X[rows], y[rows])
        _check_monitors(X_val is not None, rows.size > 0, early_stopping, reduce_lr)
        limits = _check_limits(model, n, batch_size, epochs, max_steps, time_budget,
                               eval_every, drop_last, replacement)
        next_eval = _eval_schedule(limits.eval_every if eval_at is None else eval_every,
                                   eval_at)
        self.planner = _ChunkPlanner(n, limits, seed, drop_last, replacement, next_eval)
        compiled = not (model.dropout > 0 or optimizer.skip_nonfinite
                        or optimizer.max_grad_norm is not None)
        run = _run_compiled if compiled else _run_per_step
        if rows.size == 0:
            X_eval = y_eval = None
        if model.target == "cuda":  # once: the training set, and the sets for evaluations
            copies = {}  # each host array copied once (the same X may serve twice)

            def device(a):
                if a is not None and id(a) not in copies:
                    copies[id(a)] = model._to_device(a)[0]
                return None if a is None else copies[id(a)]

            X_test, X_eval, X_val, X = device(X_test), device(X_eval), device(X_val), device(X)
            y = model._to_device(X, y)[1]
            run = _run_device
        self.recorder = _Recorder(model, optimizer, X_test, y_test, limits.steps_per_epoch,
                                  (("train_eval_loss", "train_accuracy", X_eval, y_eval),
                                   ("val_loss", "val_accuracy", X_val, y_val)))
        self.recorder.history.compile_time = _warm_up(model, optimizer, X, y,
                                                      limits.batch_size, compiled)
        if early_stopping is not None:
            early_stopping.reset()
        self.model, self.optimizer = model, optimizer
        self.early_stopping, self.reduce_lr = early_stopping, reduce_lr
        self.progress = progress
        self._run_chunk = functools.partial(run, model, optimizer, X, y)
        self._step0 = optimizer.steps
        self.steps, self.train_time, self.cpu_time, self._per_step = 0, 0.0, 0.0, None
        self.finished, self._bar = False, None
        self.planner.scheduled(self._record())

    @property
    def history(self):
        return self.recorder.history

    @property
    def _clock_time(self):
        return self.cpu_time if self._cpu_clock else self.train_time

    def advance(self, seconds=None, steps=None):
        """Train for about ``seconds`` more training seconds (chunks are sized from the
        speed so far; the slice ends with the chunk that reaches it) and at most ``steps``
        more updates; with neither, to the end. Returns True when the run has ended
        (``history.stopped`` says why). A divergence raises ``TrainingDiverged`` once;
        the run has ended then."""
        if seconds is not None:
            seconds = _checks.real("seconds", seconds, low=0.0, low_open=True)
        steps = _checks.count("steps", steps, optional=True)
        if self.finished:
            return True
        end_time = None if seconds is None else self._clock_time + seconds
        end_step = None if steps is None else self.steps + steps
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.planner.limits.total, initial=self.steps,
                             disable=not self.progress, unit="step", desc="fit", leave=False)
        try:
            while not self.finished and (end_step is None or self.steps < end_step) and (
                    end_time is None or self._clock_time < end_time):
                self._chunk(None if end_step is None else end_step - self.steps,
                            None if end_time is None else end_time - self._clock_time)
        except BaseException:
            self._close_bar()
            raise
        if self.finished:
            self._close_bar()
        return self.finished

    def _chunk(self, steps_left, seconds_left):
        """One compiled call (or per-step run) of the planner's next mini-batches, then an
        evaluation where one is due and the stopping rules."""
        batch = self.planner.next_chunk(self.steps, self._clock_time, self._per_step,
                                        steps_left, seconds_left)
        t0, c0 = time.perf_counter(), self._cpu()
        losses, done = self._run_chunk(batch)
        elapsed, cpu = time.perf_counter() - t0, self._cpu() - c0
        self.cpu_time += cpu
        self.train_time += elapsed
        self._per_step = (cpu if self._cpu_clock else elapsed) / max(done, 1)
        self.steps += done
        self._bar.update(done)
        self.recorder.add(losses[:done])
        if not math.isfinite(losses[-1]):
            self.finished = True
            self._record()
            raise TrainingDiverged(self._step0 + self.steps + (done < len(losses)),
                                   losses[-1], self.history)
        record = self._evaluate() if self.planner.evaluates_at(self.steps) else None
        if not self.finished:
            stopped = self.planner.stop_reason(self.steps, self._clock_time)
            if stopped:
                self._finish(stopped)
            elif record is not None:  # the next evaluation, asked only while the run goes on
                self.planner.scheduled(record)

    def _evaluate(self):
        """A due evaluation, then the learning-rate plateau rule and early stopping;
        returns the record."""
        rec = self._record()
        self._bar.set_postfix(test_loss=f"{rec['test_loss']:.4f}",
                              acc=f"{rec['test_accuracy']:.4f}")
        if self.reduce_lr is not None:
            self.reduce_lr.update(rec, self.optimizer)
        if self.early_stopping is not None and self.early_stopping.update(rec,
                                                                          self.model.params):
            _restore_best(self.model, self.early_stopping)
            self._finish("early_stopping")
        return rec

    def _record(self):
        return self.recorder.record(self.steps, self.train_time, self.cpu_time)

    def _finish(self, stopped):
        """The run has ended: the reason, and a last record after the last step."""
        self.history.stopped = stopped
        if self.history.records[-1]["step"] != self.steps:
            self._record()
        self.finished = True

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _restore_best(model, early_stopping):
    """The parameters of the best evaluation back in the model, if they were kept."""
    if early_stopping.restore_best and early_stopping.best_params is not None:
        if model.target == "cuda":
            model.params.copy_to_device(early_stopping.best_params)
        else:
            model.params[:] = early_stopping.best_params
