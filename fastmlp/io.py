"""Saving and loading models as a single ``.npz`` file, without pickle.

The file holds one JSON string, ``fastmlp_meta`` (format version,
architecture, dtype, engine and a SHA-256 of every parameter), and one array
per parameter, ``modules.{i}.W`` and ``modules.{i}.W0``. ``np.load(path,
allow_pickle=False)`` reads it. Saving writes a temporary file in the same
folder and renames it over the target, so an interrupted save never leaves a
truncated file where a good one was.

Loading trusts nothing in the file: the description is checked (size,
nesting, contents) first, then every array's ``.npy`` header against the
description and against the zip member's real size, all before any array is
read; so a small hostile file cannot make :func:`load` allocate more than
the model it describes, and every malformed file raises one ValueError.
"""

import contextlib
import glob
import hashlib
import json
import math
import os
import re
import secrets
import stat
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import __version__
from .layers import BUILTIN, Linear
from .losses import MSE, NLL

__all__ = ["check_save_path", "read", "save"]

FORMAT, VERSION = "fastmlp", 1
LAYERS = {cls.__name__: cls for cls in BUILTIN}
LOSSES = {cls.__name__: cls for cls in (NLL, MSE)}

#: Limits of :func:`load`, checked before the data they bound is read.
#:
#: Longest JSON description, in characters (a 1,000-layer network needs
#: about 40,000).
MAX_DESCRIPTION_CHARS = 100_000
#: Deepest nesting of ``[`` and ``{`` in the description (a valid one nests 3 deep).
MAX_DESCRIPTION_DEPTH = 16
#: Most bytes of parameters a model file may declare in total: 4 GiB
#: (500 million float64 weights).
MAX_MODEL_BYTES = 2**32
#: deflate packs at most 1032 bytes into one: a zip member declaring more is
#: rejected before it is decompressed.
DEFLATE_MAX_RATIO = 1032
#: A ``.NAME.*.tmp`` file left beside NAME by a killed save is removed by the
#: next save to NAME once it is this many seconds old (a save in progress
#: writes to its file continuously, so it is never that old).
STALE_TEMP_SECONDS = 60

META = "fastmlp_meta"
_CHUNK = 1 << 20  # bytes read at a time
_TEMP_TOKEN = r"[A-Za-z0-9_]{8}"  # (tempfile.mkstemp's names, and ours)


def save(model, path):
    """Write ``model`` to ``path`` (".npz" is appended if missing); return the path.

    The write is atomic (a temporary file in the same folder, renamed over
    the target), leaves no temporary file behind when it fails, and removes
    stale ones a killed save left for the same target. A new file gets the
    permissions the umask allows (``0o666 & ~umask``); an overwritten file
    keeps its mode.

    Raises
    ------
    TypeError
        For a network with a layer or loss of your own: only built-in layers
        can be rebuilt without pickle.
    ValueError
        If ``path`` is empty.
    IsADirectoryError
        If ``path`` is (or ends with a separator as) a folder.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    path = check_save_path(path)
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
    arrays[META] = np.array(json.dumps(meta))
    _remove_stale_temporaries(path)
    _write_atomically(path, arrays)
    return path


def check_save_path(path):
    """Return the file :func:`save` writes for ``path``, or raise why it cannot.

    ".npz" is appended if missing. Checks, without writing anything, that
    ``path`` names a file (not empty, not a folder) in an existing, writable
    folder; the command line calls it before training.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise ValueError(f"cannot save to {text!r}: the path is empty; give a file name "
                         "such as 'model.npz'")
    path = Path(text)
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if text.endswith(seps) or path.is_dir() or path.name in ("", ".", ".."):
        raise IsADirectoryError(f"cannot save to {text!r}: it is a folder; give a file name "
                                f"such as {str(path / 'model.npz')!r}")
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {str(path)!r}: it is a folder")
    if not path.parent.is_dir():  # (else the error would name the temporary file)
        raise FileNotFoundError(f"cannot save to {str(path)!r}: folder "
                                f"{str(path.parent)!r} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"cannot save to {str(path)!r}: folder "
                              f"{str(path.parent)!r} is not writable")
    return path


def _write_atomically(path, arrays):
    """``np.savez`` to a temporary file beside ``path``, then rename it over ``path``."""
    mode = _mode_for(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)


def _mode_for(path):
    """The permission bits of the file being overwritten, or None (keep the umask's)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def _create_temporary(path):
    """Create ``.NAME.XXXXXXXX.tmp`` beside ``path``: mode 0o666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {str(path)!r}")


