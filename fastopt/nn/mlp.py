"""A multi-layer perceptron on one flat parameter buffer, trained by compiled kernels."""

import functools
import numbers

import numpy as np
from numba import njit

from .. import _checks
from .. import init as initializers
from ..kernels import cpu
from . import kernels as K

LOSS_NAMES = tuple(K.LOSSES)


@functools.cache
def _train_step_kernel(loss, rule_name):
    """forward + backward + optimizer update of one mini-batch, in one compiled call.

    The update uses the serial kernel on purpose: the matrix products run on OpenBLAS's
    threads, and handing the cores over to Numba's OpenMP pool right after a GEMM costs
    milliseconds while both pools spin (measured on 2 cores: 8.4 ms per step at batch 32
    with the prange update vs 0.45 ms serial; see benchmarks/README.md).
    """
    loss_and_grad = K.LOSS_AND_GRAD[loss]
    serial, _ = cpu.update_kernels(rule_name)

    def train_step(grads, Z, A, D, params, X, y, M, sizes, kind, use_mask,
                   s0, s1, s2, hyper, flags):
        value = loss_and_grad(grads, Z, A, D, params, X, y, M, sizes, kind, use_mask)
        serial(params, grads, s0, s1, s2, hyper, flags)
        return value

    train_step.__name__ = train_step.__qualname__ = f"train_step_{loss}_{rule_name}"
    return njit(**K.JIT)(train_step)


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
    batch_norm : must be False for now (batch normalisation is not implemented yet)
    seed : int, seeds the weights and the dropout masks
    dtype : "float32" or "float64"
    target : "cpu"
    loss : "cross_entropy" or "mse"

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
                 loss="cross_entropy"):
        try:
            sizes = [int(s) for s in sizes]
        except (TypeError, ValueError):
            raise TypeError(f"sizes must be a sequence of integers, got {sizes!r}") from None
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least two entries (input and output widths), "
                             f"got {sizes}")
        if min(sizes) < 1:
            raise ValueError(f"every layer size must be >= 1, got {sizes}")
        if activation not in K.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: "
                             f"{', '.join(K.ACTIVATIONS)}")
        if loss not in K.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSS_NAMES)}")
        if loss == "cross_entropy" and sizes[-1] < 2:
            raise ValueError("cross_entropy needs at least 2 output classes, got "
                             f"sizes[-1] = {sizes[-1]}")
        dropout = _checks.real("dropout", dropout, low=0.0, high=1.0, high_open=True)
        if batch_norm:
            raise NotImplementedError("batch_norm=True is not implemented yet; use "
                                      "batch_norm=False")
        if target != "cpu":
            raise ValueError(f"target must be 'cpu' (the CUDA target is not available in "
                             f"this version), got {target!r}")
        dtype = np.dtype(dtype)
        if dtype not in _checks.FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        fill = initializers.get(init)

        self.sizes = tuple(sizes)
        self.activation = activation
        self.loss = loss
        self.dropout = dropout
        self.batch_norm = False
        self.dtype = dtype
        self.target = target
        self.init = init
        self._sizes = np.array(sizes, dtype=np.int64)
        self._kind = K.ACTIVATIONS[activation]
        n_params = sum(fi * fo + fo for fi, fo in zip(sizes[:-1], sizes[1:]))
        self.params = np.zeros(n_params, dtype=dtype)
        self.grads = np.zeros(n_params, dtype=dtype)
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        w = 0
        for fi, fo in zip(sizes[:-1], sizes[1:]):
            for buf, ws, bs in ((self.params, self.weights, self.biases),
                                (self.grads, self.weight_grads, self.bias_grads)):
                ws.append(buf[w:w + fi * fo].reshape(fi, fo))
                bs.append(buf[w + fi * fo:w + fi * fo + fo])
            w += fi * fo + fo
        self.rng = np.random.default_rng(seed)
        for W in self.weights:
            fill(W, self.rng)
        self._buffers = {}
        self._empty = np.zeros(0, dtype=dtype)

    # -----------------------------------------------------------------------------------
    # input checks

    def _check_X(self, X, name="X"):
        if not isinstance(X, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(X).__name__}")
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} must have shape (n, {self.sizes[0]}), got {X.shape}")
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} has no rows")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            bad = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column "
                             f"{bad[1]}); clean the data before training")
        return X

    def _check_y(self, y, n, name="y"):
        if not isinstance(y, np.ndarray):
            y = np.asarray(y)
        if self.loss == "cross_entropy":
            if y.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match X, got {y.shape}")
            if y.dtype.kind not in "iu":
                if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0):
                    y = y.astype(np.int64)
                else:
                    raise TypeError(f"{name} must hold integer class labels, got dtype "
                                    f"{y.dtype}")
            y = np.ascontiguousarray(y, dtype=np.int64)
            if n and (y.min() < 0 or y.max() >= self.sizes[-1]):
                raise ValueError(f"{name} has labels outside [0, {self.sizes[-1]}): min "
                                 f"{y.min()}, max {y.max()}")
            return y
        shape = (n, self.sizes[-1])
        if y.shape != shape:
            raise ValueError(f"{name} must have shape {shape} for the mse loss, got {y.shape}")
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or inf")
        return y

    # -----------------------------------------------------------------------------------
    # buffers and masks

    def _workspace(self, n):
        """(Z, A, D, M) flat buffers for a batch of n rows (reused across calls)."""
        ws = self._buffers.get(n)
        if ws is None:
            size = n * sum(self.sizes[1:])
            m_size = size if self.dropout > 0 else 0
            ws = (np.empty(size, self.dtype), np.empty(size, self.dtype),
                  np.empty(size, self.dtype), np.empty(m_size, self.dtype))
            if len(self._buffers) > 8:
                self._buffers.clear()
            self._buffers[n] = ws
        return ws

    def _draw_masks(self, M, n):
        """Inverted-dropout masks for the hidden layers: 0 with probability p, else 1/(1-p)."""
        hidden = n * sum(self.sizes[1:-1])
        keep = self.rng.random(hidden) >= self.dropout
        M[:hidden] = keep * (1.0 / (1.0 - self.dropout))

    # -----------------------------------------------------------------------------------
    # public API

    def forward(self, X):
        """Outputs (logits for cross_entropy) in evaluation mode: no dropout. A new array."""
        X = self._check_X(X)
        Z, A, D, M = self._workspace(X.shape[0])
        out = K.mlp_forward(Z, A, self._empty, self.params, X, self._sizes, self._kind, False)
        return out.copy()

    def loss_and_grad(self, X, y):
        """Training-mode loss of the batch; fills ``model.grads``."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        return self._loss_and_grad(X, y)

    def _loss_and_grad(self, X, y):
        n = X.shape[0]
        Z, A, D, M = self._workspace(n)
        use_mask = self.dropout > 0
        if use_mask:
            self._draw_masks(M, n)
        return K.LOSS_AND_GRAD[self.loss](self.grads, Z, A, D, self.params, X, y,
                                          M if use_mask else self._empty, self._sizes,
                                          self._kind, use_mask)

    def evaluate(self, X, y, batch_size=4096):
        """(mean loss, accuracy) in evaluation mode; accuracy is NaN for the mse loss."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        total, hits = 0.0, 0
        loss_fn = K.LOSSES[self.loss]
        for start in range(0, X.shape[0], batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            Z, A, D, M = self._workspace(xb.shape[0])
            out = K.mlp_forward(Z, A, self._empty, self.params, xb, self._sizes, self._kind,
                                False)
            total += loss_fn(out, out, yb, False) * xb.shape[0]
            if self.loss == "cross_entropy":
                hits += K.correct_count(out, yb)
        n = X.shape[0]
        return total / n, (hits / n if self.loss == "cross_entropy" else float("nan"))

    def _check_optimizer(self, optimizer):
        arrays = getattr(optimizer, "_params", None)
        if arrays is None or len(arrays) != 1 or arrays[0] is not self.params:
            raise ValueError("the optimizer must be built on model.params (one flat array), "
                             "e.g. optim.Adam(model.params, lr=1e-3)")

    def train_step(self, X, y, optimizer):
        """Forward, backward and the optimizer update of one mini-batch; returns the loss.

        One compiled call. With ``skip_nonfinite`` or ``max_grad_norm`` on the optimizer the
        update needs the gradient norm first, so the step runs as ``loss_and_grad`` followed
        by ``optimizer.step(model.grads)`` (two calls, same numbers).
        """
        self._check_optimizer(optimizer)
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        optimizer._refresh_if_edited()
        if optimizer.skip_nonfinite or optimizer.max_grad_norm is not None:
            loss = self._loss_and_grad(X, y)
            optimizer.step(self.grads)
            return loss
        launches, gstates = optimizer._prepare()
        hyper, flags = optimizer._launch_args(launches, 0)
        s0, s1, s2 = optimizer._flat_state[0]
        n = X.shape[0]
        Z, A, D, M = self._workspace(n)
        use_mask = self.dropout > 0
        if use_mask:
            self._draw_masks(M, n)
        kernel = _train_step_kernel(self.loss, optimizer.rule.name)
        loss = kernel(self.grads, Z, A, D, self.params, X, y, M if use_mask else self._empty,
                      self._sizes, self._kind, use_mask, s0, s1, s2, hyper, flags)
        optimizer._commit(gstates)
        return loss

    def __repr__(self):
        extra = f", dropout={self.dropout}" if self.dropout else ""
        return (f"MLP({list(self.sizes)}, activation={self.activation!r}, loss={self.loss!r}, "
                f"dtype={self.dtype.name}{extra}; {self.params.size} parameters)")
