"""The search space of a sweep: a small readable spec, and the trial list it gives.

``parse_space`` reads the spec into a ``Space`` of ``Term``s; ``plan_trials`` turns a space
into the sweep's ``Trial`` list (deterministic for a seed); ``optimizer_kwargs`` says which
``fastopt.optim`` class and arguments a trial's settings mean. The optimizer names and
their defaults come from ``fastopt.experiments.training`` (those of ``fastopt compare``).

Grammar (whitespace separates terms; spaces inside parentheses and quotes are fine)::

    space := term { term }
    term  := NAME "=" VALUE
    VALUE := loguniform(a, b) | uniform(a, b)          real values, a < b
           | int(a, b) | intloguniform(a, b)            integers a..b (both included)
           | choice(x, y, ...)                          one of the values, each equally likely
           | grid(x, y, ...)                            every value: the Cartesian product
           | x                                          a fixed value

    NAME: optimizer, lr, weight_decay (wd), momentum, batch_size (batch), schedule, seed

    >>> space = parse_space("lr=loguniform(1e-6,1e-2) wd=loguniform(1e-8,1e-4) "
    ...                     "optimizer=choice(sgd,adam)")
    >>> space.text()
    'optimizer=choice(sgd,adam) lr=loguniform(1e-06,0.01) weight_decay=loguniform(1e-08,0.0001)'
    >>> [t.settings["optimizer"] for t in plan_trials(space, 4, seed=1)]
    ['sgd', 'adam', 'adam', 'sgd']
    >>> plan_trials(space, 4, seed=1)[0].id
    '0000-c9db9726'

Values: ``optimizer`` takes the names of ``fastopt compare`` (sgd, momentum, nesterov, adam,
...) with optional ``NAME:key=value`` arguments (quote a value that holds a comma:
``choice(sgd,"adam:beta1=0.8,beta2=0.99")``); ``schedule`` takes a
``fastopt.schedules.from_string`` spec (``cosine:decay_steps=400``; ``none`` for a constant
lr), started from each trial's lr; ``lr`` > 0, ``weight_decay`` >= 0, ``0 <= momentum < 1``,
``batch_size`` >= 1, ``seed`` >= 0. ``loguniform(a, b)`` draws ``10**U(log10 a, log10 b)``
(the textbook's ``lr = 10**np.random.uniform(-6, -2)``); ``intloguniform(a, b)`` draws
``floor(exp(U(log a, log(b + 1))))``, so each power of two between a and b is about as
likely as the next (batch sizes).

Trials. Without ``grid`` terms a sweep is a random search of ``trials`` draws. With them,
every combination of the grid values is run, ``trials`` times each (default once), drawing
the random terms afresh for each run. Trial ``i``'s draws come from
``numpy.random.default_rng([seed, i])``, in the fixed name order above (not the order of
the spec), so the same space and seed always give the same trial list, and a longer list
starts with the shorter one (grid sweeps list one pass over the grid, then the next).
Names left out take their defaults: optimizer sgd, its own default lr, weight decay and
momentum (``fastopt compare --help``), batch 128, no schedule, seed = the sweep's seed
(every trial then starts from the same weights and sees the same mini-batches, so trials
differ only in what was drawn; add ``seed=int(0,999)`` or ``seed=grid(0,1,2)`` to vary it).

A trial's id is its index and a short hash of its settings (``0007-3fa9c1d2``).

Nothing here imports numba, matplotlib or dask.
"""

import hashlib
import itertools
import json
import math
import re
from typing import NamedTuple

import numpy as np

from .. import runs, specs

#: the names a space may set, in the order draws are made (and columns are written)
NAMES = ("optimizer", "lr", "weight_decay", "momentum", "batch_size", "schedule", "seed")
ALIASES = {"wd": "weight_decay", "batch": "batch_size", "learning_rate": "lr",
           "opt": "optimizer"}
REAL_DISTS = ("loguniform", "uniform")
INT_DISTS = ("int", "intloguniform")
LIST_DISTS = ("choice", "grid")
DISTS = REAL_DISTS + INT_DISTS + LIST_DISTS


