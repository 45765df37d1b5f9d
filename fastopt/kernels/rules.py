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

import ast
import inspect
import math
import textwrap
from typing import Callable, NamedTuple

from numba.extending import register_jitable


class UpdateRule(NamedTuple):
    """A scalar update rule and the names of its arguments."""

    name: str
    scalar: Callable
    hyper: tuple  # names of the floating hyperparameters in ``h``, in order
    flags: tuple  # names of the integer flags in ``f``, in order
    state: tuple  # names of the state slots (s0, s1, s2) the rule defines


#: every rule, by name: drives kernels, optimizers, tests and benchmarks (filled by
#: ``update_rule`` as this module is imported)
RULES = {}

_SIGNATURE = 7  # p, g, s0, s1, s2, h, f


def update_rule(name, *, state):
    """Register a scalar rule under ``name`` with the names of its state slots.

    The hyperparameter and flag names are read from the rule's own first statements that
    unpack ``h`` and ``f`` (``lr, gscale, wd = h``), so the order the kernel reads them in
    is written exactly once; the host side (``fastopt.optim``) fills them by name and is
    checked against these names when an optimizer is built. A rule whose signature, state
    names or unpacking do not fit fails here, at import.
    """
    if not 1 <= len(state) <= 3:
        raise ValueError(f"rule {name!r}: state names {state} must number 1 to 3")

    def register(fn):
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
        args = [a.arg for a in tree.args.args]
        if len(args) != _SIGNATURE or args[:2] != ["p", "g"] or args[5:] != ["h", "f"]:
            raise TypeError(f"rule {name!r}: signature must be (p, g, s0, s1, s2, h, f), "
                            f"got ({', '.join(args)})")
        unpacked = _unpacked_names(tree, name)
        if name in RULES:
            raise ValueError(f"rule {name!r} is defined twice")
        RULES[name] = UpdateRule(name, fn, unpacked.get("h", ()), unpacked.get("f", ()),
                                 tuple(state))
        return fn

    return register


