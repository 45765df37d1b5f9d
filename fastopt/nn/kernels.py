"""MLP forward/backward kernels on explicit buffers (llm.c style), compiled with Numba.

Size legend: N batch rows, L layers, sizes[l] -> sizes[l+1] the fan-in/fan-out of layer l.

Buffers (all flat, one allocation each, views cut inside the kernels):
    params, grads   [W_0 (fan_in x fan_out), b_0, W_1, b_1, ...]    y = x @ W + b
    Z               pre-activations of every layer, layer l at N*sum(sizes[1:l+1])
    A               activations of the hidden layers (same layout; the last layer's slot
                    is unused: its Z are the logits)
    D               dLoss/dZ, same layout as Z
    M               inverted-dropout masks of the hidden layers (0 or 1/(1-p)), same layout,
                    or an empty array when dropout is off
    XH              batch norm: the normalised pre-activations (same layout), else empty
    With batch norm a hidden layer is Linear -> BatchNorm1d -> activation (-> dropout); its
    Z slot then holds the batch-normalised value u = gamma * xhat + beta.

Argument order of every kernel: outputs, inputs, parameters, sizes. Parameter gradients
are overwritten (one loss_and_grad call per step). Matrix products go through BLAS
(``np.dot`` with ``out=``); bias, activation and its derivative are fused into the loops
around them. Activation derivatives are computed from Z, so dropout masks never enter them.
"""

import math

import numpy as np
from numba import njit

from .. import config

IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID, GELU = range(6)
ACTIVATIONS = {"relu": RELU, "leaky_relu": LEAKY_RELU, "tanh": TANH, "sigmoid": SIGMOID,
               "gelu": GELU}
LEAKY_SLOPE = 0.01

JIT = dict(config.CPU_JIT)


@njit(inline="always", **JIT)
def act_forward(z, kind):
    if kind == RELU:
        return z if (z > 0 or z != z) else 0.0  # NaN propagates, like torch.relu
    if kind == LEAKY_RELU:
        return z if z > 0 else z * LEAKY_SLOPE
    if kind == TANH:
        return math.tanh(z)
    if kind == SIGMOID:
        return 1 / (1 + math.exp(-z))
    if kind == GELU:
        return 0.5 * z * (1 + math.erf(z / math.sqrt(2.0)))
    return z


@njit(inline="always", **JIT)
def act_derivative(z, kind):
    """d act(z) / dz, from z alone."""
    if kind == RELU:
        return 1.0 if z > 0 else 0.0
    if kind == LEAKY_RELU:
        return 1.0 if z > 0 else LEAKY_SLOPE
    if kind == TANH:
        t = math.tanh(z)
        return 1 - t * t
    if kind == SIGMOID:
        s = 1 / (1 + math.exp(-z))
        return s * (1 - s)
    if kind == GELU:
        cdf = 0.5 * (1 + math.erf(z / math.sqrt(2.0)))
        pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return cdf + z * pdf
    return 1.0


# ---------------------------------------------------------------------------------------
# layers


@njit(**JIT)
def linear_act_forward(z, a, mask, inp, W, b, kind, use_mask):
    """z = inp @ W + b; a = act(z) (* mask). a may alias nothing else."""
    np.dot(inp, W, z)
    n, fo = z.shape
    for i in range(n):
        for j in range(fo):
            zij = z[i, j] + b[j]
            z[i, j] = zij
            aij = act_forward(zij, kind)
            if use_mask:
                aij = aij * mask[i, j]
            a[i, j] = aij


@njit(**JIT)
def linear_forward(z, inp, W, b):
    """z = inp @ W + b (the output layer: logits)."""
    np.dot(inp, W, z)
    n, fo = z.shape
    for i in range(n):
        for j in range(fo):
            z[i, j] = z[i, j] + b[j]


@njit(**JIT)
def linear_backward(dinp, dW, db, dz, inp, W, need_dinp):
    """dW = inp^T dz, db = column sums of dz, dinp = dz W^T (if needed)."""
    np.dot(inp.T, dz, dW)
    n, fo = dz.shape
    for j in range(fo):
        db[j] = 0
    for i in range(n):
        for j in range(fo):
            db[j] += dz[i, j]
    if need_dinp:
        np.dot(dz, W.T, dinp)


@njit(**JIT)
def act_backward(dz, z, mask, kind, use_mask):
    """In place: dz holds dLoss/da on entry and dLoss/dz on return."""
    n, f = dz.shape
    for i in range(n):
        for j in range(f):
            d = dz[i, j]
            if use_mask:
                d = d * mask[i, j]
            dz[i, j] = d * act_derivative(z[i, j], kind)