class _Kind(NamedTuple):
    kind: str  # "real", "int", "optimizer", "schedule"
    low: float  # smallest valid value (reals and ints)
    low_open: bool
    high: float
    high_open: bool
    example: str


_KINDS = {
    "optimizer": _Kind("optimizer", 0, False, 0, False, "optimizer=choice(sgd,adam)"),
    "lr": _Kind("real", 0.0, True, math.inf, True, "lr=loguniform(1e-6,1e-2)"),
    "weight_decay": _Kind("real", 0.0, False, math.inf, True, "wd=loguniform(1e-8,1e-4)"),
    "momentum": _Kind("real", 0.0, False, 1.0, True, "momentum=uniform(0.5,0.99)"),
    "batch_size": _Kind("int", 1, False, math.inf, True, "batch=choice(32,128,512)"),
    "schedule": _Kind("schedule", 0, False, 0, False,
                      'schedule=choice(none,"cosine:decay_steps=400,alpha=0.01")'),
    "seed": _Kind("int", 0, False, math.inf, True, "seed=grid(0,1,2)"),
}

_LIST_EXAMPLES = {"optimizer": "sgd,adam", "lr": "1e-3,1e-2", "weight_decay": "0,1e-4",
                  "momentum": "0.9,0.99", "batch_size": "32,128", "schedule": "none,cosine:"
                  "decay_steps=400", "seed": "0,1,2"}

#: names -> fixed defaults (lr, weight_decay and momentum: the optimizer's own)
DEFAULTS = {"optimizer": "sgd", "batch_size": 128, "schedule": None}


class Term(NamedTuple):
    """One term of a space: ``name=dist(args)``. ``args``: (a, b) for ranges, the values
    for choice/grid, (value,) for ``fixed``."""

    name: str
    dist: str  # one of DISTS, or "fixed"
    args: tuple

    def text(self):
        if self.dist == "fixed":
            return f"{self.name}={_value_text(self.args[0])}"
        return f"{self.name}={self.dist}({','.join(_value_text(a) for a in self.args)})"

    def draw(self, rng):
        a = self.args
        if self.dist == "loguniform":
            return float(10.0 ** rng.uniform(math.log10(a[0]), math.log10(a[1])))
        if self.dist == "uniform":
            return float(rng.uniform(a[0], a[1]))
        if self.dist == "int":
            return int(rng.integers(a[0], a[1], endpoint=True))
        if self.dist == "intloguniform":
            value = math.floor(math.exp(rng.uniform(math.log(a[0]), math.log(a[1] + 1))))
            return int(min(max(value, a[0]), a[1]))
        if self.dist == "choice":
            return a[int(rng.integers(len(a)))]
        raise AssertionError(self.dist)  # grid and fixed values are not drawn


class Space(NamedTuple):
    """A parsed search space: its terms in NAMES order."""

    terms: tuple

    def __contains__(self, name):
        return any(t.name == name for t in self.terms)

    def term(self, name):
        return next((t for t in self.terms if t.name == name), None)

    def text(self):
        """The canonical spec (names in NAMES order, numbers as Python writes them)."""
        return " ".join(t.text() for t in self.terms)

    @property
    def grid_terms(self):
        return tuple(t for t in self.terms if t.dist == "grid")

    @property
    def grid_points(self):
        """Combinations of the grid values (1 without grid terms)."""
        return math.prod(len(t.args) for t in self.grid_terms)

    def varies(self, name):
        """Whether ``name`` takes more than one value in this space."""
        term = self.term(name)
        return term is not None and term.dist != "fixed" and not (
            term.dist in LIST_DISTS and len(term.args) == 1)


class Trial(NamedTuple):
    """One trial: its index in the sweep, its id and its settings (every name in NAMES;
    ``momentum`` is None for an optimizer without one, ``schedule`` None for a constant
    lr)."""

    index: int
    id: str
    settings: dict


# ---------------------------------------------------------------------------------------
# parsing


