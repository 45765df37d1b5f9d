"""Element-wise update rules: the one place each optimizer's formula is written.

Every rule is a plain scalar function

    rule(p, g, s0, s1, s2, h, f) -> (p, s0, s1, s2)

    p, g        one parameter element and its gradient
    s0, s1, s2  optimizer-state elements, in the order of ``UpdateRule.state``; a slot that
                the configuration does not use receives a dummy and is returned unchanged
    h           tuple of floating hyperparameters, already cast to the parameter dtype,
                in the order of ``UpdateRule.hyper``
    f           tuple of integer flags (0 or 1), in the order of ``UpdateRule.flags``

The CPU target compiles each rule with ``njit(inline="always")`` inside a ``prange`` loop
(``fastopt.kernels.cpu``); the GPU target wraps the same functions as device functions.

Rules contain no numeric literals: a Python float literal would promote float32 arithmetic
to float64. Everything that is the same for every element (bias corrections, ``1 - beta``,
this step's learning rate, the gradient scale) is computed on the host once per step and
arrives in ``h`` (see ``fastopt.optim``). ``gscale`` folds ``maximize`` (-1) and a fused
gradient-norm clip coefficient into one multiply; multiplying by 1 or -1 is exact.

Operation order follows ``torch.optim`` 2.13 (``_single_tensor_*``) for the torch rules
and Keras 3 (``update_step``) for the ``*_keras`` rules, so that float64 results agree to
rounding.
"""

import math
from typing import Callable, NamedTuple

from numba.extending import register_jitable


class UpdateRule(NamedTuple):
    """A scalar update rule and the names of its arguments."""

    name: str
    scalar: Callable
    hyper: tuple  # names of the floating hyperparameters in ``h``, in order
    flags: tuple  # names of the integer flags in ``f``, in order
    state: tuple  # names of the state slots (s0, s1, s2) the rule defines


# ---------------------------------------------------------------------------------------
# shared pieces


@register_jitable(inline="always")
def grad_prologue(p, g, gscale, wd, has_wd):
    """Scaled gradient (maximize, fused clip) plus coupled L2 weight decay."""
    g = g * gscale
    if has_wd:
        g = g + wd * p
    return g


@register_jitable(inline="always")
def lerp(a, b, w, w_complement, high):
    """torch's lerp(a, b, w): from the nearer end, a + w*(b-a) if w < 0.5 else b - (b-a)*(1-w)."""
    if high:
        return b - (b - a) * w_complement
    return a + w * (b - a)


@register_jitable(inline="always")
def maximum(a, b):
    """max(a, b) that propagates NaN from either side, like torch.maximum."""
    if a > b or a != a:
        return a
    return b


# ---------------------------------------------------------------------------------------
# torch.optim rules


def sgd(p, g, b, s1, s2, h, f):
    lr, gscale, wd, momentum, one_minus_dampening = h
    has_wd, has_momentum, nesterov, first_step = f
    g = grad_prologue(p, g, gscale, wd, has_wd)
    if has_momentum:
        if first_step:
            b = g
        else:
            b = b * momentum + one_minus_dampening * g
        if nesterov:
            g = g + momentum * b
        else:
            g = b
    p = p - lr * g
    return p, b, s1, s2


def adagrad(p, g, s, s1, s2, h, f):
    clr, gscale, wd, eps = h
    (has_wd,) = f
    g = grad_prologue(p, g, gscale, wd, has_wd)
    s = s + g * g
    p = p - clr * (g / (math.sqrt(s) + eps))
    return p, s, s1, s2


def rmsprop(p, g, v, gm, b, h, f):
    lr, gscale, wd, alpha, one_minus_alpha, eps, momentum = h
    has_wd, centered, has_momentum, lerp_high = f
    g = grad_prologue(p, g, gscale, wd, has_wd)
    v = v * alpha + one_minus_alpha * (g * g)
    if centered:
        gm = lerp(gm, g, one_minus_alpha, alpha, lerp_high)
        avg = math.sqrt(v - gm * gm) + eps
    else:
        avg = math.sqrt(v) + eps
    if has_momentum:
        b = b * momentum + g / avg
        p = p - lr * b
    else:
        p = p - lr * (g / avg)
    return p, v, gm, b


