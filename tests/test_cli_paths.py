"""`fastopt paths`: trajectories, the textbook figure, files, plots and argument errors."""

import json
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt.experiments import paths  # noqa: E402
from fastopt.experiments.surfaces import SURFACES  # noqa: E402
from tests.clitools import cli, read_csv  # noqa: E402


# ---------------------------------------------------------------------------------------
# the textbook's four update rules, written out independently of fastopt


def textbook_paths(steps=30):
    """Positions (start + ``steps`` updates) of the textbook's SGD, Momentum, AdaGrad and
    Adam on f = x^2/20 + y^2 from (-7, 2), with its learning rates and formulas."""

    def df(x, y):
        return x / 10.0, 2.0 * y

    start = (-7.0, 2.0)
    out = {}

    x, y = start
    pts = [(x, y)]
    for _ in range(steps):
        gx, gy = df(x, y)
        x -= 0.95 * gx
        y -= 0.95 * gy
        pts.append((x, y))
    out["sgd"] = pts

    x, y = start
    vx = vy = 0.0
    pts = [(x, y)]
    for _ in range(steps):
        gx, gy = df(x, y)
        vx = 0.9 * vx - 0.1 * gx
        vy = 0.9 * vy - 0.1 * gy
        x += vx
        y += vy
        pts.append((x, y))
    out["momentum"] = pts

    x, y = start
    hx = hy = 0.0
    pts = [(x, y)]
    for _ in range(steps):
        gx, gy = df(x, y)
        hx += gx * gx
        hy += gy * gy
        x -= 1.5 * gx / (math.sqrt(hx) + 1e-7)
        y -= 1.5 * gy / (math.sqrt(hy) + 1e-7)
        pts.append((x, y))
    out["adagrad"] = pts

    x, y = start
    lr, beta1, beta2 = 0.3, 0.9, 0.999
    mx = my = vx = vy = 0.0
    pts = [(x, y)]
    for it in range(1, steps + 1):
        gx, gy = df(x, y)
        lr_t = lr * math.sqrt(1.0 - beta2 ** it) / (1.0 - beta1 ** it)
        mx += (1 - beta1) * (gx - mx)
        my += (1 - beta1) * (gy - my)
        vx += (1 - beta2) * (gx ** 2 - vx)
        vy += (1 - beta2) * (gy ** 2 - vy)
        x -= lr_t * mx / (math.sqrt(vx) + 1e-7)
        y -= lr_t * my / (math.sqrt(vy) + 1e-7)
        pts.append((x, y))
    out["adam"] = pts
    return out


def test_book_reproduces_the_textbook_formulas(tmp_path, capsys):
    out = tmp_path / "book"
    code, stdout, _ = cli(["paths", "--book", "--out", str(out), "--no-progress"], capsys)
    assert code == 0
    assert f"{out / 'paths.csv'}" in stdout and f"{out / 'book.png'}" in stdout
    rows = read_csv(out / "paths.csv")
    expected = textbook_paths()
    assert sorted({r["optimizer"] for r in rows}) == sorted(expected)
    for name, pts in expected.items():
        mine = [r for r in rows if r["optimizer"] == name]
        assert [int(r["iteration"]) for r in mine] == list(range(31))
        got = np.array([(float(r["x"]), float(r["y"])) for r in mine])
        np.testing.assert_allclose(got, np.array(pts), rtol=0, atol=1e-12, err_msg=name)
        f = np.array([float(r["f"]) for r in mine])
        np.testing.assert_allclose(f, got[:, 0] ** 2 / 20 + got[:, 1] ** 2, rtol=1e-15)
    assert (out / "paths.png").stat().st_size > 0 and (out / "book.png").stat().st_size > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["arguments"]["book"] is True and settings["status"] == "complete"
    adagrad = settings["resolved"]["quadratic"]["optimizers"]["adagrad"]
    assert adagrad["initial_accumulator_value"] == 0.0 and adagrad["eps"] == 1e-7


def test_book_figure_is_the_textbook_layout():
    trajectories = paths.run_paths([(SURFACES["quadratic"], list(paths.BOOK))], 30)
    fig = paths.plot_book(trajectories)
    assert [ax.get_title().split(" (")[0] for ax in fig.axes] == ["SGD", "Momentum", "AdaGrad",
                                                                 "Adam"]
    for ax, t in zip(fig.axes, trajectories):
        path_line = ax.get_lines()[0]
        # the book plots the position before each of its 30 updates
        np.testing.assert_array_equal(path_line.get_xdata(), t.points[:30, 0])
        assert ax.get_xlim() == (-10, 10) and ax.get_ylim() == (-10, 10)
        assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"