def parse_space(text, flag="--space", grid=False):
    """Read a space spec; a ``Space``. ``grid=True`` turns every ``choice`` into ``grid``
    (the ``--grid`` switch). Raises ValueError naming ``flag``, the bad term and the fix."""
    if not isinstance(text, str):
        raise TypeError(f"{flag} must be a string such as 'lr=loguniform(1e-6,1e-2)', got "
                        f"{type(text).__name__}")
    words = _split(text, flag)
    if not words:
        raise ValueError(f"{flag} is empty; give terms NAME=VALUE separated by spaces, e.g. "
                         "'lr=loguniform(1e-6,1e-2) optimizer=choice(sgd,adam)'")
    terms = {}
    for word in words:
        term = _parse_term(word, flag)
        if term.name in terms:
            raise ValueError(f"{flag}: {term.name!r} is set twice ({terms[term.name].text()} "
                             f"and {word}); give each name once")
        if grid and term.dist == "choice":
            term = term._replace(dist="grid")
        terms[term.name] = term
    _check_optimizer_overrides(terms, flag)
    return Space(tuple(terms[n] for n in NAMES if n in terms))


def _split(text, flag, sep=None):
    """Split at whitespace (``sep`` None) or at ``sep``, outside parentheses and quotes."""
    return specs.split(text, flag, sep)


_CALL = re.compile(r"([A-Za-z_]\w*)\s*\((.*)\)", re.DOTALL)


def _parse_term(word, flag):
    name, eq, value = word.partition("=")
    key = name.strip().lower()
    if not eq or not key or not value.strip():
        raise ValueError(f"{flag}: cannot read the term {word!r}; write NAME=VALUE, e.g. "
                         "lr=loguniform(1e-6,1e-2) (no spaces around '=')")
    key = ALIASES.get(key, key)
    if key not in _KINDS:
        raise ValueError(f"{flag}: unknown name {name.strip()!r} in {word!r}; valid: "
                         + ", ".join(NAMES) + " (short forms: "
                         + ", ".join(f"{a}={b}" for a, b in ALIASES.items()) + ")")
    kind = _KINDS[key]
    value = value.strip()
    call = _CALL.fullmatch(value)
    if call is None:
        if "(" in value or ")" in value:
            raise ValueError(f"{flag}: cannot read {word!r}; a distribution is written "
                             f"dist(a,b,...), e.g. {kind.example}")
        return Term(key, "fixed", (_typed(key, _unquote(value), word, flag),))
    dist, inner = call.group(1).lower(), call.group(2)
    allowed = _allowed(kind)
    if dist not in DISTS:
        raise ValueError(f"{flag}: unknown distribution {call.group(1)!r} in {word!r}; "
                         f"valid for {key}: {', '.join(allowed)}, or a fixed value")
    if dist not in allowed:
        raise ValueError(f"{flag}: {key} cannot be drawn from {dist}() in {word!r}; valid "
                         f"for {key}: {', '.join(allowed)}, or a fixed value "
                         f"(e.g. {kind.example})")
    args = _split(inner, flag, sep=",") if inner.strip() else []
    if dist in LIST_DISTS:
        return _list_term(key, dist, args, word, flag)
    return _range_term(key, dist, args, word, flag)


def _list_term(key, dist, args, word, flag):
    """``choice(...)`` or ``grid(...)``: one or more values, each once."""
    if not args:
        raise ValueError(f"{flag}: {dist}() in {word!r} is empty; list at least one "
                         f"value, e.g. {key}={dist}({_LIST_EXAMPLES[key]})")
    values = []
    for arg in args:
        if not arg:
            raise ValueError(f"{flag}: an empty value in {word!r} (two commas in a row, "
                             "or a comma at the end)")
        values.append(_typed(key, _unquote(arg), word, flag))
    seen = set()
    for v in values:
        if _value_text(v) in seen:
            raise ValueError(f"{flag}: {dist}() in {word!r} lists {_value_text(v)} "
                             "twice; give each value once")
        seen.add(_value_text(v))
    return Term(key, dist, tuple(values))


