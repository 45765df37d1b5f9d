"""``fastopt sweep``: the command-line front end of ``fastopt.sweep.run``.

This module is the command: its options and help, how they combine with the ``--textbook``
preset into the keyword arguments of ``run``, and what it prints and writes at the end (the
tables and figures are ``fastopt.sweep.report``). ``fastopt.cli`` registers it with
``add_parser``.

Results (in the run folder)
    trials.csv         one line per finished trial, appended as it finishes (columns:
                       fastopt.sweep.TRIAL_COLUMNS)
    histories/<id>.csv fastopt.train.History of each trial (its test_* columns hold the
                       validation split)
    errors.csv         trials that raised (only if any); the next run retries them
    best.csv           the best --top trials, best first (rank + the trials.csv columns)
    sweep_lr.png       final validation accuracy versus learning rate (and versus weight
                       decay, and batch size, where they vary), one colour per optimizer,
                       the best --top circled
    best_curves.png    validation accuracy during training of the best --top trials, one
                       panel each (the textbook's figure)
    settings.json      see ``fastopt.runs``; ``resolved.sweep`` identifies the sweep
"""

import argparse
import textwrap

from .. import _checks, runs
from ..experiments import training
from . import engine
from .cluster import DEFAULT_CONNECT_TIMEOUT, MissingDaskError, SchedulerError
from .presets import TEXTBOOK, TEXTBOOK_TOP
from .report import best_rows, best_table, plot_best_curves, plot_scatter
from .space import parse_space
from .trial import DEFAULT_STEPS
from .triallog import ERRORS_FILE, HISTORIES, TRIAL_COLUMNS, TRIALS_FILE

DEFAULT_SPACE = "optimizer=choice(sgd,momentum,adam) lr=loguniform(1e-4,1)"
DEFAULT_TOP = 10

