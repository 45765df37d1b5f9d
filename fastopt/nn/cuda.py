"""The MLP on the GPU: forward, backward, loss and the optimizer update as ``@cuda.jit``
kernels on device buffers (``nn.MLP(..., target="cuda")``).

Kernels (each compiled per dtype, activation and tile size; float32 kernels do float32
arithmetic only):

- ``gemm``: a tiled shared-memory matrix product ``out = op(a) @ op(b)`` (op: transpose or
  not, a compile-time choice) with the epilogue fused into the store: ``+ bias`` (output
  layer), ``+ bias`` then the activation (hidden layers: writes Z and A), or ``*
  act'(Z)`` (the backward product into the previous layer). TILE x TILE threads per block;
  each tile of a and b is staged in shared memory (padded by one column against bank
  conflicts), loads are coalesced for both layouts.
- ``bias_grad``: column sums of dZ, one block per 32 columns; 8 threads per column sum
  strided rows, then one thread adds the 8 partial sums in a fixed order. No atomics, so
  the result is the same on every run.
- ``xent`` / ``mse``: one thread per row (loss of the row and dLoss/dlogits: the CPU's
  row functions ``fastopt.nn.kernels.xent_row`` / ``mse_row``), then ``reduce``: one
  block sums the row losses in a fixed tree order into a loss slot.
- ``check``: NaN/inf in X and labels out of range (or non-finite targets) set a device
  *status word*; the update kernel of the step is gated on it, so a rejected batch changes
  nothing, and the host hears of it when it next reads a value from the device (the
  loss, or any call that returns numbers) - steps never wait for the host.
- ``gather``: the rows of a mini-batch from the device copy of the training set (``fit``
  takes the data to the device once, then sends only index arrays).

The activation functions and their derivatives, and the per-row losses, are the CPU ones
(``fastopt.nn.kernels.act_forward`` / ``act_derivative`` / ``xent_row`` / ``mse_row``)
compiled as inline device functions: each formula is written once. Kernels are plain
Python functions bound per variant with ``fastopt.kernels.jit.with_globals``.

- ``penalty_sum`` / ``penalty_grad`` (only with ``l1`` or ``l2``): the weight penalty added
  to the loss slot (one block, fixed tree order) and its derivative added to the weight
  gradients (grid-stride), from ``fastopt.nn.kernels.penalty_value`` /
  ``penalty_derivative``.

- skip connections (``MLP(residual=True)``; see ``fastopt.nn.kernels``): ``add_into``
  (a_out += a_in after the hidden layer's fused GEMM; dLoss/da_in += dLoss/da_out),
  ``copy_into`` (keeps dLoss/da of a layer with a skip in R) and ``act_grad`` (dz = da *
  f'(z), act(z) recomputed from z: A holds act(z) + a_in); the input-gradient product of
  such a network stores dz W^T plainly and these kernels finish it.

One ``train_step`` launches 4L + 3 kernels for L layers (check, L forward products, loss,
reduce, L weight-gradient products, L bias sums, L - 1 input-gradient products, update):
23 for the 784-100x4-10 network, whatever the batch size; 2 more with a weight penalty.
"""

import functools
import math

import numpy as np

from ..kernels import cuda as gpu
from ..kernels.jit import with_globals
from . import kernels as K

#: GEMM tile (TILE x TILE threads per block); tests patch it small to cover ragged tiles
TILE = 16
#: threads of the one-block loss reduction (a power of two)
REDUCE_THREADS = 256
#: bias gradients: columns per block and threads per column
BIAS_COLS, BIAS_ROWS = 32, 8
#: threads per block of the element-wise and row-wise kernels
THREADS = 128

PLAIN, BIAS, BIAS_ACT, ACT_GRAD = range(4)

# bound per compiled variant (with_globals)
cuda = act_forward = act_derivative = consts = DT = None
xent_row = mse_row = penalty_value = penalty_derivative = None
any_nonfinite = check_x = tree_sum = None
TRANS_A = TRANS_B = False
EPILOGUE = PLAIN
KIND = K.IDENTITY
T = TP = 16
RT = 256
BC = BR = 8