def _range_term(key, dist, args, word, flag):
    """``loguniform(a,b)``, ``uniform(a,b)``, ``int(a,b)``, ``intloguniform(a,b)``."""
    example = _KINDS[key].example
    if len(args) != 2 or not all(args):
        raise ValueError(f"{flag}: {dist}() in {word!r} needs two numbers, the low and high "
                         f"ends: {dist}(a,b), e.g. {example}")
    a, b = (_number(key, x, word, flag, integer=dist in INT_DISTS) for x in args)
    if not a < b:
        raise ValueError(f"{flag}: the range of {word!r} is empty; {dist}(a,b) needs "
                         f"a < b, got a={_value_text(a)}, b={_value_text(b)} (for one value "
                         f"write {key}={_value_text(a)})")
    if dist in ("loguniform", "intloguniform") and a <= 0:
        need = "0 < a < b" if dist == "loguniform" else "1 <= a < b"
        raise ValueError(f"{flag}: {dist}(a,b) in {word!r} needs {need}, got "
                         f"a={_value_text(a)}; a log scale cannot reach "
                         f"{_value_text(a)} (use uniform or choice to include 0)")
    for end in (a, b):
        _check_range(key, end, word, flag)
    return Term(key, dist, (a, b))


def _allowed(kind):
    if kind.kind == "real":
        return REAL_DISTS + LIST_DISTS
    if kind.kind == "int":
        return INT_DISTS + LIST_DISTS
    return LIST_DISTS


def _unquote(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def _number(key, text, word, flag, integer=False):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{flag}: cannot read {text!r} in {word!r} as a number "
                         f"(e.g. 1e-3, 0.5{', 128' if integer else ''})") from None
    if not math.isfinite(value):
        raise ValueError(f"{flag}: {text!r} in {word!r} is not a finite number")
    if integer:
        if not value.is_integer():
            raise ValueError(f"{flag}: {key} takes whole numbers, got {text!r} in {word!r}")
        return int(value)
    return value


def _check_range(key, value, word, flag):
    k = _KINDS[key]
    low_bad = value <= k.low if k.low_open else value < k.low
    high_bad = value >= k.high if k.high_open else value > k.high
    if low_bad or high_bad:
        low = f"{'>' if k.low_open else '>='} {_value_text(k.low)}"
        high = "" if math.isinf(k.high) else \
            f" and {'<' if k.high_open else '<='} {_value_text(k.high)}"
        raise ValueError(f"{flag}: {key} must be {low}{high}, but {word!r} allows "
                         f"{_value_text(value)}")


def _typed(key, text, word, flag):
    """One value of ``key`` from its text, checked."""
    kind = _KINDS[key]
    if not text:
        raise ValueError(f"{flag}: an empty value in {word!r}")
    if kind.kind == "optimizer":
        return _optimizer_value(text, word, flag)
    if kind.kind == "schedule":
        return _schedule_value(text, word, flag)
    value = _number(key, text, word, flag, integer=kind.kind == "int")
    _check_range(key, value, word, flag)
    return value


def _optimizer_value(text, word, flag):
    from ..experiments import optspec, training

    try:
        specs = training.parse_optimizers(text, flag=f"{flag} {word!r}")
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if len(specs) != 1:
        raise ValueError(f"{flag}: {text!r} in {word!r} names {len(specs)} optimizers; an "
                         "optimizer's own arguments go after ':' and a value with commas "
                         "is quoted, e.g. choice(sgd,\"adam:beta1=0.8,beta2=0.99\")")
    label, name, overrides = specs[0]
    for key in ("lr", "weight_decay"):
        if key in overrides:
            short = "wd" if key == "weight_decay" else key
            raise ValueError(f"{flag}: {label!r} in {word!r} sets {key}; sweep it as a term "
                             f"of its own ({short}=...) instead")
    config = training.configure(name, overrides, label)
    optspec.check_arguments(label, config.cls, config.kwargs, flag=f"{flag} {word!r}")
    return label


def _schedule_value(text, word, flag):
    from .. import schedules

    if text.lower() in ("none", "constant"):
        return None
    try:
        schedules.from_string(text, 0.1)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag}: schedule {text!r} in {word!r}: {exc}") from None
    return text


