"""Slow, obviously-correct NumPy reference implementations of optimizer updates.

This module is the oracle that the Numba kernels of ``fastopt`` are tested
against.  It is written straight from the formulas, one vectorised NumPy
expression per line of the algorithm, with clarity preferred over speed.  It
imports neither numba nor torch; ``tests/test_reference.py`` proves it against
``torch.optim`` (torch 2.13, ``foreach=False`` "single tensor" path) and
against Keras 3 (torch backend).

Public interface
----------------
``RefOptimizer(name, params, convention="torch", **hyper)``
    ``name``: one of ``NAMES`` (lowercase).  ``params``: list of float32 /
    float64 NumPy arrays, updated IN PLACE by ``step``.  ``convention``:
    ``"torch"`` (all optimizers) or ``"keras"`` (all but radam, which Keras
    lacks).  ``hyper``: hyperparameters named as in ``torch.optim``;
    missing ones take ``DEFAULTS[name]`` (torch) or ``KERAS_DEFAULTS[name]``
    (keras).  ``lr`` may be a float or a callable
    ``step -> lr`` where ``step`` is the 0-based index of the update.

``RefOptimizer.step(grads, grad_scale=1.0)``
    One update of every param.  Each gradient is first multiplied by
    ``grad_scale`` (cast to the array dtype), which emulates gradient
    clipping / unscaling fused into the step: the result equals torch fed
    with ``grad * grad_scale``.  ``grads`` are not modified.

``RefOptimizer.lr_at(step)``   learning rate used by the update with 0-based
                               index ``step`` (float).
``RefOptimizer.t``             number of updates taken so far (torch's
                               ``state["step"]``; the update being computed
                               uses ``t`` = 1, 2, ...).
``RefOptimizer.state``         list (one per param) of dicts
                               ``symbol -> ndarray`` (same dtype as the
                               param).  Only the symbols in use for the
                               chosen options are present, in the order of
                               ``STATE_NAMES[name]``.
``RefOptimizer.state_names()`` the tuple of symbols present.
``RefOptimizer.hyper``         resolved hyperparameters (defaults filled in).

``DEFAULTS[name]``       torch 2.13 signature defaults, except Adagrad's
                         ``initial_accumulator_value`` which is ``None`` =
                         "0.0 for torch, 0.1 (Keras' default) for keras".
                         The keras convention uses the same (torch) names:
                         ``alpha`` is Keras' ``rho``, ``eps`` its ``epsilon``,
                         ``betas`` its ``(beta_1, beta_2)``.
``KERAS_DEFAULTS[name]`` Keras 3.15 signature defaults under those names
                         (``weight_decay=None`` is 0; NAdam's
                         ``momentum_decay=1.0`` is Keras' 0.96**t schedule).
``STATE_NAMES[name]``    every state symbol the optimizer can have.
``TORCH_STATE_KEYS[name]`` symbol -> key in ``torch.optim`` state dicts.
``KERAS_STATE_KEYS[name]`` symbol -> Keras optimizer attribute holding the
                         list of those variables (keras convention).

Numerics (mirrors torch)
------------------------
* Array arithmetic is done in the param dtype.  Python-scalar hyper-
  parameters are cast to that dtype when combined with arrays (``self._c``).
* Per-step scalars (bias corrections, step sizes, NAdam's mu, RAdam's
  rectification, Adagrad's decayed lr, ``1 - beta`` ...) are computed on the
  host in Python float64 and only then cast, exactly as torch does with its
  ``_get_value(step)`` Python floats.
* The only scalar torch keeps as a *tensor* is NAdam's ``mu_product`` (dtype
  ``_get_scalar_dtype()`` = the default dtype: float32 unless the default is
  float64).  The reference stores it as a 0-d array in the param dtype, which
  equals torch whenever the torch default dtype equals the param dtype (the
  normal float32 setup, and float64 params with
  ``torch.set_default_dtype(torch.float64)``).  torch multiplies it in that
  dtype and then reads it back as a Python float.
* ``torch.lerp`` is reproduced exactly (``_lerp``): ATen computes
  ``a + w*(b-a)`` if ``|w| < 0.5`` else ``b - (b-a)*(1-w)``, with ``w`` cast to
  the tensor dtype first; ``exp_avg.lerp_(grad, 1-beta1)`` therefore takes the
  second branch when ``beta1 < 0.5``.
* torch's CPU ``add_(x, alpha=a)`` uses a fused multiply-add in its
  vectorised loop, so the reference can differ from torch by an ulp or so per
  operation; it is not meant to be bit-identical.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import numpy as np

__all__ = [
    "NAMES",
    "KERAS_NAMES",
    "DEFAULTS",
    "KERAS_DEFAULTS",
    "STATE_NAMES",
    "TORCH_STATE_KEYS",
    "KERAS_STATE_KEYS",
    "RefOptimizer",
]

NAMES = (
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "adadelta",
    "adamax",
    "nadam",
    "radam",
    "lion",
)
KERAS_NAMES = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "adadelta", "adamax",
               "nadam", "lion")

# torch.optim 2.13 defaults (Lion: Chen et al. 2023).
DEFAULTS = {
    # torch.optim.SGD's signature default is lr=1e-3 as well.
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                weight_decay=0.0, maximize=False),
    # initial_accumulator_value=None -> 0.0 (torch) / 0.1 (keras convention).
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                    initial_accumulator_value=None, eps=1e-10, maximize=False),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                    momentum=0.0, centered=False, maximize=False),
    # torch 2.13 Adam also takes decoupled_weight_decay (True == AdamW).
    "adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False, decoupled_weight_decay=False),
    "adamw": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                  amsgrad=False, maximize=False),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                     maximize=False),
    "adamax": dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   maximize=False),
    "nadam": dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  momentum_decay=4e-3, decoupled_weight_decay=False,
                  maximize=False),
    "radam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False, maximize=False),
    "lion": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
                 maximize=False),
}

# Keras 3.15 defaults (keras/src/optimizers/*.py), in torch's names; the rest as DEFAULTS.
_KERAS_OVERRIDES = {
    "sgd": dict(lr=1e-2),
    "adagrad": dict(lr=1e-3, initial_accumulator_value=0.1, eps=1e-7),
    "rmsprop": dict(lr=1e-3, alpha=0.9, eps=1e-7),
    "adam": dict(eps=1e-7),
    "adamw": dict(eps=1e-7, weight_decay=4e-3),
    "adadelta": dict(lr=1e-3, rho=0.95, eps=1e-7),
    "adamax": dict(lr=1e-3, eps=1e-7),
    # Keras' Nadam: mu_t = beta_1 * (1 - 0.5 * 0.96**t), torch's formula with psi = 1
    "nadam": dict(lr=1e-3, eps=1e-7, momentum_decay=1.0),
    "lion": dict(lr=1e-3),
}
KERAS_DEFAULTS = {n: {**DEFAULTS[n], **_KERAS_OVERRIDES[n]} for n in KERAS_NAMES}

# Math symbols of the per-param state arrays (all that can occur).
STATE_NAMES = {
    "sgd": ("b",),                  # momentum buffer (only if momentum != 0)
    "adagrad": ("s",),              # sum of squared gradients
    "rmsprop": ("v", "gm", "b"),    # square avg, grad avg (centered), momentum buf
    "adam": ("m", "v", "vmax"),     # 1st moment, 2nd moment, max 2nd moment (amsgrad)
    "adamw": ("m", "v", "vmax"),
    "adadelta": ("v", "u"),         # square avg of grads, square avg of updates
    "adamax": ("m", "u"),           # 1st moment, exponentially weighted inf-norm
    "nadam": ("m", "v", "mu_prod"),  # mu_prod: 0-d array, product of mu_1..mu_t
    "radam": ("m", "v"),
    "lion": ("m",),
}

TORCH_STATE_KEYS = {
    "sgd": {"b": "momentum_buffer"},
    "adagrad": {"s": "sum"},
    "rmsprop": {"v": "square_avg", "gm": "grad_avg", "b": "momentum_buffer"},
    "adam": {"m": "exp_avg", "v": "exp_avg_sq", "vmax": "max_exp_avg_sq"},
    "adamw": {"m": "exp_avg", "v": "exp_avg_sq", "vmax": "max_exp_avg_sq"},
    "adadelta": {"v": "square_avg", "u": "acc_delta"},
    "adamax": {"m": "exp_avg", "u": "exp_inf"},
    "nadam": {"m": "exp_avg", "v": "exp_avg_sq", "mu_prod": "mu_product"},
    "radam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "lion": {},
}

# Keras 3 optimizer attribute (a list indexed by opt._get_variable_index(var)).
KERAS_STATE_KEYS = {
    "sgd": {"b": "momentums"},
    "adagrad": {"s": "_accumulators"},
    "rmsprop": {"v": "_velocities", "gm": "_average_gradients", "b": "_momentums"},
    "adam": {"m": "_momentums", "v": "_velocities", "vmax": "_velocity_hats"},
    "adamw": {"m": "_momentums", "v": "_velocities", "vmax": "_velocity_hats"},
    "adadelta": {"v": "_accumulated_grads", "u": "_accumulated_delta_vars"},
    "adamax": {"m": "_m", "u": "_u"},
    "nadam": {"m": "_momentums", "v": "_velocities"},  # mu_prod: one _u_product
    "lion": {"m": "_momentums"},
}

LR = Union[float, Callable[[int], float]]


def _lerp(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """torch.lerp(a, b, weight) exactly as ATen computes it (Lerp.h).

    The weight (a Python float, e.g. ``1 - beta1`` computed in float64) is cast
    to the array dtype first; the branch is chosen on |weight| < 0.5.
    """
    w = a.dtype.type(weight)
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (a.dtype.type(1) - w)


class RefOptimizer:
    """Reference optimizer; see the module docstring for the interface."""

    def __init__(self, name: str, params: Sequence[np.ndarray],
                 convention: str = "torch", **hyper):
        name = name.lower()
        if name not in DEFAULTS:
            raise ValueError(f"unknown optimizer {name!r}; expected one of {NAMES}")
        if convention not in ("torch", "keras"):
            raise ValueError(f"convention must be 'torch' or 'keras', got {convention!r}")
        if convention == "keras" and name not in KERAS_NAMES:
            raise ValueError(f"convention='keras' is only defined for {KERAS_NAMES}")
        unknown = set(hyper) - set(DEFAULTS[name])
        if unknown:
            raise TypeError(f"{name}: unknown hyperparameters {sorted(unknown)}")

        h = dict(KERAS_DEFAULTS[name] if convention == "keras" else DEFAULTS[name])
        h.update(hyper)
        if "betas" in h:
            b1, b2 = h["betas"]
            h["betas"] = (float(b1), float(b2))
        if name == "adagrad" and h["initial_accumulator_value"] is None:
            h["initial_accumulator_value"] = 0.1 if convention == "keras" else 0.0
        if convention == "keras":
            # Options Keras 3 does not have (maximize is our own extension).
            if name == "sgd" and h["dampening"] != 0:
                raise ValueError("Keras SGD has no dampening")
            if name == "adagrad" and h["lr_decay"] != 0:
                raise ValueError("Keras Adagrad has no lr_decay")

        self.name = name
        self.convention = convention
        self.hyper = h
        self.params = list(params)
        for p in self.params:
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                raise TypeError("params must be float32 or float64 NumPy arrays")
        self.t = 0
        self.state = [self._init_state(p) for p in self.params]

    # ------------------------------------------------------------------ helpers
    def lr_at(self, step: int) -> float:
        """Learning rate of the update with 0-based index ``step``."""
        lr = self.hyper["lr"]
        return float(lr(step)) if callable(lr) else float(lr)

    def state_names(self) -> tuple:
        return tuple(self.state[0]) if self.state else ()

    @staticmethod
    def _c(x, like: np.ndarray):
        """Cast a host (Python float64) scalar to the array dtype."""
        return like.dtype.type(x)

    def _active_state(self) -> tuple:
        h, n = self.hyper, self.name
        if n == "sgd":
            return ("b",) if h["momentum"] != 0 else ()
        if n == "rmsprop":
            return ("v",) + (("gm",) if h["centered"] else ()) + (
                ("b",) if h["momentum"] > 0 else ())
        if n in ("adam", "adamw"):
            return ("m", "v") + (("vmax",) if h["amsgrad"] else ())
        return STATE_NAMES[n]

    def _init_state(self, p: np.ndarray) -> dict:
        st = {}
        for k in self._active_state():
            if k == "mu_prod":
                # torch: torch.tensor(1.0, dtype=_get_scalar_dtype()); see module doc.
                st[k] = np.ones((), dtype=p.dtype)
            elif k == "s":
                # torch: full_like(p, initial_accumulator_value); Keras: Constant init.
                st[k] = np.full_like(p, self.hyper["initial_accumulator_value"])
            else:
                st[k] = np.zeros_like(p)
        return st

    # --------------------------------------------------------------------- step
    def step(self, grads: Sequence[np.ndarray], grad_scale: float = 1.0) -> None:
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError("need one gradient per param")
        lr = self.lr_at(self.t)  # 0-based index of this update
        self.t += 1
        t = self.t               # 1-based step count, as torch's state["step"]
        update = getattr(self, f"_{self.convention}_{self.name}")
        for p, g, st in zip(self.params, grads, self.state):
            g = np.asarray(g)
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError("gradient shape/dtype must match its param")
            g = g * self._c(grad_scale, p)          # never modifies the caller's array
            if self.hyper["maximize"]:
                g = -g
            update(p, g, st, lr, t)

    # ----------------------------------------------------------- torch helpers
    def _coupled_wd(self, p, g):
        """torch: grad = grad.add(param, alpha=weight_decay)."""
        wd = self.hyper["weight_decay"]
        return g + self._c(wd, p) * p if wd != 0 else g

    def _decoupled_wd(self, p, lr):
        """torch: param.mul_(1 - lr * weight_decay) (scalar formed in float64)."""
        wd = self.hyper["weight_decay"]
        if wd != 0:
            p[...] = p * self._c(1.0 - lr * wd, p)

    def _wd(self, p, g, lr, decoupled):
        if decoupled:
            self._decoupled_wd(p, lr)
            return g
        return self._coupled_wd(p, g)

    # ---------------------------------------------------- torch-convention math
    def _torch_sgd(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        g = self._coupled_wd(p, g)
        mom = h["momentum"]
        if mom != 0:
            b = st["b"]
            if t == 1:
                # torch: the buffer is None before the first step and is set to
                # a clone of the gradient (no dampening, no momentum factor).
                b[...] = g
            else:
                # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                b[...] = b * c(mom, p) + c(1.0 - h["dampening"], p) * g
            g = g + c(mom, p) * b if h["nesterov"] else b
        p[...] = p - c(lr, p) * g

    def _torch_adagrad(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        g = self._coupled_wd(p, g)
        clr = lr / (1 + (t - 1) * h["lr_decay"])       # host float64
        s = st["s"]
        s[...] = s + g * g                             # addcmul_(g, g, value=1)
        std = np.sqrt(s) + c(h["eps"], p)
        p[...] = p - c(clr, p) * g / std               # addcdiv_(g, std, value=-clr)

    def _torch_rmsprop(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        alpha = h["alpha"]
        g = self._coupled_wd(p, g)
        v = st["v"]
        v[...] = v * c(alpha, p) + c(1.0 - alpha, p) * g * g
        if h["centered"]:
            gm = st["gm"]
            gm[...] = _lerp(gm, g, 1.0 - alpha)        # torch uses lerp here
            avg = np.sqrt(v - gm * gm)                 # addcmul(gm, gm, value=-1).sqrt_()
        else:
            avg = np.sqrt(v)
        avg = avg + c(h["eps"], p)                     # eps added AFTER the sqrt
        if h["momentum"] > 0:                          # note: '> 0' (SGD uses '!= 0')
            b = st["b"]
            b[...] = b * c(h["momentum"], p) + g / avg
            p[...] = p - c(lr, p) * b
        else:
            p[...] = p - c(lr, p) * g / avg

    def _torch_adam_like(self, p, g, st, lr, t, decoupled):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        g = self._wd(p, g, lr, decoupled)              # after the maximize negation
        m, v = st["m"], st["v"]
        m[...] = _lerp(m, g, 1.0 - b1)
        v[...] = v * c(b2, p) + c(1.0 - b2, p) * g * g
        bc1 = 1.0 - b1 ** t                            # host float64
        bc2 = 1.0 - b2 ** t
        step_size = lr / bc1
        bc2_sqrt = bc2 ** 0.5
        if h["amsgrad"]:
            vmax = st["vmax"]
            vmax[...] = np.maximum(vmax, v)
            denom = np.sqrt(vmax) / c(bc2_sqrt, p) + c(h["eps"], p)
        else:
            denom = np.sqrt(v) / c(bc2_sqrt, p) + c(h["eps"], p)
        p[...] = p - c(step_size, p) * m / denom

    def _torch_adam(self, p, g, st, lr, t):
        self._torch_adam_like(p, g, st, lr, t, self.hyper["decoupled_weight_decay"])

    def _torch_adamw(self, p, g, st, lr, t):
        self._torch_adam_like(p, g, st, lr, t, decoupled=True)

    def _torch_adadelta(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        rho, eps = h["rho"], h["eps"]
        g = self._coupled_wd(p, g)
        v, u = st["v"], st["u"]
        v[...] = v * c(rho, p) + c(1.0 - rho, p) * g * g
        std = np.sqrt(v + c(eps, p))                   # eps inside the sqrt
        delta = np.sqrt(u + c(eps, p)) / std * g       # uses the OLD u
        u[...] = u * c(rho, p) + c(1.0 - rho, p) * delta * delta
        p[...] = p - c(lr, p) * delta

    def _torch_adamax(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        g = self._coupled_wd(p, g)
        m, u = st["m"], st["u"]
        m[...] = _lerp(m, g, 1.0 - b1)
        # torch: maximum(exp_inf * beta2, |grad| + eps)  -- eps inside the max
        u[...] = np.maximum(u * c(b2, p), np.abs(g) + c(h["eps"], p))
        clr = lr / (1.0 - b1 ** t)
        p[...] = p - c(clr, p) * m / u

    def _torch_nadam(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        psi = h["momentum_decay"]
        bc2 = 1.0 - b2 ** t
        g = self._wd(p, g, lr, h["decoupled_weight_decay"])
        mu = b1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        mu_prod = st["mu_prod"]
        mu_prod[...] = mu_prod * c(mu, mu_prod)        # tensor op in its own dtype
        m, v = st["m"], st["v"]
        m[...] = _lerp(m, g, 1.0 - b1)
        v[...] = v * c(b2, p) + c(1.0 - b2, p) * g * g
        denom = np.sqrt(v / c(bc2, p)) + c(h["eps"], p)  # sqrt(v / bc2), then + eps
        prod = float(mu_prod)                          # _get_value(mu_product)
        prod_next = prod * mu_next                     # host float64
        coef_g = -lr * (1.0 - mu) / (1.0 - prod)
        coef_m = (-lr * mu_next) / (1.0 - prod_next)
        p[...] = p + c(coef_g, p) * g / denom
        p[...] = p + c(coef_m, p) * m / denom

    def _torch_radam(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        g = self._wd(p, g, lr, h["decoupled_weight_decay"])
        m, v = st["m"], st["v"]
        m[...] = _lerp(m, g, 1.0 - b1)
        v[...] = v * c(b2, p) + c(1.0 - b2, p) * g * g
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        m_hat = m / c(bc1, p)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * (b2 ** t) / bc2
        if rho_t > 5.0:                                # strict, as torch
            rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                    / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) ** 0.5
            adaptive_lr = c(bc2 ** 0.5, p) / (np.sqrt(v) + c(h["eps"], p))
            # torch: param.add_(m_hat * lr * adaptive_lr * rect, alpha=-1)
            p[...] = p - m_hat * c(lr, p) * adaptive_lr * c(rect, p)
        else:
            p[...] = p - m_hat * c(lr, p)

    def _torch_lion(self, p, g, st, lr, t):
        # Chen et al. 2023, Algorithm 2 (decoupled weight decay).
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        m = st["m"]
        upd = m * c(b1, p) + c(1.0 - b1, p) * g        # interpolation for the update
        wd = h["weight_decay"]
        if wd != 0:
            p[...] = p * c(1.0 - lr * wd, p)
        p[...] = p - c(lr, p) * np.sign(upd)           # sign(0) == 0
        m[...] = m * c(b2, p) + c(1.0 - b2, p) * g     # momentum uses beta2

    # ---------------------------------------------------- keras-convention math
    # Follows the backend-agnostic update_step of keras/src/optimizers/*.py.
    # Keras applies weight decay DECOUPLED for every optimizer, in
    # BaseOptimizer._apply_weight_decay, BEFORE update_step and with the
    # learning rate of the current step:  p = p - p * wd * lr.
    # (Keras' torch backend runs fused foreach variants that differ from the
    # generic formulas only in rounding order.)  Keras computes Adam's beta
    # powers in the variable dtype; here they are host float64 then cast.
    def _keras_wd(self, p, lr):
        wd = self.hyper["weight_decay"]
        if wd != 0:
            p[...] = p - p * self._c(wd, p) * self._c(lr, p)

    def _keras_sgd(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        self._keras_wd(p, lr)
        mom = h["momentum"]
        if mom != 0:
            b = st["b"]                                # starts at zero (no first-step special case)
            b[...] = b * c(mom, p) - g * c(lr, p)
            if h["nesterov"]:
                p[...] = p + (b * c(mom, p) - g * c(lr, p))
            else:
                p[...] = p + b
        else:
            p[...] = p - g * c(lr, p)

    def _keras_adagrad(self, p, g, st, lr, t):
        c = self._c
        self._keras_wd(p, lr)
        s = st["s"]                                    # starts at initial_accumulator_value
        s[...] = s + g * g
        p[...] = p - (c(lr, p) * g) / np.sqrt(s + c(self.hyper["eps"], p))  # eps inside sqrt

    def _keras_rmsprop(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        rho = h["alpha"]                               # torch's alpha is Keras' rho
        self._keras_wd(p, lr)
        v = st["v"]
        v[...] = c(rho, p) * v + c(1.0 - rho, p) * (g * g)
        if h["centered"]:
            gm = st["gm"]
            gm[...] = c(rho, p) * gm + c(1.0 - rho, p) * g
            denom = v - gm * gm + c(h["eps"], p)
        else:
            denom = v + c(h["eps"], p)
        increment = (c(lr, p) * g) / np.sqrt(denom)    # eps inside sqrt
        if h["momentum"] > 0:
            b = st["b"]
            b[...] = c(h["momentum"], p) * b + increment
            p[...] = p - b
        else:
            p[...] = p - increment

    def _keras_adam(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        # Keras Adam decays decoupled too (decoupled_weight_decay is ignored).
        self._keras_wd(p, lr)
        alpha = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)   # "epsilon-hat" form
        m, v = st["m"], st["v"]
        m[...] = m + (g - m) * c(1.0 - b1, p)
        v[...] = v + (g * g - v) * c(1.0 - b2, p)
        if h["amsgrad"]:
            vmax = st["vmax"]
            vmax[...] = np.maximum(vmax, v)
            v = vmax
        p[...] = p - (m * c(alpha, p)) / (np.sqrt(v) + c(h["eps"], p))

    _keras_adamw = _keras_adam

    def _keras_adadelta(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        rho, eps = h["rho"], h["eps"]
        self._keras_wd(p, lr)
        v, u = st["v"], st["u"]
        v[...] = c(rho, p) * v + c(1.0 - rho, p) * (g * g)
        delta = -((np.sqrt(u + c(eps, p)) * g) / np.sqrt(v + c(eps, p)))
        u[...] = c(rho, p) * u + c(1.0 - rho, p) * (delta * delta)
        p[...] = p + c(lr, p) * delta

    def _keras_adamax(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        self._keras_wd(p, lr)
        m, u = st["m"], st["u"]
        m[...] = m + (g - m) * c(1.0 - b1, p)
        u[...] = np.maximum(c(b2, p) * u, np.abs(g))            # eps not inside the max
        p[...] = p - (c(lr, p) * m) / (c(1.0 - b1 ** t, p) * (u + c(h["eps"], p)))

    def _keras_nadam(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        psi = h["momentum_decay"]                      # 1.0: Keras' schedule 0.96**t
        self._keras_wd(p, lr)
        u_t = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        u_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_prod = st["mu_prod"]
        mu_prod[...] = mu_prod * c(u_t, mu_prod)       # Keras: _u_product, variable dtype
        prod = float(mu_prod)
        m, v = st["m"], st["v"]
        m[...] = m + (g - m) * c(1.0 - b1, p)
        v[...] = v + (g * g - v) * c(1.0 - b2, p)
        m_hat = (c(u_next, p) * m) / c(1.0 - prod * u_next, p) + (
            c(1.0 - u_t, p) * g) / c(1.0 - prod, p)
        v_hat = v / c(1.0 - b2 ** t, p)
        p[...] = p - (m_hat * c(lr, p)) / (np.sqrt(v_hat) + c(h["eps"], p))

    def _keras_lion(self, p, g, st, lr, t):
        h, c = self.hyper, self._c
        b1, b2 = h["betas"]
        self._keras_wd(p, lr)
        m = st["m"]
        p[...] = p - c(lr, p) * np.sign(m * c(b1, p) + g * c(1.0 - b1, p))
        m[...] = m * c(b2, p) + g * c(1.0 - b2, p)
