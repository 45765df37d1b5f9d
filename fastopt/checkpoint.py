"""Checkpoints: parameters and optimizer state in one ``.npz`` that loads without pickle.

Layout of the archive (every entry a plain array, so ``np.load(path, allow_pickle=False)``
reads it):

    meta                      0-d str: JSON with the format version, the optimizer's class,
                              convention, step counts, hyperparameters and host scalars
    param/<i>                 parameter i
    state/<i>/<name>          optimizer state array <name> of parameter i

``save`` writes to a temporary file in the same folder and renames it over ``path``, so a
crash never leaves a half-written checkpoint. ``load`` checks everything (optimizer class,
number, shapes and dtypes of the arrays, state names) before it changes anything, then
restores the parameters and the optimizer state in place. Resuming gives bitwise the same
numbers as never stopping. Parameters on the GPU (and their optimizer's state) are copied
to the file and back.
"""

import json
import os
import tempfile

import numpy as np

from . import _checks

FORMAT = "fastopt-checkpoint-1"


def _on_device(params):
    """True if params is a GPU array or a non-empty list of them."""
    if _checks.is_device_array(params):
        return True
    return (isinstance(params, (list, tuple)) and len(params) > 0
            and all(_checks.is_device_array(p) for p in params))


def _device_arrays(params):
    from .kernels import cuda as gpu

    items = [params] if _checks.is_device_array(params) else list(params)
    return [gpu.device_array(f"params[{i}]", p) for i, p in enumerate(items)]


def _npz_path(path):
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save(path, params, optimizer=None):
    """Save ``params`` (array or list of arrays) and ``optimizer``'s state to ``path``.

    ``.npz`` is appended to ``path`` if missing; the final path is returned.
    """
    path = _npz_path(path)
    if _on_device(params):  # GPU arrays (optimizer state too) are copied to the file
        params = [p.copy_to_host() for p in _device_arrays(params)]
    else:
        params = _checks.float_arrays("params", params, writeable=False)
    arrays = {f"param/{i}": p for i, p in enumerate(params)}
    meta = {"format": FORMAT, "n_params": len(params), "optimizer": None}
    if optimizer is not None:
        sd = optimizer.state_dict()
        for i, st in sd.pop("state").items():
            for name, value in st.items():
                arrays[f"state/{i}/{name}"] = value
        meta["optimizer"] = sd
    arrays["meta"] = np.array(json.dumps(meta))

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastopt-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path, params, optimizer=None):
    """Restore ``params`` in place (and ``optimizer``'s state) from a checkpoint.

    Raises ``ValueError`` naming the mismatch, and changes nothing, if the checkpoint holds
    another optimizer, another number of arrays, or arrays of another shape or dtype.
    """
    path = _npz_path(path)
    device = _on_device(params)
    params = (_device_arrays(params) if device else
              _checks.float_arrays("params", params, writeable=True))
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    try:
        meta = json.loads(str(data.pop("meta")))
    except KeyError:
        raise ValueError(f"{path} is not a fastopt checkpoint (no 'meta' entry)") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta["n_params"] != len(params):
        raise ValueError(f"{path} holds {meta['n_params']} parameter arrays, params has "
                         f"{len(params)}")
    for i, p in enumerate(params):
        saved = data[f"param/{i}"]
        if saved.shape != p.shape or saved.dtype != p.dtype:
            raise ValueError(f"parameter {i} in {path} is {saved.dtype}{list(saved.shape)}, "
                             f"params[{i}] is {p.dtype}{list(p.shape)}")

    if optimizer is not None:
        sd = meta["optimizer"]
        if sd is None:
            raise ValueError(f"{path} holds no optimizer state; call load(path, params) "
                             "without an optimizer")
        state = {}
        for key, value in data.items():
            if key.startswith("state/"):
                _, i, name = key.split("/", 2)
                state.setdefault(int(i), {})[name] = value
        for i in range(meta["n_params"]):
            state.setdefault(i, {})
        sd["state"] = state
        optimizer.load_state_dict(sd)  # validates everything before changing anything

    for i, p in enumerate(params):
        if device:
            p.copy_to_device(np.ascontiguousarray(data[f"param/{i}"]))
        else:
            np.copyto(p, data[f"param/{i}"])
