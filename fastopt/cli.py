"""The ``fastopt`` command (also ``python -m fastopt``)."""

import argparse
import sys


def build_parser():
    from .bench import command as bench

    parser = argparse.ArgumentParser(
        prog="fastopt", description="Fused Numba optimizer kernels: benchmarks and experiments.")
    sub = parser.add_subparsers(dest="command", required=True)
    bench.add_parser(sub)  # the quick tables and asv-report (fastopt.bench.command)

    # experiments and the sweep (each module defines its options and its run function)
    from .experiments import compare, paths, sensitivity, weight_init
    from .sweep import command as sweep

    compare.add_parser(sub)
    paths.add_parser(sub)
    weight_init.add_parser(sub)
    sensitivity.add_parser(sub)
    sweep.add_parser(sub)
    from .experiments import regularize  # issue 15: the textbook's overfitting experiments
    regularize.add_parser(sub)
    from .experiments import landscape  # fastopt landscape: GD vs SGD on local minima
    landscape.add_parser(sub)
    from .experiments import batchnorm  # fastopt batchnorm: the textbook's batch-norm figure
    batchnorm.add_parser(sub)
    from .experiments import gradients  # fastopt gradients: gradient flow, skip connections
    gradients.add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "rounds", 1) < 1:
        parser.error("--rounds must be >= 1")
    args._argv = list(sys.argv[1:] if argv is None else argv)  # for settings.json
    try:
        code = args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"fastopt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from . import runs

        print(f"fastopt: {runs.interrupted(getattr(args, '_out_dir', None))}", file=sys.stderr)
        return 130
    return code if type(code) is int else 0  # a command may return its exit status


if __name__ == "__main__":
    sys.exit(main())
