"""MLP(residual=True): identity skip connections around the hidden layers whose fan-in
equals their fan-out (a_out = act(z) (* mask) + a_in), checked against a torch module with
the same weights (float64 autograd), a slow NumPy reference written from the formula, finite
differences, and for bitwise determinism; residual=False leaves every number unchanged."""

import numpy as np
import pytest

from fastopt import nn, optim
from fastopt.nn import kernels as K
from fastopt.train import fit

# layer 0: 6 -> 6 (a skip from X), 6 -> 4 (none), 4 -> 4 (skip), 4 -> 4 (skip), output none
SIZES = [6, 6, 4, 4, 4, 3]
ACTS = list(K.ACTIVATIONS)


def data(rng, n=9, sizes=SIZES):
    return rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n)


def skips(sizes):
    """Which layers have a skip: hidden layers with fan-in == fan-out."""
    return [fi == fo and l < len(sizes) - 2
            for l, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:]))]


def numpy_reference(model, X, y):
    """Loss of the training-mode forward pass, from the formula (no batch norm/dropout)."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
         "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z)}[model.activation]
    a = X
    for l, (W, b) in enumerate(zip(model.weights, model.biases)):
        z = a @ W + b
        if l == len(model.weights) - 1:
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            return -logp[np.arange(len(y)), y].mean()
        a = f(z) + a if skips(model.sizes)[l] else f(z)


def torch_loss_and_grads(model, X, y):
    """(loss, [dW], [db], [dgamma], [dbeta]) of an equivalent torch module, float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    act = {"relu": torch.relu, "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
           "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "gelu": F.gelu}[model.activation]
    Ws = [torch.tensor(W.astype(np.float64), requires_grad=True) for W in model.weights]
    bs = [torch.tensor(b.astype(np.float64), requires_grad=True) for b in model.biases]
    gs = [torch.tensor(g.astype(np.float64), requires_grad=True) for g in model.gammas]
    betas = [torch.tensor(b.astype(np.float64), requires_grad=True) for b in model.betas]
    a = torch.tensor(X.astype(np.float64))
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = a @ W + b
        if l == len(Ws) - 1:
            break
        if model.batch_norm:
            z = F.batch_norm(z, None, None, gs[l], betas[l], training=True, eps=model.bn_eps)
        a = act(z) + a if skips(model.sizes)[l] else act(z)
    loss = F.cross_entropy(z, torch.tensor(y))
    loss.backward()
    return (loss.item(), [w.grad.numpy() for w in Ws], [b.grad.numpy() for b in bs],
            [g.grad.numpy() for g in gs], [b.grad.numpy() for b in betas])


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("act", ACTS)
def test_loss_and_gradients_match_torch_autograd(act, bn, rng):
    model = nn.MLP(SIZES, activation=act, batch_norm=bn, residual=True, dtype="float64",
                   seed=2)
    X, y = data(rng)
    value = model.loss_and_grad(X, y)
    ref, dW, db, dg, dbeta = torch_loss_and_grads(model, X, y)
    np.testing.assert_allclose(value, ref, rtol=1e-12)
    for mine, theirs in [(model.weight_grads, dW), (model.bias_grads, db),
                         (model.gamma_grads, dg), (model.beta_grads, dbeta)]:
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_forward_matches_numpy_reference(act, rng):
    model = nn.MLP(SIZES, activation=act, residual=True, dtype="float64", seed=4)
    X, y = data(rng)
    np.testing.assert_allclose(model.loss_and_grad(X, y), numpy_reference(model, X, y),
                               rtol=1e-12)
    # and the skip changes the numbers: the reference without skips differs
    plain = nn.MLP(SIZES, activation=act, dtype="float64", seed=4)
    assert abs(plain.loss_and_grad(X, y) - model.loss_and_grad(X, y)) > 1e-6


def check_central_differences(model, X, y, indices, h=1e-6):
    """model.grads at params[indices] against central differences of the training loss."""
    model.loss_and_grad(X, y)
    grads = model.grads.copy()
    for k in indices:
        old = model.params[k]
        model.params[k] = old + h
        up = model.loss_and_grad(X, y)
        model.params[k] = old - h
        down = model.loss_and_grad(X, y)
        model.params[k] = old
        np.testing.assert_allclose(grads[k], (up - down) / (2 * h), rtol=1e-5, atol=1e-8)



@pytest.mark.parametrize("bn", [False, True])
def test_gradients_match_finite_differences(bn, rng):
    model = nn.MLP(SIZES, activation="tanh", batch_norm=bn, residual=True,
                   dtype="float64", seed=5)
    X, y = data(rng)
    check_central_differences(model, X, y, rng.choice(model.params.size, 40, replace=False))


def test_dropout_with_skips_matches_finite_differences_under_fixed_masks(rng, monkeypatch):
    """With dropout the skip is added after the mask: a_out = act(z) * mask + a_in."""
    model = nn.MLP(SIZES, activation="sigmoid", dropout=0.3, residual=True,
                   dtype="float64", seed=6)
    X, y = data(rng)
    masks = {}

    def fixed(M, n):  # the same masks at every call
        if n not in masks:
            hidden = n * sum(model.sizes[1:-1])
            masks[n] = (np.random.default_rng(9).random(hidden) >= 0.3) / 0.7
        M[:masks[n].size] = masks[n]

    monkeypatch.setattr(model, "_draw_masks", fixed)
    check_central_differences(model, X, y, rng.choice(model.params.size, 30, replace=False))


def test_first_layer_without_matching_width_has_no_skip(rng):
    """[5, 7, 7, 3]: layer 0 (5 -> 7) has none, layer 1 (7 -> 7) one, the output none."""
    sizes = [5, 7, 7, 3]
    model = nn.MLP(sizes, activation="relu", residual=True, dtype="float64", seed=1)
    X, y = data(rng, sizes=sizes)
    np.testing.assert_allclose(model.loss_and_grad(X, y), numpy_reference(model, X, y),
                               rtol=1e-12)


def test_no_matching_widths_gives_the_plain_network_bitwise(rng):
    sizes = [5, 7, 4, 3]
    a = nn.MLP(sizes, residual=True, seed=1)
    b = nn.MLP(sizes, seed=1)
    X, y = data(rng, sizes=sizes)
    assert a.loss_and_grad(X.astype(np.float32), y) == b.loss_and_grad(X.astype(np.float32), y)
    np.testing.assert_array_equal(a.grads, b.grads)


@pytest.mark.parametrize("bn", [False, True])
def test_train_step_and_fit_are_bitwise_deterministic(bn, rng):
    X = rng.standard_normal((64, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], 64)

    def run():
        model = nn.MLP(SIZES, batch_norm=bn, dropout=0.1, residual=True, seed=3)
        opt = optim.Adam(model.params, lr=1e-2)
        losses = [model.train_step(X[:16], y[:16], opt) for _ in range(3)]
        fit(model, opt, (X, y), batch_size=16, epochs=2, seed=1, progress=False)
        return losses, model.params.copy()

    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2
    np.testing.assert_array_equal(p1, p2)


def test_kernels_are_separate_variants():
    plain = nn.MLP(SIZES)._net(True, 4)
    res = nn.MLP(SIZES, residual=True)._net(True, 4)
    assert K.variant_key(plain) == (False, False, False)
    assert K.variant_key(res) == (False, False, True)
    assert K._suffix("relu", False, False) == "relu"
    assert K._suffix("relu", True, True, True) == "relu_bn_mask_res"


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0])
def test_non_bool_residual_is_refused(bad):
    with pytest.raises(TypeError, match="residual must be True or False"):
        nn.MLP(SIZES, residual=bad)


def test_repr_names_it():
    assert "residual=True" in repr(nn.MLP(SIZES, residual=True))
    assert "residual" not in repr(nn.MLP(SIZES))