def _remove_stale_temporaries(path):
    """Remove ``.NAME.XXXXXXXX.tmp`` files a killed save to ``path`` left behind."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_TEMP_TOKEN}\.tmp")
    prefix = os.path.join(glob.escape(str(path.parent)), glob.escape(f".{path.name}."))
    now = time.time()
    for name in glob.glob(prefix + "*.tmp"):
        if not pattern.fullmatch(os.path.basename(name)):
            continue
        with contextlib.suppress(OSError):
            st = os.lstat(name)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TEMP_SECONDS:
                os.unlink(name)


def _sync_folder(folder):
    """fsync ``folder`` so the rename survives a crash (POSIX; best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read(path, *, allow_nonfinite=False):
    """Read and check a model file: ``(modules, loss, dtype, nonfinite)``.

    The layers are built with the saved weights, except layers whose saved
    weights are not finite (read only with ``allow_nonfinite``): those get
    zeros, and ``nonfinite`` lists ``(layer, W, W0)`` to write in after the
    model is built (a model refuses non-finite weights).
    :func:`fastmlp.load` builds the model; see there for the errors.
    """
    if not isinstance(allow_nonfinite, (bool, np.bool_)):
        raise TypeError(f"allow_nonfinite must be True or False; got {allow_nonfinite!r}")
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ValueError(f"{path} is not a fastmlp model: it holds a single array, "
                             "not an .npz")
        size = os.fstat(f.fileno()).st_size
        with _unreadable_is_value_error(path):
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                meta, arrays = _read_model(zf, path, size)
    if not allow_nonfinite:
        _check_finite(arrays, path)
    dtype = np.dtype(meta["dtype"])
    modules, nonfinite = [], []
    for i, spec in enumerate(meta["modules"]):
        if spec["type"] != "Linear":
            modules.append(LAYERS[spec["type"]]())
            continue
        W, W0 = arrays[f"modules.{i}.W"], arrays[f"modules.{i}.W0"]
        if np.isfinite(W).all() and np.isfinite(W0).all():
            modules.append(Linear.from_arrays(W, W0))
        else:
            modules.append(Linear.from_arrays(np.zeros_like(W), np.zeros_like(W0)))
            nonfinite.append((modules[-1], W, W0))
    return modules, LOSSES[meta["loss"]](), dtype, nonfinite


@contextlib.contextmanager
def _unreadable_is_value_error(path):
    """Turn the errors of a damaged zip file into one ValueError naming ``path``."""
    try:
        yield
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError,
            NotImplementedError, RuntimeError, struct.error, UnicodeError,
            OverflowError) as exc:
        raise ValueError(f"{path} is not a readable fastmlp model (truncated or corrupt): "
                         f"{type(exc).__name__}: {exc}") from None


def _read_model(zf, path, size):
    """(description, arrays) of an open model file, each checked before it is read."""
    members = _members(zf, path, size)
    if META not in members:
        raise ValueError(f"{path} is not a fastmlp model: it has no {META} entry")
    meta = _read_meta(zf, members.pop(META), path)
    expected = _expected_arrays(meta)
    extra = sorted(set(members) - set(expected))
    if extra:
        raise ValueError(f"{path}: unexpected entries {extra[:5]} (a fastmlp model holds "
                         f"{META} and the parameters of its Linear layers only)")
    missing = sorted(set(expected) - set(members))
    if missing:
        raise ValueError(f"{path}: parameters {missing[:5]} are missing (the description "
                         f"lists {len(expected)} arrays)")
    headers = {key: _array_header(zf, members[key], path) for key in expected}
    _check_headers(headers, expected, meta, path)
    arrays = {key: _read_array(zf, members[key], headers[key], path) for key in expected}
    if _digest(arrays) != meta["sha256"]:
        raise ValueError(f"{path}: the parameters do not match their checksum "
                         "(the file was modified or damaged)")
    return meta, arrays


def _members(zf, path, size):
    """``{array name: ZipInfo}``, each member's sizes checked against the file's."""
    members = {}
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy") or name[:-4] in members:
            raise ValueError(f"{path} is not a fastmlp model: unexpected or repeated entry "
                             f"{name!r:.80}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{path}: entry {name!r:.80} uses an unsupported compression "
                             f"(method {info.compress_type}; expected stored or deflate)")
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else DEFLATE_MAX_RATIO
        if info.compress_size > size or info.file_size > ratio * info.compress_size + 64:
            raise ValueError(f"{path}: entry {name!r:.80} declares {info.file_size:,} bytes "
                             f"({info.compress_size:,} compressed) in a file of {size:,} "
                             "bytes: truncated or corrupt")
        members[name[:-4]] = info
    return members


