"""The host side shared by every optimizer: parameter groups, state, validation, dispatch.

An optimizer owns no formula. Per step it (1) checks the gradients, (2) optionally reads
them once for the total norm (fused clipping, non-finite check), (3) computes every scalar
that is the same for all elements (learning rate from the schedule, bias corrections) in
float64 and casts it to each array's dtype, then (4) launches one fused kernel per array.
Nothing is modified until every check has passed.

A loop that launches the update kernels itself (fit's compiled chunks, ``MLP.train_step``,
the GPU train step) drives the optimizer through the public step protocol, which ``step``
uses too: ``plan_steps(k)`` computes the scalars of k steps into a ``StepPlan`` without
changing anything, ``commit_steps(plan, n)`` records the n steps the loop applied.
"""

import inspect
import math
import operator

import numpy as np

from .. import _checks, _lazy
from ..schedules import as_schedule

# Numba loads with the kernels, when the first optimizer is built: importing this module
# (for the optimizer catalogue, e.g. a command's --help) stays light.
cpu = _lazy.module("fastopt.kernels.cpu")
gpu = _lazy.module("fastopt.kernels.cuda")
cy = _lazy.module("fastopt.kernels.cython")  # backend="cython"
_clip = _lazy.module("fastopt.clip")
_registry = _lazy.module("fastopt.kernels.rules")


def clip_coefficient(norm, max_norm):
    return _clip.clip_coefficient(norm, max_norm)


def global_norm(grads):
    return _clip.global_norm(grads)

CONVENTIONS = ("torch", "keras")
class _ConventionDefault:
    """The default of an argument whose default differs between the conventions.

    An optimizer's signature shows ``DEFAULT`` for such an argument; left out, it takes
    the value of the optimizer's ``convention`` (``Optimizer._convention_defaults``:
    torch's default for "torch", Keras 3's for "keras"); passed, the value passed always
    wins, even where it equals one of the defaults.
    """

    _instance = None

    def __new__(cls):  # one object, so that ``is DEFAULT`` holds after a copy or pickle
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self):
        return (_ConventionDefault, ())

    def __repr__(self):
        return "DEFAULT"


#: the signature default of the arguments that take the convention's default
DEFAULT = _ConventionDefault()

#: the host kernels an optimizer can use (``backend=``); the GPU always uses CUDA's
BACKENDS = ("numba", "cython")


def _non_negative(name, value):
    return _checks.real(name, value, low=0.0)


def _unit_interval(name, value):
    return _checks.real(name, value, low=0.0, high=1.0)


def _divisor_eps(name, value):
    """Every rule with an eps divides by a root of a running average plus (or under) eps;
    eps = 0 turns a gradient element that is 0 while its average is 0 into 0/0 = NaN."""
    value = _checks.real(name, value)
    if value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value}: the update divides by "
                         f"sqrt(average) + {name} (or sqrt(average + {name})), which is 0 "
                         "for an element whose gradients were all 0 and makes the parameter "
                         f"NaN; use a small positive {name} such as 1e-8")
    return value


# One check per hyperparameter name, shared by every optimizer that has it: validates and
# normalises (floats, bools, a tuple of two floats for betas).
HYPER_CHECKS = {
    "momentum": _non_negative,
    "dampening": _checks.real,
    "weight_decay": _non_negative,
    "eps": _divisor_eps,
    "lr_decay": _non_negative,
    "initial_accumulator_value": _non_negative,
    "momentum_decay": _non_negative,
    "alpha": _unit_interval,
    "rho": _unit_interval,
    "betas": _checks.betas,
    "nesterov": _checks.flag,
    "maximize": _checks.flag,
    "amsgrad": _checks.flag,
    "centered": _checks.flag,
    "decoupled_weight_decay": _checks.flag,
}

# One check per name of the host-side group state (``Optimizer.group_state``), for the
# values a state dict brings in: SGD's "started" (its momentum buffer holds a step), NAdam's
# "mu_product" (a product of momentum coefficients in [0, 1]).
GROUP_STATE_CHECKS = {
    "started": _checks.flag,
    "mu_product": _unit_interval,
}


