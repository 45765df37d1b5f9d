"""Gradient clipping with ``torch.nn.utils`` semantics, on NumPy arrays, in place.

``clip_grad_norm`` reads the gradients once for the norm and, only if it clips, once more
to scale them. To clip without touching the gradients at all, give the optimizer
``max_grad_norm=``: the coefficient is then fused into the update kernel.
"""

import math

import numpy as np

from . import _checks
from .kernels import cpu


def global_norm(flat_grads, kernels=cpu):
    """(2-norm over all elements of all arrays, every element finite) in one read.

    The norm is NaN if an element is NaN, inf if an element is inf (or the float64 sum of
    squares overflows). ``kernels``: the module whose ``grad_stats`` reads them
    (``fastopt.kernels.cpu``, or ``fastopt.kernels.cython`` for backend="cython").
    """
    total = 0.0
    finite = True
    for g in flat_grads:
        sumsq, ok = kernels.grad_stats(g)
        total += sumsq
        finite = finite and ok
    if finite:
        return math.sqrt(total), True
    if any(np.isnan(g).any() for g in flat_grads):
        return math.nan, False
    return math.inf, False


def clip_coefficient(total_norm, max_norm):
    """torch's clip coefficient: min(max_norm / (total + 1e-6), 1) (NaN stays NaN)."""
    coef = max_norm / (total_norm + 1e-6)
    return coef if (coef < 1.0 or math.isnan(coef)) else 1.0


def clip_grad_norm(grads, max_norm, error_if_nonfinite=False):
    """Scale ``grads`` in place so that their global 2-norm is at most ``max_norm``.

    Like ``torch.nn.utils.clip_grad_norm_`` (norm_type=2): total = sqrt(sum of squares over
    every element of every array); each array is multiplied by
    min(max_norm / (total + 1e-6), 1). Returns ``total`` (the norm before clipping).

    Parameters
    ----------
    grads : array or list of arrays (C-contiguous, writeable, float32/float64)
    max_norm : float > 0
    error_if_nonfinite : bool
        Raise instead of scaling when the norm is NaN or inf (the gradients are then left
        unchanged).
    """
    max_norm = _checks.real("max_norm", max_norm, low=0.0, low_open=True)
    flat = [g.reshape(-1) for g in _checks.float_arrays("grads", grads, writeable=True)]
    total, finite = global_norm(flat)
    if error_if_nonfinite and not finite:
        raise FloatingPointError(f"the total norm of the gradients is {total}; set "
                                 "error_if_nonfinite=False to clip anyway")
    coef = clip_coefficient(total, max_norm)
    if coef != 1.0:
        for g in flat:
            cpu.scale(g, g.dtype.type(coef))
    return total


def clip_grad_value(grads, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value] in place (NaN stays NaN).

    Like ``torch.nn.utils.clip_grad_value_``.
    """
    clip_value = _checks.real("clip_value", clip_value, low=0.0)
    flat = [g.reshape(-1) for g in _checks.float_arrays("grads", grads, writeable=True)]
    for g in flat:
        cpu.clamp(g, g.dtype.type(clip_value))
