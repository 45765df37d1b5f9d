"""Gradient clipping against torch.nn.utils."""

import math

import numpy as np
import pytest

import fastopt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clip_grad_norm_matches_torch(dtype, max_norm, rng, kernel_path):
    torch = pytest.importorskip("torch")
    grads = [rng.standard_normal(n).astype(dtype) for n in (1, 17, 1000)]
    tg = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype))
          for g in grads]
    for t, g in zip(tg, grads):
        t.grad = torch.from_numpy(g.copy())
    expected = torch.nn.utils.clip_grad_norm_(tg, max_norm, foreach=False).item()
    total = fastopt.clip_grad_norm(grads, max_norm)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert total == pytest.approx(expected, rel=rtol)
    for t, g in zip(tg, grads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol * 10, atol=0)


def test_clip_grad_norm_nonfinite(rng):
    g = [np.array([1.0, np.inf]), np.ones(3)]
    with pytest.raises(FloatingPointError, match="error_if_nonfinite"):
        fastopt.clip_grad_norm(g, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(g[1], 1.0)  # untouched
    assert fastopt.clip_grad_norm([np.array([np.nan, 1.0])], 1.0) != fastopt.clip_grad_norm(
        [np.array([np.nan, 1.0])], 1.0)  # NaN norm
    assert math.isinf(fastopt.clip_grad_norm([np.array([np.inf, 1.0])], 1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_torch(dtype, rng, kernel_path):
    torch = pytest.importorskip("torch")
    g = (rng.standard_normal(101) * 3).astype(dtype)
    g[5] = np.nan
    t = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_value_([_with_grad(torch, t)], 0.7)
    fastopt.clip_grad_value(g, 0.7)
    np.testing.assert_array_equal(g, t.numpy())


def _with_grad(torch, grad):
    p = torch.nn.Parameter(torch.zeros_like(grad))
    p.grad = grad
    return p


@pytest.mark.parametrize("call,match", [
    (lambda: fastopt.clip_grad_norm([np.ones(2)], -1.0), "max_norm"),
    (lambda: fastopt.clip_grad_norm([np.ones(2, dtype=int)], 1.0), "float32 or float64"),
    (lambda: fastopt.clip_grad_value([np.ones(2)], float("nan")), "clip_value"),
    (lambda: fastopt.clip_grad_norm(3.0, 1.0), "array"),
])
def test_clip_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