_OPTIMIZER_NAMES = textwrap.fill(
    "optimizer values are the names of fastopt compare (" + ", ".join(training.OPTIMIZERS)
    + "), with NAME:key=value arguments if needed; schedule values are fastopt.schedules "
    "specs (none = constant lr), started from each trial's lr. Quote a value that holds a "
    'comma: schedule=choice(none,"cosine:decay_steps=400,alpha=0.01"). Left out: optimizer '
    "sgd, its own default lr, weight decay and momentum, batch 128, no schedule, seed --seed.",
    90, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
EPILOG = f"""\
space (--space, whitespace-separated NAME=VALUE terms; quote the whole spec for the shell):
  names     optimizer, lr, weight_decay (wd), momentum, batch_size (batch), schedule, seed
  values    loguniform(a,b)  10**U(log10 a, log10 b), 0 < a < b   (lr, wd, momentum)
            uniform(a,b)     U(a, b)                               (lr, wd, momentum)
            int(a,b)         a whole number a..b                   (batch, seed)
            intloguniform(a,b)  a..b, log-spaced                   (batch)
            choice(x,y,...)  one of them, each equally likely
            grid(x,y,...)    every one of them (with several grid terms: every combination)
            x                a fixed value
{_OPTIMIZER_NAMES}
  default: {DEFAULT_SPACE}

trials: --trials random draws (default 20); with grid terms (or --grid, which makes every
  choice a grid) every combination, --trials times each (default 1). Trial i's draws come
  from numpy.random.default_rng([--seed, i]): the same command gives the same trials.

--textbook: the textbook's experiment (Saito, Deep Learning from Scratch, ch. 6): 100 trials
  of SGD with lr = 10**U(-6,-2) and weight decay = 10**U(-8,-4), the first 500 MNIST
  training images (shuffled; 100 held out for validation), ReLU MLP 784-100x6-10 with He
  weights, 50 epochs of batch 100 drawn with replacement, the best 20 shown. Options given
  as well replace the preset's (e.g. --textbook --trials 20). fastopt's weight decay adds
  wd*p to the gradient of every parameter, biases included; the book penalises weights only.

where: a local Dask cluster of --workers processes (default: one per core), or a running
  cluster with --scheduler tcp://HOST:PORT (start one with `dask scheduler` and `dask worker
  tcp://HOST:8786 --nthreads 1` on each machine; each needs fastopt installed and, for
  MNIST, fastopt[mnist]); --workers 0 runs the trials in this process without Dask.

resume: every finished trial is appended to trials.csv at once; run the same command with
  the same --out to skip the trials already there (a larger --trials extends the sweep).
  A worker that dies mid-trial is replaced and the trial runs again elsewhere; it is
  recorded once. Ctrl-C keeps every finished trial. One sweep at a time per --out: a
  second one is refused while the first runs (the lock file .sweep.lock, which the system
  releases when that process ends, even when it is killed: then the same command resumes).

outputs: trials.csv, histories/<trial>.csv, best.csv, sweep_lr.png, best_curves.png,
  settings.json (errors.csv if a trial raised)"""


# ---------------------------------------------------------------------------------------
# the command line


def add_parser(sub):
    # longer than a screen on purpose: the command's options read best as one flat list
    p = sub.add_parser(
        "sweep", help="hyperparameter search (random or grid) over many training runs, on "
                      "Dask distributed; resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the MLP many times with hyperparameters drawn from a search "
                    "space (optimizer, learning rate, weight decay, momentum, batch size, "
                    "schedule, seed), each for a budget of steps, seconds or epochs, on a "
                    "local or remote Dask cluster; score each on a validation split; write "
                    "every trial as it finishes, the best ones and plots.",
        epilog=EPILOG)
    p.add_argument("--textbook", action="store_true",
                   help="the textbook's 100-trial experiment (see below)")
    p.add_argument("--space", default=None, metavar="SPEC",
                   help=f"the search space, see below (default {DEFAULT_SPACE!r})")
    p.add_argument("--grid", action="store_true",
                   help="every choice(...) of the space becomes grid(...): all combinations")
    p.add_argument("--trials", type=int, default=None,
                   help="random trials (default 20), or passes over a grid (default 1)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-steps", type=int, default=None, metavar="N",
                        help=f"updates per trial (default {DEFAULT_STEPS})")
    budget.add_argument("--budget-seconds", type=float, default=None, metavar="S",
                        help="training seconds per trial (evaluation and compilation not "
                             "counted)")
    budget.add_argument("--epochs", type=int, default=None,
                        help="passes over the training split per trial")
    p.add_argument("--dataset", default=None,
                   help="digits (default; 8x8 images, scikit-learn) or mnist (needs pip "
                        "install \"fastopt[mnist]\")")
    p.add_argument("--train-samples", type=int, default=None, metavar="N",
                   help="use the first N training samples (default all)")
    p.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="part of the training samples held out for validation, after a "
                        "seeded shuffle (default 0.2)")
    p.add_argument("--hidden", default=None,
                   help=f"hidden layer widths (default {training.DEFAULT_HIDDEN})")
    p.add_argument("--evals", type=int, default=None,
                   help="validation evaluations per trial (default 10; with "
                        "--budget-seconds once per epoch)")
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help=f"trials in best.csv, the table and best_curves.png (default "
                        f"{DEFAULT_TOP}; 20 with --textbook)")
    where = p.add_argument_group("where the trials run")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes of the local Dask cluster (default: one per "
                            "core); 0: in this process, without Dask")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="a running Dask scheduler, tcp://HOST:PORT, instead of a local "
                            "cluster")
    where.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                       help="seconds to wait for --scheduler (default 5)")
    runs.add_common_arguments(p, "sweep", seed_help="seeds the trial draws, the validation "
                                                    "split and (unless the space sets seed) "
                                                    "every trial's weights and batches "
                                                    "(default 0)")
    p.set_defaults(func=run)
    return p


