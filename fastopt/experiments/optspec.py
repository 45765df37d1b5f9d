"""``--optimizers NAME[:key=value[,key=value...]][,NAME...]``: the optimizer lists of the
experiment commands (``paths``, ``compare``, ``sensitivity``).

A comma separates items; an item ``NAME`` or ``NAME:key=value`` starts an optimizer, a bare
``key=value`` adds an option to the optimizer before it. Keys are the arguments of the
``fastopt.optim`` class behind the name (``lr``, ``momentum``, ``eps``, ``betas`` as
``beta1``/``beta2``, ...); values are numbers or true/false. The label (CSV, legend) is
``NAME:key=value,...`` as given, or ``NAME``.

    >>> names = {"sgd": "SGD", "momentum": "SGD"}
    >>> parse_optimizers("sgd,momentum:lr=0.05,momentum=0.8", names)[1]
    ('momentum:lr=0.05,momentum=0.8', 'momentum', {'lr': 0.05, 'momentum': 0.8})

The names and their fixed arguments and default learning rates come from the optimizer
catalogue (``fastopt.optim.catalogue``); this module only reads and checks the text, with
the pieces every spec shares (``fastopt.specs``).
"""

import inspect

import numpy as np

from .. import specs

# arguments of the optimizer classes that are not per-run settings
NOT_OPTIONS = frozenset({"self", "params", "convention", "skip_nonfinite", "max_grad_norm"})


def optim_class(cls_name):
    from .. import optim

    return getattr(optim, cls_name)


def options_of(cls_name):
    """The keys ``NAME:key=value`` accepts for the fastopt.optim class ``cls_name``."""
    params = inspect.signature(optim_class(cls_name)).parameters
    keys = [k for k in params if k not in NOT_OPTIONS]
    if "betas" in keys:
        keys += ["beta1", "beta2"]
    return keys


def parse_value(option, text, flag="--optimizers"):
    """A number or true/false; ValueError naming ``flag`` and the item otherwise."""
    return specs.scalar(text, f"{flag} {option!r}")


def parse_optimizers(text, classes, flag="--optimizers", forbidden=None):
    """``text`` -> [(label, name, overrides), ...] in the order given.

    ``classes``: optimizer name -> fastopt.optim class name (the valid names, in the order
    error messages list them). ``forbidden``: {key: why} of keys this command sets itself
    (e.g. ``{"lr": "..."}``). Raises ValueError naming ``flag`` for unknown names or keys,
    malformed ``key=value`` items, a key given twice and duplicate labels.
    """
    forbidden = forbidden or {}
    parsed = []  # [name, {key: value}, [key=text, ...]]
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        head, colon, rest = item.partition(":")
        if "=" in head and not colon:
            if not parsed:
                raise ValueError(f"{flag}: {item!r} comes before any optimizer name; "
                                 "write NAME:key=value, e.g. adam:lr=0.1")
            option = item
        else:
            name = head.strip().lower()
            if name not in classes:
                raise ValueError(f"{flag}: unknown optimizer {head.strip()!r}; valid: "
                                 + ", ".join(classes))
            if colon and not rest.strip():
                raise ValueError(f"{flag}: {item!r} has nothing after ':'; write "
                                 f"{name}:key=value, e.g. {name}:lr=0.1")
            parsed.append([name, {}, []])
            option = rest if colon else None
        if option is None:
            continue
        name, overrides, texts = parsed[-1]
        pair = specs.key_value(option)
        if pair is None:
            raise ValueError(f"{flag}: bad option {option.strip()!r} for {name}; "
                             "expected key=value, e.g. lr=0.1")
        key, value = pair
        valid = [k for k in options_of(classes[name]) if k not in forbidden]
        if key in forbidden:
            raise ValueError(f"{flag}: {name}:{key}=... is not allowed here: {forbidden[key]}")
        if key not in valid:
            raise ValueError(f"{flag}: {name} has no option {key!r}; valid: "
                             + ", ".join(valid))
        if key in overrides:
            raise ValueError(f"{flag}: option {key!r} given twice for {name}")
        overrides[key] = parse_value(option.strip(), value, flag)
        texts.append(f"{key}={value}")
    if not parsed:
        raise ValueError(f"{flag} needs at least one optimizer name, got {text!r}")
    found = [(name + (":" + ",".join(texts) if texts else ""), name, overrides)
             for name, overrides, texts in parsed]
    labels = [label for label, _, _ in found]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{flag} lists the same optimizer twice: {text!r}; give the "
                         "copies different options (e.g. adam:lr=0.1,adam:lr=0.3)")
    return found


def merge(cls_name, base, overrides):
    """``base`` arguments updated with ``overrides`` (``beta1``/``beta2`` -> ``betas``)."""
    kwargs = dict(base)
    overrides = dict(overrides)
    if "beta1" in overrides or "beta2" in overrides:
        betas = kwargs.get("betas",
                           inspect.signature(optim_class(cls_name)).parameters["betas"].default)
        kwargs["betas"] = (overrides.pop("beta1", betas[0]), overrides.pop("beta2", betas[1]))
    kwargs.update(overrides)
    return kwargs


def check_arguments(label, cls_name, kwargs, flag="--optimizers", dtype=np.float64):
    """Build the optimizer once on a scratch array, so bad values fail before any work."""
    try:
        optim_class(cls_name)(np.zeros(2, dtype=dtype), **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag} {label}: {exc}") from None
