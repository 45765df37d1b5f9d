"""The MLP: gradients against finite differences and torch autograd, the compiled training
step against its parts, determinism, bad input."""

import numpy as np
import pytest

from fastopt import nn, optim
from fastopt.nn import kernels as K

ACTS = list(K.ACTIVATIONS)
SIZES = [5, 7, 6, 3]


def batch(rng, n=11, sizes=SIZES, loss="cross_entropy", dtype=np.float64):
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], n)
    else:
        y = rng.standard_normal((n, sizes[-1])).astype(dtype)
    return X, y


def torch_twin(model):
    """The same network in torch (float64), sharing the weights; returns (net, linears)."""
    torch = pytest.importorskip("torch")
    act = {"relu": torch.nn.ReLU(), "leaky_relu": torch.nn.LeakyReLU(0.01),
           "tanh": torch.nn.Tanh(), "sigmoid": torch.nn.Sigmoid(),
           "gelu": torch.nn.GELU()}[model.activation]
    layers, linears = [], []
    for i, (W, b) in enumerate(zip(model.weights, model.biases)):
        lin = torch.nn.Linear(*W.shape, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W.T, dtype=torch.float64))
            lin.bias.copy_(torch.tensor(b, dtype=torch.float64))
        layers.append(lin)
        linears.append(lin)
        if i < len(model.weights) - 1:
            layers.append(act)
    return torch.nn.Sequential(*layers), linears


def torch_loss(model, out, y):
    import torch

    if model.loss == "cross_entropy":
        return torch.nn.functional.cross_entropy(out, torch.tensor(y))
    return torch.nn.functional.mse_loss(out, torch.tensor(y))


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("act", ACTS)
def test_loss_and_gradients_match_torch_autograd(act, loss, rng):
    torch = pytest.importorskip("torch")
    model = nn.MLP(SIZES, activation=act, loss=loss, dtype="float64", seed=3)
    X, y = batch(rng, loss=loss)
    value = model.loss_and_grad(X, y)
    net, linears = torch_twin(model)
    out = net(torch.tensor(X))
    ref = torch_loss(model, out, y)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-10)
    np.testing.assert_allclose(model.forward(X), out.detach().numpy(), rtol=1e-10, atol=1e-12)
    for dW, db, lin in zip(model.weight_grads, model.bias_grads, linears):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(db, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-13)


def check_finite_differences(model, X, y, indices, h=1e-6):
    """Central differences of the training loss against model.grads at params[indices]."""
    model.loss_and_grad(X, y)
    analytic = model.grads.copy()
    for k in indices:
        old = model.params[k]
        model.params[k] = old + h
        up = model.loss_and_grad(X, y)
        model.params[k] = old - h
        down = model.loss_and_grad(X, y)
        model.params[k] = old
        assert analytic[k] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8), k


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("act", ACTS)
def test_gradients_match_finite_differences(act, loss, rng):
    model = nn.MLP([4, 5, 3], activation=act, loss=loss, dtype="float64", seed=5)
    X, y = batch(rng, n=6, sizes=[4, 5, 3], loss=loss)
    check_finite_differences(model, X, y, rng.choice(model.params.size, size=12,
                                                     replace=False))


def test_dropout_is_inverted_and_matches_torch_with_the_same_mask(rng):
    torch = pytest.importorskip("torch")
    model = nn.MLP(SIZES, activation="tanh", dropout=0.4, dtype="float64", seed=2)
    X, y = batch(rng)
    value = model.loss_and_grad(X, y)
    n = X.shape[0]
    M = model._workspace(n)[3]
    widths = SIZES[1:-1]
    masks, off = [], 0
    for w in widths:
        masks.append(M[off:off + n * w].reshape(n, w).copy())
        off += n * w
    for m in masks:
        assert set(np.unique(m)) <= {0.0, 1 / 0.6}
    net, linears = torch_twin(model)
    h = torch.tensor(X)
    for i, lin in enumerate(linears):
        h = lin(h)
        if i < len(linears) - 1:
            h = torch.tanh(h) * torch.tensor(masks[i])
    ref = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-10)
    for dW, lin in zip(model.weight_grads, linears):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
    # evaluation mode has no dropout: forward equals the torch net without masks
    np.testing.assert_allclose(model.forward(X), net(torch.tensor(X)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-3, centered=True)),
    ("Lion", dict(lr=1e-3, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, convention="keras")),
    ("NAdam", dict()),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kw", OPTIMIZERS)