def resolve(args):
    """The keyword arguments of ``fastopt.sweep.run`` and the top K, from the options: the
    preset's values (with --textbook), replaced by the options given."""
    runs.check_common_arguments(args)
    kwargs = dict(TEXTBOOK) if args.textbook else {}
    top = TEXTBOOK_TOP if args.textbook else DEFAULT_TOP
    kwargs.setdefault("space", DEFAULT_SPACE)
    kwargs.setdefault("dataset", "digits")
    _merge_given(args, kwargs)
    _check_options(args)
    space = parse_space(kwargs["space"], flag="--space", grid=args.grid)
    kwargs["space"] = space
    kwargs.update(seed=args.seed, grid=False, workers=args.workers, scheduler=args.scheduler,
                  connect_timeout=args.connect_timeout or DEFAULT_CONNECT_TIMEOUT)
    return kwargs, args.top or top


def _merge_given(args, kwargs):
    """Replace the values in ``kwargs`` by the options given; a budget option replaces the
    preset's budget, whichever kind it is."""
    given = {
        "space": args.space, "trials": args.trials, "dataset": args.dataset,
        "train_samples": args.train_samples, "val_fraction": args.val_fraction,
        "evals": args.evals,
    }
    if args.hidden is not None:
        given["hidden"] = tuple(training.parse_sizes("--hidden", args.hidden, "layer widths"))
    else:
        kwargs.setdefault("hidden", tuple(training.parse_sizes(
            "--hidden", training.DEFAULT_HIDDEN, "layer widths")))
    budgets = {"budget_steps": args.budget_steps, "budget_seconds": args.budget_seconds,
               "epochs": args.epochs}
    if any(v is not None for v in budgets.values()):
        for key in budgets:
            kwargs.pop(key, None)
        given.update(budgets)
    kwargs.update({k: v for k, v in given.items() if v is not None})


def _check_options(args):
    """The options' own values and combinations; ValueError naming the option."""
    for option, value, low in (("--trials", args.trials, 1), ("--budget-steps",
                               args.budget_steps, 1), ("--epochs", args.epochs, 1),
                               ("--train-samples", args.train_samples, 2),
                               ("--evals", args.evals, 1), ("--top", args.top, 1),
                               ("--workers", args.workers, 0)):
        if value is not None:
            runs.check_count(option, value, low=low)
    for option, value in (("--budget-seconds", args.budget_seconds),
                          ("--connect-timeout", args.connect_timeout)):
        if value is not None:
            runs.check_positive(option, value)
    if args.val_fraction is not None:
        _checks.fraction("--val-fraction", args.val_fraction, example=0.2)
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers sets the size of a local cluster; with --scheduler the "
                         "cluster's own workers run the trials (leave out --workers)")
    if args.connect_timeout is not None and args.scheduler is None:
        raise ValueError("--connect-timeout applies to --scheduler only")
    if args.dataset is not None and args.dataset not in _datasets():
        raise ValueError(f"--dataset: unknown data set {args.dataset!r}; valid: "
                         + ", ".join(_datasets()))


def _datasets():
    from .. import datasets

    return datasets.DATASETS


def budget_text(kwargs):
    if kwargs.get("epochs") is not None:
        return f"{kwargs['epochs']} epoch{'s' * (kwargs['epochs'] > 1)}"
    if kwargs.get("budget_seconds") is not None:
        return f"{kwargs['budget_seconds']:g} s of training"
    return f"{kwargs.get('budget_steps') or DEFAULT_STEPS} steps"


# ---------------------------------------------------------------------------------------
# the command