def _unpacked_names(tree, name):
    """{"h": names, "f": names} from the rule's top-level ``a, b = h`` statements."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Name)
                and node.value.id in ("h", "f")):
            target = node.targets[0]
            if len(node.targets) != 1 or not isinstance(target, ast.Tuple) or not all(
                    isinstance(e, ast.Name) for e in target.elts):
                raise TypeError(f"rule {name!r}: unpack {node.value.id} into plain names")
            if node.value.id in found:
                raise TypeError(f"rule {name!r}: {node.value.id} is unpacked twice")
            found[node.value.id] = tuple(e.id for e in target.elts)
    if "h" not in found:
        raise TypeError(f"rule {name!r}: the rule must unpack its hyperparameters "
                        "(``lr, gscale, ... = h``)")
    return found


# ---------------------------------------------------------------------------------------
# shared pieces


@register_jitable(inline="always")
def grad_prologue(p, g, gscale, weight_decay, has_wd):
    """Scaled gradient (maximize, fused clip) plus coupled L2 weight decay."""
    g = g * gscale
    if has_wd:
        g = g + weight_decay * p
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


@update_rule("sgd", state=("momentum_buffer",))
def sgd(p, g, b, s1, s2, h, f):
    lr, gscale, weight_decay, momentum, one_minus_dampening = h
    has_wd, has_momentum, nesterov, first_step = f
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
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


@update_rule("adagrad", state=("sum",))
def adagrad(p, g, s, s1, s2, h, f):
    clr, gscale, weight_decay, eps = h
    (has_wd,) = f
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
    s = s + g * g
    p = p - clr * (g / (math.sqrt(s) + eps))
    return p, s, s1, s2


@update_rule("rmsprop", state=("square_avg", "grad_avg", "momentum_buffer"))
def rmsprop(p, g, v, gm, b, h, f):
    lr, gscale, weight_decay, alpha, one_minus_alpha, eps, momentum = h
    has_wd, centered, has_momentum, lerp_high = f
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
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


@update_rule("adam", state=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
def adam(p, g, m, v, vmax, h, f):
    """Adam and AdamW (decoupled weight decay arrives as ``decay`` = 1 - lr*wd)."""
    (step_size, gscale, weight_decay, decay, one_minus_beta1, beta1, beta2, one_minus_beta2,
     bc2_sqrt, eps) = h
    has_wd, amsgrad, lerp_high = f
    p = p * decay
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    v = v * beta2 + one_minus_beta2 * (g * g)
    if amsgrad:
        vmax = maximum(vmax, v)
        denom = math.sqrt(vmax) / bc2_sqrt + eps
    else:
        denom = math.sqrt(v) / bc2_sqrt + eps
    p = p - step_size * (m / denom)
    return p, m, v, vmax


@update_rule("adadelta", state=("square_avg", "acc_delta"))
def adadelta(p, g, v, u, s2, h, f):
    lr, gscale, weight_decay, rho, one_minus_rho, eps = h
    (has_wd,) = f
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
    v = v * rho + one_minus_rho * (g * g)
    std = math.sqrt(v + eps)
    delta = math.sqrt(u + eps) / std * g
    u = u * rho + one_minus_rho * (delta * delta)
    p = p - lr * delta
    return p, v, u, s2


@update_rule("adamax", state=("exp_avg", "exp_inf"))
def adamax(p, g, m, u, s2, h, f):
    clr, gscale, weight_decay, one_minus_beta1, beta1, beta2, eps = h
    has_wd, lerp_high = f
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    u = maximum(u * beta2, abs(g) + eps)
    p = p - clr * (m / u)
    return p, m, u, s2


@update_rule("nadam", state=("exp_avg", "exp_avg_sq"))
def nadam(p, g, m, v, s2, h, f):
    (coef_g, coef_m, gscale, weight_decay, decay, one_minus_beta1, beta1, beta2, one_minus_beta2,
     bc2, eps) = h
    has_wd, lerp_high = f
    p = p * decay
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    v = v * beta2 + one_minus_beta2 * (g * g)
    denom = math.sqrt(v / bc2) + eps
    p = p + coef_g * (g / denom)
    p = p + coef_m * (m / denom)
    return p, m, v, s2


@update_rule("radam", state=("exp_avg", "exp_avg_sq"))
def radam(p, g, m, v, s2, h, f):
    (lr, gscale, weight_decay, decay, one_minus_beta1, beta1, beta2, one_minus_beta2, bc1,
     bc2_sqrt, rect, eps) = h
    has_wd, lerp_high, rectified = f
    p = p * decay
    g = grad_prologue(p, g, gscale, weight_decay, has_wd)
    m = lerp(m, g, one_minus_beta1, beta1, lerp_high)
    v = v * beta2 + one_minus_beta2 * (g * g)
    m_hat = m / bc1
    if rectified:
        p = p - m_hat * lr * (bc2_sqrt / (math.sqrt(v) + eps)) * rect
    else:
        p = p - m_hat * lr
    return p, m, v, s2


@update_rule("lion", state=("exp_avg",))
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
def keras_weight_decay(p, weight_decay, lr, has_wd):
    if has_wd:
        p = p - p * weight_decay * lr
    return p


@update_rule("sgd_keras", state=("momentum",))
def sgd_keras(p, g, vel, s1, s2, h, f):
    lr, gscale, weight_decay, momentum = h
    has_wd, has_momentum, nesterov = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
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


@update_rule("adagrad_keras", state=("accumulator",))
def adagrad_keras(p, g, acc, s1, s2, h, f):
    lr, gscale, weight_decay, eps = h
    (has_wd,) = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
    g = g * gscale
    acc = acc + g * g
    p = p - (lr * g) / math.sqrt(acc + eps)
    return p, acc, s1, s2


@update_rule("rmsprop_keras", state=("velocity", "average_gradient", "momentum"))
def rmsprop_keras(p, g, vel, avg_g, mom, h, f):
    lr, gscale, weight_decay, rho, one_minus_rho, eps, momentum = h
    has_wd, centered, has_momentum = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
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


@update_rule("adam_keras", state=("momentum", "velocity", "velocity_hat"))
def adam_keras(p, g, m, v, vhat, h, f):
    """Keras's "epsilon-hat" Adam: alpha = lr*sqrt(1-beta2^t)/(1-beta1^t), eps outside."""
    lr, alpha, gscale, weight_decay, one_minus_beta1, one_minus_beta2, eps = h
    has_wd, amsgrad = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
    g = g * gscale
    m = m + (g - m) * one_minus_beta1
    v = v + (g * g - v) * one_minus_beta2
    if amsgrad:
        vhat = maximum(vhat, v)
        p = p - (m * alpha) / (math.sqrt(vhat) + eps)
    else:
        p = p - (m * alpha) / (math.sqrt(v) + eps)
    return p, m, v, vhat


