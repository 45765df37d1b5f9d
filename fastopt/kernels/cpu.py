"""CPU kernels: every update rule compiled into one fused, in-place pass over memory.

For each rule in ``fastopt.kernels.rules.RULES`` there are two compiled loops over the
flattened arrays, a serial one and a ``prange`` one; ``update`` picks by size
(``config.PARALLEL_MIN_SIZE``; the thread policy of ``fastopt.threads`` can also pick by
how busy the cores are). State slots the configuration does not use are passed as
``None``: Numba compiles a specialisation in which those loads and stores do not exist.

Kernels are built on first use (``update_kernels``), so importing this module compiles
nothing. Hyperparameters travel in small arrays (``hyper`` in the parameter dtype, ``flags``
as int64) that are unpacked into register tuples before the loop, so a new learning rate
never triggers a new compilation.
"""

import functools

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

from .. import config, threads
from .jit import variant
from .rules import RULES

# globals bound per variant (see fastopt.kernels.jit.variant); these defaults are never used
scalar = None
N_HYPER = N_FLAGS = 0


def _update_loop(p, g, s0, s1, s2, hyper, flags):
    # The GPU kernel (fastopt.kernels.cuda._update_kernel) repeats this loop body: when
    # config.FASTMATH still had "contract", a shared inline function changed the LLVM
    # block structure and moved Lion's serial kernel by an ulp. Without "contract" they
    # could share it (not yet tried: it needs the bitwise checks of tests/test_kernels.py).
    h = to_fixed_tuple(hyper, N_HYPER)
    f = to_fixed_tuple(flags, N_FLAGS)
    for i in prange(p.size):
        gi = g[i]
        a0 = gi if s0 is None else s0[i]
        a1 = gi if s1 is None else s1[i]
        a2 = gi if s2 is None else s2[i]
        pi, a0, a1, a2 = scalar(p[i], gi, a0, a1, a2, h, f)
        p[i] = pi
        if s0 is not None:
            s0[i] = a0
        if s1 is not None:
            s1[i] = a1
        if s2 is not None:
            s2[i] = a2


@functools.cache
def update_kernels(name):
    """(serial, parallel) compiled update loops for the rule ``name``."""
    rule = RULES[name]
    bind = dict(scalar=njit(inline="always", **config.CPU_JIT)(rule.scalar),
                N_HYPER=len(rule.hyper), N_FLAGS=len(rule.flags))
    return (variant(_update_loop, f"{name}_update_serial", **bind),
            variant(_update_loop, f"{name}_update_parallel", parallel=True, **bind))


def serial_kernel(name):
    """The serial update loop of rule ``name`` (what train_step and fit call)."""
    return update_kernels(name)[0]


# ---------------------------------------------------------------------------------------
# the update as a value: one compiled training loop for every rule
#
# A compiled loop that calls ``update_kernels(name)[0]`` directly is a new function per rule,
# and Numba compiles each such caller with everything it calls again (its machine code
# holds the whole forward/backward pass): about 3 s per optimizer on a quiet 2-core
# machine. Called through the address of the update kernel's compiled entry point, the
# loop is compiled once per network kind and each optimizer adds only its own update
# kernel (issue 17). ``update_entry`` gives the address and checks the types it was
# compiled for; ``call_update`` calls it from compiled code.

_NONE_SLOTS = 3  # s0, s1, s2


def _slot_type(a):
    return types.none if a is None else numba.typeof(a)


def update_entry(name, p, g, slots, hyper, flags):
    """(address, used, arrays) for ``call_update``: the native entry point of the serial
    update kernel of rule ``name`` compiled for exactly these arguments (``hyper`` and
    ``flags`` are one step's rows), the bit mask of the state slots in use and the three
    slot arrays with an empty array of p's dtype standing in for each unused one.

    All arrays must be 1-D, C-contiguous and writeable (the address is only valid for the
    types it was compiled for; anything else is refused here, not miscalled)."""
    arrays = (p, g, *slots, hyper, flags)
    for a in arrays:
        if a is not None and not (a.ndim == 1 and a.flags.c_contiguous and a.flags.writeable):
            raise ValueError("update_entry needs 1-D C-contiguous writeable arrays")
    sig = tuple(_slot_type(a) for a in arrays)
    cres = _compiled(update_kernels(name)[0], sig)
    address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    used = sum(1 << k for k, s in enumerate(slots) if s is not None)
    empty = np.empty(0, p.dtype)
    return address, used, tuple(empty if s is None else s for s in slots)