# ---------------------------------------------------------------------------------------
# kernels (plain Python, bound to numba.cuda and compile-time constants per variant)


def _gemm(out, a, b, bias, z, act):
    """out (M x N) = op(a) @ op(b) with the EPILOGUE fused into the store.

    PLAIN: out = ab;  BIAS: out = ab + bias;  BIAS_ACT: out = ab + bias, act = f(out);
    ACT_GRAD: out = ab * f'(z) (``act`` holds f(z)). Unused arguments are dummies."""
    kind = KIND  # a local: inlined device functions take it as a constant
    sa = cuda.shared.array((T, TP), DT)
    sb = cuda.shared.array((T, TP), DT)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row0 = cuda.blockIdx.y * T
    col0 = cuda.blockIdx.x * T
    m, n = out.shape
    kdim = a.shape[0] if TRANS_A else a.shape[1]
    c = consts(out)
    acc = c[0]
    for k0 in range(0, kdim, T):
        # sa[r, k] = op(a)[row0 + r, k0 + k]; consecutive tx read consecutive addresses
        if TRANS_A:
            r, k = row0 + tx, k0 + ty
            sa[tx, ty] = a[k, r] if r < m and k < kdim else c[0]
        else:
            r, k = row0 + ty, k0 + tx
            sa[ty, tx] = a[r, k] if r < m and k < kdim else c[0]
        # sb[k, q] = op(b)[k0 + k, col0 + q]
        if TRANS_B:
            q, k = col0 + ty, k0 + tx
            sb[tx, ty] = b[q, k] if q < n and k < kdim else c[0]
        else:
            k, q = k0 + ty, col0 + tx
            sb[ty, tx] = b[k, q] if q < n and k < kdim else c[0]
        cuda.syncthreads()
        for kk in range(T):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    i = row0 + ty
    j = col0 + tx
    if i < m and j < n:
        if EPILOGUE == PLAIN:
            out[i, j] = acc
        elif EPILOGUE == BIAS:
            out[i, j] = acc + bias[j]
        elif EPILOGUE == BIAS_ACT:
            v = acc + bias[j]
            out[i, j] = v
            act[i, j] = act_forward(v, kind, c)
        else:
            out[i, j] = acc * act_derivative(z[i, j], act[i, j], kind, c)


def _bias_grad(db, dz):
    """db[j] = sum_i dz[i, j]: BC columns per block, BR threads per column, fixed order."""
    part = cuda.shared.array((BR, BC), DT)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n, f = dz.shape
    j = cuda.blockIdx.x * BC + tx
    c = consts(db)
    acc = c[0]
    if j < f:
        for i in range(ty, n, BR):
            acc += dz[i, j]
    part[ty, tx] = acc
    cuda.syncthreads()
    if ty == 0 and j < f:
        total = part[0, tx]
        for r in range(1, BR):
            total += part[r, tx]
        db[j] = total


def _xent(dlogits, rowloss, logits, labels):
    """Per row: softmax cross-entropy and dlogits = (softmax - onehot) / n. A label out of
    range (the check kernel has flagged it) reads class 0 instead of outside the row."""
    i = cuda.grid(1)
    n, classes = logits.shape
    if i >= n:
        return
    c = consts(logits)
    label = labels[i]
    if label < 0 or label >= classes:
        label = 0
    rowloss[i] = xent_row(dlogits, logits, i, label, c[0], c[1] / DT(n), True)


def _mse(dout, rowloss, out, targets):
    """Per row: sum of squared errors and dout = 2 (out - t) / (n c) (torch's MSELoss)."""
    i = cuda.grid(1)
    n, classes = out.shape
    if i >= n:
        return
    c = consts(out)
    scale = (c[1] + c[1]) / DT(n * classes)
    rowloss[i] = mse_row(dout, out, targets, i, c[0], c[1], scale, True)  # 1 * r * scale