@update_rule("adadelta_keras", state=("accumulated_grad", "accumulated_delta_var"))
def adadelta_keras(p, g, v, u, s2, h, f):
    """Keras's Adadelta: torch's formula, Keras's operation order and decoupled decay."""
    lr, gscale, weight_decay, rho, one_minus_rho, eps = h
    (has_wd,) = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
    g = g * gscale
    v = rho * v + one_minus_rho * (g * g)
    delta = -((math.sqrt(u + eps) * g) / math.sqrt(v + eps))
    u = rho * u + one_minus_rho * (delta * delta)
    p = p + lr * delta
    return p, v, u, s2


@update_rule("adamax_keras", state=("momentum", "norm"))
def adamax_keras(p, g, m, u, s2, h, f):
    """Keras's Adamax: u = max(beta2*u, |g|) (eps added outside the max, unlike torch);
    p = p - lr*m / ((1 - beta1^t)*(u + eps))."""
    lr, gscale, weight_decay, one_minus_beta1, beta2, bc1, eps = h
    (has_wd,) = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
    g = g * gscale
    m = m + (g - m) * one_minus_beta1
    u = maximum(beta2 * u, abs(g))
    p = p - (lr * m) / (bc1 * (u + eps))
    return p, m, u, s2


@update_rule("nadam_keras", state=("momentum", "velocity"))
def nadam_keras(p, g, m, v, s2, h, f):
    """Keras's Nadam: Adam's moments, m_hat = u_{t+1}*m/(1 - U_t*u_{t+1}) +
    (1 - u_t)*g/(1 - U_t) with U_t = u_1*...*u_t (host side), v_hat = v/(1 - beta2^t)."""
    (lr, gscale, weight_decay, one_minus_beta1, one_minus_beta2, u_next, one_minus_u,
     one_minus_u_product, one_minus_u_product_next, bc2, eps) = h
    (has_wd,) = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
    g = g * gscale
    m = m + (g - m) * one_minus_beta1
    v = v + (g * g - v) * one_minus_beta2
    m_hat = (u_next * m) / one_minus_u_product_next + (one_minus_u * g) / one_minus_u_product
    v_hat = v / bc2
    p = p - (m_hat * lr) / (math.sqrt(v_hat) + eps)
    return p, m, v, s2


@update_rule("lion_keras", state=("momentum",))
def lion_keras(p, g, m, s1, s2, h, f):
    """Keras's Lion: Keras's decoupled decay p - p*wd*lr, then the sign step."""
    lr, gscale, weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2 = h
    (has_wd,) = f
    p = keras_weight_decay(p, weight_decay, lr, has_wd)
    g = g * gscale
    c = m * beta1 + g * one_minus_beta1
    if c > 0:
        p = p - lr
    elif c < 0:
        p = p + lr
    else:
        p = p - lr * c  # c == 0 leaves p; a NaN update propagates as ops.sign would
    m = m * beta2 + g * one_minus_beta2
    return p, m, s1, s2
