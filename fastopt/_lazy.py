"""Modules that load on first use, so that importing the host side stays light.

``fastopt.optim`` (the optimizer classes and their catalogue of facts) is imported by the
command-line front-ends to build their help and check their arguments; the kernels behind
it need Numba, which costs about a second to import. ``module(name)`` returns the module
at once and runs its code when one of its attributes is first read (the standard
library's ``importlib.util.LazyLoader``); after that, attribute access costs what it costs
on any module.
"""

import importlib.util
import sys


def module(name):
    """The module ``name`` (absolute), loaded when an attribute of it is first used."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)
    parent, _, child = name.rpartition(".")
    if parent:  # as an import does: ``import a.b`` then ``a.b`` works
        setattr(importlib.import_module(parent), child, mod)
    return mod
