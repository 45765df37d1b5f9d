"""nn.MLP(l2=, l1=): penalties on the weight matrices only, in the loss and its gradient,
checked against torch autograd (float64), finite differences and a slow reference; off,
they change no bit."""

import numpy as np
import pytest

from fastopt import nn, optim, train

from test_nn import batch, check_finite_differences, torch_bn_twin, torch_loss, torch_twin

SIZES = [5, 7, 6, 3]


def reference_penalty(model):
    """0.5 * l2 * sum(W**2) + l1 * sum(|W|) over the weight matrices, from the formula."""
    return sum(0.5 * model.l2 * np.sum(W.astype(float) ** 2)
               + model.l1 * np.sum(np.abs(W.astype(float))) for W in model.weights)


def torch_penalty(model, linears):
    return sum(0.5 * model.l2 * (lin.weight ** 2).sum() + model.l1 * lin.weight.abs().sum()
               for lin in linears)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("l1, l2", [(0.0, 0.3), (0.05, 0.0), (0.02, 0.1)])
def test_penalty_loss_and_gradients_match_torch_autograd(l1, l2, loss, rng):
    torch = pytest.importorskip("torch")
    model = nn.MLP(SIZES, activation="tanh", loss=loss, dtype="float64", seed=3, l1=l1, l2=l2)
    for b in model.biases:  # non-zero biases: a penalty on them would show
        b[:] = rng.uniform(-0.5, 0.5, b.size)
    X, y = batch(rng, loss=loss)
    value = model.loss_and_grad(X, y)
    net, linears = torch_twin(model)
    ref = torch_loss(model, net(torch.tensor(X)), y) + torch_penalty(model, linears)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    for dW, db, lin in zip(model.weight_grads, model.bias_grads, linears):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(db, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-13)
    assert model.penalty() == pytest.approx(reference_penalty(model), rel=1e-13)
    # evaluate reports the penalty too (Keras's evaluate adds the regularisation losses)
    data_loss = torch_loss(model, net(torch.tensor(X)), y).item()
    assert model.evaluate(X, y)[0] == pytest.approx(data_loss + reference_penalty(model),
                                                    rel=1e-12)


