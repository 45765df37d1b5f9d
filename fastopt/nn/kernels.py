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
    R               skip connections: dLoss/da of the hidden layers (same layout), kept by
                    the backward pass for the skip's gradient, else empty
    With batch norm a hidden layer is Linear -> BatchNorm1d -> activation (-> dropout); its
    Z slot then holds the batch-normalised value u = gamma * xhat + beta.
    Skip connections (``MLP(residual=True)``): a hidden layer whose fan-in equals its
    fan-out adds its input after the activation (and after dropout):
        a_out = act(z) (* mask) + a_in            ("x + f(x)"; the output layer never)
    so its A slot holds the sum, and the backward pass adds dLoss/da_out to dLoss/da_in.

Argument order of every kernel: outputs, inputs, parameters, sizes. Parameter gradients
are overwritten (one loss_and_grad call per step). Matrix products go through numpy's
BLAS (``fastopt.kernels.blas.gemm``); bias, activation and its derivative are fused into the loops
around them. Activation derivatives are computed from Z, so dropout masks never enter them.
"""

import functools
import math

import numpy as np
from numba import njit, types

from .. import config
from ..kernels.blas import gemm, runtime
from ..kernels.jit import jit, variant, with_globals

IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID, GELU = range(6)
ACTIVATIONS = {"relu": RELU, "leaky_relu": LEAKY_RELU, "tanh": TANH, "sigmoid": SIGMOID,
               "gelu": GELU}
LEAKY_SLOPE = 0.01

JIT = dict(config.CPU_JIT)

# The element-wise loops are ``inline="always"`` helpers taking the activation ``kind``;
# the network kernels are compiled once per activation (``forward_kernel(activation)``
# etc.), with ``kind`` a compile-time constant, so each loop body is branch-free and
# vectorises (ReLU backward at 512 x 100: 7.7 us vs 377 us with ``kind`` tested per
# element) and only the activation in use is compiled (a fifth of the compile time of
# all of them). Constants come in the array's dtype (``_consts``): a Python literal would
# turn float32 arithmetic into float64.


@njit(inline="always", **JIT)
def _consts(a):
    """(0, 1, 1/2, leaky slope, 1/sqrt(2), 1/sqrt(2 pi)) in a's dtype."""
    t = a.dtype.type
    return (t(0), t(1), t(0.5), t(LEAKY_SLOPE), t(1 / math.sqrt(2.0)),
            t(1 / math.sqrt(2 * math.pi)))


@njit(inline="always", **JIT)
def act_forward(z, kind, c):
    zero, one, half, slope, rsqrt2, _ = c
    if kind == RELU:
        return z if not z <= zero else zero  # NaN propagates, like torch.relu
    if kind == LEAKY_RELU:
        return z if z > zero else z * slope
    if kind == TANH:
        return math.tanh(z)
    if kind == SIGMOID:
        return one / (one + math.exp(-z))
    if kind == GELU:
        return half * z * (one + math.erf(z * rsqrt2))
    return z


@njit(inline="always", **JIT)
def act_derivative(z, a, kind, c):
    """d act(z) / dz; ``a`` = act(z) (used by tanh and sigmoid, whose derivative is cheap
    from the activation)."""
    zero, one, half, slope, rsqrt2, rsqrt2pi = c
    if kind == RELU:
        return one if z > zero else zero
    if kind == LEAKY_RELU:
        return one if z > zero else slope
    if kind == TANH:
        return one - a * a
    if kind == SIGMOID:
        return a * (one - a)
    if kind == GELU:
        cdf = half * (one + math.erf(z * rsqrt2))
        return cdf + z * (math.exp(-half * z * z) * rsqrt2pi)
    return one


# The element-wise loops around the matrix products, compiled once per activation
# (``act_pass_kernel(activation)`` etc.: KIND bound per variant, so the loop body is
# branch-free) and called, not inlined, by the network kernels: Numba inlines an
# ``inline="always"`` function by copying and retyping its IR at every call site, which
# made the network kernels' cold compile several seconds longer (issue 17).

