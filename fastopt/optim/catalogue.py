"""The optimizer catalogue: what the rest of the project needs to know about an optimizer.

Each optimizer class states its facts once, next to its code, as ``facts = Facts(...)``
(``fastopt.optim.optimizers``); the benchmarks, the experiment commands, the sweep's help
and the tests read them through the functions here instead of keeping tables of their own.
Adding an optimizer is its rule (``fastopt.kernels.rules``), its class with its facts
(``fastopt.optim.optimizers``), its export (``fastopt.optim``), its README line, and its
reference and tests.

>>> from fastopt.optim import catalogue
>>> catalogue.torch_names()["adamw"]
'AdamW'
>>> catalogue.presets()["momentum"]
Preset(name='momentum', cls='SGD', fixed={'momentum': 0.9}, lr=0.02, path_lr=('gd_lr', 0.1))
"""

from typing import NamedTuple


class Preset(NamedTuple):
    """A named configuration of an optimizer in the experiment commands.

    ``fixed`` are arguments of the class (``momentum=0.9`` makes "momentum" of SGD),
    ``lr`` the default learning rate of the MLP experiments (compare, sensitivity, sweep:
    chosen for the ReLU MLP 784-100-100-100-100-10 on MNIST, batch 128), and ``path_lr``
    the default of ``fastopt paths`` where a surface names none: (the ``Surface`` field,
    a factor) - "gd_lr" is a plain gradient-descent rate for the surface, "step" a typical
    step length of the adaptive methods.
    """

    name: str
    cls: str
    fixed: dict
    lr: float
    path_lr: tuple


class Facts(NamedTuple):
    """What an optimizer class states about itself (``facts = Facts(...)``).

    torch        the ``torch.optim`` class with the same formulas, or None
    torch_fused  whether torch offers ``fused=True`` for it (CPU)
    keras        the ``keras.optimizers`` class of the Keras convention, or None
    bench        hyperparameters of the update benchmarks (besides the defaults)
    presets      (name, fixed arguments, MLP lr, paths lr) of each experiment preset
    textbook     arguments that select the textbook's formulas (Saito, Deep Learning from
                 Scratch, ch. 6), or None where the textbook has no such optimizer
    """

    torch: str = None
    torch_fused: bool = False
    keras: str = None
    bench: dict = {}
    presets: tuple = ()
    textbook: dict = None


def _classes():
    from .optimizers import OPTIMIZERS

    return OPTIMIZERS


def facts():
    """{optimizer name: Facts} in the catalogue's order."""
    return {name: cls.facts for name, cls in _classes().items()}


def torch_names():
    """{optimizer name: torch.optim class name} for the optimizers torch has."""
    return {name: f.torch for name, f in facts().items() if f.torch}


def torch_fused():
    """Names of the optimizers torch offers with ``fused=True``, in the catalogue's order."""
    return tuple(name for name, f in facts().items() if f.torch_fused)


def keras_names():
    """{optimizer name: keras.optimizers class name} for the Keras convention."""
    return {name: f.keras for name, f in facts().items() if f.keras}


def bench_hyper():
    """{optimizer name: benchmark hyperparameters} where they differ from the defaults."""
    return {name: dict(f.bench) for name, f in facts().items() if f.bench}


def presets():
    """{preset name: Preset} of every optimizer, in the catalogue's order."""
    found = {}
    for name, cls in _classes().items():
        for preset, fixed, lr, path_lr in cls.facts.presets:
            if preset in found:
                raise ValueError(f"preset {preset!r} is defined by {found[preset].cls} and "
                                 f"{cls.__name__}")
            found[preset] = Preset(preset, cls.__name__, dict(fixed), lr, tuple(path_lr))
    return found


def textbook(name):
    """The arguments of optimizer ``name`` that select the textbook's formulas."""
    f = facts()[name]
    if f.textbook is None:
        raise KeyError(f"the textbook has no {name}; it has "
                       + ", ".join(n for n, x in facts().items() if x.textbook is not None))
    return dict(f.textbook)
