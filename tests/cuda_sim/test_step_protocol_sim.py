"""The step protocol on the GPU, in Numba's CUDA simulator (or on a GPU): a schedule that
fails inside a fit chunk leaves model and optimizer exactly as after the step before.

Run by tests/test_cuda.py in a subprocess with NUMBA_ENABLE_CUDASIM=1. Launches are
patched small (a few threads per block) so the simulator stays quick; the host-side
version of these checks is tests/test_step_protocol.py.
"""

import numpy as np
import pytest

from fastopt import nn, optim, train
from fastopt.kernels import cuda as gpu
from tests.test_step_protocol import ALL, CONFIG, FAIL_AT, failing_lr, good_lr

pytestmark = [pytest.mark.skipif(gpu.why_unavailable() is not None,
                                 reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA GPU"),
              pytest.mark.usefixtures("small_mlp_launches")]

SIZES = [4, 5, 3]
N, BATCH = 12, 3  # 4 steps per epoch: the failing step is the second of the second chunk


def fitted(name, lr, **kw):
    """(model, optimizer, error) after fit of a GPU model on a tiny training set."""
    r = np.random.default_rng(0)
    X = r.random((N, SIZES[0])).astype(np.float32)
    y = np.arange(N) % SIZES[-1]
    model = nn.MLP(SIZES, seed=2, target="cuda")
    opt = optim.OPTIMIZERS[name](model.params, lr=lr, **CONFIG[name])
    try:
        train.fit(model, opt, (X, y), batch_size=BATCH, seed=1, progress=False, **kw)
    except Exception as exc:
        return model, opt, exc
    return model, opt, None


def snapshot(model, opt):
    sd = opt.state_dict()
    return model.params.copy_to_host(), sd["state"], sd["steps"], sd["group_state"]


CASES = [(name, "raise") for name in ALL] + [("nadam", "nan"), ("sgd", "nan")]


@pytest.mark.parametrize("name,failure", CASES)
def test_schedule_failing_inside_a_device_fit_chunk_leaves_the_step_before(name, failure):
    model, opt, error = fitted(name, failing_lr(failure), epochs=2)
    assert isinstance(error, RuntimeError if failure == "raise" else ValueError)
    with pytest.raises(type(error), match=f"step {FAIL_AT}"):
        raise error
    ref_model, ref_opt, ref_error = fitted(name, good_lr, max_steps=FAIL_AT)
    assert ref_error is None
    (p, st, steps, gs), (rp, rst, rsteps, rgs) = snapshot(model, opt), snapshot(ref_model,
                                                                               ref_opt)
    assert steps == rsteps == FAIL_AT and gs == rgs
    np.testing.assert_array_equal(p, rp)
    assert st[0].keys() == rst[0].keys()
    for k in st[0]:
        np.testing.assert_array_equal(st[0][k], rst[0][k], err_msg=k)
