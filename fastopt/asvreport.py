"""Tables and figures from the asv suite's results: ``fastopt bench asv-report``.

asv keeps one JSON file per machine, commit and environment
(``<results>/<machine>/<commit>-<environment>.json``, format version 2 in asv 0.6) and the
suite's description in ``<results>/benchmarks.json`` (parameter names, units). This module
picks one machine and one commit (by default the latest commit that has results), merges
its files (one per environment) and derives what asv does not show:

- update kernels (``bench_optim.<Impl>Step[CUDA].time_step``, one class per
  implementation and target, ``fastopt.bench.suite.UPDATE_STEPS``): time per optimizer step
  (asv's time per call: one step per call), effective bandwidth of fastopt
  ((3 + 2 * n_state) * itemsize * N bytes per step) and each peer's time over fastopt's at
  the same parameters (fastopt's Cython backend, NumPy reference, torch.optim for-loop,
  torch fused);
- MLP (``bench_nn.<Impl>MLP[CUDA].*``): time per call, samples per second, PyTorch's time
  over fastopt's;
- convergence (``bench_train.Convergence<DataSet>.track_*``): test accuracy, steps and
  seconds to the target, one row per data set, optimizer and batch size;
- instructions per step under callgrind (``bench_instructions.*``), per element for the
  update;
- everything else (cold start, import, peak memory, benchmarks added later) as it is.

Results of commits before issue 17 (``bench_optim.OptimizerStep``, ``bench_nn.MLP``: one
class with ``target`` and ``impl`` parameters, ``steps_per_call(N)`` steps per call) are
read too: their time per call is divided by ``steps_per_call(N)``.

The benchmarks' names, parameter names and units are ``fastopt.bench.suite``'s, the legacy
steps per call and the hyperparameters ``fastopt.bench.definitions``': the same definitions
the suite is built from.

Each table is printed and written as CSV; time per step against N (update kernels, log-log,
one panel per optimizer, one line per implementation) and against the batch size (MLP) are
drawn as PNG. Results are read with asv's own ``asv.results.Results`` when asv is installed,
else with the small reader of the same format below (asv is only needed to *run* the suite).

Nothing here imports numba or matplotlib at module level.
"""

import ast
import itertools
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

from . import tables
from .bench import definitions, suite
from .bench.definitions import steps_per_call  # noqa: F401  (legacy results: per step)

DEFAULT_RESULTS = os.path.join(".asv", "results")

UPDATE_STEPS = suite.UPDATE_STEPS
LEGACY_UPDATE = suite.LEGACY_UPDATE
#: fastopt's own Cython backend (bench_optim.CythonStep) first, then the peers
UPDATE_PEERS = ("cython",) + tuple(impl for impl in definitions.UPDATE_IMPLS
                                   if impl != "fastopt")
MLP_CLASSES = suite.MLP_CLASSES
LEGACY_MLP_PREFIX = suite.LEGACY_MLP_PREFIX
MLP_KINDS = suite.MLP_TIMINGS
INSTRUCTIONS = suite.INSTRUCTIONS
CONVERGENCE_PREFIX = suite.CONVERGENCE_PREFIX
CONVERGENCE_TRACKS = {track: column for track, (column, _) in suite.CONVERGENCE_TRACKS.items()}
NETWORK = "-".join(map(str, definitions.NETWORK))


class Entry(NamedTuple):
    """One benchmark at one parameter combination."""

    name: str  # e.g. "bench_optim.FastoptStep.time_step"
    params: dict  # parameter name -> value (Python value, e.g. 'adam' or 1000)
    value: float  # NaN when skipped, None when it failed
    unit: str  # "seconds", "bytes", or a track's unit
    env: str  # asv environment name


class Selection(NamedTuple):
    """The results chosen for the report."""

    machine: str
    commit: str
    date: object  # commit date (ms since the epoch) or None
    files: list  # result files read
    entries: list  # [Entry]
    notes: list  # what the reader skipped or chose


# ---------------------------------------------------------------------------------------
# reading


class _File(NamedTuple):
    path: str
    commit: str
    date: object
    env: str
    started: float  # latest benchmark start in the file (ms since the epoch)
    results: dict  # name -> (params, values)


