"""Cython source generated from the update rules: the formulas stay in ``rules.py``.

``generate()`` reads every rule of ``fastopt.kernels.rules.RULES`` and the helpers it calls
with ``ast`` (from ``inspect.getsource``) and transcribes them into typed ``cdef inline ...
noexcept nogil`` functions, one copy per float type, so that float32 arithmetic stays float32
as Numba does it: ``math.sqrt`` becomes ``sqrtf`` for float32 (Numba lowers it to
``llvm.sqrt.f32``) and ``sqrt`` for float64, ``abs`` becomes ``fabsf``/``fabs``, ``and``/``or``
become C's ``&``/``|`` on 0/1 values (the operands are side-effect-free conditions, so
nothing changes but the branches gcc must if-convert), integer flags (int64 arrays, 0 or 1) are held in an integer
of the float's width (``int32_t``/``int64_t``: a condition then selects between floats lane
for lane, which gcc needs to vectorise a branch). Around each rule it writes
the loops of ``fastopt.kernels.cpu._update_loop``: a serial ``for`` and an OpenMP ``prange``,
with the argument order of ``fastopt.kernels.cpu.update`` (None for a state slot the
configuration does not use: the rule then receives the gradient for it, as in Numba, and
nothing is stored). Also the gradient sum of squares (float64 accumulation), scale and clamp
loops of ``fastopt.kernels.cpu``.

The generator knows a small language (what the rules use) and refuses anything else with a
``TranslationError`` naming the rule, the line and the construct, so that a new rule is
never silently mistranslated: assignments to plain names (and ``+=`` etc.), ``if``/``elif``/
``else``, ``return`` (a rule: one final ``return p, s0, s1, s2``), arithmetic ``+ - * /`` and
unary ``-`` on floats, comparisons (one operator; a float against an integer literal is
allowed, as ``c > 0``), ``and``/``or``/``not`` on conditions and flags, calls of
``math.sqrt``, ``abs`` and of other functions of the rules module (helpers, transcribed the
same way, specialised per argument types). Float literals are refused (they would promote
float32 arithmetic to float64 in Numba; rules.py forbids them), as is integer arithmetic.
"""

import ast
import inspect
import textwrap

from . import rules as _rules

#: C names of the two float types and their libc.math functions
FLOATS = {
    "float32": dict(c="float", suffix="f32", sqrt="sqrtf", fabs="fabsf", int="int32_t"),
    "float64": dict(c="double", suffix="f64", sqrt="sqrt", fabs="fabs", int="int64_t"),
}
MAX_HYPER = 16
MAX_FLAGS = 8

FLOAT, INT, BOOL = "float", "int", "bool"
# names the generated functions use themselves (and Cython/C keywords a rule might use)
_RESERVED = {"P", "G", "S0", "S1", "S2", "i", "k", "n", "NULL", "double", "float", "int",
             "char", "long", "void", "cdef", "struct", "const", "static", "inline"}


class TranslationError(TypeError):
    """A rule uses a construct the Cython generator does not know."""


