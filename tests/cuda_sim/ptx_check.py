"""Compile every GPU kernel to PTX (run by tests/test_cuda.py with the simulator off).

Every update rule x dtype x state pattern that an optimizer option can produce (taken from
the kernel tests' cases), plain and gated on the MLP's status word, and every MLP kernel
(fastopt.nn.cuda: GEMM epilogues per activation, bias gradients, losses, reduction, input
checks, gathers) per dtype, for compute capability 8.0 and 9.0. Prints one line per kernel
and fails if a float32 kernel contains float64 instructions.
"""

import re
import sys

import numpy as np

from fastopt import optim
from fastopt.kernels import cuda as gpu
from fastopt.nn import cuda as gpu_nn
from tests.test_kernels import CASES


def patterns():
    found = set()
    for name, conv, kw in CASES:
        for dtype in ("float32", "float64"):
            opt = optim.OPTIMIZERS[name](np.zeros(3, dtype), convention=conv, **kw)
            state = tuple(s is not None for s in opt.plan_steps(0).slots[0])
            found.add((opt.rule.name, dtype, state))
    return sorted(found)


def mlp_kernels():
    from numba import cuda

    for dtype in ("float32", "float64"):
        for name, fn, sig in gpu_nn.kernel_signatures(dtype):
            yield f"mlp {name}", dtype, lambda cc, fn=fn, sig=sig: cuda.compile_ptx(
                fn, sig, cc=cc)[0]


def main():
    bad = []
    kernels = []
    for rule, dtype, state in patterns():
        for gated in (False, True):
            kernels.append((f"{rule} state={state}{' gated' if gated else ''}", dtype,
                            lambda cc, r=rule, d=dtype, s=state, g=gated: gpu.ptx(
                                r, d, s, cc=cc, gated=g)))
    kernels.extend(mlp_kernels())
    # the gradient norm sums squares in float64 by design (exempt from the float32 check)
    kernels.extend((f"norm reduction of {d} gradients (float64 sums)", "float64",
                    lambda cc, d=d: gpu.sumsq_ptx(d, cc)) for d in ("float32", "float64"))
    for label, dtype, compile_ in kernels:
        for cc in ((8, 0), (9, 0)):
            code = compile_(cc)
            f64 = len(re.findall(r"\.f64\b", code))
            print(f"{label} {dtype} sm_{cc[0]}{cc[1]}: {len(code)} chars, {f64} .f64")
            if dtype == "float32" and f64:
                bad.append((label, cc))
            assert f".target sm_{cc[0]}{cc[1]}" in code
    print(f"{len(kernels)} kernels x 2 compute capabilities")
    if bad:
        print(f"float64 instructions in float32 kernels: {bad}")
        sys.exit(1)


if __name__ == "__main__":
    main()