def _read_with_asv(path):
    from asv.results import Results

    r = Results.load(path)
    results = {}
    for name in r.get_all_result_keys():
        params = r.get_result_params(name)
        values = r.get_result_value(name, params)
        results[name] = (params, values)
    started = max((v for v in r.started_at.values() if v is not None), default=0)
    return _File(path, r.commit_hash, r.date, r.env_name, started, results)


def _read_json(path):
    """asv's result file format version 2 (asv 0.5-0.6), without asv."""
    with open(path) as f:
        d = json.load(f)
    if d.get("version") != 2:
        raise ValueError(f"{path}: asv results format version {d.get('version')!r}; this "
                         "reader knows version 2 (install asv to read newer files)")
    columns = d["result_columns"]
    results = {}
    started = 0
    for name, row in d["results"].items():
        col = dict(zip(columns, row))
        params = col.get("params") or []
        value = col.get("result")
        if value is None:  # failed everywhere: asv compresses the list to null
            value = [None] * max(1, math.prod(len(p) for p in params))
        results[name] = (params, value)
        started = max(started, col.get("started_at") or 0)
    return _File(path, d["commit_hash"], d.get("date"), d.get("env_name"), started, results)


def _asv_installed():
    try:
        import asv.results  # noqa: F401
    except ImportError:
        return False
    return True


def read_file(path, use_asv=None):
    """One asv results file as ``_File``; ``use_asv`` None picks asv's reader if installed."""
    if use_asv is None:
        use_asv = _asv_installed()
    return _read_with_asv(path) if use_asv else _read_json(path)


def machines(results_dir):
    """Names of the machines with a results folder (a folder holding machine.json)."""
    root = Path(results_dir)
    return sorted(p.name for p in root.iterdir() if (p / "machine.json").is_file()) \
        if root.is_dir() else []


def _result_paths(results_dir, machine):
    folder = Path(results_dir) / machine
    return sorted(p for p in folder.glob("*.json") if p.name != "machine.json")


def _benchmark_info(results_dir):
    path = Path(results_dir) / "benchmarks.json"
    if not path.is_file():
        return {}
    with open(path) as f:
        info = json.load(f)
    return {k: v for k, v in info.items() if isinstance(v, dict)}