# ---------------------------------------------------------------------------------------
# losses (mean over the batch); accumulate in float64, gradients in the data dtype


@njit(**JIT)
def softmax_xent_forward_backward(dlogits, logits, labels, need_grad):
    """Mean softmax cross-entropy of integer labels; dlogits = (softmax - onehot) / N."""
    n, c = logits.shape
    total = 0.0
    inv_n = 1.0 / n
    for i in range(n):
        m = logits[i, 0]
        for j in range(1, c):
            if logits[i, j] > m:
                m = logits[i, j]
        s = 0.0
        for j in range(c):
            s += math.exp(logits[i, j] - m)
        total += m + math.log(s) - logits[i, labels[i]]
        if need_grad:
            for j in range(c):
                dlogits[i, j] = math.exp(logits[i, j] - m) / s * inv_n
            dlogits[i, labels[i]] -= inv_n
    return total * inv_n


@njit(**JIT)
def mse_forward_backward(dout, out, targets, need_grad):
    """Mean squared error over all elements (torch's MSELoss); dout = 2 (out - t) / (N*C)."""
    n, c = out.shape
    inv = 1.0 / (n * c)
    total = 0.0
    for i in range(n):
        for j in range(c):
            r = out[i, j] - targets[i, j]
            total += r * r
            if need_grad:
                dout[i, j] = 2 * r * inv
    return total * inv


@njit(**JIT)
def correct_count(logits, labels):
    n, c = logits.shape
    hits = 0
    for i in range(n):
        best = 0
        for j in range(1, c):
            if logits[i, j] > logits[i, best]:
                best = j
        hits += best == labels[i]
    return hits


# ---------------------------------------------------------------------------------------
# batch normalisation (torch BatchNorm1d: biased variance to normalise, unbiased running)

BN_OFF, BN_TRAIN, BN_EVAL = 0, 1, 2


@njit(**JIT)
def batchnorm_forward(z, xhat, mean, inv_std, run_mean, run_var, gamma, beta, mode, eps,
                      momentum):
    """In place: z -> u = gamma * xhat + beta, xhat = (z - mean) / sqrt(var + eps).

    Training uses the batch statistics and updates the running ones; evaluation uses the
    running statistics."""
    n, f = z.shape
    for j in range(f):
        if mode == BN_TRAIN:
            s = 0.0
            for i in range(n):
                s += z[i, j]
            mu = s / n
            v = 0.0
            for i in range(n):
                d = z[i, j] - mu
                v += d * d
            istd = 1.0 / math.sqrt(v / n + eps)
            mean[j] = mu
            inv_std[j] = istd
            run_mean[j] = (1 - momentum) * run_mean[j] + momentum * mu
            run_var[j] = (1 - momentum) * run_var[j] + momentum * (v / (n - 1))
        else:
            mu = run_mean[j]
            istd = 1.0 / math.sqrt(run_var[j] + eps)
        for i in range(n):
            xh = (z[i, j] - mu) * istd
            if mode == BN_TRAIN:
                xhat[i, j] = xh
            z[i, j] = gamma[j] * xh + beta[j]


@njit(**JIT)
def batchnorm_backward(dz, dgamma, dbeta, xhat, inv_std, gamma):
    """In place: dz holds dLoss/du on entry and dLoss/dz on return."""
    n, f = dz.shape
    for j in range(f):
        sdu = 0.0
        sdux = 0.0
        for i in range(n):
            sdu += dz[i, j]
            sdux += dz[i, j] * xhat[i, j]
        dgamma[j] = sdux
        dbeta[j] = sdu
        g = gamma[j] * inv_std[j] / n
        for i in range(n):
            dz[i, j] = g * (n * dz[i, j] - sdu - xhat[i, j] * sdux)


@njit(**JIT)
def activate(a, z, mask, kind, use_mask):
    """a = act(z) (* mask)."""
    n, f = z.shape
    for i in range(n):
        for j in range(f):
            v = act_forward(z[i, j], kind)
            if use_mask:
                v = v * mask[i, j]
            a[i, j] = v


# ---------------------------------------------------------------------------------------
# the whole network
#
# net = (sizes, layout, kind, use_mask, bn_mode, bn_eps, bn_momentum)
#     layout[l] = (W offset, b offset, gamma offset, beta offset, statistics offset) in
#     params/grads and in the per-feature statistics (-1 where a layer has no batch norm)
# ws = (Z, A, D, M, XH, stats, running) flat buffers of the parameter dtype:
#     Z, A, D, M as in the module docstring; XH the normalised pre-activations (batch
#     norm), stats = [batch means | inverse stds], running = [running means | running vars]
#     (each split at the total hidden width H)