def run(args):
    """The ``sweep`` command; returns the exit code (0, or 1 if trials failed)."""
    kwargs, top = resolve(args)
    # the folder is created by engine.run once everything is checked and it holds the lock
    out = runs.check_out(args.out) or runs.new_out_path("sweep")
    args._out_dir = str(out)  # for the Ctrl-C message
    _announce(args, kwargs)
    resolved = {"top": top, "textbook": bool(args.textbook)}
    try:
        result = engine.run(**kwargs, out=out,
                            progress=runs.progress_mode(args.no_progress),
                            log=lambda text: print(text, flush=True),
                            record=dict(arguments=vars(args),
                                        argv=getattr(args, "_argv", None), resolved=resolved))
    except (SchedulerError, MissingDaskError) as exc:
        raise ValueError(str(exc)) from None
    except ImportError as exc:  # a data set's missing extra
        raise ValueError(f"--dataset {kwargs['dataset']}: {exc}") from None
    try:
        return _report(args, kwargs, result, out, top)
    except Exception as exc:
        runs.update_settings(out, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise


def _report(args, kwargs, result, out, top):
    """The files and tables after the trials; returns the exit code."""
    runs.wrote(out / TRIALS_FILE, f"{len(result.trials)} trials, one line each "
                                  f"({result.ran} run now, {result.skipped} earlier)")
    runs.wrote(out / HISTORIES, "the training history of each trial")
    if result.errors:
        runs.wrote(out / ERRORS_FILE, f"{len(result.errors)} trial(s) that failed")
    if not result.trials:
        runs.update_settings(out, status="incomplete")
        print("no trial finished")
        return 1
    k = min(top, len(result.trials))
    _write_best(args, kwargs, result, out, k)
    complete = result.complete and not result.errors
    runs.update_settings(out, status="complete" if complete else "incomplete",
                         seconds=round(result.seconds, 2), workers=result.workers)
    _print_summary(result, kwargs["space"], k)
    if result.errors:
        print(f"{len(result.errors)} trial(s) failed (errors.csv); run the same command "
              "again to retry them")
        return 1
    return 0


def _announce(args, kwargs):
    """The first lines: the space, what each trial does and where the trials run."""
    where = ("in this process" if args.workers == 0 else
             f"on the Dask scheduler {args.scheduler}" if args.scheduler else
             f"on a local Dask cluster of {args.workers or 'one worker per core'}"
             + (" workers" if args.workers else ""))
    print(f"sweep: {kwargs['space'].text()}\n  each trial: ReLU MLP with hidden layers "
          f"{'-'.join(map(str, kwargs['hidden']))} on {kwargs['dataset']}"
          + (f" (first {kwargs['train_samples']} training samples)"
             if kwargs.get("train_samples") else "")
          + f", {budget_text(kwargs)}; scored on {100 * kwargs.get('val_fraction', 0.2):g}% of "
          f"the training samples held out for validation; {where}", flush=True)


def _write_best(args, kwargs, result, out, k):
    """best.csv, sweep_lr.png and best_curves.png, each announced."""
    space = kwargs["space"]
    training.write_rows(best_rows(result, k), ["rank", *TRIAL_COLUMNS], out / "best.csv")
    runs.wrote(out / "best.csv", f"the best {k} trials by final validation accuracy")

    runs.use_agg()
    title = (f"{kwargs['dataset']}, MLP {'-'.join(map(str, kwargs['hidden']))}, "
             f"{budget_text(kwargs)} per trial")
    fig = plot_scatter(result, space, k, title=f"{len(result.trials)} trials: {title}")
    for path in runs.save_figure(fig, out, "sweep_lr", svg=args.svg):
        runs.wrote(path, "validation accuracy versus learning rate"
                   + (" and weight decay" if space.varies("weight_decay") else ""))
    x_column = "epoch" if kwargs.get("epochs") is not None else "step"
    fig = plot_best_curves(result, k, x_column, title=f"best {k} of {len(result.trials)} "
                                                      f"trials: {title}")
    for path in runs.save_figure(fig, out, "best_curves", svg=args.svg):
        runs.wrote(path, f"validation accuracy during training, best {k}")


def _print_summary(result, space, k):
    """The table of the best k trials, and this run's count, time and throughput."""
    print()
    print(best_table(result, space, k))
    diverged = sum(r["status"] == "diverged" for r in result.trials)
    print(f"\n{len(result.trials)} trials ({diverged} diverged); this run: {result.ran} "
          f"trials in {result.seconds:.1f} s on {result.workers} worker(s)"
          + (f" = {60 * result.ran / result.seconds:.1f} trials/min" if result.ran
             and result.seconds > 0 else ""))