KIND = IDENTITY  # bound per variant: the activation


def _act_forward_pass(z, a, mask, b, use_mask, add_bias):
    """z += b (if add_bias); a = act(z) (* mask)."""
    kind = KIND  # a local: Numba's inliner does not take a global as an argument
    c = _consts(z)
    n, f = z.shape
    for i in range(n):
        for j in range(f):
            zij = z[i, j]
            if add_bias:
                zij = zij + b[j]
                z[i, j] = zij
            aij = act_forward(zij, kind, c)
            if use_mask:
                aij = aij * mask[i, j]
            a[i, j] = aij


def _act_backward(dz, z, a, mask, use_mask, recompute):
    """In place: dz holds dLoss/da on entry and dLoss/dz on return; a = act(z) (* mask)
    (``recompute``: a is not act(z) - a skip connection added to it - so act(z) is
    recomputed from z, as with a mask)."""
    kind = KIND
    c = _consts(dz)
    n, f = dz.shape
    for i in range(n):
        for j in range(f):
            d = dz[i, j]
            zij = z[i, j]
            if use_mask:
                d = d * mask[i, j]
            if use_mask or recompute:
                aij = act_forward(zij, kind, c)  # a holds act(z) * mask (+ a_in) here
            else:
                aij = a[i, j]
            dz[i, j] = d * act_derivative(zij, aij, kind, c)


@functools.cache
def act_pass_kernel(activation):
    """act_pass(z, a, mask, b, use_mask, add_bias) for one activation."""
    return variant(_act_forward_pass, f"act_forward_pass_{activation}",
                   KIND=ACTIVATIONS[activation])


@functools.cache
def act_backward_kernel(activation):
    """act_backward(dz, z, a, mask, use_mask, recompute) for one activation."""
    return variant(_act_backward, f"act_backward_{activation}", KIND=ACTIVATIONS[activation])


# ---------------------------------------------------------------------------------------
# layers


@jit
def add_into(out, inp):
    """out += inp (2-D, same shape): a skip connection, forward (a_out += a_in) and
    backward (dLoss/da_in += dLoss/da_out)."""
    n, f = out.shape
    for i in range(n):
        for j in range(f):
            out[i, j] = out[i, j] + inp[i, j]


@jit
def copy_into(out, inp):
    """out[:] = inp (2-D, same shape)."""
    n, f = out.shape
    for i in range(n):
        for j in range(f):
            out[i, j] = inp[i, j]


@jit
def linear_forward(z, inp, W, b):
    """z = inp @ W + b (the output layer: logits)."""
    gemm(z, inp, W, runtime(False), runtime(False))
    n, fo = z.shape
    for i in range(n):
        for j in range(fo):
            z[i, j] = z[i, j] + b[j]


@jit
def linear_backward(dinp, dW, db, dz, inp, W, need_dinp):
    """dW = inp^T dz, db = column sums of dz, dinp = dz W^T (if needed)."""
    gemm(dW, inp, dz, runtime(True), runtime(False))
    n, fo = dz.shape
    db[:] = 0
    for i in range(n):
        for j in range(fo):
            db[j] += dz[i, j]
    if need_dinp:
        gemm(dinp, dz, W, runtime(False), runtime(True))


# ---------------------------------------------------------------------------------------
# losses (mean over the batch); accumulate in float64, gradients in the data dtype
#
# Each loss is written once, per row (``xent_row``, ``mse_row``): the CPU loops below call
# the rows in order, the GPU runs one thread per row (``fastopt.nn.cuda``, which compiles
# the same functions as inline device functions). The caller's arguments set the precision
# of the sums: float64 here, the data dtype on the GPU.


