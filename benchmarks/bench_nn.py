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

``fastopt bench asv-report`` adds samples per second (batch / time).
"""

from .common import (BATCH_SIZES, MLP_IMPLS, MLP_LR, NETWORK, TARGETS, batch,
                     require_fastopt_cuda, require_torch_target, torch_device, unsupported)


class MLP:
    """One mini-batch through the seeds' network, fastopt and PyTorch."""

    params = (BATCH_SIZES, TARGETS, MLP_IMPLS)
    param_names = ["batch", "target", "impl"]
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
        from fastopt import nn, optim

        X, y = batch(n)
        model = unsupported(f"nn.MLP(target={target!r})",
                            lambda: nn.MLP(NETWORK, activation="relu", dtype="float32",
                                           seed=0, target=target))
        opt = optim.SGD(model.params, lr=MLP_LR)
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
        torch.manual_seed(0)
        layers = []
        for i, (fi, fo) in enumerate(zip(NETWORK[:-1], NETWORK[1:])):
            layers.append(torch.nn.Linear(fi, fo))
            if i < len(NETWORK) - 2:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=MLP_LR)
        loss_fn = torch.nn.CrossEntropyLoss()
        X, y = batch(n)
        tX, ty = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def forward_backward():
            opt.zero_grad()
            loss = loss_fn(net(tX), ty)
            loss.backward()
            return loss

        def train_step():
            loss = forward_backward()
            opt.step()
            return loss.item()  # the loss on the host, like fastopt's (synchronises)

        def forward():
            with torch.no_grad():
                out = net(tX)
            sync()
            return out

        def forward_backward_synced():
            loss = forward_backward()
            sync()
            return loss

        self.train_step = train_step
        self.forward = forward
        self.forward_backward = forward_backward_synced

    def time_train_step(self, n, target, impl):
        self.train_step()

    def time_forward(self, n, target, impl):
        self.forward()

    def time_forward_backward(self, n, target, impl):
        self.forward_backward()