def test_train_step_equals_loss_and_grad_then_step_bitwise(name, kw, dtype, rng,
                                                           kernel_path):
    a = nn.MLP(SIZES, dropout=0.2, dtype=dtype, seed=7)
    b = nn.MLP(SIZES, dropout=0.2, dtype=dtype, seed=7)
    oa = getattr(optim, name)(a.params, **kw)
    ob = getattr(optim, name)(b.params, **kw)
    for _ in range(5):
        X, y = batch(rng, dtype=dtype)
        la = a.train_step(X, y, oa)
        lb = b.loss_and_grad(X, y)
        ob.step(b.grads)
        assert la == lb
        np.testing.assert_array_equal(a.params, b.params)
    assert oa.steps == ob.steps == 5
    np.testing.assert_array_equal(oa.state[0][next(iter(oa.state[0]))],
                                  ob.state[0][next(iter(ob.state[0]))])


def test_train_step_with_fused_clipping_falls_back_to_two_calls(rng):
    a = nn.MLP(SIZES, seed=1, dtype="float64")
    b = nn.MLP(SIZES, seed=1, dtype="float64")
    oa = optim.Adam(a.params, max_grad_norm=0.1, skip_nonfinite=True)
    ob = optim.Adam(b.params, max_grad_norm=0.1, skip_nonfinite=True)
    X, y = batch(rng)
    a.train_step(X, y, oa)
    b.loss_and_grad(X, y)
    ob.step(b.grads)
    np.testing.assert_array_equal(a.params, b.params)


def test_same_seed_same_training_bitwise(rng):
    X, y = batch(rng, n=40)

    def train():
        m = nn.MLP(SIZES, dropout=0.3, seed=11)
        o = optim.Adam(m.params, lr=1e-2)
        return [m.train_step(X.astype(np.float32), y, o) for _ in range(10)], m.params.copy()

    (l1, p1), (l2, p2) = train(), train()
    assert l1 == l2
    np.testing.assert_array_equal(p1, p2)


def test_mlp_layout_and_views():
    m = nn.MLP([784, 100, 10])
    assert m.params.size == 784 * 100 + 100 + 100 * 10 + 10
    assert m.weights[0].shape == (784, 100) and m.biases[1].shape == (10,)
    assert np.shares_memory(m.weights[1], m.params)
    assert np.shares_memory(m.weight_grads[1], m.grads)
    np.testing.assert_array_equal(m.biases[0], 0)
    # He normal (Keras: truncated): std close to sqrt(2/784)
    assert np.std(m.weights[0]) == pytest.approx(np.sqrt(2 / 784), rel=0.05)


def test_evaluate_and_learning_on_digits():
    """Adam on digits reaches >= 95% test accuracy in a few seconds of training."""
    from fastopt import datasets

    data = datasets.load("digits")
    model = nn.MLP([64, 100, 100, 10], seed=0)
    opt = optim.Adam(model.params, lr=1e-3)
    rng = np.random.default_rng(0)
    for epoch in range(30):
        order = rng.permutation(data.n_train)
        for start in range(0, data.n_train, 32):
            idx = order[start:start + 32]
            model.train_step(data.X_train[idx], data.y_train[idx], opt)
    loss, acc = model.evaluate(data.X_test, data.y_test)
    assert acc >= 0.95, acc
    assert 0 < loss < 0.3


@pytest.mark.parametrize("kw,match", [
    (dict(sizes=[5]), "at least two"),
    (dict(sizes=[5, 0, 3]), ">= 1"),
    (dict(sizes="abc"), "integers"),
    (dict(sizes=SIZES, activation="swish"), "relu, leaky_relu"),
    (dict(sizes=SIZES, init="orthogonal"), "he_normal"),
    (dict(sizes=SIZES, dropout=1.0), "dropout"),
    (dict(sizes=SIZES, dtype="int32"), "float32 or float64"),
    (dict(sizes=SIZES, target="tpu"), "target"),
    (dict(sizes=SIZES, loss="hinge"), "cross_entropy"),
    (dict(sizes=[5, 1], loss="cross_entropy"), "2 output classes"),
])
def test_bad_model_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nn.MLP(**kw)


