"""`fastopt gradients` on tiny settings (digits, 3 hidden layers, 3 steps): its files, the
per-layer gradient norms against a network rebuilt by hand, the figures and bad input."""

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastopt import datasets, nn  # noqa: E402
from fastopt.experiments import gradients as G  # noqa: E402
from tests.clitools import cli, progress_every_update, read_csv, run_ok  # noqa: E402

ARGV = ["gradients", "--dataset", "digits", "--depth", "3", "--steps", "3",
        "--activations", "relu,sigmoid", "--inits", "std0.01,he", "--batch-norm", "off",
        "--residual", "off,on", "--grad-batch", "32", "--batch-size", "16", "--seed", "2"]
CONFIGS = [(a, i, "off", r) for a in ("relu", "sigmoid") for i in ("std0.01", "he")
           for r in ("off", "on")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("grad") / "run"
    stdout = run_ok([*ARGV, "--no-progress", "--out", str(out)])
    return out, stdout


def test_files_rows_and_settings(finished):
    out, stdout = finished
    rows = read_csv(out / "gradients.csv")
    assert list(rows[0]) == G.CSV_COLUMNS
    keys = [(r["activation"], r["init"], r["batch_norm"], r["residual"], r["phase"],
             r["layer"]) for r in rows]
    assert keys == [(*c, p, str(l)) for c in CONFIGS for p in G.PHASES for l in range(1, 5)]
    assert all(float(r["grad_norm"]) > 0 for r in rows)
    curves = read_csv(out / "gradients_curves.csv")
    assert list(curves[0]) == G.CURVE_COLUMNS
    assert [(r["activation"], r["init"], r["residual"], r["step"]) for r in curves] == [
        (c[0], c[1], c[3], str(s)) for c in CONFIGS for s in (1, 2, 3)]
    summary = read_csv(out / "gradients_summary.csv")
    assert list(summary[0]) == G.SUMMARY_COLUMNS and len(summary) == len(CONFIGS)
    for r in summary:
        assert 0 <= float(r["test_accuracy"]) <= 1
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "gradients" and settings["status"] == "complete"
    assert settings["resolved"]["network"] == [64, 100, 100, 100, 10]
    assert settings["resolved"]["configurations"] == len(CONFIGS)
    for name in ("gradients.png", "gradients_curves.png"):
        assert (out / name).stat().st_size > 0
    assert "|g1|/|gL| at init" in stdout


def test_init_norms_are_those_of_the_network_built_by_hand(finished):
    out, _ = finished
    data = datasets.load("digits")
    model = nn.MLP([64, 100, 100, 100, 10], activation="sigmoid", init="normal:std=0.01",
                   residual=True, seed=2)
    model.loss_and_grad(data.X_train[:32], data.y_train[:32])
    want = [np.linalg.norm(g.astype(np.float64)) for g in model.weight_grads]
    got = [float(r["grad_norm"]) for r in read_csv(out / "gradients.csv")
           if (r["activation"], r["init"], r["residual"], r["phase"])
           == ("sigmoid", "std0.01", "on", "init")]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # sigmoid with std 0.01: the gradient vanishes towards the input; the skips carry it
    plain = [float(r["grad_norm"]) for r in read_csv(out / "gradients.csv")
             if (r["activation"], r["init"], r["residual"], r["phase"])
             == ("sigmoid", "std0.01", "off", "init")]
    assert plain[0] < 1e-3 * plain[-1]
    assert got[0] > 100 * plain[0]


def test_the_same_seed_gives_the_same_files(finished, tmp_path):
    from fastopt.cli import main

    out, _ = finished
    argv = [*ARGV, "--activations", "sigmoid", "--inits", "he", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    again = read_csv(tmp_path / "again" / "gradients_curves.csv")
    first = [r for r in read_csv(out / "gradients_curves.csv")
             if r["activation"] == "sigmoid" and r["init"] == "he"]
    assert again == first


def test_progress_lines(monkeypatch, capsys, tmp_path):
    progress_every_update(monkeypatch)
    code, out, _ = cli([*ARGV, "--activations", "relu", "--inits", "he", "--residual",
                        "on", "--steps", "1", "--out", str(tmp_path / "p")], capsys)
    assert code == 0
    assert "gradients" in out and "1/1" in out


@pytest.mark.parametrize("extra, message", [
    (["--activations", "relu,swish"], "--activations: unknown name 'swish'"),
    (["--inits", "he,he"], "--inits lists a name twice"),
    (["--batch-norm", "maybe"], "--batch-norm: unknown name 'maybe'"),
    (["--residual", ""], "--residual needs at least one name"),
    (["--depth", "0"], "--depth"),
    (["--steps", "-1"], "--steps"),
    (["--lr", "0"], "--lr"),
    (["--batch-size", "1"], "--batch-size"),
    (["--grad-batch", "100000"], "--grad-batch: at most"),
    (["--dataset", "cifar"], "--dataset: unknown data set 'cifar'"),
])
def test_bad_arguments_are_refused_before_anything(extra, message, capsys, tmp_path):
    out = tmp_path / "never"
    code, _, err = cli([*ARGV, *extra, "--out", str(out)], capsys)
    assert code == 2 and message in err
    assert not out.exists()