class StepPlan:
    """The host side of up to k optimizer steps, made by ``Optimizer.plan_steps(k)``.

    Per parameter array i, in the order of ``param_groups`` (a model's flat buffer is
    array 0):

    - ``params[i]``: 1-D view of the parameter, updated in place by the loop's kernel.
    - ``slots[i]``: (s0, s1, s2), 1-D views of its state arrays in the order of the rule's
      state names, None for slots this configuration does not use.
    - ``hypers[i]``: (count, H) table in the parameter's dtype; row j holds step j's
      scalars ordered as ``fastopt.kernels.rules.RULES[rule].hyper``.
    - ``flags[i]``: (count, F) int64 table; row j ordered as ``RULES[rule].flags``.

    ``rule`` names the update kernel, ``count`` is the number of steps planned (k, or
    fewer when ``error`` holds the exception that stopped planning at step ``count``).
    Arrays of one parameter group and dtype share their tables.
    """

    __slots__ = ("rule", "params", "slots", "hypers", "flags", "count", "error",
                 "_owner", "_start", "_start_state", "_group_states")

    def __init__(self, owner, rule, params, slots, hypers, flags, group_states, error):
        self.rule = rule
        self.params = params
        self.slots = slots
        self.hypers = hypers
        self.flags = flags
        self.count = len(group_states)
        self.error = error
        self._owner = owner
        self._start = owner._steps  # the optimizer's steps when planned
        self._start_state = owner.group_state
        self._group_states = group_states  # group states after each planned step

    def __repr__(self):
        failed = "" if self.error is None else f", error={self.error!r}"
        return (f"StepPlan({self.rule!r}, {self.count} steps from step {self._start}, "
                f"{len(self.params)} arrays{failed})")


