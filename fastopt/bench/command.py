"""The ``fastopt bench ...`` command: options, the output folder, the table and CSV files.

Each subcommand measures with one function of this package and prints its rows with
``fastopt.tables``; ``asv-report`` hands over to ``fastopt.asvreport``.
"""

import argparse

from . import definitions


def _csv_list(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def _sizes(text):
    """Comma-separated whole numbers >= 1 (1e3 counts; 1.5 or -5 is refused, not cut)."""
    from .update import check_sizes

    try:
        return check_sizes([float(x) for x in _csv_list(text)], "sizes")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must be comma-separated positive whole numbers such as 1e3,1e5, got "
            f"{text!r}") from None


def _network():
    return "-".join(map(str, definitions.NETWORK))


def _run(args, what, measure, columns, headers, title=None, after=None):
    """Shared frame of the bench commands: output folder, settings.json, the table on
    stdout, ``<what>.csv`` (and ``--csv PATH`` if given); then ``after(out folder)``."""
    from .. import runs, tables

    runs.check_common_arguments(args)
    with runs.command_frame(args, f"bench {what}") as frame:
        rows, notes = measure(progress=runs.progress_mode(args.no_progress))
        if title:
            print(title)
        print(tables.format_table(rows, columns, headers, cell=tables.short,
                                  first_left=False, strip=False))
        for note in notes:
            print(f"note: {note}")
        for path in filter(None, [frame.out / f"{what}.csv", args.csv]):
            tables.write_csv(rows, path)
            runs.wrote(path, "one row per measurement")
        if after is not None:
            after(frame.out)


def _cmd_update(args):
    from .update import bench_update, optimizer_names

    optimizer_names(args.optimizers, "--optimizers")  # before the output folder is made

    def measure(progress):
        rows, notes = bench_update(optimizers=args.optimizers, sizes=args.sizes,
                                   dtype=args.dtype, rounds=args.rounds,
                                   torch_peers=not args.no_torch, progress=progress,
                                   seed=args.seed,
                                   crossover_sizes=[] if args.no_crossover
                                   else args.crossover_sizes)
        return [dict(r, us=r["seconds"] * 1e6) for r in rows], notes

    _run(args, "update", measure, ["optimizer", "n", "impl", "us", "gbps", "ratio"],
         ["optimizer", "N", "implementation", "median us/step", "GB/s", "time / fastopt"])


def _cmd_crossover(args):
    from .. import config
    from .update import bench_crossover, optimizer_names

    optimizer_names(args.optimizers or ("sgd", "adam"), "--optimizers")  # before any output

    def measure(progress):
        rows, found = bench_crossover(names=args.optimizers or ("sgd", "adam"),
                                      dtype=args.dtype, rounds=args.rounds,
                                      progress=progress, seed=args.seed)
        notes = [f"{name}: prange wins from N = {n}" if n else
                 f"{name}: prange never wins here" for name, n in found.items()]
        notes.append(f"current FASTOPT_PARALLEL_MIN_SIZE = {config.PARALLEL_MIN_SIZE}")
        return [dict(r, serial_us=r["serial"] * 1e6, parallel_us=r["parallel"] * 1e6,
                     speedup=r["serial"] / r["parallel"]) for r in rows], notes

    _run(args, "crossover", measure, ["optimizer", "n", "serial_us", "parallel_us", "speedup"],
         ["optimizer", "N", "serial us", "prange us", "prange speedup"])


def _cmd_mlp(args):
    from .mlp import bench_mlp

    def measure(progress):
        rows, notes = bench_mlp(batch_sizes=args.batch_sizes, dtype=args.dtype,
                                rounds=args.rounds, torch_peer=not args.no_torch,
                                progress=progress, seed=args.seed)
        return [dict(r, us=r["seconds"] * 1e6) for r in rows], notes

    _run(args, "mlp", measure, ["batch", "impl", "us", "samples_per_s", "gflops", "ratio"],
         ["batch", "implementation", "median us/step", "samples/s", "GFLOP/s",
          "time / fastopt"],
         title=f"network {_network()}, {args.dtype}, SGD, one training step (forward, "
               "backward, update)")


