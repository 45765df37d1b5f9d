"""Benchmarks of fastopt next to its peers: one definition, two front-ends.

``definitions`` builds what is measured, once: fastopt's optimizer step and MLP, the
peers (NumPy reference, torch.optim, the same MLP in PyTorch), the cold-start child
program, the per-optimizer facts, sizes and step counts. ``suite`` names the asv suite's
benchmarks as their results do. Both front-ends use them:

- the asv suite in benchmarks/ (tracking across commits; ``fastopt bench asv-report``,
  in ``fastopt.asvreport``, turns its results into tables and figures);
- the quick tables without asv, fastopt next to its peers in the same process:

``python -m fastopt bench update``     every optimizer x N, fastopt vs NumPy vs torch.optim
``python -m fastopt bench crossover``  serial vs prange kernels: where threads start to pay
``python -m fastopt bench mlp``        MLP train_step vs PyTorch and numpy's GEMMs
``python -m fastopt bench coldstart``  import and first train_step in a new process, with an
                                       empty and with a warm Numba cache
``python -m fastopt bench gpu``        on a CUDA GPU: Adam step vs device copy and torch fused,
                                       MLP train_step vs PyTorch on CUDA

(modules ``update``, ``mlp``, ``coldstart``, ``gpu``; timing in ``timing``; the command in
``command``). Importing this package loads neither numba nor torch.
"""

from .coldstart import bench_coldstart
from .definitions import BENCH_HYPER, NETWORK, TORCH_FUSED, TORCH_NAMES
from .gpu import bench_gpu, require_gpu
from .mlp import bench_mlp, step_flops
from .timing import interleaved
from .update import bench_crossover, bench_update

__all__ = ["BENCH_HYPER", "NETWORK", "TORCH_FUSED", "TORCH_NAMES", "bench_coldstart",
           "bench_crossover", "bench_gpu", "bench_mlp", "bench_update", "interleaved",
           "require_gpu", "step_flops"]