def _value(text):
    """A parameter as asv stores it (its repr) -> the Python value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _default_unit(name):
    if suite.known(name):
        return suite.known(name).unit
    method = name.rsplit(".", 1)[-1]
    if method.startswith(("time_", "timeraw_")):
        return "seconds"
    if method.startswith(("peakmem_", "mem_")):
        return "bytes"
    return ""


def _entries(file, info):
    out = []
    for name, (params, values) in sorted(file.results.items()):
        meta = info.get(name, {})
        known = list(suite.known(name).param_names) if suite.known(name) else []
        names = meta.get("param_names") or known
        if len(names) != len(params):  # results of an older version of the benchmark
            names = known
            if len(names) != len(params):
                names = [f"param{i + 1}" for i in range(len(params))]
        unit = meta.get("unit") or _default_unit(name)
        combos = list(itertools.product(*params)) if params else [()]
        if not isinstance(values, list):
            values = [values]
        for combo, value in zip(combos, values):
            out.append(Entry(name, {k: _value(v) for k, v in zip(names, combo)},
                             _float(value), unit, file.env))
    return out


def _float(value):
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _pick_machine(results_dir, machine, notes):
    """``machine``, checked, or the one with the most recent results (noted)."""
    found = machines(results_dir)
    if not found:
        raise ValueError(
            f"no asv results under {results_dir} (no <machine>/machine.json); run the suite "
            "first, e.g. asv run --python=same --set-commit-hash $(git rev-parse HEAD) "
            "(see README: Tracking performance with asv), or pass --results DIR")
    if machine is not None:
        if machine not in found:
            raise ValueError(f"--machine {machine}: no results for it under {results_dir}; "
                             f"machines: {', '.join(found)}")
        return machine
    if len(found) == 1:
        return found[0]
    latest = {m: max((p.stat().st_mtime for p in _result_paths(results_dir, m)), default=0)
              for m in found}
    machine = max(found, key=lambda m: latest[m])
    notes.append(f"results of several machines ({', '.join(found)}): showing "
                 f"{machine}, the most recent; choose with --machine")
    return machine


def _pick_commit(commits, commit, machine):
    """The commit (a key of ``commits``) matching the prefix ``commit``, or the latest."""
    if commit is None:
        def recency(c):
            group = commits[c]
            return (max((f.date or 0) for f in group), max(f.started for f in group))

        return max(commits, key=recency)
    matches = [c for c in commits if c and c.startswith(commit)]
    if not matches:
        raise ValueError(f"--commit {commit}: no results for it on machine {machine}; "
                         f"commits with results: "
                         f"{', '.join(sorted(c[:8] for c in commits if c))}")
    if len(matches) > 1:
        raise ValueError(f"--commit {commit} is ambiguous: {', '.join(matches)}")
    return matches[0]


def select(results_dir=DEFAULT_RESULTS, machine=None, commit=None, use_asv=None):
    """Read the results of one machine and one commit (default: the latest) -> Selection.

    Raises ValueError saying what is missing (no results, unknown machine or commit)."""
    notes = []
    machine = _pick_machine(results_dir, machine, notes)
    files = []
    for path in _result_paths(results_dir, machine):
        try:
            files.append(read_file(str(path), use_asv))
        except Exception as exc:  # a damaged or foreign file must not hide the others
            notes.append(f"skipped {path}: {exc}")
    if not files:
        raise ValueError(f"no results files for machine {machine} under {results_dir}")
    commits = {}
    for f in files:
        commits.setdefault(f.commit, []).append(f)
    chosen = _pick_commit(commits, commit, machine)
    group = sorted(commits[chosen], key=lambda f: f.started)
    info = _benchmark_info(results_dir)
    # one result per benchmark: from the most recent file (environment) that has it
    by_name = {}
    for f in group:  # oldest first: later files replace earlier ones
        per_file = {}
        for e in _entries(f, info):
            per_file.setdefault(e.name, []).append(e)
        by_name.update(per_file)
    entries = [e for name in sorted(by_name) for e in by_name[name]]
    if len(group) > 1:
        notes.append(f"{len(group)} environments for this commit "
                     f"({', '.join(f.env for f in group)}); each benchmark from the most "
                     "recent that ran it")
    date = max((f.date or 0) for f in group) or None
    return Selection(machine, chosen, date, [f.path for f in group], entries, notes)


# ---------------------------------------------------------------------------------------
# tables


def _ok(x):
    return x is not None and not math.isnan(x)


def _ratio(a, b):
    return a / b if _ok(a) and _ok(b) and b > 0 else math.nan


def _nan(x):
    return x if _ok(x) else math.nan


def state_arrays(name, dtype="float32"):
    """How many state arrays ``fastopt.optim`` allocates for ``name`` with the benchmark's
    hyperparameters (``fastopt.bench.definitions``, as the suite runs it); None for an
    unknown optimizer."""
    import numpy as np

    from . import optim

    if name not in optim.OPTIMIZERS:
        return None
    opt = optim.OPTIMIZERS[name](np.zeros(1, dtype=dtype), **definitions.bench_hyper(name))
    return len(opt.state[0])


def _update_times(entries):
    """{(optimizer, n, dtype, target): {impl: seconds per step}} from the current classes
    (one step per call) and from the retired OptimizerStep (``steps_per_call(n)`` per call)."""
    groups = {}
    for e in entries:
        p = e.params
        if e.name in UPDATE_STEPS:
            impl, target = UPDATE_STEPS[e.name]
            per_step = e.value
        elif e.name == LEGACY_UPDATE:
            impl, target = p.get("impl", "fastopt"), p.get("target", "cpu")
            per_step = e.value / steps_per_call(p.get("n")) if _ok(e.value) else e.value
        else:
            continue
        key = (p.get("optimizer"), p.get("n"), p.get("dtype", "float32"), target)
        groups.setdefault(key, {})[impl] = _nan(per_step)
    return groups


def update_rows(entries):
    """One row per optimizer, N, dtype and target: fastopt's time per step and GB/s, the
    peers' times and their ratio to fastopt (peer time / fastopt time: above 1 = fastopt
    faster)."""
    import numpy as np

    groups = _update_times(entries)
    rows = []
    n_state = {}
    for (name, n, dtype, target), per_step in groups.items():
        if not any(_ok(v) for v in per_step.values()):
            continue
        if (name, dtype) not in n_state:
            n_state[name, dtype] = state_arrays(name, dtype)
        fast = per_step.get("fastopt", math.nan)
        ns = n_state[name, dtype]
        nbytes = (3 + 2 * ns) * np.dtype(dtype).itemsize * n if ns is not None else math.nan
        row = dict(optimizer=name, n=n, dtype=dtype, target=target,
                   fastopt_us=fast * 1e6, fastopt_gbps=_ratio(nbytes, fast) / 1e9)
        for peer in UPDATE_PEERS:
            row[f"{peer.replace('-', '_')}_us"] = per_step.get(peer, math.nan) * 1e6
        for peer in UPDATE_PEERS:
            row[f"{peer.replace('-', '_')}_x"] = _ratio(per_step.get(peer), fast)
        rows.append(row)
    order = {name: i for i, name in enumerate(dict.fromkeys(k[0] for k in groups))}
    rows.sort(key=lambda r: (r["dtype"], r["target"], r["n"], order[r["optimizer"]]))
    return rows


def _mlp_class(name):
    """(impl, target, method) of an MLP benchmark name, None for other benchmarks; the
    retired ``bench_nn.MLP`` has impl and target as parameters (None here)."""
    for prefix, (impl, target) in MLP_CLASSES.items():
        if name.startswith(prefix):
            return impl, target, name[len(prefix):]
    if name.startswith(LEGACY_MLP_PREFIX):
        return None, None, name[len(LEGACY_MLP_PREFIX):]
    return None


def mlp_rows(entries):
    """One row per timing (train_step, forward, forward+backward), batch size and target."""
    groups = {}
    for e in entries:
        found = _mlp_class(e.name)
        if found is None:
            continue
        impl, target, method = found
        impl = impl or e.params.get("impl", "fastopt")
        target = target or e.params.get("target", "cpu")
        key = (MLP_KINDS.get(method, method), e.params.get("batch"), target)
        groups.setdefault(key, {})[impl] = e.value
    rows = []
    for (kind, n, target), impls in groups.items():
        fast, peer = _nan(impls.get("fastopt")), _nan(impls.get("torch"))
        if not (_ok(fast) or _ok(peer)):
            continue
        rows.append(dict(what=kind, batch=n, target=target, fastopt_us=fast * 1e6,
                         fastopt_samples_per_s=_ratio(n, fast), torch_us=peer * 1e6,
                         torch_samples_per_s=_ratio(n, peer), torch_x=_ratio(peer, fast)))
    kinds = list(MLP_KINDS.values())
    rows.sort(key=lambda r: (r["target"], kinds.index(r["what"]) if r["what"] in kinds
                             else len(kinds), r["batch"]))
    return rows


def convergence_rows(entries):
    """One row per data set, optimizer and batch size: the three convergence tracks."""
    groups = {}
    for e in entries:
        if not e.name.startswith(CONVERGENCE_PREFIX):
            continue
        cls, method = e.name[len(CONVERGENCE_PREFIX):].rsplit(".", 1)
        if method not in CONVERGENCE_TRACKS:
            continue
        key = (cls.lower(), e.params.get("optimizer"), e.params.get("batch"))
        groups.setdefault(key, {})[CONVERGENCE_TRACKS[method]] = _nan(e.value)
    rows = []
    for (dataset, name, n), tracks in groups.items():
        if not any(_ok(v) for v in tracks.values()):
            continue
        row = dict(dataset=dataset, optimizer=name, batch=n)
        for column in CONVERGENCE_TRACKS.values():
            row[column] = tracks.get(column, math.nan)
        if _ok(row["steps_to_target"]):
            row["steps_to_target"] = int(row["steps_to_target"])
        rows.append(row)
    order = {name: i for i, name in enumerate(dict.fromkeys(k[1] for k in groups))}
    rows.sort(key=lambda r: (r["dataset"], r["batch"], order[r["optimizer"]]))
    return rows


def instruction_rows(entries):
    """One row per instruction-count benchmark and optimizer: instructions per step, and
    per element for the update (N elements: ``fastopt.bench.instructions.UPDATE_N``)."""
    from .bench import instructions

    rows = []
    for e in entries:
        if e.name not in INSTRUCTIONS or not _ok(e.value):
            continue
        kind = INSTRUCTIONS[e.name]
        size = instructions.UPDATE_N if kind == "update" else e.params.get("batch")
        rows.append(dict(what=kind, optimizer=e.params.get("optimizer"), size=size,
                         instructions=e.value,
                         per_item=e.value / size if size else math.nan))
    return rows


def _known(name):
    return (name in UPDATE_STEPS or name == LEGACY_UPDATE or _mlp_class(name) is not None
            or name in INSTRUCTIONS
            or (name.startswith(CONVERGENCE_PREFIX)
                and name.rsplit(".", 1)[-1] in CONVERGENCE_TRACKS))


def other_rows(entries):
    """Every other benchmark (cold start, import, peak memory, new ones) as it is; seconds
    and bytes in readable units. Skipped combinations are left out, failures kept."""
    rows = []
    for e in entries:
        if _known(e.name) or (e.value is not None and math.isnan(e.value)):
            continue
        value, unit = e.value, {"seconds": "s"}.get(e.unit, e.unit)
        if value is not None and unit == "bytes":
            value, unit = value / 2**20, "MiB"
        rows.append(dict(benchmark=e.name,
                         params=", ".join(f"{k}={v}" for k, v in e.params.items()) or "-",
                         value=math.nan if value is None else value,
                         unit=unit if value is not None else "failed"))
    return rows


UPDATE_COLUMNS = (["optimizer", "n", "dtype", "target", "fastopt_us", "fastopt_gbps",
                   "cython_us", "numpy_us", "torch_us", "torch_fused_us", "cython_x",
                   "numpy_x", "torch_x", "torch_fused_x"],
                  ["optimizer", "N", "dtype", "target", "fastopt us/step", "GB/s",
                   "Cython us", "numpy us", "torch us", "fused us", "Cython x", "numpy x",
                   "torch x", "fused x"])
MLP_COLUMNS = (["what", "batch", "target", "fastopt_us", "fastopt_samples_per_s", "torch_us",
                "torch_samples_per_s", "torch_x"],
               ["timing", "batch", "target", "fastopt us", "samples/s", "torch us",
                "torch samples/s", "torch x"])
CONVERGENCE_COLUMNS = (["dataset", "optimizer", "batch", "test_accuracy_pct",
                        "steps_to_target", "seconds_to_target"],
                       ["data set", "optimizer", "batch", "test acc %", "steps to target",
                        "s to target"])
INSTRUCTION_COLUMNS = (["what", "optimizer", "size", "instructions", "per_item"],
                       ["step", "optimizer", "N / batch", "instructions", "per element / sample"])
OTHER_COLUMNS = (["benchmark", "params", "value", "unit"],
                 ["benchmark", "parameters", "value", "unit"])

#: (file stem, title, rows function, (columns, headers))
TABLES = (
    ("asv_update", "update kernels: time per opt.step(); peer x = peer time / fastopt time",
     update_rows, UPDATE_COLUMNS),
    ("asv_mlp", f"MLP {NETWORK} (float32, SGD): time per call; torch x = torch "
     "time / fastopt time", mlp_rows, MLP_COLUMNS),
    ("asv_convergence", "convergence: test accuracy after the fixed steps, steps and "
     "training seconds to the target accuracy (- = not reached)", convergence_rows,
     CONVERGENCE_COLUMNS),
    ("asv_instructions", "instructions per step (callgrind; one BLAS and Numba thread): "
     "moves when the code does, not with the load", instruction_rows, INSTRUCTION_COLUMNS),
    ("asv_other", "cold start, import, memory and other benchmarks", other_rows,
     OTHER_COLUMNS),
)


def build_tables(entries):
    """{stem: (title, rows, (columns, headers))} for every table with rows."""
    tables = {}
    for stem, title, fn, cols in TABLES:
        rows = fn(entries)
        if rows:
            tables[stem] = (title, rows, cols)
    return tables


def format_table(rows, columns, headers):
    """A report table: numbers with thousands separators, every column right-aligned."""
    return tables.format_table(rows, columns, headers, cell=tables.readable,
                               first_left=False, strip=False)


# ---------------------------------------------------------------------------------------
# figures

_IMPL_STYLE = {"fastopt": dict(color="C0", marker="o"), "numpy": dict(color="C2", marker="s"),
               "torch": dict(color="C1", marker="^"),
               "torch-fused": dict(color="C3", marker="v"),
               "cython": dict(color="C4", marker="D", linestyle="--")}


def plot_update(rows, dtype, target):
    """Time per step versus N, log-log: one panel per optimizer, one line per implementation."""
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["dtype"] == dtype and r["target"] == target]
    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    ncols = min(5, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.9 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        sub = sorted((r for r in rows if r["optimizer"] == name), key=lambda r: r["n"])
        for impl in ("fastopt",) + UPDATE_PEERS:
            col = f"{impl.replace('-', '_')}_us"
            pts = [(r["n"], r[col]) for r in sub if _ok(r[col])]
            if pts:
                ax.plot(*zip(*pts), label=impl, **_IMPL_STYLE[impl])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("µs per step")
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("N (elements)")
    handles, labels = {}, {}
    for ax in axes[:len(names)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=len(handles))
    fig.suptitle(f"opt.step() time per step, {dtype}, {target}")
    return fig


def plot_mlp(rows, target):
    """Time per call versus batch size, log-log: one panel per timing, fastopt vs torch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    rows = [r for r in rows if r["target"] == target]
    kinds = list(dict.fromkeys(r["what"] for r in rows))
    fig = Figure(figsize=(3.6 * len(kinds), 3.4), layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False).ravel()
    for ax, kind in zip(axes, kinds):
        sub = sorted((r for r in rows if r["what"] == kind), key=lambda r: r["batch"])
        for impl in ("fastopt", "torch"):
            pts = [(r["batch"], r[f"{impl}_us"]) for r in sub if _ok(r[f"{impl}_us"])]
            if pts:
                ax.plot(*zip(*pts), label=impl, **_IMPL_STYLE[impl])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        batches = sorted({r["batch"] for r in sub})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(kind)
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("µs per call")
    fig.suptitle(f"MLP {NETWORK}, float32, SGD, {target}")
    return fig