@njit(inline="always", **JIT)
def xent_row(dlogits, logits, i, label, zero, inv_n, need_grad):
    """Softmax cross-entropy of row i of logits with the integer ``label``: returns
    m + log(sum_j exp(logits[i, j] - m)) - logits[i, label] (m the row's maximum) and, if
    need_grad, writes dlogits[i] = (softmax - onehot) * inv_n. The exponentials are summed
    from ``zero``, whose type is the precision of the sum."""
    c = logits.shape[1]
    m = logits[i, 0]
    for j in range(1, c):
        if logits[i, j] > m:
            m = logits[i, j]
    s = zero
    for j in range(c):
        s += math.exp(logits[i, j] - m)
    loss = m + math.log(s) - logits[i, label]
    if need_grad:
        for j in range(c):
            dlogits[i, j] = math.exp(logits[i, j] - m) / s * inv_n
        dlogits[i, label] -= inv_n
    return loss


@njit(inline="always", **JIT)
def mse_row(dout, out, targets, i, acc, coef, inv, need_grad):
    """acc plus the squared errors of row i, added to it one by one (so a loop over rows
    sums every element in order), and, if need_grad, dout[i, j] = coef * r * inv with r =
    out[i, j] - targets[i, j]. The CPU passes coef = 2 and inv = 1/(N C), the GPU 1 and
    2/(N C) in the data dtype: each keeps the rounding it has always had."""
    c = out.shape[1]
    for j in range(c):
        r = out[i, j] - targets[i, j]
        acc += r * r
        if need_grad:
            dout[i, j] = coef * r * inv
    return acc


@jit
def softmax_xent_forward_backward(dlogits, logits, labels, need_grad):
    """Mean softmax cross-entropy of integer labels; dlogits = (softmax - onehot) / N."""
    n = logits.shape[0]
    total = 0.0
    inv_n = 1.0 / n
    for i in range(n):
        total += xent_row(dlogits, logits, i, labels[i], 0.0, inv_n, need_grad)
    return total * inv_n


@jit
def mse_forward_backward(dout, out, targets, need_grad):
    """Mean squared error over all elements (torch's MSELoss); dout = 2 (out - t) / (N*C)."""
    n, c = out.shape
    inv = 1.0 / (n * c)
    total = 0.0
    for i in range(n):
        total = mse_row(dout, out, targets, i, total, 2, inv, need_grad)
    return total * inv


@jit
def finite(X):
    """True if no element of the 2-D array X is NaN or inf (one vectorised pass)."""
    n, f = X.shape
    ok = True
    for i in range(n):
        for j in range(f):
            v = X[i, j]
            ok &= (v - v) == 0  # NaN for NaN and +-inf
    return ok


@jit
def labels_ok(y, classes):
    """True if every integer label is in [0, classes)."""
    ok = True
    for i in range(y.size):
        ok &= (y[i] >= 0) & (y[i] < classes)
    return ok


@jit
def targets_ok(y, classes):
    """True if every float target is finite (classes is unused: same call as labels_ok)."""
    return finite(y)


@jit
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
# weight penalties (Keras's kernel_regularizer: weight matrices only, never biases or
# batch norm's gamma/beta), written once per weight: the CPU loop below sums them over the
# weight matrices in float64, the GPU (fastopt.nn.cuda) compiles the same two functions as
# device functions.
#
#     penalty = 0.5 * l2 * sum(W**2) + l1 * sum(|W|)      (the textbook's L2 scaling)
#     dpenalty/dW = l2 * W + l1 * sign(W)                  (sign(0) = 0, as torch's abs)


@njit(inline="always", **JIT)
def penalty_value(w, l1, l2, half):
    """The penalty of one weight: half * l2 * w^2 + l1 * |w| (half = 0.5 in w's type)."""
    return half * l2 * (w * w) + l1 * abs(w)


@njit(inline="always", **JIT)
def penalty_derivative(w, l1, l2, zero, one):
    """d penalty_value / dw = l2 * w + l1 * sign(w), with sign(0) = 0."""
    sign = one if w > zero else (-one if w < zero else zero)
    return l2 * w + l1 * sign