def _reduce(losses, slot, rowloss, scale):
    """losses[slot] = scale * sum(rowloss), one block of RT threads, fixed tree order."""
    part = cuda.shared.array(RT, DT)
    t = cuda.threadIdx.x
    c = consts(rowloss)
    acc = c[0]
    for i in range(t, rowloss.size, RT):
        acc += rowloss[i]
    part[t] = acc
    cuda.syncthreads()
    tree_sum(part, t)
    if t == 0:
        losses[slot] = part[0] * scale


def _penalty_sum(losses, slot, params, ranges, l1, l2):
    """losses[slot] += the weight penalty of params[ranges[l, 0]:ranges[l, 1]] over the
    layers l: one block of RT threads, fixed order (grid-stride shares, then a tree)."""
    part = cuda.shared.array(RT, DT)
    t = cuda.threadIdx.x
    c = consts(params)
    acc = c[0]
    for layer in range(ranges.shape[0]):
        for k in range(ranges[layer, 0] + t, ranges[layer, 1], RT):
            acc += penalty_value(params[k], l1, l2, c[2])
    part[t] = acc
    cuda.syncthreads()
    tree_sum(part, t)
    if t == 0:
        losses[slot] = losses[slot] + part[0]


def _penalty_grad(grads, params, ranges, l1, l2):
    """grads[k] += d penalty / d params[k] for the weights k of every layer (grid-stride)."""
    c = consts(params)
    first = cuda.grid(1)
    stride = cuda.gridsize(1)
    for layer in range(ranges.shape[0]):
        lo = ranges[layer, 0]
        for k in range(lo + first, ranges[layer, 1], stride):
            grads[k] += penalty_derivative(params[k], l1, l2, c[0], c[1])


def _add_into(out, inp):
    """out += inp (2-D, same shape; grid-stride)."""
    n, f = out.shape
    for k in range(cuda.grid(1), n * f, cuda.gridsize(1)):
        i = k // f
        j = k - i * f
        out[i, j] = out[i, j] + inp[i, j]


def _copy_into(out, inp):
    """out[:] = inp (2-D, same shape; grid-stride)."""
    n, f = out.shape
    for k in range(cuda.grid(1), n * f, cuda.gridsize(1)):
        i = k // f
        j = k - i * f
        out[i, j] = inp[i, j]


def _act_grad(d, z):
    """In place: d holds dLoss/da, becomes dLoss/dz = d * f'(z) (act(z) from z)."""
    kind = KIND
    c = consts(d)
    n, f = d.shape
    for k in range(cuda.grid(1), n * f, cuda.gridsize(1)):
        i = k // f
        j = k - i * f
        zij = z[i, j]
        d[i, j] = d[i, j] * act_derivative(zij, act_forward(zij, kind, c), kind, c)


