"""The CUDA target without a GPU: simulator parity, PTX compilation, the no-GPU error.

The simulator and the PTX compiler need different process settings (NUMBA_ENABLE_CUDASIM
must be set before numba is imported, and PTX compilation needs it off), so both run in
subprocesses of this test run.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fastopt import nn
from fastopt.kernels import cuda as gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_numba_cuda = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import numba_cuda"],
                   capture_output=True).returncode != 0,
    reason="numba-cuda is not installed (pip install \"fastopt[cuda]\")")


def _run(args, simulator):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)


@needs_numba_cuda
def test_gpu_kernels_match_cpu_kernels_in_the_simulator():
    res = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cuda_sim"],
               simulator=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    passed = re.search(r"(\d+) passed", res.stdout)
    # only GPU-only tests (real __cuda_array_interface__ objects) may skip here
    assert passed and int(passed.group(1)) >= 85, res.stdout[-2000:]
    skipped = re.search(r"(\d+) skipped", res.stdout)
    assert not skipped or int(skipped.group(1)) <= 1, res.stdout[-2000:]


@needs_numba_cuda
def test_every_gpu_kernel_compiles_to_ptx_and_float32_has_no_float64():
    res = _run(["-m", "tests.cuda_sim.ptx_check"], simulator=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "kernels x 2 compute capabilities" in res.stdout


@pytest.mark.skipif(gpu.why_unavailable() is None, reason="a GPU (or the simulator) is here")
def test_no_gpu_error_says_what_is_missing():
    with pytest.raises(gpu.CudaUnavailableError, match="target=\"cpu\""):
        gpu.require()
    with pytest.raises(gpu.CudaUnavailableError, match="not available here"):
        nn.MLP([4, 3], target="cuda")


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        nn.MLP([4, 3], target="tpu")


def test_launch_config_covers_every_element():
    for n in (1, 255, 256, 257, 10**6, 10**9):
        blocks, tpb = gpu.launch_config(n)
        assert 1 <= blocks <= gpu.MAX_BLOCKS and tpb == gpu.THREADS_PER_BLOCK
        assert blocks * tpb >= min(n, gpu.MAX_BLOCKS * tpb)  # grid-stride covers the rest
    assert np.dtype(np.float32).itemsize == 4
