"""CPU kernels compiled by Cython from the same rules: ``backend="cython"``.

The Cython source is generated from ``fastopt.kernels.rules`` by ``fastopt.kernels.cygen``
(the formulas are written once, in rules.py) and built on first use with the system C
compiler into a per-user cache, ``$NUMBA_CACHE_DIR/fastopt-cython/<key>`` when
NUMBA_CACHE_DIR is set, else ``$XDG_CACHE_HOME/fastopt/cython/<key>`` (default
``~/.cache``). The key hashes the generated source (so rules.py and the generator), the
compiler flags, the Cython and Python versions and the CPU, so an edit rebuilds, like the
Numba cache. Later processes load the built module from there (milliseconds). Two processes
that build at once each build in a folder of their own and rename the result into place:
the cache never holds a partial file.

Compiler flags: ``-O3 -march=native`` (Numba compiles for the host CPU too;
``FASTOPT_CYTHON_MARCH`` picks another CPU),
``-fno-fast-math -ffp-contract=off`` (gcc's default for GNU C is to contract a*b + c into an
FMA; config.FASTMATH has no "contract", so neither may the C compiler),
``-fno-trapping-math -fno-math-errno`` (no value changes: gcc may then compute both sides
of a branch and call no sqrtf for errno, and so vectorise, as LLVM does), unswitching
limits raised so that gcc 12 makes a copy of each loop per combination of the flags (0 or 1,
the same for every element) - without it Adam's loop with two state arrays stays scalar,
2-5x slower than Numba's - and ``-fopenmp`` for the ``prange`` loops. config.FASTMATH has
no "arcp" or "afn" either, so Numba's divisions and square roots are the correctly rounded
ones, as C's are, and the element-wise kernels are bitwise equal to Numba's
(tests/test_cython.py: every rule, option, dtype and path). The gradient sum of squares is
not bitwise Numba's: Numba's reduction has "reassoc" (config.REDUCTION_FASTMATH) and LLVM splits it into vector lanes whose partial
sums depend on the target's vector width; the C loop adds in order (serial) or per OpenMP
thread. Both are float64 sums of float32/float64 squares: they differ by rounding (relative
1e-15 or so), and so may a clip coefficient computed from them.

``update``, ``grad_stats``, ``scale`` and ``clamp`` mirror ``fastopt.kernels.cpu``.
Requirements: Cython >= 3 and setuptools (``pip install "fastopt[cython]"``), a C compiler
with OpenMP and the Python headers (``apt install gcc python3-dev``); without one of them the
first call raises ``BackendUnavailable`` naming it.
"""

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import pathlib
import platform
import shutil
import sys
import sysconfig
import tempfile
import time

import numpy as np

from .. import config, threads
from . import cygen

#: compiler flags of the generated module (part of the cache key)
def _march():
    """The CPU gcc compiles for: FASTOPT_CYTHON_MARCH, default ``native`` (Numba compiles for
    the host CPU too). The instruction counts (fastopt.bench.instructions) set ``haswell``,
    as they set NUMBA_CPU_NAME: valgrind does not run AVX-512 code."""
    march = os.environ.get("FASTOPT_CYTHON_MARCH", "").strip() or "native"
    if not all(c.isalnum() or c in "-_." for c in march):
        raise ValueError(f"FASTOPT_CYTHON_MARCH must be a gcc -march value such as native or "
                         f"haswell, got {march!r}")
    return march


CFLAGS = ("-O3", f"-march={_march()}", "-fno-fast-math", "-ffp-contract=off", "-fno-trapping-math",
          "-fno-math-errno", "--param=max-unswitch-insns=1000", "--param=max-unswitch-level=4",
          "-fopenmp",
          "-Wno-unused-function", "-Wno-unreachable-code")
LDFLAGS = ("-fopenmp",)

#: seconds the last build took in this process (None: loaded from the cache or not yet)
BUILD_SECONDS = None
#: seconds the last load from the cache took (None: not loaded yet)
LOAD_SECONDS = None


class BackendUnavailable(RuntimeError):
    """The Cython backend cannot be built here: what is missing and how to install it."""


def cache_root():
    """The folder that holds the built modules (one subfolder per key)."""
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        return pathlib.Path(numba_dir) / "fastopt-cython"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "fastopt" / "cython"


@functools.cache
def source():
    """The generated Cython source of every kernel."""
    return cygen.generate()


def _cpu_model():
    """The CPU's model and instruction-set flags (-march=native code runs on that CPU
    only)."""
    found = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key = line.split(":")[0].strip()
                if key in ("model name", "flags") and key not in found:
                    found[key] = line
                if len(found) == 2:
                    break
    except OSError:
        pass
    return "".join(found.values()) or platform.processor()


@functools.cache
def key():
    """The cache key: the generated source, the flags, the toolchain, the CPU."""
    digest = hashlib.sha1(source().encode())
    for part in (CFLAGS, LDFLAGS, _cython_version(), sys.version, platform.machine(),
                 _cpu_model(), _compiler()):
        digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def _cython_version():
    try:
        import Cython
    except ImportError:
        return None
    return Cython.__version__


def _compiler():
    return os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]


def _module_name():
    return f"_fastopt_cy_{key()}"


def _so_path():
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return cache_root() / key() / (_module_name() + suffix)