@jit
def weight_penalty(grads, params, layout, sizes, l1, l2, need_grad):
    """The penalty of all weight matrices (a float64 sum, layer by layer in memory order)
    and, if need_grad, its derivative added to their gradients (in the parameter dtype)."""
    t = params.dtype.type
    tl1, tl2, zero, one = t(l1), t(l2), t(0), t(1)
    total = 0.0
    for layer in range(sizes.size - 1):
        w = layout[layer, 0]
        for k in range(w, w + sizes[layer] * sizes[layer + 1]):
            p = params[k]
            total += penalty_value(np.float64(p), l1, l2, 0.5)
            if need_grad:
                grads[k] += penalty_derivative(p, tl1, tl2, zero, one)
    return total


# ---------------------------------------------------------------------------------------
# batch normalisation (torch BatchNorm1d: biased variance to normalise, unbiased running)

BN_OFF, BN_TRAIN, BN_EVAL = 0, 1, 2


@jit
def batchnorm_forward(z, xhat, mean, inv_std, run_mean, run_var, gamma, beta, mode, eps,
                      momentum):
    """In place: z -> u = gamma * xhat + beta, xhat = (z - mean) / sqrt(var + eps).

    Training uses the batch statistics (sums in float64, row by row so the loops run along
    memory) and updates the running ones; evaluation uses the running statistics."""
    n, f = z.shape
    if mode == BN_TRAIN:
        s = np.zeros(f)
        for i in range(n):
            for j in range(f):
                s[j] += z[i, j]
        mu = s / n
        v = np.zeros(f)
        for i in range(n):
            for j in range(f):
                d = z[i, j] - mu[j]
                v[j] += d * d
        for j in range(f):
            mean[j] = mu[j]
            inv_std[j] = 1.0 / math.sqrt(v[j] / n + eps)
            run_mean[j] = (1 - momentum) * run_mean[j] + momentum * mu[j]
            run_var[j] = (1 - momentum) * run_var[j] + momentum * (v[j] / (n - 1))
        for i in range(n):
            for j in range(f):
                xh = (z[i, j] - mean[j]) * inv_std[j]
                xhat[i, j] = xh
                z[i, j] = gamma[j] * xh + beta[j]
    else:
        istd = np.empty(f)
        for j in range(f):
            istd[j] = 1.0 / math.sqrt(run_var[j] + eps)
        for i in range(n):
            for j in range(f):
                z[i, j] = gamma[j] * ((z[i, j] - run_mean[j]) * istd[j]) + beta[j]


@jit
def batchnorm_backward(dz, dgamma, dbeta, xhat, inv_std, gamma):
    """In place: dz holds dLoss/du on entry and dLoss/dz on return."""
    n, f = dz.shape
    sdu = np.zeros(f)
    sdux = np.zeros(f)
    for i in range(n):
        for j in range(f):
            sdu[j] += dz[i, j]
            sdux[j] += dz[i, j] * xhat[i, j]
    g = np.empty(f, dz.dtype)
    for j in range(f):
        dgamma[j] = sdux[j]
        dbeta[j] = sdu[j]
        g[j] = gamma[j] * inv_std[j] / n
    for i in range(n):
        for j in range(f):
            dz[i, j] = g[j] * (n * dz[i, j] - sdu[j] - xhat[i, j] * sdux[j])


# ---------------------------------------------------------------------------------------
# the whole network
#
# net = (sizes, layout, use_mask, bn_mode, bn_eps, bn_momentum, l1, l2, residual)
#     l1, l2: the weight penalties (floats; 0.0 and 0.0 skip them, so the numbers are
#     those of a network without them)
#     layout[l] = (W offset, b offset, gamma offset, beta offset, statistics offset) in
#     params/grads and in the per-feature statistics (-1 where a layer has no batch norm)
# ws = (Z, A, D, M, XH, stats, running, R) flat buffers of the parameter dtype:
#     Z, A, D, M as in the module docstring; XH the normalised pre-activations (batch
#     norm), stats = [batch means | inverse stds], running = [running means | running vars]
#     (each split at the total hidden width H); residual: skip connections (bool)
#     around every hidden layer with fan-in == fan-out