@intrinsic
def call_update(typingctx, address, used, p, g, s0, s1, s2, hyper, flags):
    """update(p, g, s0, s1, s2, hyper, flags) through ``address`` (``update_entry``): the
    kernel was compiled with None for every slot k whose bit is clear in ``used``. One call
    site per slot pattern, chosen at run time."""
    if not isinstance(address, types.Integer) or not isinstance(used, types.Integer):
        return None
    arrays = (p, g, s0, s1, s2, hyper, flags)

    def codegen(context, builder, signature, args):
        addr, mask, *values = args
        for pattern in range(1 << _NONE_SLOTS):
            argtys, argvals = [], []
            for k, (ty, val) in enumerate(zip(arrays, values)):
                slot = k - 2
                if 0 <= slot < _NONE_SLOTS and not pattern & (1 << slot):
                    ty, val = types.none, context.get_dummy_value()
                argtys.append(ty)
                argvals.append(val)
            fnty = context.call_conv.get_function_type(types.none, argtys)
            hit = builder.icmp_unsigned("==", mask, mask.type(pattern))
            with builder.if_then(hit):
                fn = builder.inttoptr(addr, fnty.as_pointer())
                status, _ = context.call_conv.call_function(builder, fn, types.none, argtys,
                                                            argvals)
                with cgutils.if_unlikely(builder, status.is_error):
                    context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(address, used, *arrays), codegen


def update(name, p, g, s0, s1, s2, hyper, flags):
    """Apply rule ``name`` in place to 1-D C-contiguous arrays (no validation here).

    ``s0..s2`` are state arrays or None for slots the configuration does not use;
    ``hyper`` is a 1-D array in p's dtype ordered as ``RULES[name].hyper``; ``flags`` an
    int64 array ordered as ``RULES[name].flags``.
    """
    serial, parallel = update_kernels(name)
    # serial or prange by size, and with FASTOPT_THREADS=auto (the default) also by how
    # busy the cores are (fastopt.threads); both give the same bits
    threads.run_sized(name, p.size, serial, parallel, p, g, s0, s1, s2, hyper, flags)


# ---------------------------------------------------------------------------------------
# gradient statistics and clipping


def _sumsq_loop(g):
    # accumulated in float64: cannot overflow for float32 input
    acc = 0.0
    for i in prange(g.size):
        x = np.float64(g[i])
        acc += x * x
    return acc


def _scale_loop(g, coef):
    for i in prange(g.size):
        g[i] = g[i] * coef


def _clamp_loop(g, clip):
    neg = -clip
    for i in prange(g.size):
        x = g[i]
        if x > clip:
            g[i] = clip
        elif x < neg:
            g[i] = neg


@functools.cache
def _pair(loop_name):
    loop = globals()[loop_name]
    options = config.REDUCTION_JIT if loop_name == "_sumsq_loop" else config.CPU_JIT
    return (variant(loop, f"{loop_name[1:]}_serial", options=options),
            variant(loop, f"{loop_name[1:]}_parallel", parallel=True, options=options))


def _pick(loop_name, n):
    serial, parallel = _pair(loop_name)
    return parallel if n >= config.PARALLEL_MIN_SIZE else serial


def grad_stats(g):
    """(sum of squares as float64, all elements finite) of a 1-D array, in one pass.

    A NaN or inf element makes the sum NaN or inf; only when the sum is not finite is a
    second look needed, to tell a non-finite element from float64 overflow of huge values.
    """
    sumsq = _pick("_sumsq_loop", g.size)(g)
    if np.isfinite(sumsq):
        return sumsq, True
    return sumsq, bool(np.isfinite(g).all())


