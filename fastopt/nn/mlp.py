"""A multi-layer perceptron on one flat parameter buffer, trained by compiled kernels."""

import numbers

import numpy as np
from .. import _checks, threads
from .. import init as initializers
from ..kernels import cpu
from ..kernels import cuda as gpu
from ..kernels import warmup
from . import kernels as K

LOSS_NAMES = tuple(K.LOSSES)


def _array_key(a):
    """What Numba's type of the array ``a`` depends on (dtype, dimensions, layout,
    read-only, aligned): the key of the entry points ``K.chunk_calls`` looked up for it."""
    f = a.flags
    return a.dtype.char, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned


def _train_step(y_ok, loss_and_grad, update, grads, ws, params, X, y, net, classes, s0, s1,
                s2, hyper, flags, calls):
    """(status, loss): status 0 after a step; 1 (NaN/inf in X) or 2 (bad y) before
    anything changed.

    Compiled calls from Python: the checks, loss_and_grad (``K.loss_and_grad_kernel``,
    which calls the forward pass, the loss and the backward pass through their entry points
    ``calls``) and the update. A fused kernel per update rule was compiled with the whole
    forward/backward pass inside it again, about 3 s per optimizer in a new process, and a
    loss_and_grad that linked the passes compiled them once more (issue 17). The update is the serial
    kernel on purpose: the matrix products run on OpenBLAS's threads, and handing the
    cores over to Numba's OpenMP pool right after a GEMM costs milliseconds while both
    pools spin (measured on 2 cores: 8.4 ms per step at batch 32 with the prange update vs
    0.45 ms serial; see benchmarks/README.md)."""
    if not K.finite(X):
        return 1, 0.0
    if not y_ok(y, classes):
        return 2, 0.0
    value = loss_and_grad(grads, ws, params, X, y, net, calls)
    update(params, grads, s0, s1, s2, hyper, flags)
    return 0, value


def _check_arguments(sizes, activation, dropout, batch_norm, seed, dtype, target, loss):
    """MLP's argument checks, all before anything is built (the penalties: ``_check_penalties``);
    (sizes, dropout, batch_norm, dtype) normalised."""
    sizes = list(_checks.widths("sizes", sizes))  # 2.7 is refused, not truncated to 2
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least two entries (input and output widths), "
                         f"got {sizes}")
    if activation not in K.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: "
                         f"{', '.join(K.ACTIVATIONS)}")
    if loss not in K.LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSS_NAMES)}")
    if loss == "cross_entropy" and sizes[-1] < 2:
        raise ValueError("cross_entropy needs at least 2 output classes, got "
                         f"sizes[-1] = {sizes[-1]}")
    dropout = _checks.real("dropout", dropout, low=0.0, high=1.0, high_open=True)
    batch_norm = _checks.flag("batch_norm", batch_norm)
    if target not in ("cpu", "cuda"):
        raise ValueError(f"target must be 'cpu' or 'cuda', got {target!r}")
    if target == "cuda":
        gpu.require()  # says what is missing: driver, GPU or pip install "fastopt[cuda]"
        for name, on in (("dropout", dropout > 0), ("batch_norm", batch_norm)):
            if on:
                raise ValueError(f"{name} has no GPU kernels yet: use target=\"cpu\" "
                                 f"or turn {name} off")
    dtype = np.dtype(dtype)
    if dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    return sizes, dropout, batch_norm, dtype


def _check_penalties(l1, l2):
    """(l1, l2) as floats: finite and >= 0 (bools and strings refused)."""
    return (_checks.real("l1", l1, low=0.0), _checks.real("l2", l2, low=0.0))


def _layout(sizes, batch_norm):
    """(layout, parameter count, batch-norm statistics count) of the flat buffer: per layer
    W, b (and gamma, beta for a hidden layer with batch norm); see fastopt.nn.kernels for
    the meaning of each column."""
    layout = np.full((len(sizes) - 1, 5), -1, dtype=np.int64)
    w = 0
    stat = 0
    for layer, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        layout[layer, 0], layout[layer, 1] = w, w + fi * fo
        w += fi * fo + fo
        if batch_norm and layer < len(sizes) - 2:
            layout[layer, 2:] = w, w + fo, stat
            w += 2 * fo
            stat += fo
    return layout, w, stat