#
# Bound per compiled variant (forward_kernel etc.): the activation's loops act_pass /
# act_back, and HAS_BN / USE_MASK / RESIDUAL, compile-time constants, so a network without
# batch norm, dropout or skip connections compiles none of them (Numba drops a branch on a
# constant before typing it). net's use_mask, bn_mode and residual must agree with them
# (``variant_key(net)``).

HAS_BN = USE_MASK = RESIDUAL = False
act_pass = act_back = None


def _mlp_forward(ws, params, X, net):
    """Forward pass of all layers; returns the logits view (the last layer's Z)."""
    Z, A, D, M, XH, stats, running, R = ws
    sizes, layout, _, bn_mode, bn_eps, bn_momentum, _, _, _ = net
    use_mask = USE_MASK
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
        if not HAS_BN:
            gemm(z, inp, W, runtime(False), runtime(False))
            act_pass(z, a, mask, b, use_mask, True)
        else:
            linear_forward(z, inp, W, b)
            xhat = XH[off:off + n * fo].reshape((n, fo))
            batchnorm_forward(z, xhat, stats[s_off:s_off + fo],
                              stats[hidden + s_off:hidden + s_off + fo],
                              running[s_off:s_off + fo],
                              running[hidden + s_off:hidden + s_off + fo],
                              params[g_off:g_off + fo], params[beta_off:beta_off + fo],
                              bn_mode, bn_eps, bn_momentum)
            act_pass(z, a, mask, z[0], use_mask, False)
        if RESIDUAL:
            if fi == fo:
                add_into(a, inp)
        inp = a
        off += n * fo
    return Z[0:0].reshape((0, 0))  # unreachable for >= 1 layer


def _mlp_backward(grads, ws, params, X, net):
    """Backward pass; D's last-layer slot must hold dLoss/dlogits on entry."""
    Z, A, D, M, XH, stats, running, R = ws
    sizes, layout, _, bn_mode, bn_eps, bn_momentum, _, _, _ = net
    use_mask = USE_MASK
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
        if RESIDUAL:
            # dprev = dLoss/da of layer - 1 through W; plus the skip around this layer
            if layer < n_layers - 1 and fi == fo:
                add_into(dprev, R[off:off + n * fo].reshape((n, fo)))
            if layer > 1 and sizes[layer - 1] == fi:  # layer - 1's skip: keep dLoss/da
                copy_into(R[prev_off:off].reshape((n, fi)), dprev)
        zprev = Z[prev_off:off].reshape((n, fi))
        mprev = M[prev_off:off].reshape((n, fi)) if use_mask else zprev
        act_back(dprev, zprev, inp, mprev, use_mask, RESIDUAL)
        if HAS_BN:
            g_off, beta_off, s_off = (layout[layer - 1, 2], layout[layer - 1, 3],
                                      layout[layer - 1, 4])
            batchnorm_backward(dprev, grads[g_off:g_off + fi], grads[beta_off:beta_off + fi],
                               XH[prev_off:off].reshape((n, fi)),
                               stats[hidden + s_off:hidden + s_off + fi],
                               params[g_off:g_off + fi])
        off = prev_off


# bound per copy (loss_and_grad_steps, loss_and_grad_inline)
loss_fn = mlp_forward = mlp_backward = None
HAS_PENALTY = True


