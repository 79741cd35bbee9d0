"""Saving and loading models as a single ``.npz`` file, without pickle.

The file holds one JSON string, ``fastmlp_meta`` (format version,
architecture, dtype, engine and a SHA-256 of every parameter), and one array
per parameter, ``modules.{i}.W`` and ``modules.{i}.W0``. ``np.load(path,
allow_pickle=False)`` reads it. Saving writes a temporary file in the same
folder and renames it over the target, so an interrupted save never leaves a
truncated file where a good one was.
"""

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from .layers import BUILTIN, Linear
from .losses import MSE, NLL

__all__ = ["load", "save"]

FORMAT, VERSION = "fastmlp", 1
LAYERS = {cls.__name__: cls for cls in BUILTIN}
LOSSES = {cls.__name__: cls for cls in (NLL, MSE)}


def save(model, path):
    """Write ``model`` to ``path`` (".npz" is appended if missing); return the path.

    Raises TypeError for a network with a layer or loss of your own: only
    built-in layers can be rebuilt without pickle.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays, modules = {}, []
    for i, m in enumerate(model.modules):
        if type(m) not in LAYERS.values():
            raise TypeError(f"cannot save modules[{i}] ({m!r}): only built-in layers can be saved")
        spec = {"type": type(m).__name__}
        if type(m) is Linear:
            spec.update(m=m.m, n=m.n)
            arrays[f"modules.{i}.W"] = np.ascontiguousarray(m.W, dtype=model.dtype)
            arrays[f"modules.{i}.W0"] = np.ascontiguousarray(m.W0, dtype=model.dtype)
        modules.append(spec)
    if type(model.loss) not in LOSSES.values():
        raise TypeError(f"cannot save loss {model.loss!r}: only NLL and MSE can be saved")
    meta = {
        "format": FORMAT, "version": VERSION, "fastmlp_version": __version__,
        "dtype": model.dtype.name, "engine": model.engine, "modules": modules,
        "loss": type(model.loss).__name__, "sha256": _digest(arrays),
    }
    arrays["fastmlp_meta"] = np.array(json.dumps(meta))
    if not path.parent.is_dir():  # (else the error would name the temporary file)
        raise FileNotFoundError(f"cannot save to {str(path)!r}: folder "
                                f"{str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def load(path, *, engine=None):
    """Rebuild the model saved at ``path``.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save` / :meth:`Sequential.save`.
    engine : {"numba", "numpy"} or None
        Engine of the rebuilt model; None picks the fastest available.

    Raises
    ------
    ValueError
        If the file is not a fastmlp model, is truncated, or its contents do
        not match its description (a parameter changed, missing or reshaped).
    """
    from .sequential import Sequential

    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not a fastmlp model: it holds a single array, not an .npz")
        with npz as f:
            entries = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if "is not a fastmlp model" in str(exc):
            raise
        raise ValueError(f"{path} is not a readable fastmlp model (truncated or corrupt): "
                         f"{exc}") from None
    if "fastmlp_meta" not in entries:
        raise ValueError(f"{path} is not a fastmlp model: it has no fastmlp_meta entry")
    try:
        meta = json.loads(str(entries.pop("fastmlp_meta")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a fastmlp model: unreadable description ({exc})") from None
    arrays = entries
    _check_meta(meta, path)
    if _digest(arrays) != meta["sha256"]:
        raise ValueError(f"{path}: the parameters do not match their checksum "
                         "(the file was modified or damaged)")
    dtype = np.dtype(meta["dtype"])
    modules = []
    for i, spec in enumerate(meta["modules"]):
        if spec["type"] == "Linear":
            W, W0 = arrays.get(f"modules.{i}.W"), arrays.get(f"modules.{i}.W0")
            shapes = ((spec["m"], spec["n"]), (spec["n"], 1))
            if W is None or W0 is None or (W.shape, W0.shape) != shapes or W.dtype != dtype:
                raise ValueError(f"{path}: parameters of modules[{i}] are missing or do not "
                                 f"match Linear({spec['m']}, {spec['n']}) in {dtype}")
            modules.append(Linear.from_arrays(W, W0))
        else:
            modules.append(LAYERS[spec["type"]]())
    return Sequential(modules, LOSSES[meta["loss"]](), engine=engine, dtype=dtype)


def _check_meta(meta, path):
    ok = (
        isinstance(meta, dict) and meta.get("format") == FORMAT
        and meta.get("version") == VERSION
        and meta.get("dtype") in ("float32", "float64")
        and meta.get("loss") in LOSSES
        and isinstance(meta.get("modules"), list) and meta["modules"]
        and all(isinstance(s, dict) and s.get("type") in LAYERS for s in meta["modules"])
        and all(s["type"] != "Linear" or (_positive_int(s.get("m")) and _positive_int(s.get("n")))
                for s in meta["modules"])
        and isinstance(meta.get("sha256"), str)
    )
    if not ok:
        raise ValueError(f"{path} is not a fastmlp model of format version {VERSION}: "
                         f"unexpected description {meta!r:.300}")


def _positive_int(x):
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _digest(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
