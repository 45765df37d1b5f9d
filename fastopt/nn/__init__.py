"""Neural networks on flat parameter buffers: the MLP and its forward/backward kernels."""

from .kernels import ACTIVATIONS, LOSSES
from .mlp import MLP

__all__ = ["MLP", "ACTIVATIONS", "LOSSES"]