class MLP:
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]`` with one flat parameter buffer.

    ``model.params`` and ``model.grads`` are flat arrays; ``model.weights[i]`` (fan_in,
    fan_out) and ``model.biases[i]`` are views into ``params`` (``y = x @ W + b``), and
    ``model.weight_grads[i]`` / ``model.bias_grads[i]`` into ``grads``. The output layer is
    linear; the loss applies softmax (``loss="cross_entropy"``, integer labels, mean over the
    batch) or compares to float targets (``loss="mse"``, torch's MSELoss).

    Parameters
    ----------
    sizes : sequence of int, at least two (input and output widths)
    activation : "relu", "leaky_relu" (slope 0.01), "tanh", "sigmoid" or "gelu" (erf form)
    init : initializer name or spec from ``fastopt.init`` for the weights (biases start at 0)
    dropout : float in [0, 1), inverted dropout after every hidden activation (training only)
    batch_norm : bool, Linear -> BatchNorm1d -> activation in every hidden layer (torch's
        BatchNorm1d: eps 1e-5, momentum 0.1, batch statistics in training, running
        statistics in evaluation, unbiased running variance). ``model.gammas[i]`` and
        ``model.betas[i]`` live in ``params``; ``model.running_mean[i]`` and
        ``model.running_var[i]`` are model state.
    seed : int, seeds the weights and the dropout masks
    dtype : "float32" or "float64"
    target : "cpu" or "cuda" (parameters, gradients, optimizer state and activations on the
        GPU: ``model.params`` is a Numba device array; no dropout or batch norm there yet;
        without a GPU the error says what is missing)
    loss : "cross_entropy" or "mse"
    residual : bool, identity skip connections around every hidden layer whose fan-in
        equals its fan-out, added after the activation (and after dropout)::

            a_out = act(z) + a_in          (with batch norm: act(BN(z)) + a_in)

        the "x + f(x)" form. A first hidden layer whose width differs from the input's has
        none; the output layer never has one. With ``residual=False`` (default) the numbers
        are exactly those of a network without the option. CPU and GPU.
    l2, l1 : float >= 0, penalties on the weight matrices only (Keras's
        ``kernel_regularizer``; never the biases or batch norm's gamma and beta), added to
        the loss of ``loss_and_grad``, ``train_step`` and ``evaluate`` (as Keras adds its
        regularisation losses to the loss it reports) and to the gradient::

            penalty = 0.5 * l2 * sum(W**2) + l1 * sum(|W|)     (sum over every W)
            grad W += l2 * W + l1 * sign(W)                     (sign(0) = 0)

        The L2 scaling is the textbook's ``0.5 * lambda * sum(W**2)`` (gradient
        ``lambda * W``, the same as torch's SGD ``weight_decay=lambda`` on the weights);
        Keras's ``regularizers.l2(x)`` is ``x * sum(W**2)``, i.e. ``l2=2 * x`` here, and
        its ``l1(x)`` is ``l1=x``. With both 0 (default) the numbers are exactly those of
        a network without them.

    Examples
    --------
    >>> import numpy as np
    >>> from fastopt import nn, optim
    >>> model = nn.MLP([4, 8, 3], seed=0)
    >>> opt = optim.SGD(model.params, lr=0.1)
    >>> X = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    >>> loss = model.train_step(X, np.array([0, 1, 2, 0, 1]), opt)
    >>> model.forward(X).shape
    (5, 3)
    """

    def __init__(self, sizes, activation="relu", init="he_normal", dropout=0.0,
                 batch_norm=False, seed=0, dtype="float32", target="cpu",
                 loss="cross_entropy", l2=0.0, l1=0.0, residual=False):
        l1, l2 = _check_penalties(l1, l2)
        residual = _checks.flag("residual", residual)
        sizes, dropout, batch_norm, dtype = _check_arguments(
            sizes, activation, dropout, batch_norm, seed, dtype, target, loss)
        fill = initializers.get(init)

        self.sizes = tuple(sizes)
        self.activation = activation
        self.loss = loss
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1
        self.l2 = l2
        self.residual = residual
        self.bn_eps = 1e-5
        self.bn_momentum = 0.1
        self.dtype = dtype
        self.target = target
        self.init = init
        self._sizes = np.array(sizes, dtype=np.int64)

        self._layout, n_params, n_stats = _layout(sizes, batch_norm)
        self.params = np.zeros(n_params, dtype=dtype)
        self.grads = np.zeros(n_params, dtype=dtype)
        self._make_views()
        for g in self.gammas:
            g[:] = 1
        self._make_running_stats(n_stats)
        self.rng = np.random.default_rng(seed)
        for W in self.weights:
            fill(W, self.rng)
        self._buffers = {}
        self._entries = {}  # train_step: entry points of the compiled passes, per types_key
        self._gpu = None
        if target == "cuda":  # same initial values as on the CPU, then on the device
            self._to_gpu()

    def __getstate__(self):
        # entry points are addresses in this process: a copy or unpickled model looks
        # them up again
        return dict(self.__dict__, _entries={})

    def _make_running_stats(self, n_stats):
        """Batch norm's running statistics (state, not parameters): [means | variances]."""
        self._running = np.zeros(2 * n_stats, dtype=self.dtype)
        self._running[n_stats:] = 1
        self._stats = np.zeros(2 * n_stats, dtype=self.dtype)
        widths = list(self.sizes[1:-1]) if self.batch_norm else []
        bounds = np.cumsum([0] + widths)
        self.running_mean = [self._running[s:e] for s, e in zip(bounds[:-1], bounds[1:])]
        self.running_var = [self._running[n_stats + s:n_stats + e]
                            for s, e in zip(bounds[:-1], bounds[1:])]

    def _to_gpu(self):
        """Parameters and gradients to the device, with views and the device network."""
        from . import cuda as device

        c = gpu._import_cuda()
        self.params = c.to_device(self.params)
        self.grads = c.to_device(self.grads)
        self._make_views()
        self._gpu = device.DeviceNet(self)

    def _make_views(self):
        """Per-layer views into params and grads (host arrays or device arrays)."""
        fan = list(zip(self.sizes[:-1], self.sizes[1:]))

        def views(buf, col, width):
            return [buf[r[col]:r[col] + width(i)] for i, r in enumerate(self._layout)
                    if r[col] >= 0]

        def matrices(buf):
            return [v.reshape(fi, fo) for v, (fi, fo) in
                    zip(views(buf, 0, lambda i: fan[i][0] * fan[i][1]), fan)]

        self.weights = matrices(self.params)
        self.weight_grads = matrices(self.grads)
        self.biases = views(self.params, 1, lambda i: fan[i][1])
        self.bias_grads = views(self.grads, 1, lambda i: fan[i][1])
        self.gammas = views(self.params, 2, lambda i: fan[i][1])
        self.betas = views(self.params, 3, lambda i: fan[i][1])
        self.gamma_grads = views(self.grads, 2, lambda i: fan[i][1])
        self.beta_grads = views(self.grads, 3, lambda i: fan[i][1])

    # -----------------------------------------------------------------------------------
    # input checks

    def _check_X(self, X, name="X", values=True):
        """X as a C-contiguous array of the model dtype; ``values=False`` leaves the NaN/inf
        check to the caller (train_step does it inside its kernel)."""
        if (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2
                and X.shape[1] == self.sizes[0] and X.shape[0] and X.flags.c_contiguous):
            if values:
                self._check_finite(X, name)
            return X  # fast path: nothing to convert
        if not isinstance(X, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(X).__name__}")
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} must have shape (n, {self.sizes[0]}), got {X.shape}")
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} has no rows")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if values:
            self._check_finite(X, name)
        return X

    @staticmethod
    def _check_finite(X, name):
        if not np.isfinite(X).all():
            bad = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column "
                             f"{bad[1]}); clean the data before training")

    def _check_y(self, y, n, name="y", values=True):
        """y as labels (int64) or targets (model dtype); ``values=False`` leaves the range
        and NaN/inf checks to the caller (train_step does them inside its kernel)."""
        if not isinstance(y, np.ndarray):
            y = np.asarray(y)
        if self.loss == "cross_entropy":
            if (y.dtype == np.int64 and y.shape == (n,) and y.flags.c_contiguous
                    and not values):
                return y  # fast path
            if y.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match X, got {y.shape}")
            if y.dtype.kind not in "iu":
                if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
                    y = y.astype(np.int64)
                else:
                    raise TypeError(f"{name} must hold integer class labels, got dtype "
                                    f"{y.dtype}")
            y = np.ascontiguousarray(y, dtype=np.int64)
            if values and n and (y.min() < 0 or y.max() >= self.sizes[-1]):
                raise ValueError(f"{name} has labels outside [0, {self.sizes[-1]}): min "
                                 f"{y.min()}, max {y.max()}")
            return y
        shape = (n, self.sizes[-1])
        if y.shape != shape:
            raise ValueError(f"{name} must have shape {shape} for the mse loss, got {y.shape}")
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if values and not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or inf")
        return y

    def _to_device(self, X, y=None, name="X", yname="y"):
        """(X, y) as device arrays for target="cuda". Host arrays get the full checks and
        one copy; device arrays (Numba, CuPy, torch CUDA: any ``__cuda_array_interface__``)
        are used in place after checks of dtype and shape; their values are checked on the
        device by train_step."""
        c = gpu._import_cuda()
        if gpu.is_device_array(X):
            X = X if hasattr(X, "copy_to_host") else c.as_cuda_array(X)
            if X.dtype != self.dtype or X.ndim != 2 or X.shape[1] != self.sizes[0]:
                raise ValueError(f"{name} on the GPU must be a {self.dtype} array of shape "
                                 f"(n, {self.sizes[0]}), got {X.dtype} {X.shape}")
            if not X.is_c_contiguous() or X.shape[0] == 0:
                raise ValueError(f"{name} on the GPU must be C-contiguous with rows")
        else:
            X = c.to_device(self._check_X(X, name))
        if y is None:
            return X, None
        n = X.shape[0]
        if gpu.is_device_array(y):
            y = y if hasattr(y, "copy_to_host") else c.as_cuda_array(y)
            if self.loss == "cross_entropy":
                want, shape = np.dtype(np.int64), (n,)
            else:
                want, shape = self.dtype, (n, self.sizes[-1])
            if y.dtype != want or y.shape != shape or not y.is_c_contiguous():
                raise ValueError(f"{yname} on the GPU must be a C-contiguous {want} array of "
                                 f"shape {shape}, got {y.dtype} {y.shape}")
        else:
            y = c.to_device(self._check_y(y, n, yname))
        return X, y

    # -----------------------------------------------------------------------------------
    # buffers and masks

    def _workspace(self, n):
        """(Z, A, D, M, XH, stats, running, R) flat buffers for a batch of n rows (reused)."""
        ws = self._buffers.get(n)
        if ws is None:
            size = n * sum(self.sizes[1:])
            m_size = size if self.dropout > 0 else 0
            x_size = size if self.batch_norm else 0
            r_size = size if self.residual else 0
            ws = (np.empty(size, self.dtype), np.empty(size, self.dtype),
                  np.empty(size, self.dtype), np.empty(m_size, self.dtype),
                  np.empty(x_size, self.dtype), self._stats, self._running,
                  np.empty(r_size, self.dtype))
            if len(self._buffers) > 8:
                self._buffers.clear()
            self._buffers[n] = ws
        return ws

    def _net(self, training, n):
        """The kernels' description of the network for a batch of n rows."""
        if not self.batch_norm:
            bn = K.BN_OFF
        elif training:
            if n < 2:
                raise ValueError("batch norm needs at least 2 rows per training batch (the "
                                 "batch variance of one row is 0); use batch_size >= 2")
            bn = K.BN_TRAIN
        else:
            bn = K.BN_EVAL
        return (self._sizes, self._layout, training and self.dropout > 0, bn,
                self.bn_eps, self.bn_momentum, self.l1, self.l2, self.residual)

    def penalty(self):
        """The weight penalty ``0.5 * l2 * sum(W**2) + l1 * sum(|W|)`` of the current
        parameters (0.0 when l1 = l2 = 0)."""
        if self.l1 == 0.0 and self.l2 == 0.0:
            return 0.0
        params = self.params.copy_to_host() if self._gpu is not None else self.params
        return K.weight_penalty(params, params, self._layout, self._sizes, self.l1, self.l2,
                                False)

    def _draw_masks(self, M, n):
        """Inverted-dropout masks for the hidden layers: 0 with probability p, else 1/(1-p)."""
        hidden = n * sum(self.sizes[1:-1])
        keep = self.rng.random(hidden) >= self.dropout
        M[:hidden] = keep * (1.0 / (1.0 - self.dropout))

    # -----------------------------------------------------------------------------------
    # public API

    def forward(self, X):
        """Outputs (logits for cross_entropy) in evaluation mode: no dropout. A new array."""
        if self._gpu is not None:
            on_device = gpu.is_device_array(X)
            X, _ = self._to_device(X)
            self._gpu.confirm()
            logits = self._gpu.forward(X)
            if not on_device:
                return logits.copy_to_host()
            out = gpu._import_cuda().device_array(logits.shape, self.dtype)
            out.copy_to_device(logits)
            return out
        X = self._check_X(X)
        n = X.shape[0]
        net = self._net(False, n)
        out = K.forward_kernel(self.activation, *K.variant_key(net))(self._workspace(n),
                                                                    self.params, X, net)
        return out.copy()

    def loss_and_grad(self, X, y):
        """Training-mode loss of the batch (plus the weight penalty); fills ``model.grads``."""
        if self._gpu is not None:
            X, y = self._to_device(X, y)
            self._gpu.confirm()
            return self._gpu.loss_and_grad(X, y)
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        return self._loss_and_grad(X, y)

    def _loss_and_grad(self, X, y):
        n = X.shape[0]
        net = self._net(True, n)
        ws = self._workspace(n)
        if self.dropout > 0:
            self._draw_masks(ws[3], n)
        steps = K.loss_and_grad_steps(self.loss, self.activation, *K.variant_key(net))
        return steps(self.grads, ws, self.params, X, y, net)

    def evaluate(self, X, y, batch_size=4096):
        """(mean loss, accuracy) in evaluation mode; accuracy is NaN for the mse loss. The
        loss includes the weight penalty (``penalty()``) when l1 or l2 is set, as Keras's.

        With target="cuda" the forward passes run on the device (X may be a device array,
        taken there once) and the logits of each chunk come back for the loss."""
        if self._gpu is not None:
            X, _ = self._to_device(X, None)
            if gpu.is_device_array(y):
                y = (y if hasattr(y, "copy_to_host") else
                     gpu._import_cuda().as_cuda_array(y)).copy_to_host()
            self._gpu.confirm()
        else:
            X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        total, hits = 0.0, 0
        loss_fn = K.LOSSES[self.loss]
        for start in range(0, X.shape[0], batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            nb = xb.shape[0]
            if self._gpu is not None:
                out = self._gpu.forward(xb).copy_to_host()
            else:
                net = self._net(False, nb)
                out = K.forward_kernel(self.activation, *K.variant_key(net))(
                    self._workspace(nb), self.params, xb, net)
            total += loss_fn(out, out, yb, False) * xb.shape[0]
            if self.loss == "cross_entropy":
                hits += K.correct_count(out, yb)
        n = X.shape[0]
        loss = total / n + self.penalty() if (self.l1 or self.l2) else total / n
        return loss, (hits / n if self.loss == "cross_entropy" else float("nan"))

    def _check_optimizer(self, optimizer):
        groups = getattr(optimizer, "param_groups", None)
        arrays = None if groups is None else [p for g in groups for p in g["params"]]
        if arrays is None or len(arrays) != 1 or arrays[0] is not self.params:
            raise ValueError("the optimizer must be built on model.params (one flat array), "
                             "e.g. optim.Adam(model.params, lr=1e-3)")

    def train_step(self, X, y, optimizer):
        """Forward, backward and the optimizer update of one mini-batch; returns the loss.

        Compiled calls, Python touched once per step. With target="cuda": a fixed number of kernel launches that do
        not wait for the device, and the loss is a ``fastopt.nn.cuda.DeviceLoss`` (reading
        it, e.g. ``float(loss)``, waits; a batch rejected on the device raises then). With ``skip_nonfinite`` or ``max_grad_norm`` on the optimizer the
        update needs the gradient norm first, so the step runs as ``loss_and_grad`` followed
        by ``optimizer.step(model.grads)`` (two calls, same numbers).
        """
        self._check_optimizer(optimizer)
        if self._gpu is not None:
            return self._train_step_device(X, y, optimizer)
        if optimizer.skip_nonfinite or optimizer.max_grad_norm is not None:
            X = self._check_X(X)
            y = self._check_y(y, X.shape[0])
            loss = self._loss_and_grad(X, y)
            optimizer.step(self.grads)
            return loss
        X = self._check_X(X, values=False)  # values are checked inside the kernel
        y = self._check_y(y, X.shape[0], values=False)
        n = X.shape[0]
        net = self._net(True, n)  # checks the batch size before anything changes
        plan = optimizer.plan_steps(1)
        if plan.error is not None:
            raise plan.error
        s0, s1, s2 = plan.slots[0]
        ws = self._workspace(n)
        if self.dropout > 0:
            self._draw_masks(ws[3], n)
        vkey = K.variant_key(net)
        penalty = bool(net[6] or net[7])
        types_key = (vkey, penalty, _array_key(X), _array_key(y))
        warmup.once(("train_step", self.loss, self.activation, self.dtype.char, plan.rule,
                     tuple(s is None for s in plan.slots[0])) + types_key,
                    lambda: self._warm_jobs(X, y, net, ws, vkey, plan, True))
        calls = self._calls(types_key, X, y, net, ws, vkey)
        status, loss = threads.run_training(
            ("train_step", self.sizes, n, self.dtype.char, plan.rule), 1, _train_step,
            K.Y_OK[self.loss], K.loss_and_grad_kernel(self.loss, self.activation, *vkey,
                                                      penalty),
            cpu.update_kernels(plan.rule)[0], self.grads, ws, self.params, X, y, net,
            self.sizes[-1], s0, s1, s2, plan.hypers[0][0], plan.flags[0][0], calls)
        if status:  # nothing changed; the full checks say what is wrong
            self._check_X(X)
            self._check_y(y, X.shape[0])
            raise AssertionError(f"train_step kernel rejected the batch (status {status}) "
                                 "but the input checks passed")
        optimizer.commit_steps(plan, 1)
        return loss

    def _calls(self, types_key, X, y, net, ws, vkey):
        """The passes' entry points (``K.chunk_calls``) for these arguments, looked up once
        per ``types_key`` (which must determine the arguments' Numba types)."""
        calls = self._entries.get(types_key)
        if calls is None:
            calls = self._entries[types_key] = K.chunk_calls(
                self.loss, self.activation, vkey, self.grads, ws, self.params, X, y, net)
        return calls

    def _warm_jobs(self, X, y, net, ws, vkey, plan, with_checks):
        """What a first train_step (``with_checks``) or fit chunk compiles, for
        ``fastopt.kernels.warmup.once``: the update, the checks and train_step's
        loss_and_grad here beside the forward pass, the loss and the penalty; the backward
        pass in a helper."""
        here, elsewhere = K.warm_jobs(self.loss, self.activation, vkey, self.grads, ws,
                                      self.params, X, y, net, penalty=bool(net[6] or net[7]))
        s0, s1, s2 = plan.slots[0]
        here.append(warmup.job(("fastopt.kernels.cpu", "serial_kernel", (plan.rule,)),
                               self.params, self.grads, s0, s1, s2, plan.hypers[0][0],
                               plan.flags[0][0]))
        if with_checks:
            # and train_step's compiled loss_and_grad, typed against the forward pass and
            # loss compiled just before it (the backward pass's return type is declared:
            # the helper may still be compiling it); the entry points are values only
            calls = ((0, 0),) * 3
            here += [warmup.job(("fastopt.nn.kernels", "finite", None), X),
                     warmup.job(("fastopt.nn.kernels", "Y_OK", self.loss), y,
                                self.sizes[-1]),
                     warmup.job(("fastopt.nn.kernels", "loss_and_grad_kernel",
                                 (self.loss, self.activation, *vkey, bool(net[6] or net[7]))),
                                self.grads, ws, self.params, X, y, net, calls)]
        return here, elsewhere

    def _train_step_device(self, X, y, optimizer):
        """The GPU step: queued kernels, no wait for the device; the loss stays there until
        read (a ``DeviceLoss``)."""
        from . import cuda as device

        X, y = self._to_device(X, y)
        loss = self._gpu.take_loss_buffer()
        self._gpu.train_step(X, y, optimizer, loss, 0)
        return device.DeviceLoss(self._gpu, loss)

    def __repr__(self):
        extra = f", dropout={self.dropout}" if self.dropout else ""
        extra += ", batch_norm=True" if self.batch_norm else ""
        extra += f", l2={self.l2}" if self.l2 else ""
        extra += f", l1={self.l1}" if self.l1 else ""
        extra += ", residual=True" if self.residual else ""
        return (f"MLP({list(self.sizes)}, activation={self.activation!r}, loss={self.loss!r}, "
                f"dtype={self.dtype.name}{extra}; {self.params.size} parameters)")