def _cmd_coldstart(args):
    from . import coldstart

    if args.warm_runs < 1 or args.batch < 1:
        raise ValueError("--batch and --warm-runs must be positive integers")
    found = {}

    def measure(progress):
        rows, specs = coldstart.bench_coldstart(scenarios=args.scenarios, batch=args.batch,
                                                warm_runs=args.warm_runs, progress=progress)
        found["specs"] = specs
        return rows, []

    _run(args, "coldstart", measure,
         ["scenario", "cache", "import_s", "first_s", "next_s", "process_s", "helpers"],
         ["first call", "Numba cache", "import s", f"{coldstart.FIRST_OPTIMIZER} s",
          f"then {coldstart.NEXT_OPTIMIZER} s", "whole process s", "compile helpers"],
         title=f"network {_network()}, float32, batch {args.batch}; fit: one epoch of "
               f"{coldstart.FIT_ROWS} rows with a test set; each row is a new process "
               "(seconds: wall clock)", after=lambda out: _specialisations(args, found, out))


def _specialisations(args, found, out):
    """The coldstart command's second table and coldstart_specialisations.csv."""
    from .. import runs, tables
    from .coldstart import summary

    specs = found.get("specs") or []
    if not specs:
        return
    print("\nwhere the empty-cache runs compiled (CPU seconds of the compiling thread; "
          "total includes what a kernel compiled inside it, own does not):")
    print(tables.format_table(summary(specs, top=args.top),
                              ["scenario", "phase", "depth", "name", "total_s", "self_s"],
                              ["first call", "optimizer", "depth", "specialisation",
                               "total s", "own s"], cell=tables.short, first_left=True,
                              strip=False))
    path = out / "coldstart_specialisations.csv"
    tables.write_csv(specs, path)
    runs.wrote(path, "one row per compiled specialisation of the empty-cache runs")


def _cmd_backends(args):
    from .backends import bench_backends
    from .update import optimizer_names

    optimizer_names(args.optimizers, "--optimizers")  # before the output folder is made

    def measure(progress):
        return bench_backends(names=args.optimizers, sizes=args.sizes,
                              crossover_sizes=args.crossover_sizes, dtype=args.dtype,
                              rounds=args.rounds, seed=args.seed,
                              first_use_runs=not args.no_first_use, progress=progress)

    _run(args, "backends", measure,
         ["measure", "optimizer", "n", "path", "numba", "cython", "numba_gbps", "cython_gbps",
          "ratio"],
         ["measure", "optimizer", "N", "path", "Numba", "Cython", "Numba GB/s", "Cython GB/s",
          "Cython / Numba"],
         title=f"Numba vs Cython update kernels, {args.dtype}: kernel rows in us per call "
               "(median of blocks), first use in seconds, each in a new process")


def _cmd_gpu(args):
    from .gpu import COLUMNS, bench_gpu, require_gpu

    require_gpu()  # before the output folder is made

    def measure(progress):
        return bench_gpu(sizes=args.sizes, batch_sizes=args.batch_sizes, rounds=args.rounds,
                         torch_peers=not args.no_torch, progress=progress, seed=args.seed)

    _run(args, "gpu", measure, list(COLUMNS),
         ["what", "N or batch", "implementation", "median us/step", "GB/s", "of d2d copy",
          "samples/s", "time / fastopt"],
         title=f"Adam float32 (28 bytes/parameter) and the MLP {_network()} train_step (SGD, "
               "loss read every step)")


def _cmd_contention(args):
    from .. import runs
    from . import contention

    rows = contention.select_rows(args.rows)
    loads = runs.split_list("--loads", args.loads, choices=contention.LOADS)
    runs.check_positive("--seconds", args.seconds)

    def measure(progress):
        found, notes = contention.bench_contention(rows=rows, loads=loads,
                                                   seconds=args.seconds, progress=progress,
                                                   seed=args.seed)
        return [dict(r, quiet_us=r["quiet"] * 1e6, loaded_us=r["loaded"] * 1e6)
                for r in found], notes

    _run(args, "contention", measure,
         ["what", "optimizer", "n", "load", "quiet_us", "loaded_us", "ratio",
          "loadavg_quiet", "loadavg_loaded"],
         ["what", "optimizer", "batch or N", "load", "quiet us/step", "loaded us/step",
          "loaded / quiet", "load avg quiet", "load avg loaded"],
         title=f"network {_network()} float32 train_step and Adam opt.step: median of "
               f"blocks of steps ({contention.BLOCK_SECONDS} s each), quiet and beside "
               "each load")


