"""`fastopt landscape`: the Gabor model's analytic gradient (finite differences, torch
autograd), the real optimizer and mini-batches, GD trapped and SGD escaping on the
defaults, files and argument errors."""

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt.cli import build_parser  # noqa: E402
from fastopt.experiments import landscape as L  # noqa: E402
from tests.clitools import cli, read_csv  # noqa: E402


def random_points(k=8, seed=5):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(*L.A_RANGE, k), rng.uniform(*L.B_RANGE, k)], 1)


def test_gradient_matches_central_finite_differences():
    data = L.make_data(0)
    h = 1e-6
    for p in random_points():
        g = L.gradient(p, data.x, data.y)
        fd = [(L.loss(p + h * e, data.x, data.y) - L.loss(p - h * e, data.x, data.y)) / (2 * h)
              for e in np.eye(2)]
        assert g.dtype == np.float64 and g.shape == (2,)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_gradient_and_loss_match_torch_autograd(torch64):
    torch = torch64
    data = L.make_data(3)
    rows = np.array([0, 4, 7, 11, 29])  # a mini-batch of rows, as SGD sees them
    for p in random_points(6, seed=9):
        t = torch.tensor(p, requires_grad=True)
        u = t[0] + t[1] * torch.tensor(data.x[rows])
        value = torch.mean((torch.sin(u) * torch.exp(-u * u / L.C)
                            - torch.tensor(data.y[rows])) ** 2)
        value.backward()
        assert L.loss(p, data.x[rows], data.y[rows]) == pytest.approx(value.item(), rel=1e-12)
        np.testing.assert_allclose(L.gradient(p, data.x[rows], data.y[rows]),
                                   t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_loss_grid_is_the_loss_at_each_point():
    data = L.make_data(0)
    A, B = np.meshgrid(np.linspace(-3, 3, 4), np.linspace(5, 20, 3))
    Z = L.loss_grid(A, B, data.x, data.y)
    for i in range(3):
        for j in range(4):
            assert Z[i, j] == pytest.approx(L.loss((A[i, j], B[i, j]), data.x, data.y),
                                            rel=1e-12)


def test_data_come_from_the_seed():
    a, b, c = L.make_data(0), L.make_data(0), L.make_data(1)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert len(a.x) == L.N_DATA and a.x.min() >= -1 and a.x.max() <= 1


def test_gd_path_is_fastopt_sgd_with_the_decaying_lr():
    """The GD path equals p -= lr_t * grad(p) written out, with the ExponentialDecay lr."""
    data = L.make_data(0)
    path = L.run_path(data, (3.0, 6.0), L.FULL, 50, 2.0, 0)
    p = np.array([3.0, 6.0])
    for t in range(50):
        p = p - 2.0 * L.LR_END ** (t / 50) * L.gradient(p, data.x, data.y)
        np.testing.assert_allclose(path.points[t + 1, :2], p, rtol=1e-12)
    assert path.points.shape == (51, 3) and path.run == "s1 gd"
    assert path.points[-1, 2] == pytest.approx(L.loss(p, data.x, data.y))


def test_sgd_sees_real_mini_batches_of_the_rows(monkeypatch):
    """Batch 3: every 10 updates (an epoch) see each of the 30 rows once, reshuffled."""
    seen = []
    real = L.gradient

    def recording(p, x, y):
        seen.append(np.array(x))
        return real(p, x, y)

    monkeypatch.setattr(L, "gradient", recording)
    data = L.make_data(0)
    L.run_path(data, (3.0, 6.0), 3, 20, 1.0, 0)
    assert [len(x) for x in seen] == [3] * 20
    for epoch in (seen[:10], seen[10:]):
        assert sorted(np.concatenate(epoch)) == sorted(data.x)
    assert not np.array_equal(np.concatenate(seen[:10]), np.concatenate(seen[10:]))
    first = np.concatenate(seen[:10])
    seen.clear()
    L.run_path(data, (3.0, 6.0), 3, 10, 1.0, 1)  # another seed: another order
    assert not np.array_equal(np.concatenate(seen), first)


def test_defaults_gd_trapped_sgd_escapes(tmp_path, capsys):
    """The default figure's story, on the default settings and seed."""
    out = tmp_path / "run"
    code, stdout, err = cli(["landscape", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    rows = read_csv(out / "landscape_summary.csv")
    assert list(rows[0]) == L.SUMMARY_COLUMNS
    ended = {(r["start"], r["batch"]): r["minimum"] for r in rows}
    assert len(rows) == len(L.STARTS) * 4  # GD + batch 3, 5, 10 from each start
    # start 1: GD stops in a local minimum, SGD at every batch size escapes to the global
    assert ended[("1", "full")] == "local"
    assert all(ended[("1", b)] == "global" for b in ("3", "5", "10"))
    # start 2: GD trapped, the small batches escape
    assert ended[("2", "full")] == "local"
    assert ended[("2", "3")] == ended[("2", "5")] == "global"
    # start 3: GD itself reaches the global minimum
    assert ended[("3", "full")] == "global"
    best = min(float(r["minimum_loss"]) for r in rows)
    for r in rows:
        final = float(r["final_loss"])
        assert final >= best - 1e-12
        if r["minimum"] == "global":
            assert float(r["minimum_loss"]) == pytest.approx(best)
            assert abs(float(r["minimum_a"]) - L.TRUE[0]) < 0.5
            assert abs(float(r["minimum_b"]) - L.TRUE[1]) < 0.5
        else:
            assert float(r["minimum_loss"]) > 2 * best  # a clearly worse minimum
    paths = read_csv(out / "landscape_paths.csv")
    assert list(paths[0]) == L.PATH_COLUMNS
    assert len(paths) == len(rows) * (L.DEFAULT_STEPS + 1)
    assert paths[0]["run"] == "s1 gd" and paths[0]["step"] == "0"
    assert (float(paths[0]["a"]), float(paths[0]["b"])) == L.STARTS[0]
    assert (out / "landscape.png").stat().st_size > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "landscape" and settings["status"] == "complete"
    assert settings["resolved"]["batch_sizes"] == ["full", 3, 5, 10]
    assert "start 1 (3, 6), GD: ended in the local minimum" in stdout


def test_figure_panels():
    args = build_parser().parse_args(["landscape", "--steps", "30", "--starts", "3,6;-1,11",
                                      "--batch-sizes", "5"])
    plan = L.check_args(args)
    paths = [L.run_path(plan.data, s, b, plan.steps, plan.lr, plan.seed, i)
             for i, s in enumerate(plan.starts) for b in plan.batch_sizes]
    rows = L.summarize(plan, paths)
    fig = L.plot_landscape(plan, paths, rows, grid=31)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == ["start 1: (a, b) = (3, 6)", "start 2: (a, b) = (-1, 11)", "", ""]
    labels = [line.get_label() for line in fig.axes[0].get_lines()
              if not line.get_label().startswith("_")]
    assert labels[0].startswith("GD (full batch): ") and labels[1].startswith("SGD batch 5: ")


def test_where_a_path_ended():
    best = L.Minimum(0.06, 15.2, 0.037)
    assert L.where_ended(L.Minimum(0.06, 15.2, 0.037), best) == "global"
    assert L.where_ended(L.Minimum(2.07, 5.84, 0.19), best) == "local"
    assert L.where_ended(L.Minimum(900.0, 300.0, 0.18), best) == "outside"
    assert L.where_ended(L.Minimum(float("nan"), 1.0, float("nan")), best) == "diverged"
    data = L.make_data(0)
    assert L.polish(data, (float("inf"), 1.0)).loss != L.polish(data, (0.0, 15.0)).loss


def test_too_large_a_learning_rate_is_reported_not_hidden(tmp_path, capsys):
    code, stdout, err = cli(["landscape", "--lr", "1e4", "--steps", "10", "--starts", "3,6",
                             "--batch-sizes", "5", "--no-progress", "--out",
                             str(tmp_path / "r")], capsys)
    assert code == 0, err
    rows = read_csv(tmp_path / "r" / "landscape_summary.csv")
    assert {r["minimum"] for r in rows} <= {"outside", "diverged"}
    assert "left the window" in stdout and "lower --lr" in stdout


@pytest.mark.parametrize("args, words", [
    (["--steps", "0"], ["--steps", "positive"]),
    (["--lr", "-1"], ["--lr", "positive"]),
    (["--lr", "nan"], ["--lr", "positive"]),
    (["--batch-sizes", "0"], ["--batch-sizes", "positive"]),
    (["--batch-sizes", "abc"], ["--batch-sizes", "'abc'"]),
    (["--batch-sizes", "31"], ["--batch-sizes", "30 rows", "31"]),
    (["--batch-sizes", "3,3"], ["--batch-sizes", "twice"]),
    (["--starts", "1"], ["--starts", "two numbers", "'1'"]),
    (["--starts", "50,10"], ["--starts", "outside", "'50,10'"]),
    (["--starts", ";"], ["--starts", "at least one"]),
    (["--seed", "-1"], ["--seed"]),
    (["--target", "cuda"], ["--target cuda", "--target cpu"]),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, args, words):
    out = tmp_path / "never"
    code, stdout, err = cli(["landscape", *args, "--out", str(out)], capsys)
    assert code == 2 and err.startswith("fastopt: error: ") and stdout == ""
    for word in words:
        assert word in err
    assert not out.exists()