class _Func:
    """One Python function (a rule or a helper) being transcribed for one float type."""

    def __init__(self, gen, fn, what):
        self.gen = gen
        self.fn = fn
        self.what = what  # "rule 'adam'" or "helper 'lerp' (called by rule 'adam')"
        self.tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
        self.line0 = fn.__code__.co_firstlineno - 1
        self.types = {}  # local name -> FLOAT / INT / BOOL

    def fail(self, node, message):
        line = self.line0 + getattr(node, "lineno", 1)
        raise TranslationError(
            f"Cython generator: {self.what}, {self.fn.__code__.co_filename}:{line}: {message}. "
            "Rewrite it with the constructs listed in fastopt/kernels/cygen.py (or teach "
            "the generator the construct and its exact Numba semantics)")

    def declare(self, node, name, typ):
        if name in _RESERVED or name.startswith("_cy_"):
            self.fail(node, f"the name {name!r} (reserved for the generated code: "
                            f"{', '.join(sorted(_RESERVED))})")
        old = self.types.get(name)
        if old is None:
            self.types[name] = typ
        elif old != typ:
            self.fail(node, f"{name!r} is assigned a {typ} after a {old}")

    # -- expressions: (C text, type)

    def expr(self, node):
        if isinstance(node, ast.Name):
            if node.id not in self.types:
                self.fail(node, f"{node.id!r} is used before it is assigned")
            return node.id, self.types[node.id]
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int):
                self.fail(node, f"the literal {node.value!r} (only integer literals, in "
                                "comparisons; a float literal would promote float32 "
                                "arithmetic to float64)")
            return repr(node.value), INT
        if isinstance(node, ast.BinOp):
            ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
            op = ops.get(type(node.op))
            if op is None:
                self.fail(node, f"the operator {type(node.op).__name__}")
            (a, ta), (b, tb) = self.expr(node.left), self.expr(node.right)
            if ta != FLOAT or tb != FLOAT:
                self.fail(node, f"arithmetic on a {ta} and a {tb} (only float op float: "
                                "Numba promotes float32 with an integer to float64)")
            return f"({a} {op} {b})", FLOAT
        if isinstance(node, ast.UnaryOp):
            a, ta = self.expr(node.operand)
            if isinstance(node.op, ast.USub) and ta == FLOAT:
                return f"(-{a})", FLOAT
            if isinstance(node.op, ast.Not) and ta in (INT, BOOL):
                return f"(not {a})", BOOL
            self.fail(node, f"the unary {type(node.op).__name__} on a {ta}")
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                self.fail(node, "a chained comparison")
            ops = {ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<=", ast.Eq: "==",
                   ast.NotEq: "!="}
            op = ops.get(type(node.ops[0]))
            if op is None:
                self.fail(node, f"the comparison {type(node.ops[0]).__name__}")
            (a, ta), (b, tb) = self.expr(node.left), self.expr(node.comparators[0])
            if {ta, tb} - {FLOAT, INT} or (FLOAT in (ta, tb) and INT in (ta, tb) and not (
                    isinstance(node.left, ast.Constant)
                    or isinstance(node.comparators[0], ast.Constant))):
                self.fail(node, f"a comparison of a {ta} with a {tb}")
            return f"({a} {op} {b})", BOOL
        if isinstance(node, ast.BoolOp):
            # Written as C's & and | on 0/1 values, not as short-circuit and/or: the
            # operands are side-effect-free conditions and flags (0 or 1), so the value is
            # the same, and gcc if-converts and vectorises a branch on ``a > b or a != a``
            # (the NaN-propagating maximum) only without the short-circuit jumps.
            op = "and" if isinstance(node.op, ast.And) else "or"
            parts = []
            for v in node.values:
                text, tv = self.expr(v)
                if tv not in (INT, BOOL):
                    self.fail(v, f"'{op}' on a {tv} (a condition or flag is needed)")
                parts.append(f"({text})")
            return "(" + (" & " if op == "and" else " | ").join(parts) + ")", BOOL
        if isinstance(node, ast.Call):
            return self.call(node)
        self.fail(node, f"the expression {type(node).__name__}")

    def call(self, node):
        t = self.gen.t
        if node.keywords:
            self.fail(node, "a call with keyword arguments")
        args = [self.expr(a) for a in node.args]
        f = node.func
        if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                and f.value.id == "math" and f.attr == "sqrt"):
            if len(args) != 1 or args[0][1] != FLOAT:
                self.fail(node, "math.sqrt of anything but one float")
            return f"{t['sqrt']}({args[0][0]})", FLOAT
        if isinstance(f, ast.Name) and f.id == "abs":
            if len(args) != 1 or args[0][1] != FLOAT:
                self.fail(node, "abs of anything but one float")
            return f"{t['fabs']}({args[0][0]})", FLOAT
        if isinstance(f, ast.Name):
            target = self.fn.__globals__.get(f.id)
            if (inspect.isfunction(target) and target.__module__ == _rules.__name__
                    and f.id not in ("update_rule",)):
                cname, rtype = self.gen.helper(target, tuple(a[1] for a in args), self.what)
                return f"{cname}({', '.join(a[0] for a in args)})", rtype
        self.fail(node, f"a call of {ast.unparse(f)} (known: math.sqrt, abs, functions of "
                        "fastopt/kernels/rules.py)")

    # -- statements: lines of Cython

    def block(self, stmts, indent, on_return):
        out = []
        pad = "    " * indent
        for s in stmts:
            if isinstance(s, (ast.Assign, ast.AugAssign)):
                if isinstance(s, ast.AugAssign):
                    target = s.target
                    value = ast.BinOp(left=ast.Name(id=getattr(target, "id", "?"),
                                                    ctx=ast.Load()),
                                      op=s.op, right=s.value, lineno=s.lineno)
                else:
                    if len(s.targets) != 1:
                        self.fail(s, "a chained assignment")
                    target, value = s.targets[0], s.value
                if not isinstance(target, ast.Name):
                    self.fail(s, f"an assignment to {type(target).__name__} (plain names only)")
                text, typ = self.expr(value)
                if typ == INT:
                    self.fail(s, "an assignment of an integer (flags come from f only)")
                self.declare(s, target.id, typ)
                out.append(f"{pad}{target.id} = {text}")
            elif isinstance(s, ast.If):
                text, typ = self.expr(s.test)
                if typ not in (INT, BOOL):
                    self.fail(s, f"'if' on a {typ} (compare it explicitly)")
                out.append(f"{pad}if {text}:")
                out += self.block(s.body, indent + 1, on_return) or [f"{pad}    pass"]
                if s.orelse:
                    out.append(f"{pad}else:")
                    out += self.block(s.orelse, indent + 1, on_return)
            elif isinstance(s, ast.Return):
                out += on_return(s, pad)
            elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(
                    s.value.value, str):
                continue  # docstring
            elif isinstance(s, ast.Pass):
                out.append(f"{pad}pass")
            else:
                self.fail(s, f"the statement {type(s).__name__}")
        return out

    def declarations(self, skip):
        c = self.gen.t["c"]
        names = sorted(n for n in self.types if n not in skip)
        lines = []
        for n in names:
            typ = {FLOAT: c, INT: self.gen.t["int"], BOOL: "bint"}[self.types[n]]
            lines.append(f"    cdef {typ} {n}")
        return lines