def _loss_and_grad(grads, ws, params, X, y, net, calls=None):
    """Training-mode loss of the batch; fills grads. Returns the loss.

    Written once, used twice: interpreted, calling the compiled passes one after the other
    (``loss_and_grad_steps``: MLP.train_step and MLP.loss_and_grad; ``calls`` unused), and
    inlined into fit's compiled chunk loop (``loss_and_grad_inline``), which calls the
    forward pass, the loss and the backward pass through the entry points ``calls``
    (``chunk_calls``) instead of linking their machine code into its own. A compiled
    loss_and_grad of its own was one more level of Numba linking: LLVM optimised and
    generated the machine code of the whole forward and backward pass again inside it
    (1.0-1.2 CPU s in a new process, issue 17), for about 3 us of Python per step saved."""
    logits = mlp_forward(calls, ws, params, X, net)
    n, c = logits.shape
    sizes = net[0]
    start = n * (sizes[1:].sum() - c)  # buffers may be larger than this batch needs
    dlogits = ws[2][start:start + n * c].reshape((n, c))
    loss = loss_fn(calls, dlogits, logits, y, runtime(True))  # the specialisation evaluate uses
    mlp_backward(calls, grads, ws, params, X, net)
    if HAS_PENALTY:  # compile-time: fit's chunk of a network without l1/l2 compiles none
        l1, l2 = net[6], net[7]
        if l1 != 0.0 or l2 != 0.0:
            loss += weight_penalty(grads, params, net[1], sizes, l1, l2, runtime(True))
    return loss


LOSSES = {"cross_entropy": softmax_xent_forward_backward, "mse": mse_forward_backward}
Y_OK = {"cross_entropy": labels_ok, "mse": targets_ok}


def variant_key(net):
    """(has batch norm, uses dropout masks, has skip connections) of the network
    description ``net``: with the activation, what selects the compiled network kernels."""
    return bool(net[3] != BN_OFF), bool(net[2]), bool(net[8])


def _bindings(activation, bn, mask, residual=False):
    return dict(KIND=ACTIVATIONS[activation], HAS_BN=bool(bn), USE_MASK=bool(mask),
                RESIDUAL=bool(residual), act_pass=act_pass_kernel(activation),
                act_back=act_backward_kernel(activation))


def _suffix(activation, bn, mask, residual=False):
    return (activation + ("_bn" if bn else "") + ("_mask" if mask else "")
            + ("_res" if residual else ""))


@functools.cache
def forward_kernel(activation, bn=False, mask=False, residual=False):
    """mlp_forward(ws, params, X, net) -> logits view, for one activation and network
    kind (``variant_key(net)``)."""
    return variant(_mlp_forward, f"mlp_forward_{_suffix(activation, bn, mask, residual)}",
                   **_bindings(activation, bn, mask, residual))


@functools.cache
def backward_kernel(activation, bn=False, mask=False, residual=False):
    """mlp_backward(grads, ws, params, X, net), for one activation and network kind."""
    return variant(_mlp_backward, f"mlp_backward_{_suffix(activation, bn, mask, residual)}",
                   **_bindings(activation, bn, mask, residual))


def _ignoring_calls(kernel):
    def call(calls, *args):
        return kernel(*args)

    return call


def _loss_and_grad_copy(loss, activation, bn, mask, residual, penalty, compiled):
    forward = forward_kernel(activation, bn, mask, residual)
    backward = backward_kernel(activation, bn, mask, residual)
    if compiled:  # through the entry points of chunk_calls, in its order
        from ..kernels.cpu import via_entry

        # the backward pass returns nothing: typed without it (a helper may compile it)
        bound = dict(mlp_forward=via_entry(forward, 0, 4), loss_fn=via_entry(LOSSES[loss], 1, 4),
                     mlp_backward=via_entry(backward, 2, 5, returns=types.none))
    else:
        bound = dict(mlp_forward=_ignoring_calls(forward), loss_fn=_ignoring_calls(LOSSES[loss]),
                     mlp_backward=_ignoring_calls(backward))
    return with_globals(_loss_and_grad,
                        f"loss_and_grad_{loss}_{_suffix(activation, bn, mask, residual)}",
                        HAS_PENALTY=bool(penalty), **bound)


