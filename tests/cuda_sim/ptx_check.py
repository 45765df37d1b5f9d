"""Compile every GPU update kernel to PTX (run by tests/test_cuda.py with the simulator off).

Every rule x dtype x state pattern that an optimizer option can produce (taken from the
kernel tests' cases), for compute capability 8.0 and 9.0. Prints one line per kernel and
fails if a float32 kernel contains float64 instructions.
"""

import re
import sys

import numpy as np

from fastopt import optim
from fastopt.kernels import cuda as gpu
from tests.test_kernels import CASES


def patterns():
    found = set()
    for name, conv, kw in CASES:
        for dtype in ("float32", "float64"):
            opt = optim.OPTIMIZERS[name](np.zeros(3, dtype), convention=conv, **kw)
            state = tuple(s is not None for s in opt._flat_state[0])
            found.add((opt.rule.name, dtype, state))
    return sorted(found)


def main():
    bad = []
    combos = patterns()
    for rule, dtype, state in combos:
        for cc in ((8, 0), (9, 0)):
            code = gpu.ptx(rule, dtype, state, cc=cc)
            f64 = len(re.findall(r"\.f64\b", code))
            print(f"{rule} {dtype} state={state} sm_{cc[0]}{cc[1]}: {len(code)} chars, "
                  f"{f64} .f64")
            if dtype == "float32" and f64:
                bad.append((rule, state, cc))
            assert f".target sm_{cc[0]}{cc[1]}" in code
    print(f"{len(combos)} kernels x 2 compute capabilities")
    if bad:
        print(f"float64 instructions in float32 kernels: {bad}")
        sys.exit(1)


if __name__ == "__main__":
    main()