def _read_meta(zf, info, path):
    """The JSON description, checked for size, nesting and contents."""
    header = _array_header(zf, info, path)
    shape, _, dtype = header[:3]
    if shape != () or dtype.kind != "U":
        raise ValueError(f"{path} is not a fastmlp model: {META} is an array of dtype "
                         f"{dtype} and shape {shape}, not a string")
    if dtype.itemsize // 4 > MAX_DESCRIPTION_CHARS:
        raise ValueError(f"{path}: the description is {dtype.itemsize // 4:,} characters "
                         f"long; the limit is {MAX_DESCRIPTION_CHARS:,} "
                         "(fastmlp.io.MAX_DESCRIPTION_CHARS)")
    raw = _read_array(zf, info, header, path).tobytes()
    big = dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
    codec = "utf-32-be" if big else "utf-32-le"
    try:  # (Python's codec, not NumPy's str(), which lets invalid code points through)
        text = raw.decode(codec).rstrip("\0")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a fastmlp model: unreadable description "
                         f"({exc})") from None
    depth = _json_depth(text)
    if depth > MAX_DESCRIPTION_DEPTH:
        raise ValueError(f"{path} is not a fastmlp model: its description nests {depth} "
                         f"levels deep; the limit is {MAX_DESCRIPTION_DEPTH}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:  # (JSONDecodeError, or an int too long)
        raise ValueError(f"{path} is not a fastmlp model: unreadable description "
                         f"({type(exc).__name__}: {exc})") from None
    _check_meta(meta, path)
    return meta


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_depth(text):
    """The deepest nesting of brackets and braces in JSON ``text``, strings aside."""
    codes = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "replace"), np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


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
    itemsize = np.dtype(meta["dtype"]).itemsize
    nbytes = sum((s["m"] + 1) * s["n"] * itemsize for s in meta["modules"]
                 if s["type"] == "Linear")
    if nbytes > MAX_MODEL_BYTES:
        raise ValueError(f"{path}: the description declares {nbytes:,} bytes of parameters; "
                         f"the limit is {MAX_MODEL_BYTES:,} (fastmlp.io.MAX_MODEL_BYTES)")


def _positive_int(x):
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _expected_arrays(meta):
    """``{name: shape}`` of the parameters the description lists, in order."""
    expected = {}
    for i, spec in enumerate(meta["modules"]):
        if spec["type"] == "Linear":
            expected[f"modules.{i}.W"] = (spec["m"], spec["n"])
            expected[f"modules.{i}.W0"] = (spec["n"], 1)
    return expected


def _array_header(zf, info, path):
    """(shape, fortran_order, dtype, header bytes) of a ``.npy`` member, read from its
    first bytes only, and checked against the member's declared size."""
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran, dtype = read(f)
            offset = f.tell()
        except Exception as exc:  # (numpy parses the header with tokenize and ast)
            raise ValueError(f"{path}: entry {info.filename!r:.80} is not a readable .npy "
                             f"array: {type(exc).__name__}: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"{path}: entry {info.filename!r:.80} holds Python objects")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise ValueError(f"{path}: entry {info.filename!r:.80} declares shape {shape} and "
                         f"dtype {dtype}, {nbytes:,} bytes, but holds "
                         f"{info.file_size - offset:,}: truncated or corrupt")
    return shape, fortran, dtype, offset


def _check_headers(headers, expected, meta, path):
    dtype = np.dtype(meta["dtype"])
    for key, shape in expected.items():
        got_shape, fortran, got_dtype = headers[key][:3]
        if got_shape != shape or got_dtype != dtype or (fortran and len(shape) > 1):
            i = int(key.split(".")[1])
            spec = meta["modules"][i]
            raise ValueError(f"{path}: parameters of modules[{i}] do not match "
                             f"Linear({spec['m']}, {spec['n']}) in {dtype}: {key} has shape "
                             f"{got_shape} and dtype {got_dtype}, expected {shape} and {dtype}")


def _read_array(zf, info, header, path):
    """Read the member's data (exactly the bytes its header declares) in chunks."""
    shape, fortran, dtype, offset = header
    arr = np.empty(shape, dtype, order="F" if fortran else "C")
    out = memoryview(arr.reshape(-1, order="A").view(np.uint8))
    with zf.open(info) as f:
        f.read(offset)
        done = 0
        while done < len(out):
            n = f.readinto(out[done:done + _CHUNK])
            if not n:
                raise ValueError(f"{path}: entry {info.filename!r:.80} is truncated")
            done += n
    return arr


def _check_finite(arrays, path):
    for key, arr in arrays.items():
        if not np.isfinite(arr).all():
            i, name = key.split(".")[1:]
            raise ValueError(f"{path}: {name} of modules[{i}] holds NaN or infinity (a "
                             "diverged model?); pass allow_nonfinite=True to load it anyway")


def _digest(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()