def test_penalty_skips_batch_norm_parameters_and_matches_torch(rng):
    torch = pytest.importorskip("torch")
    model = nn.MLP(SIZES, activation="relu", batch_norm=True, dtype="float64", seed=4,
                   l1=0.01, l2=0.2)
    for g, b in zip(model.gammas, model.betas):
        g[:] = rng.uniform(0.5, 1.5, g.size)
        b[:] = rng.uniform(-0.5, 0.5, b.size)
    net, linears, bns = torch_bn_twin(model)
    X, y = batch(rng)
    value = model.loss_and_grad(X, y)
    ref = torch_loss(model, net(torch.tensor(X)), y) + torch_penalty(model, linears)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    for dW, lin in zip(model.weight_grads, linears):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
    for i, bn in enumerate(bns):
        np.testing.assert_allclose(model.gamma_grads[i], bn.weight.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(model.beta_grads[i], bn.bias.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)


def test_penalty_finite_differences(rng):
    model = nn.MLP([4, 5, 3], activation="gelu", dtype="float64", seed=5, l1=0.03, l2=0.4)
    for W in model.weights:  # keep |W| away from 0, where |W| has no derivative
        W[np.abs(W) < 1e-3] = 0.01
    X, y = batch(rng, n=6, sizes=[4, 5, 3])
    check_finite_differences(model, X, y, range(model.params.size))


def test_l1_gradient_at_zero_is_zero_as_torch(rng):
    model = nn.MLP([3, 4, 2], dtype="float64", seed=0, l1=0.5)
    model.weights[0][0, 0] = 0.0
    X, y = batch(rng, n=4, sizes=[3, 4, 2])
    model.loss_and_grad(X, y)
    plain = nn.MLP([3, 4, 2], dtype="float64", seed=0)
    plain.params[:] = model.params
    plain.loss_and_grad(X, y)
    assert model.weight_grads[0][0, 0] == plain.weight_grads[0][0, 0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_penalties_change_no_bit(dtype, rng):
    """l1 = l2 = 0 (explicitly) gives the numbers of a model built without them."""
    X, y = batch(rng, n=40, dtype=dtype)
    runs = []
    for kw in ({}, dict(l1=0.0, l2=0.0)):
        model = nn.MLP(SIZES, dtype=dtype, seed=7, **kw)
        opt = optim.Adam(model.params, lr=1e-2)
        h = train.fit(model, opt, (X, y), batch_size=8, epochs=2, progress=False, seed=1)
        step = model.train_step(X[:5], y[:5], opt)
        runs.append((model.params.copy(), h["train_loss"], h["test_loss"], step))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    assert runs[0][3] == runs[1][3]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_step_and_fit_equal_loss_and_grad_then_step(dtype, rng):
    """The compiled step and fit's compiled chunk loop use the penalised gradient."""
    X, y = batch(rng, n=12, dtype=dtype)
    a = nn.MLP(SIZES, dtype=dtype, seed=1, l2=0.1, l1=0.01)
    b = nn.MLP(SIZES, dtype=dtype, seed=1, l2=0.1, l1=0.01)
    oa, ob = optim.SGD(a.params, lr=0.1), optim.SGD(b.params, lr=0.1)
    order = np.random.default_rng(0)  # fit's mini-batch order for seed=0
    for _ in range(3):
        idx = train.epoch_batches(12, 6, order)
        for i in idx:
            la = a.train_step(X[i], y[i], oa)
            lb = b.loss_and_grad(X[i], y[i])
            ob.step(b.grads)
            assert la == lb
    np.testing.assert_array_equal(a.params, b.params)
    c = nn.MLP(SIZES, dtype=dtype, seed=1, l2=0.1, l1=0.01)
    oc = optim.SGD(c.params, lr=0.1)
    train.fit(c, oc, (X, y), batch_size=6, epochs=3, progress=False, seed=0)
    np.testing.assert_array_equal(a.params, c.params)


def test_l2_is_weight_decay_on_the_weights_only(rng):
    """One SGD step with l2 = torch SGD's weight_decay on the weights, none on the biases."""
    torch = pytest.importorskip("torch")
    model = nn.MLP(SIZES, dtype="float64", seed=2, l2=0.3)
    net, linears = torch_twin(model)
    X, y = batch(rng)
    model.train_step(X, y, optim.SGD(model.params, lr=0.5))
    groups = [{"params": [lin.weight for lin in linears], "weight_decay": 0.3},
              {"params": [lin.bias for lin in linears], "weight_decay": 0.0}]
    topt = torch.optim.SGD(groups, lr=0.5)
    torch_loss(model, net(torch.tensor(X)), y).backward()
    topt.step()
    for W, b, lin in zip(model.weights, model.biases, linears):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, value, error", [
    ("l2", -0.1, ValueError), ("l1", -1e-9, ValueError), ("l2", float("nan"), ValueError),
    ("l1", float("inf"), ValueError), ("l2", True, TypeError), ("l1", "0.1", TypeError),
    ("l2", None, TypeError)])
def test_bad_penalties_refused(name, value, error):
    with pytest.raises(error, match=name):
        nn.MLP([3, 4, 2], **{name: value})


def test_repr_names_the_penalties():
    assert "l2=0.1" in repr(nn.MLP([3, 4, 2], l2=0.1))
    assert "l2" not in repr(nn.MLP([3, 4, 2]))


def test_keras_regularizers_map_to_l2_twice_and_l1_as_is():
    """Keras's regularizers.L2(x) is x * sum(W**2): nn.MLP(l2=2 * x); L1(x) is l1=x."""
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    model = nn.MLP(SIZES, dtype="float64", seed=4, l2=2 * 0.05, l1=0.03)
    ref = sum(float(keras.ops.convert_to_numpy(
        keras.regularizers.L1L2(l1=0.03, l2=0.05)(keras.ops.convert_to_tensor(W))))
        for W in model.weights)
    assert model.penalty() == pytest.approx(ref, rel=1e-6)  # Keras computes in float32
