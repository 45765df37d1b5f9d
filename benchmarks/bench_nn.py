"""The MLP (``fastopt.nn``): one training step, forward, and forward+backward per batch size.

The seeds' network 784-100-100-100-100-10, ReLU, float32, plain SGD (lr 0.01), on random
data. Three timings per batch size, each next to the same work in PyTorch (``impl="torch"``:
``nn.Sequential`` of Linear/ReLU, ``CrossEntropyLoss``, ``torch.optim.SGD``):

- ``time_train_step``: ``model.train_step(X, y, opt)`` -- forward, backward and the update in
  one compiled call (torch: zero_grad, forward, loss, backward, step).
- ``time_forward``: ``model.forward(X)``, the logits in evaluation mode (torch: under
  ``no_grad``).
- ``time_forward_backward``: ``model.loss_and_grad(X, y)``, the loss and every gradient,
  without the update (torch: zero_grad, forward, loss, backward).

Both networks are built by ``fastopt.bench.definitions`` (``fastopt bench mlp`` times the
same). ``fastopt bench asv-report`` adds samples per second (batch / time).
"""

from fastopt.bench import definitions, suite

from .common import (BATCH_SIZES, MLP_IMPLS, TARGETS, batch, require_fastopt_cuda,
                     require_torch_target, torch_device, unsupported)


class MLP:
    """One mini-batch through the seeds' network, fastopt and PyTorch."""

    params = (BATCH_SIZES, TARGETS, MLP_IMPLS)
    param_names = list(suite.MLP_PARAMS)
    timeout = 120

    def setup(self, n, target, impl):
        if impl == "fastopt":
            self._setup_fastopt(n, target)
        else:
            self._setup_torch(n, target)
        for fn in (self.train_step, self.forward, self.forward_backward):
            fn()  # JIT warm-up (from Numba's cache when it is warm)

    def _setup_fastopt(self, n, target):
        cuda = require_fastopt_cuda() if target == "cuda" else None
        X, y = batch(n)
        model, opt = unsupported(f"nn.MLP(target={target!r})",
                                 lambda: definitions.fastopt_mlp(target=target))
        if cuda is not None:  # the batch on the device once, like torch's; each call waits
            X, y = cuda.to_device(X), cuda.to_device(y)
            self.train_step = lambda: float(model.train_step(X, y, opt))
            self.forward = lambda: (model.forward(X), cuda.synchronize())
        else:
            self.train_step = lambda: model.train_step(X, y, opt)
            self.forward = lambda: model.forward(X)
        self.forward_backward = lambda: model.loss_and_grad(X, y)

    def _setup_torch(self, n, target):
        torch = require_torch_target(target)
        device = torch_device(torch, target)
        torch.manual_seed(0)  # the same weights in every process
        X, y = batch(n)
        net = definitions.torch_mlp(torch, X, y, device=device)
        self.train_step = net.train_step
        self.forward = net.forward
        self.forward_backward = net.forward_backward

    def time_train_step(self, n, target, impl):
        self.train_step()

    def time_forward(self, n, target, impl):
        self.forward()

    def time_forward_backward(self, n, target, impl):
        self.forward_backward()