def _any_nonfinite(a):
    """True if this thread's grid-stride share of the 2-D array a has a NaN or inf."""
    n, f = a.shape
    bad = False
    for k in range(cuda.grid(1), n * f, cuda.gridsize(1)):
        v = a[k // f, k % f]
        bad |= not (v - v == 0)
    return bad


def _check_x(status, X, seq):
    """Sets status[0] (and status[2] = seq) if X has a NaN or inf; returns True if an
    earlier step has already failed (the status word is sticky until the host reads it)."""
    if status[0] != 0 or status[1] != 0:
        return True
    if any_nonfinite(X):
        status[0] = 1
        status[2] = seq
    return False


def _check_labels_kernel(status, X, y, classes, seq):
    """status[1] = 1 (and status[2] = seq) if a label is outside [0, classes)."""
    if check_x(status, X, seq):
        return
    bad = False
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        bad |= (y[i] < 0) | (y[i] >= classes)
    if bad:
        status[1] = 1
        status[2] = seq


def _check_targets_kernel(status, X, y, classes, seq):
    """status[1] = 1 (and status[2] = seq) if a target is NaN or inf."""
    if check_x(status, X, seq):
        return
    if any_nonfinite(y):
        status[1] = 1
        status[2] = seq


def _gather_rows(out, src, index, start):
    """out[r, :] = src[index[start + r], :] (2-D) for the rows of out."""
    n, f = out.shape
    first = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(first, n * f, stride):
        r = k // f
        j = k - r * f
        out[r, j] = src[index[start + r], j]


def _gather_items(out, src, index, start):
    """out[r] = src[index[start + r]] (1-D labels)."""
    first = cuda.grid(1)
    stride = cuda.gridsize(1)
    for r in range(first, out.size, stride):
        out[r] = src[index[start + r]]


# ---------------------------------------------------------------------------------------
# compiled variants


def _numba_real(dtype):
    from numba import types as nt

    return nt.float32 if np.dtype(dtype) == np.float32 else nt.float64


@functools.cache
def _device_functions():
    jit = gpu._import_cuda().jit
    dev = {n: jit(device=True, inline="always")(getattr(K, n).py_func)
           for n in ("act_forward", "act_derivative", "_consts", "xent_row", "mse_row",
                     "penalty_value", "penalty_derivative")}
    dev["consts"] = dev.pop("_consts")
    dev["any_nonfinite"] = jit(device=True, inline="always")(
        with_globals(_any_nonfinite, "any_nonfinite", cuda=gpu._import_cuda()))
    dev["check_x"] = jit(device=True, inline="always")(
        with_globals(_check_x, "check_x", cuda=gpu._import_cuda(),
                     any_nonfinite=dev["any_nonfinite"]))
    dev["tree_sum"] = gpu.device_tree_sum()
    return dev


def _bind(fn, name, dtype, **constants):
    """The Python function ``fn`` with the CUDA module, device helpers and constants bound."""
    return with_globals(fn, name, cuda=gpu._import_cuda(), DT=_numba_real(dtype),
                        **_device_functions(), **constants)


GEMM_MODES = {  # name -> (TRANS_A, TRANS_B, EPILOGUE)
    "forward_hidden": (False, False, BIAS_ACT),   # Z = A W + b, A = f(Z)
    "forward_output": (False, False, BIAS),       # logits = A W + b
    "weight_grad": (True, False, PLAIN),          # dW = A^T dZ
    "input_grad": (False, True, ACT_GRAD),        # dZprev = (dZ W^T) * f'(Zprev)
    "input_grad_plain": (False, True, PLAIN),     # dAprev = dZ W^T (skip connections)
}


def gemm_function(mode, activation, dtype, tile):
    ta, tb, epi = GEMM_MODES[mode]
    kind = K.ACTIVATIONS.get(activation, K.IDENTITY)
    return _bind(_gemm, f"gemm_{mode}_{activation}_{np.dtype(dtype).name}_{tile}", dtype,
                 TRANS_A=ta, TRANS_B=tb, EPILOGUE=epi, KIND=kind, T=tile, TP=tile + 1)


def simple_function(name, dtype):
    """The Python function of kernel ``name`` (not a GEMM) bound for ``dtype``."""
    fn = {"bias_grad": _bias_grad, "xent": _xent, "mse": _mse, "reduce": _reduce,
          "check_labels": _check_labels_kernel, "check_targets": _check_targets_kernel,
          "gather_rows": _gather_rows, "gather_items": _gather_items,
          "penalty_sum": _penalty_sum, "penalty_grad": _penalty_grad,
          "add_into": _add_into, "copy_into": _copy_into}[name]
    return _bind(fn, f"{name}_{np.dtype(dtype).name}", dtype, RT=REDUCE_THREADS,
                 BC=BIAS_COLS, BR=BIAS_ROWS)


def act_grad_function(activation, dtype):
    return _bind(_act_grad, f"act_grad_{activation}_{np.dtype(dtype).name}", dtype,
                 KIND=K.ACTIVATIONS[activation])


@functools.cache
def act_grad_kernel(activation, dtype):
    return gpu._import_cuda().jit(act_grad_function(activation, np.dtype(dtype).name))


@functools.cache
def _gemm_kernel(mode, activation, dtype, tile):
    return gpu._import_cuda().jit(gemm_function(mode, activation, dtype, tile))


@functools.cache
def _simple_kernel(name, dtype, _sizes):
    return gpu._import_cuda().jit(simple_function(name, dtype))


def gemm_kernel(mode, activation, dtype):
    return _gemm_kernel(mode, activation, np.dtype(dtype).name, TILE)


def simple_kernel(name, dtype):
    return _simple_kernel(name, np.dtype(dtype).name, (REDUCE_THREADS, BIAS_COLS, BIAS_ROWS))


def kernel_signatures(dtype, loss="cross_entropy"):
    """(name, Python function, signature) of every MLP kernel for ``dtype`` (PTX checks)."""
    from numba import types as nt

    real = _numba_real(dtype)
    m2 = nt.Array(real, 2, "C")
    v1 = nt.Array(real, 1, "C")
    i1 = nt.Array(nt.int64, 1, "C")
    i2 = nt.Array(nt.int64, 2, "C")
    out = []
    for act in K.ACTIVATIONS:
        for mode in ("forward_hidden", "input_grad"):
            out.append((f"gemm_{mode}_{act}", gemm_function(mode, act, dtype, TILE),
                        (m2, m2, m2, v1, m2, m2)))
        out.append((f"act_grad_{act}", act_grad_function(act, dtype), (m2, m2)))
    for mode in ("forward_output", "weight_grad", "input_grad_plain"):
        out.append((f"gemm_{mode}", gemm_function(mode, "identity", dtype, TILE),
                    (m2, m2, m2, v1, m2, m2)))
    simple = {
        "bias_grad": (v1, m2),
        "xent": (m2, v1, m2, i1),
        "mse": (m2, v1, m2, m2),
        "reduce": (v1, nt.int64, v1, real),
        "check_labels": (i1, m2, i1, nt.int64, nt.int64),
        "check_targets": (i1, m2, m2, nt.int64, nt.int64),
        "gather_rows": (m2, m2, i1, nt.int64),
        "gather_items": (i1, i1, i1, nt.int64),
        "penalty_sum": (v1, nt.int64, v1, i2, real, real),
        "penalty_grad": (v1, v1, i2, real, real),
        "add_into": (m2, m2),
        "copy_into": (m2, m2),
    }
    for name, sig in simple.items():
        out.append((name, simple_function(name, dtype), sig))
    return out


# ---------------------------------------------------------------------------------------
# launches


def _grid1(n):
    return max(1, min(gpu.MAX_BLOCKS, math.ceil(n / THREADS))), THREADS


class Plan:
    """Device views and launch shapes for one batch size (built once, reused every step)."""

    def __init__(self, net, n):
        c = gpu._import_cuda()
        dt = net.dtype
        sizes = net.sizes
        total = n * sum(sizes[1:])
        self.n = n
        self.Z = c.device_array(total, dt)
        self.A = c.device_array(total, dt)
        self.D = c.device_array(total, dt)
        self.R = c.device_array(total if net.residual else 1, dt)  # dLoss/da, skips
        self.rowloss = c.device_array(n, dt)
        self.xb = c.device_array((n, sizes[0]), dt)
        self.yb = (c.device_array(n, np.int64) if net.loss == "cross_entropy"
                   else c.device_array((n, sizes[-1]), dt))
        self.layers = []
        off = 0
        for layer, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
            view = slice(off, off + n * fo)
            self.layers.append(dict(
                z=self.Z[view].reshape(n, fo), a=self.A[view].reshape(n, fo),
                d=self.D[view].reshape(n, fo),
                r=self.R[view].reshape(n, fo) if net.residual else None,
                grid=(math.ceil(fo / TILE), math.ceil(n / TILE)),
                grid_dw=(math.ceil(fo / TILE), math.ceil(fi / TILE)),
                grid_dx=(math.ceil(fi / TILE), math.ceil(n / TILE)),
                grid_db=math.ceil(fo / BIAS_COLS)))
            off += n * fo
        self.rows = _grid1(n)


class DeviceNet:
    """The GPU side of an ``MLP(target="cuda")``: plans per batch size, the status word,
    and the launches of forward, backward and train_step."""

    def __init__(self, model):
        c = gpu._import_cuda()
        self.model = model
        self.sizes = model.sizes
        self.dtype = model.dtype
        self.loss = model.loss
        self.activation = model.activation
        self.residual = model.residual
        # per layer: a skip connection around it (hidden, fan-in == fan-out)
        self.skips = [model.residual and fi == fo and layer < len(self.sizes) - 2
                      for layer, (fi, fo) in enumerate(zip(self.sizes[:-1], self.sizes[1:]))]
        self.plans = {}
        # status word: [bad X, bad y, sequence number of the failing step]
        self.status = c.to_device(np.zeros(3, dtype=np.int64))
        self.seq = 0
        self.pending = []  # (seq, optimizer, plan) of unconfirmed steps (None, None: no update)
        self.scratch_loss = c.device_array(1, self.dtype)
        self.dummy_bias = c.device_array(1, self.dtype)
        # one-element loss buffers handed out by train_step and taken back when their
        # DeviceLoss is dropped: no allocation (cuMemAlloc/cuMemFree may wait) per step
        self.loss_pool = []
        # the weight penalty: [start, end) of every weight matrix in params, and l1, l2
        # in the parameter dtype (host-side casts); None when both are 0
        self.penalty = None
        if model.l1 or model.l2:
            ranges = np.array([(r[0], r[0] + fi * fo) for r, (fi, fo) in
                               zip(model._layout, zip(self.sizes[:-1], self.sizes[1:]))],
                              dtype=np.int64)
            self.penalty = (c.to_device(ranges), self.dtype.type(model.l1),
                            self.dtype.type(model.l2))
        self.n_weights = sum(fi * fo for fi, fo in zip(self.sizes[:-1], self.sizes[1:]))

    def take_loss_buffer(self):
        if self.loss_pool:
            return self.loss_pool.pop()
        return gpu._import_cuda().device_array(1, self.dtype)

    def plan(self, n):
        p = self.plans.get(n)
        if p is None:
            if len(self.plans) > 8:
                self.plans.clear()
            p = self.plans[n] = Plan(self, n)
        return p

    # -- status ---------------------------------------------------------------------

    def confirm(self):
        """Read the status word (a synchronisation). If a step was rejected, undo its
        optimizer bookkeeping (and that of the no-op steps after it), clear the word and
        raise the error that says what was wrong."""
        if not self.pending and self.seq == 0:
            return
        word = self.status.copy_to_host()
        if word[0] == 0 and word[1] == 0:
            self.pending.clear()
            return
        failed = int(word[2])
        first = next((p for p in self.pending if p[0] == failed), None)
        for seq, opt, plan in reversed(self.pending):  # back to before the failed step
            if seq >= failed and plan is not None:
                opt.revert_steps(plan)
        self.pending.clear()
        self.status.copy_to_device(np.zeros(3, dtype=np.int64))
        what = ("X contains NaN or inf" if word[0] else
                ("y has labels outside [0, %d)" % self.sizes[-1]
                 if self.loss == "cross_entropy" else "y contains NaN or inf"))
        after = self.seq - failed
        later = (f"; it and the {after} step{'s' if after != 1 else ''} queued after it"
                 if first else "")
        raise ValueError(f"train_step on the GPU rejected a batch: {what}{later} changed "
                         "nothing (parameters and optimizer state are as before it); clean "
                         "the data before training")

    # -- launches -------------------------------------------------------------------

    def _forward(self, plan, params_views, X, training):
        act = self.activation
        dt = self.dtype
        inp = X
        last = len(self.sizes) - 2
        for layer, lv in enumerate(plan.layers):
            W, b = params_views[layer]
            if layer == last:
                gemm_kernel("forward_output", "identity", dt)[lv["grid"], (TILE, TILE)](
                    lv["z"], inp, W, b, lv["z"], lv["z"])
                return lv["z"]
            gemm_kernel("forward_hidden", act, dt)[lv["grid"], (TILE, TILE)](
                lv["z"], inp, W, b, lv["z"], lv["a"])
            if self.skips[layer]:
                simple_kernel("add_into", dt)[_grid1(lv["a"].size)](lv["a"], inp)
            inp = lv["a"]
        raise AssertionError("unreachable")

    def _views(self, buf):
        m = self.model
        return [(buf[r[0]:r[0] + fi * fo].reshape(fi, fo), buf[r[1]:r[1] + fo])
                for r, (fi, fo) in zip(m._layout, zip(self.sizes[:-1], self.sizes[1:]))]

    def views(self):
        v = getattr(self, "_cached_views", None)
        if v is None:
            v = self._cached_views = (self._views(self.model.params),
                                      self._views(self.model.grads))
        return v

    def forward(self, X):
        """Logits (device view into the workspace) of device rows X, evaluation mode."""
        plan = self.plan(X.shape[0])
        return self._forward(plan, self.views()[0], X, False)

    def _loss_and_grad(self, plan, X, y, losses, slot):
        dt = self.dtype
        pviews, gviews = self.views()
        logits = self._forward(plan, pviews, X, True)
        n, classes = logits.shape
        last = plan.layers[-1]
        if self.loss == "cross_entropy":
            simple_kernel("xent", dt)[plan.rows](last["d"], plan.rowloss, logits, y)
            scale = dt.type(1.0 / n)
        else:
            simple_kernel("mse", dt)[plan.rows](last["d"], plan.rowloss, logits, y)
            scale = dt.type(1.0 / (n * classes))
        simple_kernel("reduce", dt)[1, REDUCE_THREADS](losses, slot, plan.rowloss, scale)
        if self.penalty is not None:  # before the update: the penalty of these parameters
            simple_kernel("penalty_sum", dt)[1, REDUCE_THREADS](
                losses, slot, gpu.flat(self.model.params), *self.penalty)
        act = self.activation
        for layer in range(len(plan.layers) - 1, -1, -1):
            lv = plan.layers[layer]
            dW, db = gviews[layer]
            inp = X if layer == 0 else plan.layers[layer - 1]["a"]
            gemm_kernel("weight_grad", "identity", dt)[lv["grid_dw"], (TILE, TILE)](
                dW, inp, lv["d"], self.dummy_bias, dW, dW)
            simple_kernel("bias_grad", dt)[lv["grid_db"], (BIAS_COLS, BIAS_ROWS)](db, lv["d"])
            if layer > 0:
                prev = plan.layers[layer - 1]
                W = pviews[layer][0]
                if not self.residual:
                    gemm_kernel("input_grad", act, dt)[lv["grid_dx"], (TILE, TILE)](
                        prev["d"], lv["d"], W, self.dummy_bias, prev["z"], prev["a"])
                    continue
                # skip connections: dA_prev = dZ W^T (+ dA of this layer through its
                # skip), kept in R if layer - 1 has a skip, then times f'(Z_prev)
                gemm_kernel("input_grad_plain", "identity", dt)[lv["grid_dx"], (TILE, TILE)](
                    prev["d"], lv["d"], W, self.dummy_bias, prev["d"], prev["d"])
                grid = _grid1(prev["d"].size)
                if self.skips[layer]:
                    simple_kernel("add_into", dt)[grid](prev["d"], lv["r"])
                if layer > 1 and self.skips[layer - 1]:
                    simple_kernel("copy_into", dt)[grid](prev["r"], prev["d"])
                act_grad_kernel(act, dt)[grid](prev["d"], prev["z"])
        if self.penalty is not None:
            simple_kernel("penalty_grad", dt)[_grid1(self.n_weights)](
                gpu.flat(self.model.grads), gpu.flat(self.model.params), *self.penalty)

    def _check(self, X, y):
        name = "check_labels" if self.loss == "cross_entropy" else "check_targets"
        self.seq += 1
        simple_kernel(name, self.dtype)[_grid1(X.shape[0] * X.shape[1])](
            self.status, X, y, self.sizes[-1], self.seq)

    def loss_and_grad(self, X, y):
        """Loss (a float: synchronises) of device rows X, y; fills model.grads."""
        plan = self.plan(X.shape[0])
        self._check(X, y)
        self.pending.append((self.seq, None, None))
        self._loss_and_grad(plan, X, y, self.scratch_loss, 0)
        self.confirm()
        return float(self.scratch_loss.copy_to_host()[0])

    def train_step(self, X, y, optimizer, losses, slot, plan=None):
        """Queue one step on device rows X, y; its loss goes to losses[slot] on the device."""
        plan = plan or self.plan(X.shape[0])
        if optimizer.skip_nonfinite or optimizer.max_grad_norm is not None:
            # the update needs the gradient norm on the host: check, gradients, norm, step
            self._check(X, y)
            self.pending.append((self.seq, None, None))
            self._loss_and_grad(plan, X, y, losses, slot)
            self.confirm()
            optimizer.step(self.model.grads)
            return
        step = optimizer.plan_steps(1)
        if step.error is not None:
            raise step.error
        self._check(X, y)
        self._loss_and_grad(plan, X, y, losses, slot)
        # gated on the status word: a no-op if this batch (or an earlier one) was rejected
        gpu.update(step.rule, step.params[0], gpu.flat(self.model.grads), *step.slots[0],
                   step.hypers[0][0], step.flags[0][0], status=self.status)
        # committed now, so that the next step's scalars follow this one; confirm reverts
        # it if the device turns out to have rejected the batch
        optimizer.commit_steps(step, 1)
        self.pending.append((self.seq, optimizer, step))
        if len(self.pending) > 100_000:  # bounded bookkeeping: confirm now and then
            self.confirm()

    def gather(self, plan, Xd, yd, index, start, nb):
        """Rows index[start:start + nb] of the device data into the plan's batch buffers."""
        xb, yb = plan.xb, plan.yb
        simple_kernel("gather_rows", self.dtype)[_grid1(nb * xb.shape[1])](xb, Xd, index, start)
        name = "gather_items" if yb.ndim == 1 else "gather_rows"
        simple_kernel(name, self.dtype)[_grid1(yb.size)](yb, yd, index, start)
        return xb, yb


class DeviceLoss:
    """The loss of a GPU train_step, still on the device: reading it (``float(loss)``,
    printing, comparing, ``np.asarray``) waits for the step and checks that its batch was
    accepted; not reading it lets the next steps queue behind it."""

    __slots__ = ("_net", "_buf", "_value")

    def __init__(self, net, buf):
        self._net = net
        self._buf = buf
        self._value = None

    def __del__(self):
        pool = self._net.loss_pool
        if len(pool) < 64:
            pool.append(self._buf)

    def __float__(self):
        if self._value is None:
            self._net.confirm()
            self._value = float(self._buf.copy_to_host()[0])
        return self._value

    item = __float__

    def __array__(self, dtype=None, copy=None):
        return np.asarray(float(self), dtype=dtype)

    def __repr__(self):
        return repr(float(self))

    def __format__(self, spec):
        return format(float(self), spec)

    def __lt__(self, other):
        return float(self) < other

    def __le__(self, other):
        return float(self) <= other

    def __gt__(self, other):
        return float(self) > other

    def __ge__(self, other):
        return float(self) >= other

    def __eq__(self, other):
        return float(self) == other

    def __hash__(self):
        return hash(float(self))