def _cmd_asv_report(args):
    from .. import asvreport

    asvreport.run(args)


def add_parser(sub):
    """The ``bench`` command and its subcommands, on the ``fastopt`` command's subparsers."""
    from .. import runs

    bench = sub.add_parser("bench", help="quick throughput tables (no asv); asv-report: "
                                         "tables and figures from the asv suite's results")
    bsub = bench.add_subparsers(dest="what", required=True)
    _add_update(bsub, runs)
    _add_mlp(bsub, runs)
    _add_coldstart(bsub, runs)
    _add_crossover(bsub, runs)
    _add_backends(bsub, runs)
    _add_gpu(bsub, runs)
    _add_contention(bsub, runs)
    _add_asv_report(bsub)
    return bench


def _add_update(bsub, runs):
    upd = bsub.add_parser("update", help="optimizer step time: fastopt vs NumPy vs torch.optim")
    upd.add_argument("--optimizers", type=_csv_list, default=None,
                     help="comma-separated names (default: all)")
    upd.add_argument("--sizes", type=_sizes, default=list(definitions.UPDATE_SIZES),
                     help="comma-separated element counts (default 1e3,1e4,1e5,1e6,1e7)")
    upd.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    upd.add_argument("--rounds", type=int, default=7, help="timing rounds (median reported)")
    upd.add_argument("--no-torch", action="store_true", help="skip the torch.optim peers")
    upd.add_argument("--crossover-sizes", type=_sizes, default=None,
                     help="element counts of the serial/prange crossover sweep, Numba and "
                          "Cython (default 1e3..1e7, four a decade)")
    upd.add_argument("--no-crossover", action="store_true",
                     help="skip the serial/prange crossover sweep")
    upd.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    runs.add_common_arguments(upd, "bench-update")
    upd.set_defaults(func=_cmd_update)


def _add_mlp(bsub, runs):
    mlp = bsub.add_parser("mlp", help="MLP training step: fastopt vs PyTorch vs numpy GEMMs")
    mlp.add_argument("--batch-sizes", type=_sizes, default=list(definitions.MLP_BATCH_SIZES))
    mlp.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    mlp.add_argument("--rounds", type=int, default=7)
    mlp.add_argument("--no-torch", action="store_true")
    mlp.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    runs.add_common_arguments(mlp, "bench-mlp")
    mlp.set_defaults(func=_cmd_mlp)


def _add_coldstart(bsub, runs):
    from .coldstart import SCENARIOS

    cold = bsub.add_parser("coldstart", help="the first fit and train_step in a new process: "
                                             "empty vs warm Numba cache, and where the "
                                             "compile time goes")
    cold.add_argument("--batch", type=int, default=definitions.COLD_START_BATCH)
    cold.add_argument("--warm-runs", type=int, default=2,
                      help="processes after the empty-cache one, per scenario (default 2)")
    cold.add_argument("--scenarios", type=_scenarios, default=list(SCENARIOS),
                      help=f"comma-separated, of {','.join(SCENARIOS)} (default both)")
    cold.add_argument("--top", type=int, default=12,
                      help="specialisations listed per scenario and optimizer (default 12)")
    runs.add_common_arguments(cold, "bench-coldstart")
    cold.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    cold.set_defaults(func=_cmd_coldstart)


def _scenarios(text):
    from .coldstart import SCENARIOS

    names = _csv_list(text)
    bad = [n for n in names if n not in SCENARIOS]
    if bad or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--scenarios takes distinct names of {', '.join(SCENARIOS)}, got {text!r}")
    return names


def _add_crossover(bsub, runs):
    cross = bsub.add_parser("crossover",
                            help="serial vs prange kernel: measure the parallel threshold")
    cross.add_argument("--optimizers", type=_csv_list, default=None)
    cross.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    cross.add_argument("--rounds", type=int, default=9)
    cross.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    runs.add_common_arguments(cross, "bench-crossover")
    cross.set_defaults(func=_cmd_crossover)