@functools.cache
def loss_and_grad_steps(loss, activation, bn=False, mask=False, residual=False):
    """loss_and_grad(grads, ws, params, X, y, net) -> loss as a Python function over the
    compiled forward pass, loss, backward pass and weight penalty, for one loss,
    activation and network kind (the same kernels, in the same order, as the inlined
    copy in fit's chunk loop: the same bits)."""
    return _loss_and_grad_copy(loss, activation, bn, mask, residual, True, False)


@functools.cache
def loss_and_grad_kernel(loss, activation, bn=False, mask=False, residual=False, penalty=True):
    """The same compiled on its own for calls from Python (MLP.train_step): one call per
    step, the passes through the entry points ``calls`` (``chunk_calls``), so compiling it
    links none of them (0.3-0.5 CPU s); without ``penalty`` no weight penalty."""
    copy = _loss_and_grad_copy(loss, activation, bn, mask, residual, penalty, True)
    return variant(copy, copy.__name__ + ("_penalty" if penalty else ""))


@functools.cache
def loss_and_grad_inline(loss, activation, bn=False, mask=False, residual=False,
                         penalty=True):
    """The same, as an ``inline="always"`` function for compiled callers (fit's chunk
    loop): no compiled specialisation of its own; without ``penalty`` (l1 = l2 = 0) the
    weight penalty is not compiled."""
    return njit(inline="always", **JIT)(_loss_and_grad_copy(loss, activation, bn, mask,
                                                             residual, penalty, True))


def _pass_jobs(loss, activation, vkey, grads, ws, params, X, y, net):
    """{name: (ref, argument types)} of the kernels loss_and_grad calls for these
    arguments: forward, loss, backward, penalty (``fastopt.kernels.warmup.job`` pairs)."""
    from ..kernels import warmup

    n, c = X.shape[0], net[0][-1]
    start = n * (net[0][1:].sum() - c)
    logits = ws[0][start:start + n * c].reshape((n, c))
    dlogits = ws[2][start:start + n * c].reshape((n, c))
    return dict(
        forward=warmup.job((__name__, "forward_kernel", (activation, *vkey)), ws, params, X,
                           net),
        loss=warmup.job((__name__, "LOSSES", loss), dlogits, logits, y, True),
        backward=warmup.job((__name__, "backward_kernel", (activation, *vkey)), grads, ws,
                            params, X, net),
        penalty=warmup.job((__name__, "weight_penalty", None), grads, params, net[1], net[0],
                           net[6], net[7], True))


def chunk_calls(loss, activation, vkey, grads, ws, params, X, y, net):
    """The entry points the compiled loss_and_grad calls (``loss_and_grad_kernel``, and
    ``loss_and_grad_inline`` in fit's chunk loop): forward pass, loss, backward pass for
    these arguments (in fit, X and y are the chunk's batch buffers), each compiled or
    loaded from the cache first if need be."""
    from ..kernels import cpu, warmup

    jobs = _pass_jobs(loss, activation, vkey, grads, ws, params, X, y, net)
    return tuple(cpu.entry(warmup._dispatcher(jobs[k][0]), jobs[k][1],
                           returns=types.none if k == "backward" else None)
                 for k in ("forward", "loss", "backward"))


def warm_jobs(loss, activation, vkey, grads, ws, params, X, y, net, penalty):
    """(here, elsewhere) for ``fastopt.kernels.warmup.once``: the kernels loss_and_grad
    calls, for these arguments, split so that the two shares take about as long on an
    empty cache: the forward pass, the loss and (if ``penalty``) the weight penalty here,
    the backward pass in a helper (1.6-1.8 CPU s each for the seeds' network; the helper
    starts a new process first, and the caller adds the update and checks here)."""
    jobs = _pass_jobs(loss, activation, vkey, grads, ws, params, X, y, net)
    here = [jobs["forward"], jobs["loss"]] + ([jobs["penalty"]] if penalty else [])
    return here, [jobs["backward"]]
