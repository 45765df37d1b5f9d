"""The package as a whole: its public face and the direction of its imports."""

import ast
import pathlib
import re

import pytest

import fastopt

ROOT = pathlib.Path(fastopt.__file__).parent

# Layers, lowest first: a module may import its own layer and the layers below it, never
# one above (README "Layout"). Imports inside functions count: they are dependencies too.
LAYERS = [
    {"_checks", "_lazy", "specs", "config", "threads", "tables", "runs"},  # plumbing
    {"schedules", "kernels", "reference", "datasets", "init"},   # formulas, data
    {"clip", "optim", "nn", "checkpoint"},                       # optimizers, models
    {"train"},                                                   # the training loop
    {"experiments", "bench", "asvreport"},                       # experiments, benchmarks
    {"sweep"},                                                   # searches over experiments
    {"cli", "__main__"},                                         # the command line
]


def _layer(part):
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"fastopt.{part} has no layer in tests/test_package.py LAYERS")


def _imported(path):
    """The fastopt top-level parts (``optim``, ``kernels``, ...) that ``path`` imports."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                parts = base + (node.module.split(".") if node.module else [])
                if not parts:  # from . import x (at the top) or from .. import x
                    found |= {a.name for a in node.names}
                else:
                    found.add(parts[0])
            elif node.module and node.module.split(".")[0] == "fastopt":
                rest = node.module.split(".")[1:]
                found |= {rest[0]} if rest else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                bits = a.name.split(".")
                if bits[0] == "fastopt" and len(bits) > 1:
                    found.add(bits[1])
    return found


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_imports_point_down():
    upward = []
    for path in _modules():
        rel = path.relative_to(ROOT)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue  # the package face only names submodules lazily
        for part in _imported(path) - {own}:
            if part.startswith("__") or (ROOT / part).exists() is False and not (
                    ROOT / f"{part}.py").exists():
                continue  # a name imported from a package face, not a module
            if _layer(part) > _layer(own):
                upward.append(f"{rel} imports fastopt.{part}")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_no_module_outside_optim_reaches_into_an_optimizer():
    """Training loops drive an optimizer through its public step protocol only."""
    private = re.compile(r"\.(_prepare|_launch_args|_commit|_flat_state|_flat|_steps|"
                         r"_refresh_if_edited|_group_of|_hyper_buffers|_host_scalars)\b")
    offenders = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path in _modules()
                 if path.relative_to(ROOT).parts[0] != "optim"
                 for m in private.finditer(path.read_text())]
    assert not offenders, offenders


def test_public_face_is_the_library():
    assert set(fastopt.__all__) == {*fastopt.LIBRARY, "clip_grad_norm", "clip_grad_value",
                                    "save", "load", "__version__"}
    for name in fastopt.__all__:
        assert getattr(fastopt, name) is not None
    for name in fastopt.TOOLING:  # tooling: reachable under its own name, not in __all__
        assert name not in fastopt.__all__ and getattr(fastopt, name).__name__ == \
            f"fastopt.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastopt.nope