def _add_backends(bsub, runs):
    from .backends import CROSSOVER_SIZES, TABLE_OPTIMIZERS, TABLE_SIZES

    back = bsub.add_parser(
        "backends", help="Numba vs Cython kernels: per-call time, GB/s, serial/prange "
                         "crossover, first-use build and cached load",
        description="The same update rules compiled by Numba and by Cython "
                    "(backend='cython'), timed interleaved on the same arrays: per-call time "
                    "and GB/s of the serial and prange loops, the crossover N from which "
                    "prange wins, and the first-use compile/build and cached load times in "
                    "new processes with an empty cache. Builds the Cython module first "
                    "(1-2 minutes on 2 cores when its cache is empty).")
    back.add_argument("--optimizers", type=_csv_list, default=list(TABLE_OPTIMIZERS),
                      help="comma-separated names (default sgd,adam)")
    back.add_argument("--sizes", type=_sizes, default=list(TABLE_SIZES),
                      help="element counts of the kernel rows (default 1e3,1e5,1e7)")
    back.add_argument("--crossover-sizes", type=_sizes, default=list(CROSSOVER_SIZES),
                      help="element counts of the crossover sweep (default 1e3..1e7, four "
                           "a decade)")
    back.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    back.add_argument("--rounds", type=int, default=9, help="timing rounds (median reported)")
    back.add_argument("--no-first-use", action="store_true",
                      help="skip the first-use runs (a Cython build into an empty folder: "
                           "1-2 minutes)")
    back.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    runs.add_common_arguments(back, "bench-backends")
    back.set_defaults(func=_cmd_backends)


def _add_gpu(bsub, runs):
    gpu = bsub.add_parser("gpu", help="on a CUDA GPU: Adam step vs device copy and torch "
                                       "fused, MLP train_step vs PyTorch")
    gpu.add_argument("--sizes", type=_sizes, default=list(definitions.GPU_SIZES),
                     help="Adam parameter counts (default 1e6,1e7,1e8)")
    gpu.add_argument("--batch-sizes", type=_sizes, default=list(definitions.GPU_BATCH_SIZES))
    gpu.add_argument("--rounds", type=int, default=7)
    gpu.add_argument("--no-torch", action="store_true")
    gpu.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    runs.add_common_arguments(gpu, "bench-gpu")
    gpu.set_defaults(func=_cmd_gpu)


def _add_contention(bsub, runs):
    from .contention import LOADS, ROW_NAMES

    con = bsub.add_parser(
        "contention", help="train_step and opt.step quiet and beside loads this command "
                           "starts (busy loops; a multi-threaded BLAS program)",
        description="Time the seeds' network's train_step (SGD, Adam; batch 32, 128, 512) "
                    "and Adam opt.step (N 1e5, 1e6) quiet and then beside each load, which "
                    "the command starts itself and always stops: 'busy' (a busy-looping "
                    "process per core) and 'blas' (one process multiplying matrices on a "
                    "multi-threaded BLAS). Throughput: the median of blocks of steps. "
                    "FASTOPT_THREADS sets the thread policy measured (fastopt.threads).")
    con.add_argument("--rows", default=",".join(ROW_NAMES),
                     help=f"comma-separated rows (default all: {','.join(ROW_NAMES)})")
    con.add_argument("--loads", default=",".join(LOADS),
                     help=f"comma-separated loads (default {','.join(LOADS)})")
    con.add_argument("--seconds", type=float, default=2.0,
                     help="seconds of timed blocks per measurement (default 2)")
    con.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    runs.add_common_arguments(con, "bench-contention")
    con.set_defaults(func=_cmd_contention)


def _add_asv_report(bsub):
    report = bsub.add_parser(
        "asv-report", help="tables (CSV) and figures (PNG) from the asv suite's results",
        description="Read the latest results of the asv suite (asv run) and print tables: "
                    "update-kernel time per step, GB/s and ratios to the peers, MLP time "
                    "and samples/s, convergence, cold start and memory; write them as CSV "
                    "and plot time per step versus N and versus batch size as PNG.")
    report.add_argument("--results", metavar="DIR", default=".asv/results",
                        help="asv's results folder (default .asv/results)")
    report.add_argument("--machine", default=None,
                        help="machine name (a folder under --results; default: the one "
                             "with the most recent results)")
    report.add_argument("--commit", default=None,
                        help="commit hash or prefix (default: the latest commit with "
                             "results)")
    report.add_argument("--out", metavar="DIR", default=None,
                        help="folder for the CSV and PNG files (default: a new folder "
                             "runs/bench-asv-report-YYYYMMDD-HHMMSS)")
    report.add_argument("--svg", action="store_true",
                        help="also write each figure as SVG next to the PNG")
    report.set_defaults(func=_cmd_asv_report)