class Optimizer:
    """Base class. Subclasses define the hyperparameters and the per-step host scalars.

    Subclass contract:

    - ``_rules``: dict convention -> rule name in ``fastopt.kernels.rules.RULES``.
    - ``_convention_defaults``: dict convention -> {argument: default} for the arguments
      whose signature default is ``DEFAULT`` (they differ between torch and Keras 3).
    - ``_check_combination(group)``: checks that involve several hyperparameters (each one
      alone is checked by ``HYPER_CHECKS``).
    - ``_slots(group)``: the state names this configuration uses (subset of the rule's).
    - ``_host_scalars(group, lr, t, gstate)`` -> (hyper dict, flags dict, new gstate):
      everything the kernel needs for step ``t`` (1-based), ``gstate`` is the group's
      host-side scalar state (e.g. NAdam's mu product), returned updated but not stored.
    - ``_initial_state(name, group)``: fill value of a new state array (default 0).

    ``backend``: "numba" (default) or "cython" (``fastopt.kernels.cython``, the kernels
    generated by Cython from the same rules, built on first use) for NumPy arrays; GPU
    arrays always use the CUDA kernels. The backend is not part of the state dict. Loops
    that launch the kernels themselves (``plan_steps``: fit's compiled chunks,
    ``MLP.train_step``) run Numba's kernels whatever the backend, except with
    ``skip_nonfinite`` or ``max_grad_norm``, where they call ``step()`` and the backend's
    kernels run (the two give the same bits).
    """

    _rules = {}
    _convention_defaults = {}
    _hyper_checks = {}  # name -> check, for hyperparameters that HYPER_CHECKS lacks
    _group_state_checks = {}  # name -> check, for group state that GROUP_STATE_CHECKS lacks

    def __init__(self, params, defaults, *, convention="torch", skip_nonfinite=False,
                 max_grad_norm=None, backend="numba"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be {' or '.join(map(repr, BACKENDS))}, got "
                             f"{backend!r}")
        if convention not in self._rules:
            allowed = " or ".join(repr(c) for c in self._rules)
            raise ValueError(f"convention must be {allowed} for {type(self).__name__}, "
                             f"got {convention!r}")
        self.convention = convention
        self.rule = _registry.RULES[self._rules[convention]]
        table = self._convention_defaults.get(convention, {})
        missing = sorted(k for k, v in defaults.items() if v is DEFAULT and k not in table)
        if missing:
            raise TypeError(f"{type(self).__name__} has no {convention!r} default for "
                            f"{missing}: add it to its _convention_defaults")
        defaults = {k: table[k] if v is DEFAULT else v for k, v in defaults.items()}
        self.skip_nonfinite = _checks.flag("skip_nonfinite", skip_nonfinite)
        self.max_grad_norm = (None if max_grad_norm is None else
                              _checks.real("max_grad_norm", max_grad_norm, low=0.0,
                                           low_open=True))
        self.defaults = dict(defaults)
        # every hyperparameter but lr, read in one C call to notice edits of a group dict
        self._group_key = operator.itemgetter(*(k for k in self.defaults if k != "lr"))

        self._single = isinstance(params, np.ndarray) or gpu.is_device_array(params)
        self.param_groups = self._build_groups(params)
        self._params = [p for g in self.param_groups for p in g["params"]]
        on_device = {gpu.is_device_array(p) for p in self._params}
        if len(on_device) > 1:
            raise ValueError("params mixes NumPy arrays and GPU arrays; one optimizer updates "
                             "arrays in one place: use one optimizer per device")
        self.device = on_device == {True}  # True: GPU arrays, updated by the CUDA kernels
        if self.device and backend != "numba":
            raise ValueError(f"backend={backend!r} is for NumPy arrays; GPU arrays are updated "
                             "by the CUDA kernels: leave backend at its default, 'numba'")
        # the host kernels: fastopt.kernels.cpu (Numba) or fastopt.kernels.cython, same bits
        self.backend = backend
        _checks.no_overlap(self._params)
        # views, no copies
        self._flat = [gpu.flat(p) if self.device else p.reshape(-1) for p in self._params]
        self._group_of = [gi for gi, g in enumerate(self.param_groups) for _ in g["params"]]

        self.state = [dict() for _ in self._params]  # per parameter: name -> array
        self._flat_state = [(None, None, None)] * len(self._params)  # kernel slots s0..s2
        self._flags_cache = {}  # tuple of flag values -> int64 array
        self._hyper_buffers = {}  # (group, dtype) -> array refilled every step
        self.group_state = [dict() for _ in self.param_groups]  # per group: host scalars
        self._steps = 0  # updates applied (torch's state["step"])
        self.skipped_steps = 0
        self.last_grad_norm = None
        self._keys = [None] * len(self.param_groups)  # hyperparameters last validated
        self._memory = None  # MemoryMap of params and state, made when grads first come
        self._grads_apart = ()  # the grads last found apart from them (the same objects)
        for gi in range(len(self.param_groups)):
            self._refresh_group(gi)
        self._check_scalar_names()

    @classmethod
    def default_arguments(cls, convention="torch"):
        """{argument: default} of the hyperparameters under ``convention``: what an argument
        the caller leaves out becomes (``DEFAULT`` resolved to the convention's value).

        >>> from fastopt import optim
        >>> optim.RMSprop.default_arguments("keras")["alpha"]
        0.9
        """
        if convention not in cls._rules:
            allowed = " or ".join(repr(c) for c in cls._rules)
            raise ValueError(f"convention must be {allowed} for {cls.__name__}, "
                             f"got {convention!r}")
        table = cls._convention_defaults.get(convention, {})
        found = {}
        for name, par in inspect.signature(cls.__init__).parameters.items():
            if name in ("self", "params") or par.kind is par.KEYWORD_ONLY:
                continue
            found[name] = table[name] if par.default is DEFAULT else par.default
        return found

    # -----------------------------------------------------------------------------------
    # construction

    def _build_groups(self, params):
        if self._single:
            raw_groups = [{"params": [params]}]
        elif isinstance(params, dict):
            raise TypeError("params must be an array, a list of arrays or a list of dicts "
                            "(parameter groups), got a dict; wrap it in a list: [params]")
        else:
            try:
                items = list(params)
            except TypeError:
                raise TypeError("params must be a float32/float64 numpy.ndarray, a list of "
                                f"them, or a list of dicts, got {type(params).__name__}") from None
            if not items:
                raise ValueError("params is empty: give at least one array to optimize")
            if all(isinstance(x, dict) for x in items):
                raw_groups = items
            elif any(isinstance(x, dict) for x in items):
                raise TypeError("params mixes arrays and dicts: give either a list of arrays "
                                "or a list of parameter-group dicts")
            else:
                raw_groups = [{"params": items}]
        groups = []
        n = 0
        for gi, raw in enumerate(raw_groups):
            if "params" not in raw:
                raise ValueError(f"parameter group {gi} has no 'params' entry")
            unknown = set(raw) - set(self.defaults) - {"params"}
            if unknown:
                raise ValueError(f"parameter group {gi} has unknown option(s) "
                                 f"{sorted(unknown)}; valid: {sorted(self.defaults)}")
            ps = raw["params"]
            ps = [ps] if isinstance(ps, np.ndarray) or gpu.is_device_array(ps) else list(ps)
            if not ps:
                raise ValueError(f"parameter group {gi} has an empty 'params' list")
            checked = []
            for p in ps:
                if gpu.is_device_array(p):  # zero-copy Numba view of a GPU array
                    checked.append(gpu.device_array(f"params[{n}]", p))
                else:
                    checked.append(_checks.float_array(f"params[{n}]", p, writeable=True))
                n += 1
            ps = checked
            group = {**self.defaults, **{k: v for k, v in raw.items() if k != "params"}}
            group["params"] = ps
            groups.append(group)
        return groups

    def _refresh_group(self, gi):
        """(Re)validate a group's hyperparameters and allocate the state they need."""
        group = self.param_groups[gi]
        checked = dict(group)
        checked["lr"] = as_schedule(group["lr"])
        self._check_group(checked)
        slots = self._slots(checked)
        for k in self.defaults:
            if k != "lr":
                group[k] = checked[k]
        self._keys[gi] = self._group_key(group)
        created = set()
        for i, g in enumerate(self._group_of):
            if g != gi:
                continue
            p = self._params[i]
            for name in slots:
                if name not in self.state[i]:
                    value = self._initial_state(name, group)
                    self.state[i][name] = (gpu.full_like(p, value) if self.device else
                                           np.full_like(p, value))
                    created.add(name)
            for name in list(self.state[i]):
                if name not in slots:
                    del self.state[i][name]
            st = self.state[i]
            flat = [(gpu.flat(st[n]) if self.device else st[n].reshape(-1)) if n in st
                    else None for n in self.rule.state]
            self._flat_state[i] = tuple(flat + [None] * (3 - len(flat)))
        self._memory, self._grads_apart = None, ()  # the state arrays may be new
        self._on_new_state(gi, created)

    def _on_new_state(self, gi, created):
        """Hook: state arrays named in ``created`` were just allocated for group ``gi``."""

    # -----------------------------------------------------------------------------------
    # subclass hooks

    def _check_group(self, group):
        """Validate and normalise a group's hyperparameters in place (lr excluded)."""
        for key in self.defaults:
            if key != "lr":
                check = self._hyper_checks.get(key, HYPER_CHECKS.get(key))
                if check is None:
                    raise TypeError(f"{type(self).__name__} has no check for its hyperparameter "
                                    f"{key!r}: add one to its _hyper_checks")
                group[key] = check(key, group[key])
        self._check_combination(group)

    @property
    def _kernels(self):
        """The kernel module of this optimizer's arrays (a property, not an attribute: a
        module cannot be pickled, and fit's warm-up deep-copies the optimizer)."""
        return gpu if self.device else (cy if self.backend == "cython" else cpu)

    def _check_scalar_names(self):
        """The host side must fill exactly the names the rule reads (``UpdateRule.hyper`` and
        ``.flags``, declared by the rule itself): a missing or extra name is a bug of the
        optimizer class, refused when it is built instead of giving wrong numbers."""
        want_h = set(self.rule.hyper) - {"gscale"}  # gscale: clip and maximize, set per step
        for gi, group in enumerate(self.param_groups):
            hyper, flags, _ = self._host_scalars(group, 0.0, 1, dict(self.group_state[gi]))
            for what, got, want in (("hyperparameters", set(hyper), want_h),
                                    ("flags", set(flags), set(self.rule.flags))):
                if got != want:
                    raise TypeError(
                        f"{type(self).__name__}._host_scalars gives the {what} "
                        f"{sorted(got)} but rule {self.rule.name!r} reads {sorted(want)} "
                        f"(missing {sorted(want - got)}, extra {sorted(got - want)})")

    def _check_combination(self, group):
        """Hook: checks across hyperparameters."""

    def _slots(self, group):
        return self.rule.state

    def _initial_state(self, name, group):
        return 0.0

    def _host_scalars(self, group, lr, t, gstate):
        raise NotImplementedError

    # -----------------------------------------------------------------------------------
    # learning rate

    def _lr_value(self, group, step_index, gi):
        lr = group["lr"]
        if callable(lr):
            value = lr(step_index)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"the lr schedule of parameter group {gi} returned {value!r} "
                                f"at step {step_index}; it must return a float") from None
        else:
            value = lr
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                             np.integer)):
            raise TypeError(f"lr of parameter group {gi} must be a float or a schedule "
                            f"step -> float, got {value!r}")
        value = float(value)
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f"lr of parameter group {gi} must be finite and >= 0, got "
                             f"{value} at step {step_index}")
        return value

    @property
    def lr(self):
        """Learning rate the next step will use (of the first parameter group)."""
        return self._lr_value(self.param_groups[0], self._steps, 0)

    @lr.setter
    def lr(self, value):
        schedule = as_schedule(value)
        for group in self.param_groups:
            group["lr"] = value if not callable(value) else schedule

    @property
    def steps(self):
        """Number of updates applied so far (skipped steps are not counted)."""
        return self._steps

    # -----------------------------------------------------------------------------------
    # the step

    def _check_grads(self, grads):
        if self._single:
            if isinstance(grads, (list, tuple)):
                raise TypeError("grads must be one array, like params, got a "
                                f"{type(grads).__name__}")
            grads = [grads]
        elif isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of {len(self._params)} arrays matching "
                            f"params, got {type(grads).__name__}")
        if len(grads) != len(self._params):
            raise ValueError(f"grads has {len(grads)} arrays but there are "
                             f"{len(self._params)} parameters")
        flat = []
        for i, (p, g) in enumerate(zip(self._params, grads)):
            name = "grads" if self._single else f"grads[{i}]"
            if self.device:
                if not gpu.is_device_array(g):
                    raise TypeError(f"{name} is not a GPU array but the parameters are on the "
                                    "GPU; pass device arrays (numba.cuda.to_device, CuPy, "
                                    "torch CUDA tensors)")
                g = gpu.device_array(name, g)
            elif type(g) is not np.ndarray or not g.flags.c_contiguous:
                _checks.float_array(name, g, writeable=False)
            if g.shape != p.shape:
                raise ValueError(f"{name} has shape {g.shape} but its parameter has shape "
                                 f"{p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"{name} has dtype {g.dtype} but its parameter has dtype "
                                f"{p.dtype}; cast the gradient to {p.dtype}")
            flat.append(gpu.flat(g) if self.device else g.reshape(-1))
        self._check_grads_apart(grads, flat)
        return flat

    def _check_grads_apart(self, grads, flat):
        """A gradient that partly overlaps a parameter or state array (``g = buf[0:10]``,
        ``p = buf[1:11]``) would be read after the update wrote it: refused. Checked when
        the gradient arrays change (a loop that passes the same arrays every step pays
        one identity test per array)."""
        seen = self._grads_apart
        if len(seen) == len(grads) and all(map(operator.is_, grads, seen)):
            return
        if self._memory is None:
            entries = []
            for i, (p, st) in enumerate(zip(self._params, self.state)):
                entries.append((self._array_name("params", i), i, p))
                entries += [(f"the optimizer's state {k!r} of "
                             f"{self._array_name('params', i)}", i, a) for k, a in st.items()]
            self._memory = _checks.MemoryMap(entries)
        check = self._memory.check_apart
        for i, g in enumerate(flat):
            check(lambda i=i: self._array_name("grads", i), g, i)
        self._grads_apart = tuple(grads)

    def _array_name(self, what, i):
        return what if self._single else f"{what}[{i}]"

    def step(self, grads):
        """Apply one update in place. ``grads`` has the structure, shapes and dtypes of params.

        Returns True if the update was applied, False if it was skipped because a gradient
        was not finite (only with ``skip_nonfinite=True``).
        """
        flat_grads = self._check_grads(grads)
        self._refresh_if_edited()

        clip_coef = 1.0
        if self.max_grad_norm is not None or self.skip_nonfinite:
            # on the GPU: a device reduction, then a wait for its result
            if self.device:
                self.last_grad_norm, finite = gpu.global_norm(flat_grads)
            else:
                self.last_grad_norm, finite = _clip.global_norm(flat_grads, self._kernels)
            if not finite and self.skip_nonfinite:
                self.skipped_steps += 1
                return False
            if self.max_grad_norm is not None:
                clip_coef = clip_coefficient(self.last_grad_norm, self.max_grad_norm)

        # The step protocol's planner and committer with one step, minus the StepPlan
        # envelope and its checks: this runs once per step on arrays that may be tiny,
        # where they would add a third to the cost (measured: 8 us on 22 us for Adam on
        # 10 elements, the regime of asv OptimizerStep).
        rows, gstates, error = self._host_steps(1, clip_coef)
        if error is not None:
            raise error
        update = self._kernels.update
        name = self.rule.name
        filled = {}  # (group, dtype) -> (hyper, flags) rows of this step
        for p, g, gi, (s0, s1, s2) in zip(self._flat, flat_grads, self._group_of,
                                         self._flat_state):
            key = (gi, p.dtype)
            pair = filled.get(key)
            if pair is None:
                pair = filled[key] = self._step_row(rows[0][gi], key)
            update(name, p, g, s0, s1, s2, *pair)
        self._advance(gstates[0], 1)
        return True

    # -----------------------------------------------------------------------------------
    # the step protocol: plan k steps, let a loop apply them, commit the ones it applied

    def plan_steps(self, k):
        """The host side of the next ``k`` steps, for a loop that applies the updates itself.

        A compiled training loop (``fastopt.train.fit``, ``MLP.train_step``, the GPU train
        step) calls the update kernel of ``plan.rule`` for step j of the plan on every
        parameter array i as ``update(plan.params[i], grad_i, *plan.slots[i],
        plan.hypers[i][j], plan.flags[i][j])`` and then reports how many steps it applied
        with ``commit_steps(plan, n)``. Planning changes nothing (edits of
        ``param_groups`` are validated first, as ``step`` does); the steps of a plan that
        is not committed never happened.

        If the learning rate (a schedule) or another host scalar fails at step j of the
        plan, the plan holds the j good steps (``plan.count == j``) and the exception
        (``plan.error``, with a note that names the step): run and commit those, then
        raise it, and the optimizer ends exactly as after the last applied step.

        Optimizers with ``max_grad_norm`` or ``skip_nonfinite`` need each step's gradient
        norm on the host before its scalars exist: they refuse to plan (use ``step``).
        """
        k = _checks.count("k", k, low=0)
        if self.max_grad_norm is not None or self.skip_nonfinite:
            raise ValueError(f"plan_steps cannot plan steps of a {type(self).__name__} with "
                             "max_grad_norm or skip_nonfinite: each step needs its gradient "
                             "norm first; call optimizer.step(grads) once per step instead")
        self._refresh_if_edited()
        return self._plan(k, 1.0)

    def commit_steps(self, plan, n):
        """Record that the first ``n`` steps of ``plan`` (0 <= n <= plan.count) were
        applied: ``steps`` grows by n and the group state becomes that after step n. A plan
        is committed once, before the next plan is made; the rest of it is dropped."""
        self._check_own_plan(plan)
        if plan._start != self._steps:
            raise ValueError(f"this plan starts at step {plan._start} but the optimizer is at "
                             f"step {self._steps}: commit a plan once, right after running "
                             "it, then plan the next steps")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (
                0 <= n <= plan.count):
            raise ValueError(f"n must be an integer between 0 and plan.count ({plan.count}), "
                             f"got {n!r}: the number of planned steps the loop applied")
        if n:
            self._advance(plan._group_states[n - 1], int(n))

    def _advance(self, group_state, n):
        """n steps applied; ``group_state``: the group states after the last of them."""
        self.group_state = group_state
        self._steps += n

    def revert_steps(self, plan):
        """Undo ``commit_steps(plan, n)`` and every commit after it: ``steps`` and the group
        state return to what they were when ``plan`` was made.

        For a loop that commits before it learns whether its updates ran (the GPU train
        step queues them behind a device status word and reads it later). Call it only if
        none of those updates reached the parameters or the state; it does not touch them.
        """
        self._check_own_plan(plan)
        if plan._start > self._steps:
            raise ValueError(f"this plan starts at step {plan._start}, after the optimizer's "
                             f"step {self._steps}: nothing of it was committed")
        self._steps = plan._start
        self.group_state = plan._start_state

    def _check_own_plan(self, plan):
        if not isinstance(plan, StepPlan) or plan._owner is not self:
            raise TypeError("plan must come from this optimizer's plan_steps(k), got "
                            f"{type(plan).__name__}")

    def _plan(self, k, clip_coef):
        """A StepPlan of up to k steps, in new tables (a plan may outlive the next one)."""
        rows, gstates, error = self._host_steps(k, clip_coef)
        tables = {}  # (group, dtype) -> (hyper table, flags table), shared by its arrays
        hypers, flags = [], []
        for p, gi in zip(self._flat, self._group_of):
            key = (gi, p.dtype)
            pair = tables.get(key)
            if pair is None:
                pair = tables[key] = self._tables(rows, gi, p.dtype)
            hypers.append(pair[0])
            flags.append(pair[1])
        return StepPlan(self, self.rule.name, tuple(self._flat), tuple(self._flat_state),
                        tuple(hypers), tuple(flags), gstates, error)

    def _host_steps(self, k, clip_coef):
        """Host scalars of the next k steps, computed without storing anything.

        Returns (rows, group states, error): rows[j][gi] = (hyper values in float64
        ordered as ``rule.hyper``, flag tuple ordered as ``rule.flags``) of step j for
        group gi; group states[j] the group states after step j; error None, or the
        exception that stopped planning at step len(rows)."""
        rows, gstates = [], []
        gstate = self.group_state
        t0 = self._steps
        for j in range(k):
            try:
                row, new = [], []
                for gi, group in enumerate(self.param_groups):
                    lr = self._lr_value(group, t0 + j, gi)
                    hyper, fl, gs = self._host_scalars(group, lr, t0 + j + 1, gstate[gi])
                    hyper["gscale"] = -clip_coef if group.get("maximize", False) else clip_coef
                    row.append(([hyper[n] for n in self.rule.hyper],
                                tuple([int(fl[n]) for n in self.rule.flags])))
                    new.append(gs)
            except Exception as exc:  # the plan keeps the good steps; the loop raises it
                exc.add_note(f"raised planning the optimizer's step {t0 + j} (counted from "
                             f"0, the lr schedule's argument); the {j} step(s) planned "
                             "before it are good")
                return rows, gstates, exc
            rows.append(row)
            gstates.append(new)
            gstate = new
        return rows, gstates, None

    def _step_row(self, row, key):
        """``step``'s (hyper array, flags array) for one group's ``row`` of host scalars, in
        buffers reused every step; ``key`` = (group, parameter dtype)."""
        hvals, fkey = row
        h = self._hyper_buffers.get(key)
        if h is None:
            h = self._hyper_buffers[key] = np.empty(len(hvals), dtype=key[1])
        h[:] = hvals  # host float64 -> parameter dtype, once per step
        f = self._flags_cache.get(fkey)
        if f is None:
            f = self._flags_cache[fkey] = np.array(fkey, dtype=np.int64)
        return h, f

    def _tables(self, rows, gi, dtype):
        """(count x H hyper table in ``dtype``, count x F int64 flags table) of group gi."""
        hyper_names, flag_names = self.rule.hyper, self.rule.flags
        h = np.empty((len(rows), len(hyper_names)), dtype)
        if len(rows) == 1:  # a plan of one (train_step): copies of step's buffers are cheaper
            hrow, frow = self._step_row(rows[0][gi], (gi, dtype))
            h[0] = hrow
            return h, frow.reshape(1, len(flag_names)).copy()
        if rows:
            h[:] = [r[gi][0] for r in rows]
        f = np.array([r[gi][1] for r in rows], dtype=np.int64).reshape(len(rows),
                                                                      len(flag_names))
        return h, f

    def _refresh_if_edited(self):
        for gi, group in enumerate(self.param_groups):
            if self._group_key(group) != self._keys[gi]:
                self._refresh_group(gi)

    # -----------------------------------------------------------------------------------
    # state dict

    def state_dict(self):
        """A dict of plain Python values and NumPy arrays (copies) describing the state."""
        groups = []
        start = 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            if callable(entry["lr"]):
                entry["lr"] = None  # schedules are code: they stay with the optimizer
            entry["betas"] = list(entry["betas"]) if "betas" in entry else None
            if entry["betas"] is None:
                del entry["betas"]
            n = len(group["params"])
            entry["params"] = list(range(start, start + n))
            start += n
            groups.append(entry)
        return {
            "optimizer": type(self).__name__,
            "convention": self.convention,
            "steps": self._steps,
            "skipped_steps": self.skipped_steps,
            "param_groups": groups,
            "group_state": [dict(gs) for gs in self.group_state],
            "state": {i: {k: v.copy_to_host() if self.device else v.copy()
                          for k, v in st.items()} for i, st in enumerate(self.state)},
        }

    def load_state_dict(self, state_dict):
        """Restore a state dict in place, all or nothing.

        Everything is checked and converted first (class, convention, hyperparameters,
        state names, shapes and dtypes of the state arrays, the step counts, the group
        state); only then is anything changed, so a state dict that is refused leaves
        parameters, state, step counts and group state exactly as they were.
        """
        groups, arrays, group_state, steps, skipped = self._checked_state_dict(state_dict)
        # everything checked and converted: apply (nothing below depends on the input)
        for gi, hyper in enumerate(groups):
            self.param_groups[gi].update(hyper)
            self._refresh_group(gi)
        for i, k, v in arrays:
            if self.device:
                self.state[i][k].copy_to_device(np.ascontiguousarray(v))
            else:
                np.copyto(self.state[i][k], v)
        self.group_state = group_state
        self._steps = steps
        self.skipped_steps = skipped

    def _checked_state_dict(self, d):
        """(hyperparameters per group, [(array, state name, value)], group state, steps,
        skipped steps) of state dict ``d``, checked and converted; changes nothing."""
        name = type(self).__name__
        if not isinstance(d, dict) or "optimizer" not in d:
            raise TypeError("state_dict must be a dict made by Optimizer.state_dict(), got "
                            f"{type(d).__name__}")
        missing = [k for k in ("convention", "steps", "param_groups", "state", "group_state")
                   if k not in d]
        if missing:
            raise ValueError(f"state_dict lacks {', '.join(map(repr, missing))}; pass a dict "
                             "made by Optimizer.state_dict()")
        if d["optimizer"] != name:
            raise ValueError(f"state_dict is for {d['optimizer']}, not {name}")
        if d["convention"] != self.convention:
            raise ValueError(f"state_dict uses convention {d['convention']!r}, this "
                             f"optimizer {self.convention!r}")
        groups, checked = self._checked_groups(d["param_groups"])
        arrays = self._checked_state_arrays(d["state"], checked)
        group_state = self._checked_group_state(d["group_state"], checked)
        steps = _checks.whole("state_dict steps", d["steps"], 0)
        skipped = _checks.whole("state_dict skipped_steps", d.get("skipped_steps", 0), 0)
        return groups, arrays, group_state, steps, skipped

    def _checked_groups(self, saved_groups):
        """The saved hyperparameters of each group (lr None: the optimizer's own is kept),
        and each group as checked (lr a schedule), for the state and group-state checks."""
        if not isinstance(saved_groups, (list, tuple)) or not all(
                isinstance(g, dict) for g in saved_groups):
            raise TypeError("state_dict param_groups must be a list of dicts, got "
                            f"{_checks.describe(saved_groups)}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} parameter groups, the "
                             f"optimizer {len(self.param_groups)}")
        groups, checked = [], []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            indices = saved.get("params")
            if not isinstance(indices, (list, tuple)) or len(indices) != len(group["params"]):
                raise ValueError(f"parameter group {gi} of state_dict lists the arrays "
                                 f"{indices!r}, the optimizer's has {len(group['params'])}")
            hyper = {}
            for k in self.defaults:
                if k == "lr" and saved.get("lr") is None:
                    continue
                if k not in saved:
                    raise ValueError(f"state_dict parameter group {gi} lacks {k!r}")
                hyper[k] = saved[k]
            trial = {**group, **hyper}
            try:
                trial["lr"] = as_schedule(trial["lr"])
                self._check_group(trial)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"state_dict parameter group {gi}: {exc}") from None
            groups.append({k: (v if k == "lr" else trial[k]) for k, v in hyper.items()})
            checked.append(trial)
        return groups, checked

    def _checked_state_arrays(self, state, checked):
        """[(array index, state name, value as an array)], each checked against the
        parameter's shape and dtype and the names its (checked) group uses."""
        if not isinstance(state, dict):
            raise TypeError("state_dict state must be a dict {array index: {name: array}}, "
                            f"got {_checks.describe(state)}")
        if len(state) != len(self._params):
            raise ValueError(f"state_dict has state for {len(state)} arrays, the optimizer "
                             f"has {len(self._params)}")
        arrays = []
        for i, p in enumerate(self._params):
            saved = state.get(i, state.get(str(i)))
            if saved is None:
                raise ValueError(f"state_dict has no state for parameter {i}")
            if not isinstance(saved, dict):
                raise TypeError(f"state of parameter {i} must be a dict {{name: array}}, got "
                                f"{_checks.describe(saved)}")
            expected = set(self._slots(checked[self._group_of[i]]))
            if set(saved) != expected:
                raise ValueError(f"state of parameter {i} has {sorted(saved)}, expected "
                                 f"{sorted(expected)}")
            for k, v in saved.items():
                v = np.asarray(v)
                if v.shape != tuple(p.shape) or v.dtype != p.dtype:
                    raise ValueError(f"state {k!r} of parameter {i} is {v.dtype}{list(v.shape)}"
                                     f", the parameter is {p.dtype}{list(p.shape)}")
                arrays.append((i, k, v))
        return arrays

    def _checked_group_state(self, saved, checked):
        """Each group's host scalars (e.g. NAdam's mu_product), checked: only the names this
        optimizer keeps, each by ``GROUP_STATE_CHECKS`` (a NaN would poison every later
        step); returned as new dicts."""
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.param_groups):
            raise ValueError("state_dict group_state must be a list of one dict per parameter "
                             f"group ({len(self.param_groups)}), got {_checks.describe(saved)}")
        result = []
        for gi, (gs, group) in enumerate(zip(saved, checked)):
            if not isinstance(gs, dict):
                raise TypeError(f"state_dict group_state[{gi}] must be a dict, got "
                                f"{_checks.describe(gs)}")
            known = set(self._host_scalars(group, 0.0, 1, {})[2])  # the names it keeps
            unknown = sorted(set(gs) - known)
            if unknown:
                raise ValueError(f"state_dict group_state[{gi}] has {unknown}, which "
                                 f"{type(self).__name__} does not keep (it keeps "
                                 f"{sorted(known)})")
            entry = {}
            for k, v in gs.items():
                check = self._group_state_checks.get(k, GROUP_STATE_CHECKS.get(k))
                if check is None:
                    raise TypeError(f"{type(self).__name__} has no check for its group state "
                                    f"{k!r}: add one to its _group_state_checks")
                entry[k] = check(f"state_dict group_state[{gi}][{k!r}]", v)
            result.append(entry)
        return result

    def __repr__(self):
        g = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        args = ", ".join(f"{k}={v!r}" for k, v in g.items())
        extra = "" if self.convention == "torch" else f", convention={self.convention!r}"
        return (f"{type(self).__name__}({len(self._params)} arrays, {args}{extra})")
