"""Compiling every kernel once per machine: Numba's on-disk cache for all of them.

Numba caches a compiled function next to its source file (or under ``NUMBA_CACHE_DIR``) and
finds it again by the function's qualified name and source file. Two things defeat that
for generated kernels, and this module handles both:

* Closures over other compiled functions never hit the cache: the cache key hashes the
  closure's cells, and a dispatcher pickles with a random id. Generated kernels here are
  therefore not closures but *variants*: a copy of one module-level function whose
  globals bind the names it calls (a scalar rule, a loss, an update loop) and whose
  qualified name is unique, so each variant has its own cache entry.
  ``with_globals`` makes such copies; it is the one copy helper of the project, used by
  the GPU kernels (``fastopt.kernels.cuda``, ``fastopt.nn.cuda``) as well, which are not
  cached and keep their plain names.
* The cache of a kernel is invalidated only when its own file changes, not when an
  inlined function from another file does. Every kernel's name carries a hash of the
  kernel sources and of the BLAS choice (``source_tag``), so editing any of them, or
  switching BLAS, compiles afresh.

If no cache location is writable, kernels compile on every run instead (a warning says
so); nothing fails.
"""

import functools
import hashlib
import pathlib
import types
import warnings

from numba import njit

from .. import config

# the files whose code ends up inside compiled kernels
_SOURCES = ("config.py", "kernels/rules.py", "kernels/cpu.py", "kernels/jit.py",
            "kernels/blas.py", "nn/kernels.py", "nn/mlp.py", "train.py")


@functools.cache
def source_tag():
    """A short hash of the kernel sources and the BLAS choice."""
    from . import blas

    root = pathlib.Path(__file__).resolve().parent.parent
    digest = hashlib.sha1(blas.CHOICE.encode())
    for rel in _SOURCES:
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()[:10]


def jit(fn=None, *, parallel=False, options=None):
    """``njit`` with the project's options and the on-disk cache (decorator or call); the
    compiled function's name carries ``source_tag()``."""
    if fn is None:
        return functools.partial(jit, parallel=parallel, options=options)
    if not fn.__qualname__.endswith(source_tag()):
        fn = with_globals(fn, fn.__name__, qualname=_cache_name(fn.__name__))
    opts = dict(config.CPU_JIT if options is None else options, parallel=parallel)
    try:
        return njit(cache=True, **opts)(fn)
    except RuntimeError as exc:  # no writable cache location for this file
        warnings.warn(f"fastopt: Numba cannot cache {fn.__qualname__} ({exc}); kernels "
                      "compile on every run. Set NUMBA_CACHE_DIR to a writable folder.",
                      RuntimeWarning, stacklevel=2)
        return njit(**opts)(fn)


def variant(fn, name, *, parallel=False, options=None, **bindings):
    """A compiled copy of the module-level function ``fn`` in which the global names in
    ``bindings`` refer to the given objects (compiled functions, integer constants).

    ``name`` must be unique among the variants of ``fn``: it names the cache entry."""
    copy = with_globals(fn, name, qualname=_cache_name(name), **bindings)
    return jit(copy, parallel=parallel, options=options)


def with_globals(fn, name, *, qualname=None, **bindings):
    """A copy of the module-level function ``fn``, called ``name`` (qualified name
    ``qualname``, default ``name``), in which the global names in ``bindings`` refer to
    the given objects.

    With bindings the copy reads a snapshot of fn's module globals plus the bindings;
    without, it shares fn's module globals (a decorator at import time then still sees the
    names defined further down the module)."""
    env = fn.__globals__
    if bindings:
        env = dict(env)
        env.update(bindings)
    copy = types.FunctionType(fn.__code__, env, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name if qualname is None else qualname
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


def _cache_name(name):
    """The qualified name a CPU kernel is cached under: ``<name>_<source_tag>``."""
    return f"{name}_{source_tag()}"
