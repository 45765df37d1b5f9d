"""Shared by the simulator tests: GPU launches patched small, so that tiny inputs still span
several blocks and ragged tiles and the simulator (one Python thread per GPU thread) stays
quick."""

import pytest


@pytest.fixture
def small_mlp_launches(monkeypatch):
    """The MLP's GEMM tile, reduction widths and threads per block, and the update kernels'
    threads per block and block count, patched small."""
    from fastopt.kernels import cuda as gpu
    from fastopt.nn import cuda as gpu_nn

    monkeypatch.setattr(gpu_nn, "TILE", 4)
    monkeypatch.setattr(gpu_nn, "REDUCE_THREADS", 4)
    monkeypatch.setattr(gpu_nn, "BIAS_COLS", 4)
    monkeypatch.setattr(gpu_nn, "BIAS_ROWS", 2)
    monkeypatch.setattr(gpu_nn, "THREADS", 4)
    monkeypatch.setattr(gpu, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(gpu, "MAX_BLOCKS", 2)