def figures(tables):
    """[(stem, Figure)] for the update and MLP tables."""
    out = []
    if "asv_update" in tables:
        rows = tables["asv_update"][1]
        for dtype, target in dict.fromkeys((r["dtype"], r["target"]) for r in rows):
            if any(_ok(r["fastopt_us"]) or _ok(r["torch_us"]) for r in rows
                   if r["dtype"] == dtype and r["target"] == target):
                out.append((f"asv_update_{dtype}_{target}", plot_update(rows, dtype, target)))
    if "asv_mlp" in tables:
        rows = tables["asv_mlp"][1]
        for target in dict.fromkeys(r["target"] for r in rows):
            out.append((f"asv_mlp_{target}", plot_mlp(rows, target)))
    return out


# ---------------------------------------------------------------------------------------
# the command


def run(args):
    """``fastopt bench asv-report``: print the tables, write CSV and PNG files into --out."""
    from . import runs

    runs.check_out(args.out)
    selection = select(args.results, args.machine, args.commit)
    report = build_tables(selection.entries)
    resolved = dict(machine=selection.machine, commit=selection.commit, files=selection.files)
    with runs.command_frame(args, "bench asv-report", resolved=resolved,
                            announce=False) as frame:
        _print_and_write(selection, report, frame.out, args.svg)
    return report


def _print_and_write(selection, report, out, svg):
    """The report on stdout, a CSV per table and the figures, into ``out``."""
    import datetime

    from . import runs

    when = ""
    if selection.date:
        date = datetime.datetime.fromtimestamp(selection.date / 1000, datetime.timezone.utc)
        when = f" (commit date {date:%Y-%m-%d %H:%M} UTC)"
    print(f"asv results: machine {selection.machine}, commit {selection.commit[:12]}{when}, "
          f"{len(selection.files)} file(s)")
    for note in selection.notes:
        print(f"note: {note}")
    if not report:
        print("no results with values for this commit (every benchmark skipped or failed)")
    for stem, (title, rows, (columns, headers)) in report.items():
        print(f"\n{title}")
        print(format_table(rows, columns, headers))
        runs.wrote(tables.write_csv(rows, out / f"{stem}.csv", columns), "the table above")
    figs = figures(report)
    if figs:
        runs.use_agg()
        for stem, fig in figs:
            for path in runs.save_figure(fig, out, stem, svg=svg):
                runs.wrote(path, "time per step" if "update" in stem else
                           "time per call versus batch size")
