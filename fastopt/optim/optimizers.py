"""The optimizers. Names, arguments, defaults and formulas follow ``torch.optim`` 2.13.

``convention="keras"`` selects Keras 3's formulas (``keras.optimizers``, 3.15) and its
defaults: an argument whose default differs between the two shows ``DEFAULT`` in the
signature and takes the convention's value when it is left out (a value passed always
wins). The defaults that differ (the others are the same in both):

::

    optimizer  argument                   torch    Keras 3 (convention="keras")
    SGD        lr                         1e-3     1e-2
    Adagrad    lr                         1e-2     1e-3
               initial_accumulator_value  0        0.1
               eps                        1e-10    1e-7
    RMSprop    lr                         1e-2     1e-3
               alpha (Keras's rho)        0.99     0.9
               eps                        1e-8     1e-7
    Adam       eps                        1e-8     1e-7
    AdamW      eps                        1e-8     1e-7
               weight_decay               1e-2     4e-3
    Adadelta   lr                         1.0      1e-3
               rho                        0.9      0.95
               eps                        1e-6     1e-7
    Adamax     lr                         2e-3     1e-3
               eps                        1e-8     1e-7
    NAdam      lr                         2e-3     1e-3
               eps                        1e-8     1e-7
               momentum_decay             4e-3     1.0  (mu_t = beta1*(1 - 0.5*0.96^t))
    Lion       lr                         1e-4     1e-3

RAdam has no Keras counterpart (torch convention only). ``Optimizer.default_arguments(
convention)`` gives every default of a class. Keras's ``weight_decay=None`` is 0 here,
and Keras applies any weight decay decoupled (``p = p - p*wd*lr`` before the update).

Each class only validates hyperparameters and computes the per-step scalars on the host;
the element-wise formula lives once in ``fastopt.kernels.rules``. Notation in the
docstrings: p parameter, g gradient, t step (1 for the first update), lr the learning
rate of this step, wd ``weight_decay``.

Every optimizer also takes ``skip_nonfinite=False`` (skip a step whose gradients contain
NaN/inf, leaving parameters and state untouched and counting it in ``skipped_steps``)
and ``max_grad_norm=None`` (clip the global gradient norm like
``torch.nn.utils.clip_grad_norm_``, fused into the update: one extra read of the
gradients, which also serves the non-finite check; the gradients are not modified).
"""

import math

from .base import DEFAULT, Optimizer
from .catalogue import Facts

_COMMON_DOC = """
    skip_nonfinite : bool
        Skip a step whose gradients contain NaN or inf: parameters and state are left
        exactly as they were and ``skipped_steps`` is incremented (torch's GradScaler
        behaviour).
    max_grad_norm : float or None
        Clip the global 2-norm of all gradients to this value before the update, with
        ``torch.nn.utils.clip_grad_norm_``'s coefficient min(max_norm/(norm + 1e-6), 1),
        fused into the update kernel. ``last_grad_norm`` holds the norm.
"""


def _lerp_scalars(w):
    """Host scalars for torch's lerp with weight w: (w, 1 - w, take the high branch)."""
    return w, 1.0 - w, not abs(w) < 0.5