def _check_optimizer_overrides(terms, flag):
    """An optimizer's own ``momentum=`` and a ``momentum`` term may not both be given."""
    if "momentum" not in terms or "optimizer" not in terms:
        return
    for label in terms["optimizer"].args:
        if ":" in label and "momentum=" in label.split(":", 1)[1]:
            raise ValueError(f"{flag}: {label!r} sets momentum, and so does the term "
                             f"{terms['momentum'].text()}; keep one")


def _value_text(value):
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and ("," in value or " " in value):
        return f'"{value}"'
    return str(value)


# ---------------------------------------------------------------------------------------
# the trial list


def plan_trials(space, trials=None, seed=0, defaults=None):
    """The sweep's trials, in order: ``trials`` random draws (default 20), or with grid
    terms ``trials`` passes (default 1) over the grid's combinations. ``defaults``
    overrides DEFAULTS for names the space leaves out (e.g. ``{"batch_size": 100}``)."""
    if trials is None:
        trials = 1 if space.grid_terms else 20
    trials = runs.check_count("trials", _python_int(trials))
    seed = runs.check_count("seed", _python_int(seed), low=0)
    grid = space.grid_terms
    points = list(itertools.product(*(t.args for t in grid)))
    out = []
    for index in range(int(trials) * len(points)):
        rng = np.random.default_rng([int(seed), index])
        point = dict(zip((t.name for t in grid), points[index % len(points)]))
        drawn = {}
        for term in space.terms:
            if term.dist == "grid":
                drawn[term.name] = point[term.name]
            elif term.dist == "fixed":
                drawn[term.name] = term.args[0]
            else:
                drawn[term.name] = term.draw(rng)
        settings = resolve(drawn, seed, defaults)
        out.append(Trial(index, trial_id(index, settings), settings))
    return out


def _python_int(value):
    """A NumPy integer as a Python int (counts may come from NumPy too); anything else as
    it is, for the check to judge."""
    return int(value) if isinstance(value, np.integer) else value


def resolve(drawn, seed=0, defaults=None):
    """Every name's value for one trial: ``drawn`` values, else the defaults (lr, weight
    decay and momentum: the optimizer's own; momentum None if it has none)."""
    from ..experiments import optspec, training

    base = dict(DEFAULTS, seed=int(seed), **(defaults or {}))
    optimizer = drawn.get("optimizer", base["optimizer"])
    (_, name, overrides), = training.parse_optimizers(optimizer)
    config = training.configure(name, overrides, optimizer)
    takes_momentum = "momentum" in optspec.options_of(config.cls)
    settings = {
        "optimizer": optimizer,
        "lr": float(drawn.get("lr", config.kwargs["lr"])),
        "weight_decay": float(drawn.get("weight_decay",
                                        config.kwargs.get("weight_decay", 0.0))),
        "momentum": (float(drawn.get("momentum", config.kwargs.get("momentum", 0.0)))
                     if takes_momentum else None),
        "batch_size": int(drawn.get("batch_size", base["batch_size"])),
        "schedule": drawn.get("schedule", base["schedule"]),
        "seed": int(drawn.get("seed", base["seed"])),
    }
    return settings


def trial_id(index, settings):
    """``NNNN-hhhhhhhh``: the index and a hash of the settings."""
    blob = json.dumps({k: settings[k] for k in NAMES}, sort_keys=True,
                      default=repr).encode()
    return f"{index:04d}-{hashlib.sha1(blob).hexdigest()[:8]}"


def optimizer_kwargs(settings):
    """(fastopt.optim class name, its keyword arguments) for one trial's settings."""
    from ..experiments import training

    (_, name, overrides), = training.parse_optimizers(settings["optimizer"])
    config = training.configure(name, overrides, settings["optimizer"], lr=settings["lr"])
    kwargs = dict(config.kwargs, weight_decay=settings["weight_decay"])
    if settings["momentum"] is not None:
        kwargs["momentum"] = settings["momentum"]
    return config.cls, kwargs
