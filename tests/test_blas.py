"""The matrix products inside the kernels (numpy's BLAS via cblas, or np.dot)."""

import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from fastopt.kernels import blas


@njit
def _gemm(c, a, b, ta, tb):
    blas.gemm(c, a, b, ta, tb)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [1, 3, 64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_gemm_matches_numpy(dtype, m, ta, tb, rng):
    k, n = 7, 5
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype=dtype)  # overwritten, never read
    _gemm(c, a, b, ta, tb)
    expect = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(c, expect, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-5 if dtype == "float32" else 1e-12)


def test_numpy_blas_is_found_on_pip_numpy():
    # pip wheels of numpy bundle OpenBLAS with cblas symbols; other builds fall back
    assert blas.CHOICE.startswith("numpy:") or not blas.HAVE_CBLAS


def test_fallback_to_np_dot_gives_the_same_training_step(tmp_path):
    code = (
        "import numpy as np\n"
        "from fastopt import nn, optim\n"
        "from fastopt.kernels import blas\n"
        "m = nn.MLP([6, 5, 3], dtype='float64', seed=0)\n"
        "o = optim.Adam(m.params, lr=1e-2)\n"
        "r = np.random.default_rng(0)\n"
        "X = r.random((4, 6)); y = np.array([0, 1, 2, 1])\n"
        "for _ in range(3): m.train_step(X, y, o)\n"
        "print(blas.CHOICE); print(repr(m.params.tolist()))\n")
    out = {}
    for choice in ("numpy", "numba"):
        env = {"FASTOPT_BLAS": choice, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
               "PATH": "/usr/bin:/bin"}
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        name, params = res.stdout.splitlines()
        out[choice] = (name, np.array(eval(params)))
    assert out["numba"][0] == "numba:np.dot"
    np.testing.assert_allclose(out["numpy"][1], out["numba"][1], rtol=1e-12, atol=1e-14)