def _wd_flag(group):
    return group["weight_decay"] != 0


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (heavy ball) or Nesterov.

    torch convention (default)::

        g = -g if maximize;  g = g + wd*p
        b = g                                   (first step)
        b = momentum*b + (1 - dampening)*g      (later steps)
        g = g + momentum*b if nesterov else b
        p = p - lr*g

    Keras / textbook convention (``convention="keras"``), velocity ``v`` starting at 0::

        p = p - p*wd*lr                          (Keras's decoupled weight decay)
        v = momentum*v - lr*g
        p = p + momentum*v - lr*g if nesterov else p + v

    The two agree while lr is constant (v = -lr*b); with a schedule they differ because
    torch scales the accumulated buffer by the current lr. Keras has no dampening.

    Keras's defaults: lr=0.01. Keras accepts ``nesterov=True`` with momentum 0 (and then
    takes plain SGD steps, as Keras does); torch refuses it.

    Parameters
    ----------
    params : array, list of arrays, or list of parameter-group dicts
    lr : float or schedule (callable step -> float)
        Default 1e-3 (torch), 1e-2 (Keras).
    momentum, dampening : float
    nesterov : bool
        torch: needs momentum > 0 and dampening = 0.
    weight_decay : float
        L2 penalty added to the gradient (torch); decoupled in the Keras convention.
    maximize : bool
        Ascend instead of descend.
    convention : "torch" or "keras"
    """ + _COMMON_DOC + """
    Examples
    --------
    >>> import numpy as np, fastopt
    >>> w = np.ones(3, dtype=np.float32)
    >>> opt = fastopt.optim.SGD(w, lr=0.1, momentum=0.9)
    >>> opt.step(np.full(3, 0.5, dtype=np.float32))
    True
    >>> w
    array([0.95, 0.95, 0.95], dtype=float32)
    """

    _rules = {"torch": "sgd", "keras": "sgd_keras"}
    _convention_defaults = {"torch": dict(lr=1e-3), "keras": dict(lr=1e-2)}
    facts = Facts(torch="SGD", torch_fused=True, keras="SGD",
                  # momentum, so that SGD carries state like its peers
                  bench=dict(lr=1e-3, momentum=0.9),
                  presets=(("sgd", {}, 0.1, ("gd_lr", 1.0)),
                           # effective step of momentum: lr/(1-momentum) = 0.2
                           ("momentum", {"momentum": 0.9}, 0.02, ("gd_lr", 0.1)),
                           ("nesterov", {"momentum": 0.9, "nesterov": True}, 0.02,
                            ("gd_lr", 0.1))),
                  textbook=dict(convention="keras"))  # v = momentum*v - lr*g; p += v

    def __init__(self, params, lr=DEFAULT, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, maximize=False, *, convention="torch",
                 skip_nonfinite=False, max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay,
                                      maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _check_combination(self, group):
        # Keras allows nesterov with momentum 0 (its SGD then ignores nesterov)
        if (group["nesterov"] and self.convention == "torch"
                and (group["momentum"] <= 0 or group["dampening"] != 0)):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")
        if self.convention == "keras" and group["dampening"] != 0:
            raise ValueError("dampening must be 0 with convention='keras' (Keras's SGD has no "
                             "dampening)")

    def _slots(self, group):
        return self.rule.state if group["momentum"] != 0 else ()

    def _on_new_state(self, gi, created):
        # a momentum buffer that was just created starts from the gradient (torch)
        if created:
            self.group_state[gi]["started"] = False

    def _host_scalars(self, group, lr, t, gstate):
        hyper = dict(lr=lr, weight_decay=group["weight_decay"], momentum=group["momentum"])
        has_momentum = group["momentum"] != 0
        flags = dict(has_wd=_wd_flag(group), has_momentum=has_momentum,
                     nesterov=group["nesterov"])
        if self.convention == "torch":  # Keras has no dampening and starts v at 0
            hyper["one_minus_dampening"] = 1.0 - group["dampening"]
            flags["first_step"] = has_momentum and not gstate.get("started", False)
        return hyper, flags, {**gstate, "started": has_momentum}


class Adagrad(Optimizer):
    r"""Adagrad: per-element learning rates from the sum of squared gradients.

    torch convention (default)::

        g = -g if maximize;  g = g + wd*p
        clr = lr / (1 + (t - 1)*lr_decay)
        s = s + g*g                              (s starts at initial_accumulator_value)
        p = p - clr * g / (sqrt(s) + eps)        (eps OUTSIDE the root)

    Keras convention: ``p = p - p*wd*lr`` (decoupled), ``s = s + g*g``,
    ``p = p - lr*g / sqrt(s + eps)`` (eps INSIDE the root), the accumulator starts at 0.1
    and Keras's defaults are lr=1e-3, eps=1e-7; ``lr_decay`` must be 0. Left out (or None),
    ``initial_accumulator_value`` is 0 for torch, 0.1 for Keras. The textbook's AdaGrad is
    torch's formula with eps = 1e-7.

    Parameters
    ----------
    params, lr : see SGD
    lr_decay : float
    weight_decay : float
    initial_accumulator_value : float or None
    eps : float
    maximize : bool
    convention : "torch" or "keras"
    """ + _COMMON_DOC

    _rules = {"torch": "adagrad", "keras": "adagrad_keras"}
    _convention_defaults = {
        "torch": dict(lr=1e-2, initial_accumulator_value=0.0, eps=1e-10),
        "keras": dict(lr=1e-3, initial_accumulator_value=0.1, eps=1e-7)}
    facts = Facts(torch="Adagrad", torch_fused=True, keras="Adagrad",
                  presets=(("adagrad", {}, 0.01, ("step", 5.0)),),
                  # h += g^2; p -= lr*g/(sqrt(h) + 1e-7): torch's formula, the book's eps
                  textbook=dict(eps=1e-7, initial_accumulator_value=0.0, lr_decay=0.0,
                                convention="torch"))

    def __init__(self, params, lr=DEFAULT, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=DEFAULT, eps=DEFAULT, maximize=False, *,
                 convention="torch", skip_nonfinite=False, max_grad_norm=None, backend="numba"):
        if initial_accumulator_value is None:  # the older spelling of "the default"
            initial_accumulator_value = DEFAULT
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _check_combination(self, group):
        if self.convention == "keras" and group["lr_decay"] != 0:
            raise ValueError("lr_decay must be 0 with convention='keras'; use a schedule")

    def _initial_state(self, name, group):
        return group["initial_accumulator_value"]

    def _host_scalars(self, group, lr, t, gstate):
        if self.convention == "keras":
            hyper = dict(lr=lr, weight_decay=group["weight_decay"], eps=group["eps"])
        else:
            hyper = dict(clr=lr / (1 + (t - 1) * group["lr_decay"]),
                         weight_decay=group["weight_decay"], eps=group["eps"])
        return hyper, dict(has_wd=_wd_flag(group)), gstate


class RMSprop(Optimizer):
    r"""RMSprop: divide by a running root mean square of the gradients.

    torch convention (default)::

        g = -g if maximize;  g = g + wd*p
        v = alpha*v + (1 - alpha)*g*g
        centered:   gm = lerp(gm, g, 1 - alpha);  avg = sqrt(v - gm*gm) + eps
        otherwise:  avg = sqrt(v) + eps                   (eps OUTSIDE the root)
        momentum > 0:  b = momentum*b + g/avg;  p = p - lr*b
        otherwise:     p = p - lr*g/avg

    Keras convention (``alpha`` plays Keras's ``rho``): ``p = p - p*wd*lr`` (decoupled);
    ``denom = v - gm*gm + eps`` or ``v + eps`` (eps INSIDE the root);
    ``increment = lr*g/sqrt(denom)``; with momentum ``b = momentum*b + increment`` and
    ``p = p - b`` (the buffer accumulates lr-scaled steps). Defaults: lr=1e-2, alpha=0.99,
    eps=1e-8 (torch); lr=1e-3, alpha=0.9, eps=1e-7 (Keras).

    Parameters
    ----------
    params, lr : see SGD
    alpha : float in [0, 1]
    eps, weight_decay, momentum : float
    centered, maximize : bool
    convention : "torch" or "keras"
    """ + _COMMON_DOC

    _rules = {"torch": "rmsprop", "keras": "rmsprop_keras"}
    _convention_defaults = {"torch": dict(lr=1e-2, alpha=0.99, eps=1e-8),
                            "keras": dict(lr=1e-3, alpha=0.9, eps=1e-7)}
    facts = Facts(torch="RMSprop", keras="RMSprop",
                  presets=(("rmsprop", {}, 1e-3, ("step", 0.3)),))

    def __init__(self, params, lr=DEFAULT, alpha=DEFAULT, eps=DEFAULT, weight_decay=0.0,
                 momentum=0.0,
                 centered=False, maximize=False, *, convention="torch",
                 skip_nonfinite=False, max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _slots(self, group):
        v, gm, b = self.rule.state
        return (v,) + ((gm,) if group["centered"] else ()) + ((b,) if group["momentum"] > 0
                                                             else ())

    def _host_scalars(self, group, lr, t, gstate):
        alpha = group["alpha"]
        hyper = dict(lr=lr, weight_decay=group["weight_decay"], eps=group["eps"],
                     momentum=group["momentum"])
        flags = dict(has_wd=_wd_flag(group), centered=group["centered"],
                     has_momentum=group["momentum"] > 0)
        if self.convention == "keras":  # Keras calls the decay rho
            hyper.update(rho=alpha, one_minus_rho=1.0 - alpha)
        else:
            hyper.update(alpha=alpha, one_minus_alpha=1.0 - alpha)
            flags["lerp_high"] = _lerp_scalars(1.0 - alpha)[2]
        return hyper, flags, gstate


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015), with optional AMSGrad.

    torch convention (default)::

        p = p*(1 - lr*wd)                  (AdamW only: decoupled weight decay)
        g = -g if maximize;  g = g + wd*p  (Adam: coupled L2 weight decay)
        m = lerp(m, g, 1 - beta1)          = beta1*m + (1 - beta1)*g
        v = beta2*v + (1 - beta2)*g*g
        v' = max(v', v) if amsgrad, and v' replaces v below
        p = p - lr/(1 - beta1^t) * m / (sqrt(v)/sqrt(1 - beta2^t) + eps)

    Keras / textbook convention ("epsilon hat")::

        p = p - p*wd*lr                    (Keras: decoupled for Adam and AdamW alike)
        alpha = lr*sqrt(1 - beta2^t)/(1 - beta1^t)
        p = p - alpha*m/(sqrt(v) + eps)

    The two differ only in where eps sits: Keras's eps is effectively
    eps*sqrt(1 - beta2^t) in torch's formula. Default eps: 1e-8 (torch), 1e-7 (Keras).

    Parameters
    ----------
    params, lr : see SGD
    betas : (float, float), each in [0, 1)
    eps, weight_decay : float
    amsgrad, maximize : bool
    convention : "torch" or "keras"
    """ + _COMMON_DOC + """
    Examples
    --------
    >>> import numpy as np, fastopt
    >>> w = np.zeros(4)
    >>> opt = fastopt.optim.Adam(w, lr=0.1)
    >>> opt.step(np.array([1.0, -1.0, 2.0, 0.0]))
    True
    >>> w.round(6)
    array([-0.1,  0.1, -0.1,  0. ])
    """

    _rules = {"torch": "adam", "keras": "adam_keras"}
    _convention_defaults = {"torch": dict(eps=1e-8), "keras": dict(eps=1e-7)}
    facts = Facts(torch="Adam", torch_fused=True, keras="Adam",
                  presets=(("adam", {}, 1e-3, ("step", 1.0)),),
                  # lr_t = lr*sqrt(1-b2^t)/(1-b1^t); p -= lr_t*m/(sqrt(v) + 1e-7)
                  textbook=dict(betas=(0.9, 0.999), eps=1e-7, convention="keras"))
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=DEFAULT, weight_decay=0.0,
                 amsgrad=False, maximize=False, *, convention="torch", skip_nonfinite=False,
                 max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _slots(self, group):
        return self.rule.state if group["amsgrad"] else self.rule.state[:2]

    def _host_scalars(self, group, lr, t, gstate):
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        bc1 = 1 - beta1 ** t
        bc2 = 1 - beta2 ** t
        if self.convention == "keras":
            hyper = dict(lr=lr, alpha=lr * math.sqrt(bc2) / bc1, weight_decay=wd,
                         one_minus_beta1=1 - beta1, one_minus_beta2=1 - beta2,
                         eps=group["eps"])
            return hyper, dict(has_wd=wd != 0, amsgrad=group["amsgrad"]), gstate
        w, w_complement, high = _lerp_scalars(1 - beta1)
        hyper = dict(step_size=lr / bc1, weight_decay=wd,
                     decay=1 - lr * wd if self._decoupled else 1.0,
                     one_minus_beta1=w, beta1=w_complement, beta2=beta2,
                     one_minus_beta2=1 - beta2, bc2_sqrt=bc2 ** 0.5, eps=group["eps"])
        flags = dict(has_wd=wd != 0 and not self._decoupled, amsgrad=group["amsgrad"],
                     lerp_high=high)
        return hyper, flags, gstate


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

    torch convention: ``p = p*(1 - lr*wd)`` before the Adam update; Keras convention:
    ``p = p - p*wd*lr``. Defaults: ``weight_decay=1e-2``, eps=1e-8 (torch);
    ``weight_decay=4e-3``, eps=1e-7 (Keras). Arguments and the rest of the update as in
    ``Adam``.
    """

    _decoupled = True
    _convention_defaults = {"torch": dict(eps=1e-8, weight_decay=1e-2),
                            "keras": dict(eps=1e-7, weight_decay=4e-3)}
    facts = Facts(torch="AdamW", torch_fused=True, keras="AdamW",
                  presets=(("adamw", {"weight_decay": 1e-2}, 1e-3, ("step", 1.0)),))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=DEFAULT, weight_decay=DEFAULT,
                 amsgrad=False, maximize=False, *, convention="torch", skip_nonfinite=False,
                 max_grad_norm=None, backend="numba"):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, convention=convention,
                         skip_nonfinite=skip_nonfinite, max_grad_norm=max_grad_norm,
                         backend=backend)


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler 2012).

    torch convention (default)::

        g = -g if maximize;  g = g + wd*p
        v = rho*v + (1 - rho)*g*g
        d = sqrt(u + eps)/sqrt(v + eps) * g
        u = rho*u + (1 - rho)*d*d
        p = p - lr*d

    Keras convention: the same update with Keras's operation order
    (``d = sqrt(u + eps)*g / sqrt(v + eps)``) and decoupled weight decay
    ``p = p - p*wd*lr`` first.

    Parameters: params, lr (default 1.0 torch, 1e-3 Keras), rho (0.9 torch, 0.95 Keras),
    eps (1e-6 torch, 1e-7 Keras), weight_decay, maximize, convention.
    """ + _COMMON_DOC

    _rules = {"torch": "adadelta", "keras": "adadelta_keras"}
    _convention_defaults = {"torch": dict(lr=1.0, rho=0.9, eps=1e-6),
                            "keras": dict(lr=1e-3, rho=0.95, eps=1e-7)}
    facts = Facts(torch="Adadelta", keras="Adadelta",
                  presets=(("adadelta", {}, 1.0, ("step", 30.0)),))

    def __init__(self, params, lr=DEFAULT, rho=DEFAULT, eps=DEFAULT, weight_decay=0.0,
                 maximize=False, *, convention="torch", skip_nonfinite=False,
                 max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _host_scalars(self, group, lr, t, gstate):
        rho = group["rho"]
        hyper = dict(lr=lr, weight_decay=group["weight_decay"], rho=rho,
                     one_minus_rho=1 - rho, eps=group["eps"])
        return hyper, dict(has_wd=_wd_flag(group)), gstate


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba 2015, section 7): Adam with the infinity norm.

    torch convention (default)::

        g = -g if maximize;  g = g + wd*p
        m = lerp(m, g, 1 - beta1)
        u = max(beta2*u, |g| + eps)              (eps INSIDE the max)
        p = p - lr/(1 - beta1^t) * m/u

    Keras convention::

        p = p - p*wd*lr                          (decoupled)
        m = m + (g - m)*(1 - beta1)
        u = max(beta2*u, |g|)
        p = p - lr*m / ((1 - beta1^t)*(u + eps))  (eps OUTSIDE the max)

    Parameters: params, lr (default 2e-3 torch, 1e-3 Keras), betas, eps (1e-8 torch, 1e-7
    Keras), weight_decay, maximize, convention.
    """ + _COMMON_DOC

    _rules = {"torch": "adamax", "keras": "adamax_keras"}
    _convention_defaults = {"torch": dict(lr=2e-3, eps=1e-8),
                            "keras": dict(lr=1e-3, eps=1e-7)}
    facts = Facts(torch="Adamax", keras="Adamax",
                  presets=(("adamax", {}, 2e-3, ("step", 1.0)),))

    def __init__(self, params, lr=DEFAULT, betas=(0.9, 0.999), eps=DEFAULT, weight_decay=0.0,
                 maximize=False, *, convention="torch", skip_nonfinite=False,
                 max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _host_scalars(self, group, lr, t, gstate):
        beta1, beta2 = group["betas"]
        if self.convention == "keras":
            hyper = dict(lr=lr, weight_decay=group["weight_decay"], one_minus_beta1=1 - beta1,
                         beta2=beta2, bc1=1 - beta1 ** t, eps=group["eps"])
            return hyper, dict(has_wd=_wd_flag(group)), gstate
        w, w_complement, high = _lerp_scalars(1 - beta1)
        hyper = dict(clr=lr / (1 - beta1 ** t), weight_decay=group["weight_decay"],
                     one_minus_beta1=w, beta1=w_complement, beta2=beta2, eps=group["eps"])
        return hyper, dict(has_wd=_wd_flag(group), lerp_high=high), gstate


def nadam_momentum(beta1, t, momentum_decay):
    """NAdam's momentum coefficient mu_t = beta1*(1 - 0.5*0.96^(t*momentum_decay)) (torch;
    Keras 3's schedule is momentum_decay = 1: beta1*(1 - 0.5*0.96^t))."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))


class NAdam(Optimizer):
    r"""NAdam (Dozat 2016): Adam with Nesterov momentum and momentum warming.

    torch convention (default)::

        p = p*(1 - lr*wd) if decoupled_weight_decay, else g = g + wd*p
        mu_t = beta1*(1 - 0.5*0.96^(t*momentum_decay));  mu_{t+1} likewise
        P_t = P_{t-1}*mu_t                        (P_0 = 1; host-side, per group)
        m = lerp(m, g, 1 - beta1);  v = beta2*v + (1 - beta2)*g*g
        denom = sqrt(v/(1 - beta2^t)) + eps
        p = p - lr*(1 - mu_t)/(1 - P_t) * g/denom - lr*mu_{t+1}/(1 - P_t*mu_{t+1}) * m/denom

    Keras convention (``keras.optimizers.Nadam``): ``p = p - p*wd*lr`` (decoupled, always;
    ``decoupled_weight_decay`` is not used), the same schedule with Keras's
    momentum_decay = 1 (mu_t = beta1*(1 - 0.5*0.96^t): Keras 3 has no momentum_decay
    argument, fastopt keeps it as an option), and Keras's operation order::

        m = m + (g - m)*(1 - beta1);  v = v + (g*g - v)*(1 - beta2)
        m_hat = mu_{t+1}*m/(1 - P_t*mu_{t+1}) + (1 - mu_t)*g/(1 - P_t)
        p = p - m_hat*lr / (sqrt(v/(1 - beta2^t)) + eps)

    torch keeps P_t in its default dtype (float32 unless set to float64), Keras in the
    dtype of the variables; fastopt keeps it in float64.

    Parameters: params, lr (default 2e-3 torch, 1e-3 Keras), betas, eps (1e-8 torch, 1e-7
    Keras), weight_decay, momentum_decay (4e-3 torch, 1.0 Keras), decoupled_weight_decay,
    maximize, convention.
    """ + _COMMON_DOC

    _rules = {"torch": "nadam", "keras": "nadam_keras"}
    _convention_defaults = {"torch": dict(lr=2e-3, eps=1e-8, momentum_decay=4e-3),
                            "keras": dict(lr=1e-3, eps=1e-7, momentum_decay=1.0)}
    facts = Facts(torch="NAdam", keras="Nadam",
                  presets=(("nadam", {}, 1e-3, ("step", 1.0)),))

    def __init__(self, params, lr=DEFAULT, betas=(0.9, 0.999), eps=DEFAULT, weight_decay=0.0,
                 momentum_decay=DEFAULT, decoupled_weight_decay=False, maximize=False, *,
                 convention="torch", skip_nonfinite=False, max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _host_scalars(self, group, lr, t, gstate):
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        psi = group["momentum_decay"]
        mu = nadam_momentum(beta1, t, psi)
        mu_next = nadam_momentum(beta1, t + 1, psi)
        mu_product = gstate.get("mu_product", 1.0) * mu
        new_gstate = {**gstate, "mu_product": mu_product}
        if self.convention == "keras":
            hyper = dict(lr=lr, weight_decay=wd, one_minus_beta1=1 - beta1,
                         one_minus_beta2=1 - beta2, u_next=mu_next, one_minus_u=1.0 - mu,
                         one_minus_u_product=1.0 - mu_product,
                         one_minus_u_product_next=1.0 - mu_product * mu_next,
                         bc2=1 - beta2 ** t, eps=group["eps"])
            return hyper, dict(has_wd=wd != 0), new_gstate
        w, w_complement, high = _lerp_scalars(1 - beta1)
        hyper = dict(coef_g=-lr * (1.0 - mu) / (1.0 - mu_product),
                     coef_m=(-lr * mu_next) / (1.0 - mu_product * mu_next),
                     weight_decay=wd, decay=1 - lr * wd if decoupled else 1.0,
                     one_minus_beta1=w, beta1=w_complement, beta2=beta2,
                     one_minus_beta2=1 - beta2, bc2=1 - beta2 ** t, eps=group["eps"])
        flags = dict(has_wd=wd != 0 and not decoupled, lerp_high=high)
        return hyper, flags, new_gstate


class RAdam(Optimizer):
    r"""RAdam (Liu et al. 2020): Adam with a rectified adaptive learning rate.

    ::

        p = p*(1 - lr*wd) if decoupled_weight_decay, else g = g + wd*p
        m = lerp(m, g, 1 - beta1);  v = beta2*v + (1 - beta2)*g*g
        rho_inf = 2/(1 - beta2) - 1;  rho_t = rho_inf - 2*t*beta2^t/(1 - beta2^t)
        rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2)rho_inf / ((rho_inf - 4)(rho_inf - 2)rho_t))
                    p = p - lr * m/(1 - beta1^t) * sqrt(1 - beta2^t)/(sqrt(v) + eps) * r
        otherwise:  p = p - lr * m/(1 - beta1^t)

    Parameters: params, lr (default 1e-3), betas, eps, weight_decay,
    decoupled_weight_decay, maximize.
    """ + _COMMON_DOC

    _rules = {"torch": "radam"}
    facts = Facts(torch="RAdam", presets=(("radam", {}, 1e-3, ("step", 1.0)),))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, maximize=False, *, convention="torch",
                 skip_nonfinite=False, max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _host_scalars(self, group, lr, t, gstate):
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        bc1 = 1 - beta1 ** t
        bc2 = 1 - beta2 ** t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2 ** t) / bc2
        rectified = rho_t > 5.0
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5 if rectified else 0.0
        w, w_complement, high = _lerp_scalars(1 - beta1)
        hyper = dict(lr=lr, weight_decay=wd, decay=1 - lr * wd if decoupled else 1.0,
                     one_minus_beta1=w, beta1=w_complement, beta2=beta2,
                     one_minus_beta2=1 - beta2, bc1=bc1, bc2_sqrt=bc2 ** 0.5, rect=rect,
                     eps=group["eps"])
        flags = dict(has_wd=wd != 0 and not decoupled, lerp_high=high, rectified=rectified)
        return hyper, flags, gstate


class Lion(Optimizer):
    r"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    ::

        g = -g if maximize
        c = beta1*m + (1 - beta1)*g
        p = p*(1 - lr*wd) - lr*sign(c)          (decoupled weight decay)
        m = beta2*m + (1 - beta2)*g

    Keras convention (``keras.optimizers.Lion``): the same with Keras's decay
    ``p = p - p*wd*lr`` first. Use a learning rate 3-10x smaller than AdamW's and a weight
    decay 3-10x larger.

    Parameters: params, lr (default 1e-4; Keras 1e-3), betas (default (0.9, 0.99)),
    weight_decay, maximize, convention.
    """ + _COMMON_DOC

    _rules = {"torch": "lion", "keras": "lion_keras"}
    _convention_defaults = {"torch": dict(lr=1e-4), "keras": dict(lr=1e-3)}
    facts = Facts(keras="Lion",  # not in torch.optim
                  presets=(("lion", {}, 1e-4, ("step", 0.5)),))

    def __init__(self, params, lr=DEFAULT, betas=(0.9, 0.99), weight_decay=0.0, maximize=False,
                 *, convention="torch", skip_nonfinite=False, max_grad_norm=None, backend="numba"):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize),
                         convention=convention, skip_nonfinite=skip_nonfinite,
                         max_grad_norm=max_grad_norm, backend=backend)

    def _host_scalars(self, group, lr, t, gstate):
        beta1, beta2 = group["betas"]
        if self.convention == "keras":
            hyper = dict(lr=lr, weight_decay=group["weight_decay"], beta1=beta1,
                         one_minus_beta1=1 - beta1, beta2=beta2, one_minus_beta2=1 - beta2)
            return hyper, dict(has_wd=_wd_flag(group)), gstate
        hyper = dict(lr=lr, decay=1 - lr * group["weight_decay"], beta1=beta1,
                     one_minus_beta1=1 - beta1, beta2=beta2, one_minus_beta2=1 - beta2)
        return hyper, {}, gstate


OPTIMIZERS = {cls.__name__.lower(): cls for cls in
              (SGD, Adagrad, RMSprop, Adam, AdamW, Adadelta, Adamax, NAdam, RAdam, Lion)}