# ---------------------------------------------------------------------------------------
# end to end on tiny settings


def test_paths_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["paths", "--functions", "quadratic,saddle", "--optimizers", "sgd,adam:lr=0.1",
            "--steps", "5", "--out", str(out), "--svg", "--seed", "3", "--no-progress"]
    code, stdout, _ = cli(argv, capsys)
    assert code == 0
    rows = read_csv(out / "paths.csv")
    assert list(rows[0]) == ["function", "optimizer", "iteration", "x", "y", "f"]
    assert len(rows) == 2 * 2 * 6
    assert {(r["function"], r["optimizer"]) for r in rows} == {
        (f, o) for f in ("quadratic", "saddle") for o in ("sgd", "adam:lr=0.1")}
    start = [r for r in rows if r["iteration"] == "0" and r["function"] == "saddle"][0]
    assert (float(start["x"]), float(start["y"])) == SURFACES["saddle"].start
    summary = read_csv(out / "paths_summary.csv")
    assert len(summary) == 4 and {r["status"] for r in summary} == {"ok"}
    assert {r["settings"] for r in summary if r["optimizer"] == "adam:lr=0.1"} == {"lr=0.1"}
    for name in ("paths.png", "paths.svg", "settings.json"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in stdout
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "paths"
    assert settings["arguments"]["functions"] == "quadratic,saddle"
    assert settings["arguments"]["steps"] == 5 and settings["arguments"]["seed"] == 3
    assert settings["argv"] == argv
    assert settings["command_line"].startswith("fastopt paths --functions quadratic,saddle")
    assert set(settings["versions"]) >= {"fastopt", "numpy", "numba"}
    assert settings["date"] and settings["status"] == "complete"
    lrs = settings["resolved"]["quadratic"]["optimizers"]
    assert lrs["sgd"]["lr"] == SURFACES["quadratic"].lrs["sgd"] and lrs["adam:lr=0.1"]["lr"] == 0.1


def test_plot_has_one_panel_per_function_and_one_line_per_optimizer():
    plan = [(SURFACES[name], [paths.configure(o, {}, SURFACES[name])
                              for o in ("sgd", "momentum", "adam")])
            for name in ("rosenbrock", "himmelblau", "beale", "saddle")]
    trajectories = paths.run_paths(plan, 4)
    fig = paths.plot_paths(trajectories)
    assert len(fig.axes) == 4  # the unused fifth and sixth grid cells are removed
    for ax, (surface, _) in zip(fig.axes, plan):
        assert surface.formula in ax.get_title()
        assert ax.get_xlabel().startswith("x") and ax.get_ylabel().startswith("y")
        lines = ax.get_lines()
        assert len(lines) == 3
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [lab.split(" ")[0] for lab in labels] == ["sgd", "momentum", "adam"]
        assert ax.get_xlim() == surface.xlim
        # each line starts at the surface's start point
        assert all((ln.get_xdata()[0], ln.get_ydata()[0]) == surface.start for ln in lines)


def test_diverging_path_is_cut_off_and_noted(tmp_path, capsys):
    out = tmp_path / "div"
    code, stdout, _ = cli(["paths", "--functions", "quadratic", "--optimizers",
                           "sgd:lr=10,sgd:lr=1e300,adam", "--steps", "20", "--out", str(out),
                           "--no-progress"], capsys)
    assert code == 0
    assert "note: quadratic/sgd:lr=10: diverged" in stdout
    summary = {r["optimizer"]: r for r in read_csv(out / "paths_summary.csv")}
    assert summary["sgd:lr=10"]["status"].startswith("diverged at update")
    assert int(summary["sgd:lr=10"]["updates"]) < 20
    assert summary["sgd:lr=1e300"]["status"].startswith("diverged at update 1")
    assert summary["adam"]["status"] == "ok" and summary["adam"]["updates"] == "20"
    rows = read_csv(out / "paths.csv")
    values = np.array([[float(r[k]) for k in "xyf"] for r in rows])
    assert np.isfinite(values).all() and np.abs(values[:, :2]).max() <= paths.DIVERGED
    assert (out / "paths.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------
# pieces


@pytest.mark.parametrize("name", list(SURFACES))
def test_gradients_match_finite_differences(name):
    s = SURFACES[name]
    rng = np.random.default_rng(0)
    for x, y in [s.start, *rng.uniform(-1.5, 1.5, (3, 2))]:
        h = 1e-6
        gx, gy = s.grad(x, y)
        fx = (s.f(x + h, y) - s.f(x - h, y)) / (2 * h)
        fy = (s.f(x, y + h) - s.f(x, y - h)) / (2 * h)
        assert gx == pytest.approx(fx, rel=1e-5, abs=1e-5)
        assert gy == pytest.approx(fy, rel=1e-5, abs=1e-5)
    for mx, my in s.minima:
        assert np.hypot(*s.grad(mx, my)) < 1e-4


def test_optimizer_syntax():
    specs = paths.parse_optimizers("sgd, momentum:lr=0.05,momentum=0.8, adam:beta1=0.8,"
                                   "nesterov,lr=0.01")
    assert [s[0] for s in specs] == ["sgd", "momentum:lr=0.05,momentum=0.8", "adam:beta1=0.8",
                                     "nesterov:lr=0.01"]
    assert specs[1][1:] == ("momentum", {"lr": 0.05, "momentum": 0.8})
    quad = SURFACES["quadratic"]
    adam = paths.configure("adam", specs[2][2], quad, specs[2][0])
    assert adam.cls == "Adam" and adam.kwargs == {"lr": 0.3, "betas": (0.8, 0.999)}
    nesterov = paths.configure("nesterov", specs[3][2], quad)
    assert nesterov.kwargs == {"momentum": 0.9, "nesterov": True, "lr": 0.01}


def test_momentum_and_nesterov_are_sgd_variants():
    quad = SURFACES["quadratic"]
    for name, extra in (("momentum", {}), ("nesterov", {"nesterov": True})):
        c = paths.configure(name, {}, quad)
        assert c.cls == "SGD" and c.kwargs == {"momentum": 0.9, "lr": 0.1, **extra}


# ---------------------------------------------------------------------------------------
# argument errors: exit code 2, a message naming the argument, nothing written


@pytest.mark.parametrize("args, words", [
    (["--functions", "quadratic,nope"], ["--functions", "'nope'", "rosenbrock"]),
    (["--optimizers", "sgd,foo"], ["--optimizers", "'foo'", "adagrad"]),
    (["--optimizers", "adam:lr"], ["--optimizers", "key=value"]),
    (["--optimizers", "adam:"], ["--optimizers", "nothing after"]),
    (["--optimizers", "lr=0.1,adam"], ["--optimizers", "before any optimizer"]),
    (["--optimizers", "adam:foo=1"], ["--optimizers", "'foo'", "beta1"]),
    (["--optimizers", "adam:lr=abc"], ["--optimizers", "'abc'"]),
    (["--optimizers", "sgd:lr=-1"], ["--optimizers", "lr"]),
    (["--optimizers", "adam,adam"], ["--optimizers", "twice"]),
    (["--steps", "0"], ["--steps", "positive"]),
    (["--steps", "-3"], ["--steps", "positive"]),
    (["--seed", "-1"], ["--seed"]),
    (["--target", "cuda"], ["--target cuda", "not available", "--target cpu"]),
    (["--target", "tpu"], ["--target", "cpu, cuda"]),
    (["--book", "--steps", "5"], ["--book", "--steps"]),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["paths", *args, "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith("fastopt: error: ")
    for word in words:
        assert word in err
    assert not out.exists() and stdout == ""


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    code, _, err = cli(["paths", "--functions", "quadratic", "--out", str(target)], capsys)
    assert code == 2 and "--out" in err and "existing file" in err
    assert target.read_text() == "keep me"
    code, _, err = cli(["paths", "--out", str(target / "sub")], capsys)
    assert code == 2 and "--out" in err


def test_steps_that_are_not_numbers_are_argparse_errors(capsys):
    code, _, err = cli(["paths", "--steps", "many"], capsys)
    assert code == 2 and "--steps" in err


def test_ctrl_c_keeps_the_folder_and_says_where(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(paths, "run_paths", interrupted)
    out = tmp_path / "cut"
    code, _, err = cli(["paths", "--out", str(out)], capsys)
    assert code == 130
    assert str(out) in err and "interrupted" in err
    assert json.loads((out / "settings.json").read_text())["status"] == "interrupted"


def test_help_documents_the_optimizer_syntax(capsys):
    code, stdout, _ = cli(["paths", "--help"], capsys)
    assert code == 0
    assert "NAME[:key=value" in stdout and "adam:lr=0.1" in stdout and "--book" in stdout
