"""The optimizer catalogue and the rule registry: every fact stated once, drift refused early."""

import subprocess
import sys

import numpy as np
import pytest

from fastopt import optim
from fastopt.kernels import rules
from fastopt.optim import catalogue


# ---------------------------------------------------------------------------------------
# rules declare their names once


def test_rule_names_come_from_the_rules_own_unpacking():
    rule = rules.RULES["adam"]
    assert rule.hyper[:3] == ("step_size", "gscale", "weight_decay")
    assert rule.flags == ("has_wd", "amsgrad", "lerp_high")
    assert rules.RULES["lion"].flags == ()  # a rule without flags unpacks no f


@pytest.mark.parametrize("source, message", [
    ("def r(p, g, s0, s1, h, f):\n    (a,) = h\n    return p, s0, s1, s1\n",
     r"signature must be \(p, g, s0, s1, s2, h, f\)"),
    ("def r(p, g, s0, s1, s2, h, f):\n    return p, s0, s1, s2\n",
     "must unpack its hyperparameters"),
    ("def r(p, g, s0, s1, s2, h, f):\n    a = h\n    return p, s0, s1, s2\n",
     "unpack h into plain names"),
    ("def r(p, g, s0, s1, s2, h, f):\n    (a,) = h\n    (b,) = h\n    return p, s0, s1, s2\n",
     "h is unpacked twice"),
])
def test_a_malformed_rule_fails_when_it_is_defined(source, message, tmp_path, monkeypatch):
    path = tmp_path / "badrule.py"
    path.write_text("from fastopt.kernels.rules import update_rule\n\n"
                    "@update_rule('bad_test_rule', state=('s',))\n" + source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match=message):
        __import__("badrule")
    assert "bad_test_rule" not in rules.RULES


def test_state_names_are_checked():
    with pytest.raises(ValueError, match="must number 1 to 3"):
        rules.update_rule("x", state=("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="defined twice"):
        rules.update_rule("sgd", state=("b",))(rules.sgd)


def test_host_scalars_that_drift_from_the_rule_fail_at_construction():
    class Drifted(optim.Adam):
        def _host_scalars(self, group, lr, t, gstate):
            hyper, flags, gstate = super()._host_scalars(group, lr, t, gstate)
            hyper["bc2"] = 1.0  # a name the rule does not read
            del flags["amsgrad"]
            return hyper, flags, gstate

    with pytest.raises(TypeError, match=r"extra \['bc2'\]"):
        Drifted(np.zeros(3))


def test_a_hyperparameter_without_a_check_is_refused():
    class Unchecked(optim.SGD):
        def __init__(self, params, novel=1.0):
            optim.Optimizer.__init__(self, params, dict(lr=0.1, momentum=0.0, dampening=0.0,
                                                        nesterov=False, weight_decay=0.0,
                                                        maximize=False, novel=novel))

    with pytest.raises(TypeError, match="no check for its hyperparameter 'novel'"):
        Unchecked(np.zeros(3))
    Unchecked._hyper_checks = {"novel": lambda name, v: float(v)}
    Unchecked(np.zeros(3))


# ---------------------------------------------------------------------------------------
# the catalogue


def test_every_optimizer_states_its_facts():
    assert list(catalogue.facts()) == list(optim.OPTIMIZERS)
    for name, cls in optim.OPTIMIZERS.items():
        assert isinstance(cls.facts, catalogue.Facts), name
        assert cls.facts.presets, f"{name} has no experiment preset"


def test_presets_build_working_optimizers():
    for preset in catalogue.presets().values():
        opt = getattr(optim, preset.cls)(np.zeros(4), lr=preset.lr, **preset.fixed)
        assert opt.step(np.ones(4))
        assert preset.path_lr[0] in ("gd_lr", "step") and preset.path_lr[1] > 0


def test_torch_and_keras_names_exist_there():
    torch = pytest.importorskip("torch")
    for name, tname in catalogue.torch_names().items():
        assert hasattr(torch.optim, tname), name
    assert set(catalogue.torch_fused()) <= set(catalogue.torch_names())
    for name in catalogue.torch_fused():
        p = torch.nn.Parameter(torch.zeros(2))
        getattr(torch.optim, catalogue.torch_names()[name])([p], fused=True)
    assert "lion" not in catalogue.torch_names()
    for name in catalogue.keras_names():
        assert "keras" in optim.OPTIMIZERS[name]._rules


def test_textbook_arguments_select_existing_conventions():
    for name, f in catalogue.facts().items():
        if f.textbook is not None:
            optim.OPTIMIZERS[name](np.zeros(2), **catalogue.textbook(name))
    with pytest.raises(KeyError, match="the textbook has no lion"):
        catalogue.textbook("lion")


def test_the_catalogue_loads_without_numba():
    code = ("import sys; from fastopt.optim import catalogue; catalogue.presets(); "
            "catalogue.torch_names(); print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False"]