class _Generator:
    def __init__(self, dtype):
        self.dtype = dtype
        self.t = FLOATS[dtype]
        self.helpers = {}  # (function, arg types) -> (C name, return type)
        self.helper_code = []

    def helper(self, fn, argtypes, caller):
        key = (fn, argtypes)
        if key in self.helpers:
            return self.helpers[key]
        func = _Func(self, fn, f"helper {fn.__name__!r} (called by {caller})")
        params = [a.arg for a in func.tree.args.args]
        if func.tree.args.vararg or func.tree.args.kwarg or func.tree.args.kwonlyargs or \
                func.tree.args.defaults:
            func.fail(func.tree, "a signature with defaults, *args or keywords")
        if len(params) != len(argtypes):
            func.fail(func.tree, f"{len(argtypes)} arguments given, {len(params)} expected")
        for name, typ in zip(params, argtypes):
            func.types[name] = typ
        rtypes = []

        def on_return(s, pad):
            if s.value is None or isinstance(s.value, ast.Tuple):
                func.fail(s, "a helper must return one value")
            text, typ = func.expr(s.value)
            rtypes.append(typ)
            return [f"{pad}return {text}"]

        body = func.block(func.tree.body, 1, on_return)
        if not rtypes or len(set(rtypes)) != 1 or rtypes[0] == INT:
            func.fail(func.tree, f"returns of types {rtypes} (one float or bool type needed)")
        if not isinstance(func.tree.body[-1], ast.Return):
            func.fail(func.tree, "a helper must end with a return")
        c = self.t["c"]
        ctype = {FLOAT: c, BOOL: "bint"}
        rtype = rtypes[0]
        cname = f"_h_{fn.__name__}_{self.t['suffix']}_{len(self.helpers)}"
        sig = ", ".join(f"{ctype.get(t, self.t['int'])} {n}" for n, t in zip(params, argtypes))
        code = [f"cdef inline {ctype[rtype]} {cname}({sig}) noexcept nogil:"]
        code += func.declarations(skip=set(params)) + body
        self.helpers[key] = (cname, rtype)
        self.helper_code.append("\n".join(code))
        return cname, rtype

    def rule(self, rule):
        """The scalar rule as ``cdef inline void`` that reads and writes element i."""
        func = _Func(self, rule.scalar, f"rule {rule.name!r}")
        tree = func.tree
        params = [a.arg for a in tree.args.args]  # p, g, s0, s1, s2, h, f (checked at import)
        c = self.t["c"]
        for n in params[:5]:
            func.types[n] = FLOAT
        body = list(tree.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        unpack = []
        for s in list(body):
            if (isinstance(s, ast.Assign) and isinstance(s.value, ast.Name)
                    and s.value.id in (params[5], params[6])):
                names = [e.id for e in s.targets[0].elts]
                src, typ = ("h", FLOAT) if s.value.id == params[5] else ("f", INT)
                for k, n in enumerate(names):
                    func.declare(s, n, typ)
                    unpack.append(f"    {n} = {src}[{k}]")
                body.remove(s)
        if not body or not isinstance(body[-1], ast.Return):
            func.fail(tree, "a rule must end with 'return p, s0, s1, s2'")
        for s in ast.walk(ast.Module(body=body[:-1], type_ignores=[])):
            if isinstance(s, ast.Return):
                func.fail(s, "a return before the rule's last statement")
            if isinstance(s, ast.Name) and s.id in (params[5], params[6]):
                func.fail(s, f"{s.id} used other than unpacked at the top")
        slots = params[2:5]

        def on_return(s, pad):
            v = s.value
            if not isinstance(v, ast.Tuple) or len(v.elts) != 4:
                func.fail(s, "a rule must return (p, s0, s1, s2)")
            vals = [func.expr(e) for e in v.elts]
            if any(typ != FLOAT for _, typ in vals):
                func.fail(s, "a rule must return four floats")
            lines = [f"{pad}P[i] = {vals[0][0]}"]
            for k, (text, _) in enumerate(vals[1:]):
                lines.append(f"{pad}if use{k}:")
                lines.append(f"{pad}    S{k}[i] = {text}")
            return lines

        code_body = func.block(body, 1, on_return)
        name = f"_rule_{rule.name}_{self.t['suffix']}"
        code = [f"cdef inline void {name}({c}* P, const {c}* G, {c}* S0, {c}* S1, {c}* S2, "
                f"Py_ssize_t i, const {c}* h, const {self.t['int']}* f, const bint use0, "
                f"const bint use1, "
                f"const bint use2) noexcept nogil:"]
        code += func.declarations(skip=set())
        code.append(f"    p = P[i]")
        code.append(f"    g = G[i]")
        for k, s in enumerate(slots):
            code.append(f"    {s} = S{k}[i] if use{k} else g")
        code += unpack + code_body
        return name, "\n".join(code)


_HEADER = '''\
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
# Generated by fastopt/kernels/cygen.py from fastopt/kernels/rules.py: do not edit.
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf, fabs, fabsf
from libc.stdint cimport int32_t, int64_t

'''

_LOOPS = """
def {name}_{sfx}_{kind}({c}[::1] p, const {c}[::1] g, {c}[::1] s0, {c}[::1] s1, {c}[::1] s2,
        const {c}[::1] hyper, const int64_t[::1] flags, int num_threads=1):
    cdef Py_ssize_t i, k, n = p.shape[0]
    cdef int mask
    cdef {c} h[{nh}]
    cdef {ci} f[{nf}]
    cdef {c}* P
    cdef const {c}* G
    cdef {c}* S0 = NULL
    cdef {c}* S1 = NULL
    cdef {c}* S2 = NULL
    if hyper.shape[0] != {n_hyper} or flags.shape[0] != {n_flags}:
        raise ValueError("rule {name}: hyper must have {n_hyper} and flags {n_flags} elements, "
                         f"got {{hyper.shape[0]}} and {{flags.shape[0]}}")
    if g.shape[0] != n or (s0 is not None and s0.shape[0] != n) or (
            s1 is not None and s1.shape[0] != n) or (s2 is not None and s2.shape[0] != n):
        raise ValueError("rule {name}: g and the state arrays must have p's size")
    if n == 0:
        return
    for k in range({n_hyper}):
        h[k] = hyper[k]
    for k in range({n_flags}):
        f[k] = flags[k] != 0  # 0 or 1 in the width of the float
    P = &p[0]
    G = &g[0]
    if s0 is not None:
        S0 = &s0[0]
    if s1 is not None:
        S1 = &s1[0]
    if s2 is not None:
        S2 = &s2[0]
{loop}
"""

def _loop(kind, fn, n_state):
    """The loop of one rule: one copy per combination of the state slots in use (constant
    arguments of the inlined rule, so the C compiler drops the unused loads and stores and
    can vectorise, as Numba's specialisation on None does)."""
    lines = ["    mask = (S0 != NULL) + 2 * (S1 != NULL) + 4 * (S2 != NULL)"]
    if kind == "serial":
        lines.append("    with nogil:")
        pad = "        "
    else:
        pad = "    "
    for mask in range(1 << n_state):
        use = ", ".join(str((mask >> k) & 1) for k in range(3))
        lines.append(f"{pad}{'if' if mask == 0 else 'elif'} mask == {mask}:")
        if kind == "serial":
            lines.append(f"{pad}    for i in range(n):")
        else:
            lines.append(f"{pad}    for i in prange(n, nogil=True, schedule='static', "
                         "num_threads=num_threads):")
        lines.append(f"{pad}        {fn}(P, G, S0, S1, S2, i, h, f, {use})")
    if kind == "serial":
        lines.append(f"{pad}else:")
        lines.append(f"{pad}    with gil:")
        lines.append(f"{pad}        raise ValueError('state slots beyond the rule\\'s "
                     f"{n_state} given')")
    else:
        lines.append(f"{pad}else:")
        lines.append(f"{pad}    raise ValueError('state slots beyond the rule\\'s "
                     f"{n_state} given')")
    return "\n".join(lines)


_STATS = """
def sumsq_{sfx}_serial(const {c}[::1] g, int num_threads=1):
    cdef Py_ssize_t i, n = g.shape[0]
    cdef double acc = 0.0
    cdef double x
    with nogil:
        for i in range(n):
            x = <double>g[i]
            acc = acc + x * x
    return acc


def sumsq_{sfx}_parallel(const {c}[::1] g, int num_threads=1):
    cdef Py_ssize_t i, n = g.shape[0]
    cdef double acc = 0.0
    cdef double x
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        x = <double>g[i]
        acc += x * x
    return acc


def scale_{sfx}_serial({c}[::1] g, {c} coef, int num_threads=1):
    cdef Py_ssize_t i, n = g.shape[0]
    with nogil:
        for i in range(n):
            g[i] = g[i] * coef


def scale_{sfx}_parallel({c}[::1] g, {c} coef, int num_threads=1):
    cdef Py_ssize_t i, n = g.shape[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        g[i] = g[i] * coef


cdef inline void _clamp_{sfx}({c}* G, Py_ssize_t i, {c} clip, {c} neg) noexcept nogil:
    cdef {c} x = G[i]
    if x > clip:
        G[i] = clip
    elif x < neg:
        G[i] = neg


def clamp_{sfx}_serial({c}[::1] g, {c} clip, int num_threads=1):
    cdef Py_ssize_t i, n = g.shape[0]
    cdef {c} neg = -clip
    if n == 0:
        return
    with nogil:
        for i in range(n):
            _clamp_{sfx}(&g[0], i, clip, neg)


def clamp_{sfx}_parallel({c}[::1] g, {c} clip, int num_threads=1):
    cdef Py_ssize_t i, n = g.shape[0]
    cdef {c} neg = -clip
    cdef {c}* G
    if n == 0:
        return
    G = &g[0]
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        _clamp_{sfx}(G, i, clip, neg)
"""


def generate(rules=None):
    """The Cython source (one .pyx) of every rule's loops and the gradient loops.

    Functions: ``<rule>_<f32|f64>_<serial|parallel>(p, g, s0, s1, s2, hyper, flags,
    num_threads)`` and ``sumsq_/scale_/clamp_<f32|f64>_<serial|parallel>``."""
    rules = _rules.RULES if rules is None else rules
    parts = [_HEADER]
    for dtype, t in FLOATS.items():
        gen = _Generator(dtype)
        rule_code = []
        loops = []
        for name, rule in rules.items():
            if len(rule.hyper) > MAX_HYPER or len(rule.flags) > MAX_FLAGS:
                raise TranslationError(f"rule {name!r}: at most {MAX_HYPER} hyperparameters "
                                       f"and {MAX_FLAGS} flags")
            fn, code = gen.rule(rule)
            rule_code.append(code)
            for kind in ("serial", "parallel"):
                loops.append(_LOOPS.format(
                    name=name, sfx=t["suffix"], kind=kind, c=t["c"], ci=t["int"],
                    nh=max(1, len(rule.hyper)), nf=max(1, len(rule.flags)),
                    n_hyper=len(rule.hyper), n_flags=len(rule.flags),
                    loop=_loop(kind, fn, len(rule.state))))
        parts += gen.helper_code + rule_code + loops
        parts.append(_STATS.format(sfx=t["suffix"], c=t["c"]))
    return "\n\n".join(parts) + "\n"