def check_toolchain():
    """Raise BackendUnavailable naming the first missing piece (Cython, setuptools, a C
    compiler, the Python headers)."""
    install = 'pip install "fastopt[cython]"'
    if _cython_version() is None or int(_cython_version().split(".")[0]) < 3:
        raise BackendUnavailable(
            "backend='cython' needs Cython >= 3 (found "
            f"{_cython_version() or 'none'}): {install}, or use backend='numba'")
    try:
        import setuptools  # noqa: F401
    except ImportError:
        raise BackendUnavailable(f"backend='cython' needs setuptools: {install}") from None
    cc = _compiler()
    if shutil.which(cc) is None:
        raise BackendUnavailable(
            f"backend='cython' needs a C compiler with OpenMP, and {cc!r} (from $CC or "
            "Python's build configuration) is not on PATH: install one (apt install gcc, or "
            "set CC), or use backend='numba'")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise BackendUnavailable(
            f"backend='cython' needs the Python headers ({include}/Python.h is missing): "
            f"apt install python3-dev (python{sys.version_info[0]}.{sys.version_info[1]}-dev), "
            "or use backend='numba'")


def build(target=None):
    """Build the module into the cache (atomically); returns the path of the .so."""
    global BUILD_SECONDS
    check_toolchain()
    target = _so_path() if target is None else pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
        tmp = pathlib.Path(tmp)
        pyx = tmp / (_module_name() + ".pyx")
        pyx.write_text(source())
        try:
            so = _compile(pyx, tmp)
        except BackendUnavailable:
            raise
        except Exception as exc:  # compiler errors: say what failed, with its message
            raise BackendUnavailable(
                f"building the Cython kernels failed ({type(exc).__name__}: {exc}); "
                "fastopt.kernels.cygen.generate() gives the generated source, and the "
                "compiler flags are fastopt.kernels.cython.CFLAGS") from exc
        # the source beside the module, for reading; then the module, renamed atomically
        os.replace(pyx, target.with_suffix(".pyx"))
        os.replace(so, target)
    BUILD_SECONDS = time.perf_counter() - start
    return target


def _compile(pyx, tmp):
    import contextlib
    import io

    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    ext = Extension(_module_name(), [str(pyx)], extra_compile_args=list(CFLAGS),
                    extra_link_args=list(LDFLAGS))
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        modules = cythonize([ext], quiet=True, build_dir=str(tmp), force=True,
                            compiler_directives={"language_level": 3})
        dist = Distribution({"ext_modules": modules, "script_args": []})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = str(tmp / "lib")
        cmd.build_temp = str(tmp / "temp")
        cmd.inplace = False
        cmd.ensure_finalized()
        try:
            cmd.run()
        except BaseException as exc:
            raise RuntimeError(f"{exc}\n{log.getvalue()[-4000:]}") from exc
    return pathlib.Path(cmd.get_ext_fullpath(_module_name()))


@functools.cache
def module():
    """The compiled module: from the cache, built first if it is not there."""
    global LOAD_SECONDS
    path = _so_path()
    if not path.exists():
        build(path)
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location(_module_name(), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    LOAD_SECONDS = time.perf_counter() - start
    return mod


def available():
    """(True, "") if the backend can be used here, else (False, why)."""
    try:
        module()
    except BackendUnavailable as exc:
        return False, str(exc)
    return True, ""


_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


@functools.cache
def update_kernels(name, dtype):
    """(serial, parallel) compiled update loops of rule ``name`` for ``dtype``; both take
    ``(p, g, s0, s1, s2, hyper, flags, num_threads)``."""
    mod = module()
    sfx = _SUFFIX[np.dtype(dtype)]
    return getattr(mod, f"{name}_{sfx}_serial"), getattr(mod, f"{name}_{sfx}_parallel")


def _num_threads():
    import numba

    return numba.get_num_threads()  # the thread count fastopt.threads and Numba use


class _Parallel:
    """A parallel loop called with the Numba thread count (numba.set_num_threads rules
    both backends)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args, _num_threads())


@functools.cache
def _dispatch(name, dtype):
    serial, parallel = update_kernels(name, dtype)
    return serial, _Parallel(parallel)


def update(name, p, g, s0, s1, s2, hyper, flags):
    """Apply rule ``name`` in place, as ``fastopt.kernels.cpu.update`` (same arguments, same
    bits)."""
    serial, parallel = _dispatch(name, p.dtype)
    threads.run_sized(("cython", name), p.size, serial, parallel, p, g, s0, s1, s2, hyper,
                      flags)


@functools.cache
def _pair(what, dtype):
    mod = module()
    sfx = _SUFFIX[np.dtype(dtype)]
    return getattr(mod, f"{what}_{sfx}_serial"), getattr(mod, f"{what}_{sfx}_parallel")


def _run(what, g, *args):
    serial, parallel = _pair(what, g.dtype)
    if g.size >= config.PARALLEL_MIN_SIZE:
        return parallel(g, *args, _num_threads())
    return serial(g, *args)


def grad_stats(g):
    """(sum of squares as float64, all elements finite), as ``fastopt.kernels.cpu``."""
    sumsq = _run("sumsq", g)
    if np.isfinite(sumsq):
        return sumsq, True
    return sumsq, bool(np.isfinite(g).all())


def scale(g, coef):
    """g *= coef in place (coef already in g's dtype)."""
    _run("scale", g, coef)


def clamp(g, clip):
    """Clamp g to [-clip, clip] in place; NaN stays NaN."""
    _run("clamp", g, clip)