def adam(p, g, m, v, vmax, h, f):
    """Adam and AdamW (decoupled weight decay arrives as ``decay`` = 1 - lr*wd)."""
    step_size, gscale, wd, decay, one_minus_beta1, beta1, beta2, one_minus_beta2, bc2_sqrt, eps = h
    has_wd, amsgrad, lerp_high = f
    p = p * decay
    g = grad_prologue(p, g, gscale, wd, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    v = v * beta2 + one_minus_beta2 * (g * g)
    if amsgrad:
        vmax = maximum(vmax, v)
        denom = math.sqrt(vmax) / bc2_sqrt + eps
    else:
        denom = math.sqrt(v) / bc2_sqrt + eps
    p = p - step_size * (m / denom)
    return p, m, v, vmax


def adadelta(p, g, v, u, s2, h, f):
    lr, gscale, wd, rho, one_minus_rho, eps = h
    (has_wd,) = f
    g = grad_prologue(p, g, gscale, wd, has_wd)
    v = v * rho + one_minus_rho * (g * g)
    std = math.sqrt(v + eps)
    delta = math.sqrt(u + eps) / std * g
    u = u * rho + one_minus_rho * (delta * delta)
    p = p - lr * delta
    return p, v, u, s2


def adamax(p, g, m, u, s2, h, f):
    clr, gscale, wd, one_minus_beta1, beta1, beta2, eps = h
    has_wd, lerp_high = f
    g = grad_prologue(p, g, gscale, wd, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    u = maximum(u * beta2, abs(g) + eps)
    p = p - clr * (m / u)
    return p, m, u, s2


def nadam(p, g, m, v, s2, h, f):
    (coef_g, coef_m, gscale, wd, decay, one_minus_beta1, beta1, beta2, one_minus_beta2,
     bc2, eps) = h
    has_wd, lerp_high = f
    p = p * decay
    g = grad_prologue(p, g, gscale, wd, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    v = v * beta2 + one_minus_beta2 * (g * g)
    denom = math.sqrt(v / bc2) + eps
    p = p + coef_g * (g / denom)
    p = p + coef_m * (m / denom)
    return p, m, v, s2


def radam(p, g, m, v, s2, h, f):
    lr, gscale, wd, decay, one_minus_beta1, beta1, beta2, one_minus_beta2, bc1, bc2_sqrt, rect, eps = h
    has_wd, lerp_high, rectified = f
    p = p * decay
    g = grad_prologue(p, g, gscale, wd, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    v = v * beta2 + one_minus_beta2 * (g * g)
    m_hat = m / bc1
    if rectified:
        p = p - m_hat * lr * (bc2_sqrt / (math.sqrt(v) + eps)) * rect
    else:
        p = p - m_hat * lr
    return p, m, v, s2


def lion(p, g, m, s1, s2, h, f):
    """Lion (Chen et al. 2023): sign of an interpolated momentum, decoupled weight decay."""
    lr, gscale, decay, beta1, one_minus_beta1, beta2, one_minus_beta2 = h
    p = p * decay
    g = g * gscale
    c = m * beta1 + one_minus_beta1 * g
    if c > 0:
        p = p - lr
    elif c < 0:
        p = p + lr
    else:
        p = p - lr * c  # c == 0 leaves p; a NaN update propagates as torch.sign would
    m = m * beta2 + one_minus_beta2 * g
    return p, m, s1, s2


# ---------------------------------------------------------------------------------------
# Keras 3 rules (convention="keras"). Keras applies weight decay decoupled, before the
# update, as p - p*wd*lr, for every optimizer.


@register_jitable(inline="always")
def keras_weight_decay(p, wd, lr, has_wd):
    if has_wd:
        p = p - p * wd * lr
    return p


def sgd_keras(p, g, vel, s1, s2, h, f):
    lr, gscale, wd, momentum = h
    has_wd, has_momentum, nesterov = f
    p = keras_weight_decay(p, wd, lr, has_wd)
    g = g * gscale
    if has_momentum:
        vel = vel * momentum - g * lr
        if nesterov:
            p = p + (vel * momentum - g * lr)
        else:
            p = p + vel
    else:
        p = p - g * lr
    return p, vel, s1, s2


def adagrad_keras(p, g, acc, s1, s2, h, f):
    lr, gscale, wd, eps = h
    (has_wd,) = f
    p = keras_weight_decay(p, wd, lr, has_wd)
    g = g * gscale
    acc = acc + g * g
    p = p - (lr * g) / math.sqrt(acc + eps)
    return p, acc, s1, s2


def rmsprop_keras(p, g, vel, avg_g, mom, h, f):
    lr, gscale, wd, rho, one_minus_rho, eps, momentum = h
    has_wd, centered, has_momentum = f
    p = keras_weight_decay(p, wd, lr, has_wd)
    g = g * gscale
    vel = rho * vel + one_minus_rho * (g * g)
    if centered:
        avg_g = rho * avg_g + one_minus_rho * g
        denom = vel - avg_g * avg_g + eps
    else:
        denom = vel + eps
    increment = (lr * g) / math.sqrt(denom)
    if has_momentum:
        mom = momentum * mom + increment
        p = p - mom
    else:
        p = p - increment
    return p, vel, avg_g, mom


def adam_keras(p, g, m, v, vhat, h, f):
    """Keras's "epsilon-hat" Adam: alpha = lr*sqrt(1-beta2^t)/(1-beta1^t), eps outside."""
    lr, alpha, gscale, wd, one_minus_beta1, one_minus_beta2, eps = h
    has_wd, amsgrad = f
    p = keras_weight_decay(p, wd, lr, has_wd)
    g = g * gscale
    m = m + (g - m) * one_minus_beta1
    v = v + (g * g - v) * one_minus_beta2
    if amsgrad:
        vhat = maximum(vhat, v)
        p = p - (m * alpha) / (math.sqrt(vhat) + eps)
    else:
        p = p - (m * alpha) / (math.sqrt(v) + eps)
    return p, m, v, vhat


# ---------------------------------------------------------------------------------------
# registry: drives kernels, optimizers, tests and benchmarks

RULES = {
    r.name: r
    for r in (
        UpdateRule("sgd", sgd,
                   ("lr", "gscale", "weight_decay", "momentum", "one_minus_dampening"),
                   ("has_wd", "has_momentum", "nesterov", "first_step"),
                   ("momentum_buffer",)),
        UpdateRule("adagrad", adagrad,
                   ("clr", "gscale", "weight_decay", "eps"),
                   ("has_wd",),
                   ("sum",)),
        UpdateRule("rmsprop", rmsprop,
                   ("lr", "gscale", "weight_decay", "alpha", "one_minus_alpha", "eps", "momentum"),
                   ("has_wd", "centered", "has_momentum", "lerp_high"),
                   ("square_avg", "grad_avg", "momentum_buffer")),
        UpdateRule("adam", adam,
                   ("step_size", "gscale", "weight_decay", "decay", "one_minus_beta1", "beta1",
                    "beta2", "one_minus_beta2", "bc2_sqrt", "eps"),
                   ("has_wd", "amsgrad", "lerp_high"),
                   ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
        UpdateRule("adadelta", adadelta,
                   ("lr", "gscale", "weight_decay", "rho", "one_minus_rho", "eps"),
                   ("has_wd",),
                   ("square_avg", "acc_delta")),
        UpdateRule("adamax", adamax,
                   ("clr", "gscale", "weight_decay", "one_minus_beta1", "beta1", "beta2", "eps"),
                   ("has_wd", "lerp_high"),
                   ("exp_avg", "exp_inf")),
        UpdateRule("nadam", nadam,
                   ("coef_g", "coef_m", "gscale", "weight_decay", "decay", "one_minus_beta1",
                    "beta1", "beta2", "one_minus_beta2", "bc2", "eps"),
                   ("has_wd", "lerp_high"),
                   ("exp_avg", "exp_avg_sq")),
        UpdateRule("radam", radam,
                   ("lr", "gscale", "weight_decay", "decay", "one_minus_beta1", "beta1", "beta2",
                    "one_minus_beta2", "bc1", "bc2_sqrt", "rect", "eps"),
                   ("has_wd", "lerp_high", "rectified"),
                   ("exp_avg", "exp_avg_sq")),
        UpdateRule("lion", lion,
                   ("lr", "gscale", "decay", "beta1", "one_minus_beta1", "beta2",
                    "one_minus_beta2"),
                   (),
                   ("exp_avg",)),
        UpdateRule("sgd_keras", sgd_keras,
                   ("lr", "gscale", "weight_decay", "momentum"),
                   ("has_wd", "has_momentum", "nesterov"),
                   ("momentum",)),
        UpdateRule("adagrad_keras", adagrad_keras,
                   ("lr", "gscale", "weight_decay", "eps"),
                   ("has_wd",),
                   ("accumulator",)),
        UpdateRule("rmsprop_keras", rmsprop_keras,
                   ("lr", "gscale", "weight_decay", "rho", "one_minus_rho", "eps", "momentum"),
                   ("has_wd", "centered", "has_momentum"),
                   ("velocity", "average_gradient", "momentum")),
        UpdateRule("adam_keras", adam_keras,
                   ("lr", "alpha", "gscale", "weight_decay", "one_minus_beta1", "one_minus_beta2",
                    "eps"),
                   ("has_wd", "amsgrad"),
                   ("momentum", "velocity", "velocity_hat")),
    )
}
