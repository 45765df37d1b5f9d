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
import re

import numpy as np

from . import _checks, runs

FORMAT = "fastopt-checkpoint-1"
TMP_NAME = "fastopt"  # save's temporary files: .fastopt-<pid>-<random>.tmp
_LEGACY_TMP = re.compile(r"\.fastopt-[a-z0-9_]{8}\.npz")  # tempfile.mkstemp's, before


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
    _remove_old_temporaries(folder)
    # a temporary .fastopt-<pid>-<random>.tmp in the same folder, synced, then renamed
    with runs.atomic_file(path, "wb", tmp_name=TMP_NAME) as f:
        np.savez(f, **arrays)
    return path


def _remove_old_temporaries(folder, now=None):
    """Temporary files of killed saves: this version's (``.fastopt-<pid>-<random>.tmp``)
    once their writer is gone (``runs.atomic_file`` removes them), and those of earlier
    versions (``.fastopt-XXXXXXXX.npz``, no pid in the name) once an hour old."""
    import time

    now = time.time() if now is None else now
    try:
        legacy = [f for f in os.scandir(folder) if _LEGACY_TMP.fullmatch(f.name)]
    except OSError:
        return
    for entry in legacy:
        try:
            if now - entry.stat().st_mtime > 3600:
                os.unlink(entry.path)
        except OSError:
            pass


def load(path, params, optimizer=None):
    """Restore ``params`` in place (and ``optimizer``'s state) from a checkpoint.

    All or nothing: the file, the number, shapes and dtypes of the arrays, the optimizer's
    class, hyperparameters, state and step counts are all checked (and converted) before
    anything changes; a checkpoint that is refused raises ``ValueError`` or ``TypeError``
    naming the file and what is wrong, and leaves ``params`` and ``optimizer`` exactly as
    they were.
    """
    path = _npz_path(path)
    device = _on_device(params)
    params = (_device_arrays(params) if device else
              _checks.float_arrays("params", params, writeable=True))
    data, meta = _read(path)
    if meta["n_params"] != len(params):
        raise ValueError(f"{path} holds {meta['n_params']} parameter arrays, params has "
                         f"{len(params)}")
    saved = []
    for i, p in enumerate(params):
        value = data.get(f"param/{i}")
        if value is None:
            raise ValueError(f"{path} lacks the entry param/{i}: it was not written by "
                             "fastopt.save; use another checkpoint")
        if value.shape != p.shape or value.dtype != p.dtype:
            raise ValueError(f"parameter {i} in {path} is {value.dtype}{list(value.shape)}, "
                             f"params[{i}] is {p.dtype}{list(p.shape)}")
        saved.append(value)

    if optimizer is not None:
        sd = meta["optimizer"]
        if sd is None:
            raise ValueError(f"{path} holds no optimizer state; call load(path, params) "
                             "without an optimizer")
        sd = dict(sd, state=_state_arrays(path, data, meta["n_params"]))
        try:  # all or nothing: a refused state dict changes nothing
            optimizer.load_state_dict(sd)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    # everything checked, the optimizer restored: the copies below cannot fail on the file
    for p, value in zip(params, saved):
        if device:
            p.copy_to_device(np.ascontiguousarray(value))
        else:
            np.copyto(p, value)


def _read(path):
    """(arrays by entry name, meta dict) of the checkpoint at ``path``; ValueError naming
    the file for anything that is not a checkpoint fastopt.save wrote."""
    import zipfile

    unreadable = (f"{path} is not a readable fastopt checkpoint ({{}}); it is truncated, "
                  "damaged or not written by fastopt.save: use another checkpoint, or save "
                  "again")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04":  # a zip archive, as np.savez writes; nothing else is read
            why = "the file is empty" if not head else "it is not an .npz archive"
            raise ValueError(unreadable.format(why))
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError) as exc:
        if str(exc).startswith(path):
            raise
        why = "an entry holds Python objects" if "pickle" in str(exc) else \
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'cut short'}"
        raise ValueError(unreadable.format(why)) from None
    if "meta" not in data:
        raise ValueError(f"{path} is not a fastopt checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(data.pop("meta")))
    except ValueError as exc:
        raise ValueError(unreadable.format(f"its meta entry is not JSON: {exc}")) from None
    if not isinstance(meta, dict):
        raise ValueError(unreadable.format("its meta entry is not a JSON object"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    n = meta.get("n_params")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(unreadable.format(f"meta n_params is {n!r}, not a positive integer"))
    if meta.get("optimizer") is not None and not isinstance(meta["optimizer"], dict):
        raise ValueError(unreadable.format("meta optimizer is not a JSON object"))
    meta.setdefault("optimizer", None)
    return data, meta


def _state_arrays(path, data, n_params):
    """{array index: {state name: array}} from the entries ``state/<i>/<name>``."""
    state = {i: {} for i in range(n_params)}
    for key, value in data.items():
        if key.startswith("state/"):
            _, i, name = (key.split("/", 2) + ["", ""])[:3]
            if not i.isdigit() or int(i) >= n_params or not name:
                raise ValueError(f"{path} has an entry {key!r}, which is not "
                                 "state/<parameter index>/<name>: it was not written by "
                                 "fastopt.save; use another checkpoint")
            state[int(i)][name] = value
    return state
