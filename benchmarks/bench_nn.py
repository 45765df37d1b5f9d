"""The MLP (``fastopt.nn``): one training step, forward, and forward+backward per batch size.

The seeds' network 784-100-100-100-100-10, ReLU, float32, plain SGD (lr 0.01), on random
data. One class per implementation and target (fastopt and PyTorch, CPU and CUDA; the CUDA
classes are skipped without a GPU, the PyTorch ones without torch), three timings each:

- ``time_train_step``: ``model.train_step(X, y, opt)`` -- forward, backward and the update in
  one compiled call (torch: zero_grad, forward, loss, backward, step).
- ``time_forward``: ``model.forward(X)``, the logits in evaluation mode (torch: under
  ``no_grad``).
- ``time_forward_backward``: ``model.loss_and_grad(X, y)``, the loss and every gradient,
  without the update (torch: zero_grad, forward, loss, backward).

Both networks are built by ``fastopt.bench.definitions`` (``fastopt bench mlp`` times the
same). ``fastopt bench asv-report`` adds samples per second (batch / time) and PyTorch's
time over fastopt's.
"""

from fastopt.bench import definitions, suite

from .common import (MLP_BATCHES, MLP_CUDA_BATCHES, batch, require_fastopt_cuda,
                     require_torch_target, torch_device, unsupported)


class _MLP:
    """One mini-batch through the seeds' network; subclasses build it (``_build``)."""

    param_names = list(suite.MLP_BATCH_PARAMS)
    timeout = 120
    target = "cpu"

    def setup(self, n):
        if getattr(self, "_built", None) == n:
            return  # asv re-runs setup before every sample: keep the built network
        self.train_step, self.forward, self.forward_backward = self._build(n)
        for fn in (self.train_step, self.forward, self.forward_backward):
            fn()  # JIT warm-up (from Numba's cache when it is warm)
        self._built = n

    def time_train_step(self, n):
        self.train_step()

    def time_forward(self, n):
        self.forward()

    def time_forward_backward(self, n):
        self.forward_backward()


class FastoptMLP(_MLP):
    """``fastopt.nn.MLP`` on the CPU."""

    params = [MLP_BATCHES]

    def _build(self, n):
        X, y = batch(n)
        model, opt = definitions.fastopt_mlp()
        return (lambda: model.train_step(X, y, opt), lambda: model.forward(X),
                lambda: model.loss_and_grad(X, y))


class FastoptMLPCUDA(_MLP):
    """``fastopt.nn.MLP(target="cuda")``: the batch on the device once; each call waits."""

    params = [MLP_CUDA_BATCHES]
    target = "cuda"

    def _build(self, n):
        cuda = require_fastopt_cuda()
        X, y = batch(n)
        model, opt = unsupported("nn.MLP(target='cuda')",
                                 lambda: definitions.fastopt_mlp(target="cuda"))
        X, y = cuda.to_device(X), cuda.to_device(y)
        return (lambda: float(model.train_step(X, y, opt)),
                lambda: (model.forward(X), cuda.synchronize()),
                lambda: model.loss_and_grad(X, y))


class TorchMLP(_MLP):
    """The same network in PyTorch on the CPU."""

    params = [MLP_BATCHES]

    def _build(self, n):
        torch = require_torch_target(self.target)
        device = torch_device(torch, self.target)
        torch.manual_seed(0)  # the same weights in every process
        X, y = batch(n)
        net = definitions.torch_mlp(torch, X, y, device=device)
        return net.train_step, net.forward, net.forward_backward


class TorchMLPCUDA(TorchMLP):
    """The same network in PyTorch on a CUDA device; each call waits."""

    params = [MLP_CUDA_BATCHES]
    target = "cuda"