def scale(g, coef):
    """g *= coef in place (coef already in g's dtype)."""
    _pick("_scale_loop", g.size)(g, coef)


def clamp(g, clip):
    """Clamp g to [-clip, clip] in place; NaN stays NaN (torch.clamp_)."""
    _pick("_clamp_loop", g.size)(g, clip)


# ---------------------------------------------------------------------------------------
# any compiled kernel through its entry point (fit's chunk loop: issue 17)
#
# A compiled caller links the machine code of every kernel it calls into its own and LLVM
# optimises all of it again (fit's chunk loop: 0.9 of its 1.4 CPU s in a new process went to
# the forward and backward passes it links). Called through an entry point that Python looked
# up (``entry``), nothing is linked. The caller is compiled for a check value of the
# argument types (``_types_check``) and compares it with the one ``entry`` gives before the
# call: an entry point for other types raises instead of being called.


def _compiled(dispatcher, sig):
    """The compile result of ``dispatcher`` for the argument types ``sig`` (compiled or
    loaded from the cache first if need be)."""
    cres = dispatcher.overloads.get(sig)
    if cres is None:
        dispatcher.compile(sig)
        cres = dispatcher.overloads[sig]
    return cres


def _types_check(sig):
    import zlib

    return zlib.crc32(repr(tuple(sig)).encode()) & 0x7FFFFFFF


def entry(dispatcher, sig, returns=None):
    """(address, check) of ``dispatcher`` compiled for the argument types ``sig``
    (compiled or loaded from the cache first if need be), for ``via_entry`` callers;
    ``returns``: the return type a ``via_entry(..., returns=)`` caller was typed with,
    checked here."""
    sig = tuple(sig)
    cres = _compiled(dispatcher, sig)
    if returns is not None and cres.signature.return_type != returns:
        raise TypeError(f"{dispatcher.py_func.__qualname__} returns "
                        f"{cres.signature.return_type}, its caller expects {returns}")
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name), _types_check(sig)


def _call_entry(context, builder, entry_value, check, restype, argtys, args):
    addr = builder.extract_value(entry_value, 0)
    got = builder.extract_value(entry_value, 1)
    with builder.if_then(builder.icmp_signed("!=", got, got.type(check)), likely=False):
        context.call_conv.return_user_exc(
            builder, RuntimeError, ("fastopt: an entry point for other argument types",))
    fnty = context.call_conv.get_function_type(restype, argtys)
    fn = builder.inttoptr(addr, fnty.as_pointer())
    status, value = context.call_conv.call_function(builder, fn, restype, argtys, args)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return value


def via_entry(dispatcher, index, nargs, returns=None):
    """``f(calls, *args)`` (``nargs`` arguments, 4 or 5) for compiled code:
    ``dispatcher(*args)`` through the entry point ``calls[index]`` (an ``entry`` pair). The
    dispatcher is compiled for the argument types when the caller is typed, for its return
    type, unless ``returns`` gives it (then the caller compiles while another process may
    compile the callee; ``entry(..., returns=)`` checks it)."""

    def typing(calls, args):
        sig = tuple(args)
        restype = returns if returns is not None else _compiled(dispatcher, sig).signature.return_type
        check = _types_check(sig)

        def codegen(context, builder, signature, values):
            entry_value = builder.extract_value(values[0], index)
            return _call_entry(context, builder, entry_value, check, restype, list(sig),
                               list(values[1:]))

        return restype(calls, *sig), codegen

    if nargs == 4:
        @intrinsic
        def call4(typingctx, calls, a, b, c, d):
            return typing(calls, (a, b, c, d))

        return call4
    if nargs == 5:
        @intrinsic
        def call5(typingctx, calls, a, b, c, d, e):
            return typing(calls, (a, b, c, d, e))

        return call5
    raise ValueError(f"via_entry: 4 or 5 arguments, not {nargs}")