@njit(**JIT)
def mlp_forward(ws, params, X, net):
    """Forward pass of all layers; returns the logits view (the last layer's Z)."""
    Z, A, D, M, XH, stats, running = ws
    sizes, layout, kind, use_mask, bn_mode, bn_eps, bn_momentum = net
    n = X.shape[0]
    n_layers = sizes.size - 1
    hidden = running.size // 2
    off = 0
    inp = X
    for layer in range(n_layers):
        fi, fo = sizes[layer], sizes[layer + 1]
        w, b_off, g_off, beta_off, s_off = (layout[layer, 0], layout[layer, 1],
                                            layout[layer, 2], layout[layer, 3],
                                            layout[layer, 4])
        W = params[w:w + fi * fo].reshape((fi, fo))
        b = params[b_off:b_off + fo]
        z = Z[off:off + n * fo].reshape((n, fo))
        if layer == n_layers - 1:
            linear_forward(z, inp, W, b)
            return z
        a = A[off:off + n * fo].reshape((n, fo))
        mask = M[off:off + n * fo].reshape((n, fo)) if use_mask else a
        if bn_mode == BN_OFF:
            linear_act_forward(z, a, mask, inp, W, b, kind, use_mask)
        else:
            linear_forward(z, inp, W, b)
            xhat = XH[off:off + n * fo].reshape((n, fo))
            batchnorm_forward(z, xhat, stats[s_off:s_off + fo],
                              stats[hidden + s_off:hidden + s_off + fo],
                              running[s_off:s_off + fo],
                              running[hidden + s_off:hidden + s_off + fo],
                              params[g_off:g_off + fo], params[beta_off:beta_off + fo],
                              bn_mode, bn_eps, bn_momentum)
            activate(a, z, mask, kind, use_mask)
        inp = a
        off += n * fo
    return Z[0:0].reshape((0, 0))  # unreachable for >= 1 layer


@njit(**JIT)
def mlp_backward(grads, ws, params, X, net):
    """Backward pass; D's last-layer slot must hold dLoss/dlogits on entry."""
    Z, A, D, M, XH, stats, running = ws
    sizes, layout, kind, use_mask, bn_mode, bn_eps, bn_momentum = net
    n = X.shape[0]
    n_layers = sizes.size - 1
    hidden = running.size // 2
    off = n * (sizes[1:].sum() - sizes[-1])  # the last layer's slot
    for layer in range(n_layers - 1, -1, -1):
        fi, fo = sizes[layer], sizes[layer + 1]
        w, b_off = layout[layer, 0], layout[layer, 1]
        W = params[w:w + fi * fo].reshape((fi, fo))
        dW = grads[w:w + fi * fo].reshape((fi, fo))
        db = grads[b_off:b_off + fo]
        dz = D[off:off + n * fo].reshape((n, fo))
        if layer == 0:
            linear_backward(dz, dW, db, dz, X, W, False)
            break
        prev_off = off - n * fi
        inp = A[prev_off:off].reshape((n, fi))
        dprev = D[prev_off:off].reshape((n, fi))
        linear_backward(dprev, dW, db, dz, inp, W, True)
        zprev = Z[prev_off:off].reshape((n, fi))
        mprev = M[prev_off:off].reshape((n, fi)) if use_mask else zprev
        act_backward(dprev, zprev, mprev, kind, use_mask)
        if bn_mode != BN_OFF:
            g_off, beta_off, s_off = (layout[layer - 1, 2], layout[layer - 1, 3],
                                      layout[layer - 1, 4])
            batchnorm_backward(dprev, grads[g_off:g_off + fi], grads[beta_off:beta_off + fi],
                               XH[prev_off:off].reshape((n, fi)),
                               stats[hidden + s_off:hidden + s_off + fi],
                               params[g_off:g_off + fi])
        off = prev_off


def _make_loss_and_grad(loss_fn):
    def loss_and_grad(grads, ws, params, X, y, net):
        logits = mlp_forward(ws, params, X, net)
        n, c = logits.shape
        sizes = net[0]
        start = n * (sizes[1:].sum() - c)  # buffers may be larger than this batch needs
        dlogits = ws[2][start:start + n * c].reshape((n, c))
        loss = loss_fn(dlogits, logits, y, True)
        mlp_backward(grads, ws, params, X, net)
        return loss

    return njit(**JIT)(loss_and_grad)


LOSSES = {"cross_entropy": softmax_xent_forward_backward, "mse": mse_forward_backward}
LOSS_AND_GRAD = {name: _make_loss_and_grad(fn) for name, fn in LOSSES.items()}