def test_bad_batches_raise_and_change_nothing(rng):
    m = nn.MLP(SIZES, seed=0)
    opt = optim.SGD(m.params, lr=0.1)
    X, y = batch(rng, dtype=np.float32)
    before = m.params.copy()
    Xnan = X.copy()
    Xnan[2, 3] = np.nan
    cases = [
        (X, y[:-1], ValueError, "shape"),
        (X[:, :4], y, ValueError, r"\(n, 5\)"),
        (X, np.where(y == 0, 3, y), ValueError, "outside"),
        (X, -np.ones_like(y), ValueError, "outside"),
        (Xnan, y, ValueError, "row 2, column 3"),
        (X.astype(str), y, TypeError, "real numbers"),
        (X, y + 0.5, TypeError, "integer class labels"),
        (X[:0], y[:0], ValueError, "no rows"),
    ]
    for Xb, yb, exc, match in cases:
        with pytest.raises(exc, match=match):
            m.train_step(Xb, yb, opt)
    other = optim.SGD(np.zeros_like(m.params), lr=0.1)
    with pytest.raises(ValueError, match="model.params"):
        m.train_step(X, y, other)
    with pytest.raises(ValueError, match="model.params"):
        m.train_step(X, y, optim.SGD([m.params[:10], m.params[10:]], lr=0.1))
    np.testing.assert_array_equal(m.params, before)
    assert opt.steps == 0


# ---------------------------------------------------------------------------------------
# batch normalisation


def torch_bn_twin(model):
    """Linear -> BatchNorm1d -> act per hidden layer, sharing the model's parameters."""
    torch = pytest.importorskip("torch")
    act = {"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(), "gelu": torch.nn.GELU(),
           "sigmoid": torch.nn.Sigmoid(),
           "leaky_relu": torch.nn.LeakyReLU(0.01)}[model.activation]
    layers, linears, bns = [], [], []
    for i, (W, b) in enumerate(zip(model.weights, model.biases)):
        lin = torch.nn.Linear(*W.shape, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W.T))
            lin.bias.copy_(torch.tensor(b))
        layers.append(lin)
        linears.append(lin)
        if i < len(model.weights) - 1:
            bn = torch.nn.BatchNorm1d(W.shape[1], dtype=torch.float64)
            with torch.no_grad():
                bn.weight.copy_(torch.tensor(model.gammas[i]))
                bn.bias.copy_(torch.tensor(model.betas[i]))
            layers += [bn, act]
            bns.append(bn)
    return torch.nn.Sequential(*layers), linears, bns


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
def test_batch_norm_matches_torch_batchnorm1d(act, loss, rng):
    torch = pytest.importorskip("torch")
    model = nn.MLP(SIZES, activation=act, loss=loss, batch_norm=True, dtype="float64", seed=3)
    for g, b in zip(model.gammas, model.betas):  # non-trivial scale and shift
        g[:] = rng.uniform(0.5, 1.5, g.size)
        b[:] = rng.uniform(-0.5, 0.5, b.size)
    net, linears, bns = torch_bn_twin(model)
    net.train()
    for _ in range(3):  # running statistics accumulate over several batches
        X, y = batch(rng, loss=loss)
        value = model.loss_and_grad(X, y)
        for p in net.parameters():
            p.grad = None
        ref = torch_loss(model, net(torch.tensor(X)), y)
        ref.backward()
        assert value == pytest.approx(ref.item(), rel=1e-10)
    for dW, db, lin in zip(model.weight_grads, model.bias_grads, linears):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(db, lin.bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    for i, bn in enumerate(bns):
        np.testing.assert_allclose(model.gamma_grads[i], bn.weight.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(model.beta_grads[i], bn.bias.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(model.running_mean[i], bn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(model.running_var[i], bn.running_var.numpy(), rtol=1e-12)
    net.eval()
    X, _ = batch(rng, loss=loss)
    np.testing.assert_allclose(model.forward(X), net(torch.tensor(X)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_batch_norm_finite_differences(rng):
    model = nn.MLP([4, 5, 3], activation="tanh", batch_norm=True, dtype="float64", seed=5)
    X, y = batch(rng, n=6, sizes=[4, 5, 3])
    check_finite_differences(model, X, y, range(model.params.size))


def test_batch_norm_train_step_bitwise_and_batch_of_one_rejected(rng):
    a = nn.MLP(SIZES, batch_norm=True, dropout=0.1, seed=2)
    b = nn.MLP(SIZES, batch_norm=True, dropout=0.1, seed=2)
    oa, ob = optim.Adam(a.params, lr=1e-2), optim.Adam(b.params, lr=1e-2)
    for _ in range(3):
        X, y = batch(rng, dtype=np.float32)
        assert a.train_step(X, y, oa) == b.loss_and_grad(X, y)
        ob.step(b.grads)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a._running, b._running)
    before = a.params.copy(), a._running.copy()
    with pytest.raises(ValueError, match="at least 2 rows"):
        a.train_step(X[:1], y[:1], oa)
    np.testing.assert_array_equal(a.params, before[0])
    np.testing.assert_array_equal(a._running, before[1])
    assert oa.steps == 3
    assert a.forward(X[:1]).shape == (1, 3)  # evaluation works on one row
