"""Datasets: MNIST from the files people have, scikit-learn's digits, one-hot labels,
and a deterministic synthetic problem.

Every loader returns data in the layout the caller asks for:

* ``layout="columns"`` (the notebook's, for :class:`~fastmlp.Sequential`):
  ``X`` of shape (features, samples) and ``Y`` one-hot, (classes, samples);
* ``layout="rows"`` (scikit-learn's, for the estimators): ``X`` of shape
  (samples, features) and ``y`` integer labels, (samples,).

Column-layout arrays are transposes of row-major arrays (Fortran-ordered), so
each sample is contiguous, which is what the fused training loops read.
"""

import collections
import contextlib
import gzip
import math
import os
import pickle
import pickletools
import struct
import zlib
from pathlib import Path

import numpy as np

from ._validation import as_rng, check_dtype, check_int, check_positive_float, draw_indices

__all__ = ["load_digits", "load_mnist", "make_blobs", "one_hot", "read_idx"]

#: Limits on what the MNIST loaders read, checked against each file's header
#: before anything is allocated or decompressed (raise them by assigning to
#: ``fastmlp.datasets.MAX_...`` before loading a larger dataset).
#:
#: Largest IDX payload (the bytes after the header) of one file: 1 GiB. MNIST's
#: training images are 47 MB, EMNIST ByClass's 547 MB.
MAX_IDX_BYTES = 2**30
#: Largest decompressed ``mnist.pkl.gz``: 1 GiB (the deeplearning.net file is 220 MB).
MAX_PICKLE_BYTES = 2**30
#: Most opcodes, and highest memo index, in an ``mnist.pkl.gz`` (the real file has
#: about 100): bounds the unpickler's stack and memo, which a small hostile
#: pickle could otherwise grow to gigabytes.
MAX_PICKLE_OPCODES = 100_000
#: deflate packs at most 1032 bytes into one, so a gzip file of n bytes cannot
#: hold an IDX file longer than 1032 n bytes: a header saying otherwise is
#: rejected before decompressing.
DEFLATE_MAX_RATIO = 1032

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes read or decompressed at a time

LAYOUTS = ("columns", "rows")

#: IDX type codes (third byte of the magic number) and their dtypes.
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def one_hot(labels, n_classes=None, dtype=np.float64):
    """Return the one-hot matrix of integer ``labels``, shape (n_classes, samples).

    Parameters
    ----------
    labels : array-like of int, shape (samples,)
        Class indices in ``range(n_classes)``.
    n_classes : int, optional
        Number of classes; default ``max(labels) + 1``.
    dtype : float32 or float64, default float64
    """
    labels = np.asarray(labels)
    if labels.size == 0:  # ([] is float64 to NumPy)
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D array of integers; got dtype {labels.dtype} "
                         f"and shape {labels.shape}")
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    n_classes = check_int(n_classes, "n_classes", 1)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}); got values from "
                         f"{labels.min()} to {labels.max()}")
    Y = np.zeros((labels.size, n_classes), dtype=check_dtype(dtype))
    Y[np.arange(labels.size), labels] = 1
    return Y.T


def read_idx(path):
    """Return the array stored in an IDX file (gzipped or not).

    The header (magic number and dimensions) is checked against the file
    before any data is allocated or decompressed: a payload larger than
    :data:`MAX_IDX_BYTES`, a raw file whose length differs from what its
    dimensions need, or a gzip file too small to hold them (deflate packs at
    most :data:`DEFLATE_MAX_RATIO` bytes into one) is rejected at once. The
    data is then read in bounded chunks, exactly as many bytes as declared.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray
        The array, with the file's (big-endian) dtype.

    Raises
    ------
    ValueError
        Naming the file and the problem, for any malformed, truncated,
        over-long or corrupt-gzip file, or floating-point data holding NaN
        or infinity.
    """
    with _IdxFile(path) as idx:
        return idx.read()


class _IdxFile:
    """An open IDX file, gzipped or not, whose header has been read and checked.

    Attributes ``path``, ``dtype`` and ``shape``; :meth:`read` reads the data.
    Use as a context manager.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._raw = open(self.path, "rb")  # (closed by close(), or __exit__)
        try:
            self.size = os.fstat(self._raw.fileno()).st_size
            self.gz = self._raw.read(2) == GZIP_MAGIC
            self._raw.seek(0)
            self._f = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gz else self._raw
            with _gzip_errors(self.path):
                self._read_header()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Close the file."""
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _read_header(self):
        magic = self._f.read(4)
        if len(magic) < 4 or magic[0] or magic[1] or magic[2] not in IDX_TYPES:
            shown = magic.hex() or "(empty file)"
            raise ValueError(f"{self.path} is not an IDX file: bad magic number {shown}")
        ndim = magic[3]
        if ndim == 0:
            raise ValueError(f"{self.path}: IDX header declares 0 dimensions (expected 1 or more)")
        dims = self._f.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise ValueError(f"{self.path}: IDX header declares {ndim} dimensions but the "
                             f"{self._what} is {4 + len(dims)} bytes long")
        self.dtype = np.dtype(IDX_TYPES[magic[2]])
        self.shape = struct.unpack(f">{ndim}I", dims)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self.expected = 4 + 4 * ndim + self.nbytes
        self._check_declared_size()

    @property
    def _what(self):
        return "decompressed data" if self.gz else "file"

    def _check_declared_size(self):
        path, shape, expected = self.path, self.shape, self.expected
        if self.nbytes > MAX_IDX_BYTES:
            raise ValueError(f"{path}: IDX header declares dimensions {shape}, {self.nbytes:,} "
                             f"bytes of data; the limit is {MAX_IDX_BYTES:,} bytes "
                             "(fastmlp.datasets.MAX_IDX_BYTES)")
        if not self.gz and self.size != expected:
            what = "truncated" if self.size < expected else "longer than its header says"
            raise ValueError(f"{path}: IDX data is {what}: dimensions {shape} need {expected} "
                             f"bytes, the file has {self.size}")
        if self.gz and expected > DEFLATE_MAX_RATIO * self.size:
            raise ValueError(f"{path}: IDX header declares dimensions {shape} ({expected:,} "
                             f"bytes) but {self.size:,} bytes of gzip data can hold at most "
                             f"{DEFLATE_MAX_RATIO * self.size:,}: truncated or not an IDX file")

    def read(self):
        """Read and return the data (exactly the declared number of bytes)."""
        arr = np.empty(self.shape, self.dtype)
        with _gzip_errors(self.path):
            got = _read_into(self._f, arr.reshape(-1).view(np.uint8))
            extra = self._f.read(1) if self.gz else b""  # (and gzip checks its CRC)
        if got < self.nbytes or extra:
            what = "truncated" if got < self.nbytes else "longer than its header says"
            has = f"{self.expected - self.nbytes + got}" if got < self.nbytes else "more"
            raise ValueError(f"{self.path}: IDX data is {what}: dimensions {self.shape} need "
                             f"{self.expected} bytes, the {self._what} has {has}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = arr.size - np.count_nonzero(np.isfinite(arr))
            raise ValueError(f"{self.path}: IDX data holds {bad} NaN or infinite values "
                             "(expected finite numbers)")
        return arr


def _read_into(f, out):
    """Fill the uint8 array ``out`` from stream ``f`` in bounded chunks; return the count."""
    view = memoryview(out)
    done = 0
    while done < len(view):
        n = f.readinto(view[done:done + _CHUNK])
        if not n:
            break
        done += n
    return done


@contextlib.contextmanager
def _gzip_errors(path):
    """Turn the errors of a corrupt gzip stream into one ValueError naming ``path``."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: corrupt gzip data ({type(exc).__name__}: {exc})") from None


def load_mnist(path, subset="train", *, layout="columns", dtype=np.float32):
    """Load MNIST with pixels scaled to [0, 1].

    Parameters
    ----------
    path : str or Path
        A folder holding the standard IDX files (``train-images-idx3-ubyte``
        and friends, gzipped or not), or the ``mnist.pkl.gz`` of the
        deeplearning.net tutorials (notebook 003).
    subset : {"train", "test"} or "valid"
        Which part; "valid" exists only in ``mnist.pkl.gz`` (whose "train" is
        the first 50,000 images).
    layout : {"columns", "rows"}, default "columns"
        "columns": ``X`` (784, samples) and one-hot ``Y`` (10, samples), for
        Sequential. "rows": ``X`` (samples, 784) and labels ``y`` (samples,).
    dtype : float32 or float64, default float32

    Returns
    -------
    X, Y : ndarray

    Raises
    ------
    FileNotFoundError
        If ``path`` or one of the IDX files does not exist.
    ValueError
        Naming the file and the problem, for any malformed file (see
        :func:`read_idx` and the limits :data:`MAX_IDX_BYTES`,
        :data:`MAX_PICKLE_BYTES` and :data:`MAX_PICKLE_OPCODES`), images and
        labels of different counts, labels outside 0-9, or pixels that are
        neither uint8 (scaled by 1/255) nor floating point in [0, 1] (used as
        stored). Signed integer pixels (IDX types int8, int16, int32) are
        rejected: their scale is unknown.

    Notes
    -----
    Headers and declared sizes are checked before the bulk of a file is
    decompressed or allocated, so a small hostile file cannot make this
    function allocate more than its limits; ``mnist.pkl.gz`` is read by an
    unpickler that builds only numeric arrays, tuples and lists.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    dtype = check_dtype(dtype)
    if path.is_file():
        images, labels = _mnist_pickle(path, subset)
    elif path.is_dir():
        images, labels = _mnist_idx(path, subset)
    else:
        raise FileNotFoundError(f"no MNIST data at {path}: expected a folder of IDX files "
                                "or an mnist.pkl.gz file")
    X = images.reshape(len(images), -1).astype(dtype)
    if images.dtype == np.uint8:
        X /= 255
    return _arrange(X, labels.astype(np.int64), 10, layout, dtype)


def _mnist_idx(folder, subset):
    if subset not in MNIST_FILES:
        raise ValueError(f"subset must be 'train' or 'test' for IDX files; got {subset!r}")
    paths = [_idx_path(folder, stem) for stem in MNIST_FILES[subset]]
    with _IdxFile(paths[0]) as images_file, _IdxFile(paths[1]) as labels_file:
        images_shape, labels_shape = images_file.shape, labels_file.shape
        if (len(images_shape) != 3 or len(labels_shape) != 1
                or images_shape[0] != labels_shape[0]):
            raise ValueError(f"{folder}: MNIST images {images_shape} and labels {labels_shape} "
                             "do not match (expected (n, 28, 28) and (n,))")
        _check_pixel_dtype(images_file.dtype, images_file.path)
        _check_label_dtype(labels_file.dtype, labels_file.path)
        images, labels = images_file.read(), labels_file.read()
    _check_pixels(images, images_file.path)
    _check_labels(labels, labels_file.path)
    return images, labels


def _idx_path(folder, stem):
    candidates = [folder / f"{stem}.gz", folder / stem]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{folder} has no {stem}[.gz]")
    return found


def _check_pixel_dtype(dtype, source):
    if dtype != np.uint8 and dtype.kind != "f":
        raise ValueError(f"{source}: MNIST pixels must be uint8 (scaled by 1/255) or floating "
                         f"point in [0, 1] (used as stored); got {dtype}")


def _check_label_dtype(dtype, source):
    if dtype.kind not in "iu":
        raise ValueError(f"{source}: MNIST labels must be integers; got {dtype}")


def _check_pixels(images, source):
    """Pixels are uint8, or finite floats in [0, 1]."""
    _check_pixel_dtype(images.dtype, source)
    if images.dtype.kind != "f" or not images.size:
        return
    if not np.isfinite(images).all():
        raise ValueError(f"{source}: MNIST pixels hold NaN or infinity")
    low, high = images.min(), images.max()
    if low < 0 or high > 1:
        raise ValueError(f"{source}: MNIST pixels stored as {images.dtype} must lie in "
                         f"[0, 1]; got values from {low} to {high}")


def _check_labels(labels, source):
    _check_label_dtype(labels.dtype, source)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{source}: MNIST labels must be digits 0-9; got values from "
                         f"{labels.min()} to {labels.max()}")


def _mnist_pickle(path, subset):
    parts = {"train": 0, "valid": 1, "test": 2}
    if subset not in parts:
        raise ValueError(f"subset must be 'train', 'valid' or 'test'; got {subset!r}")
    data = _read_pickle(path)
    try:
        unpickled = _ArraysOnly(_Replay(data)).load()
    except Exception as exc:  # only our own callables run: anything raised means malformed
        raise ValueError(f"{path} is not a readable mnist.pkl.gz: "
                         f"{type(exc).__name__}: {exc}") from None
    images, labels = _pickled_part(unpickled, parts[subset], subset, path)
    _check_pixels(images, path)
    _check_labels(labels, path)
    return images, labels


_MEMO_OPCODES = ("PUT", "BINPUT", "LONG_BINPUT")


def _read_pickle(path):
    """The pickle in gzip file ``path``, up to its STOP opcode, checked without running it.

    The opcodes are walked as they are decompressed: at most
    :data:`MAX_PICKLE_OPCODES` of them, memo indices no larger, frames and
    every declared length within the data actually there, and at most
    :data:`MAX_PICKLE_BYTES` decompressed. So a small file expanding to a
    huge run of opcodes is rejected after reading a few hundred kilobytes.
    """
    with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as f:
        if raw.read(2) != GZIP_MAGIC:
            raise ValueError(f"{path} is not an mnist.pkl.gz (not gzip data); load_mnist takes "
                             "a folder of IDX files or an mnist.pkl.gz")
        raw.seek(0)
        reader = _BoundedReader(f, MAX_PICKLE_BYTES)
        try:
            with _gzip_errors(path):
                _check_opcodes(reader)
        except (ValueError, OverflowError, struct.error) as exc:
            if "corrupt gzip data" in str(exc):
                raise
            raise ValueError(f"{path} is not a readable mnist.pkl.gz: {exc}") from None
    return reader.parts()


def _check_opcodes(reader):
    for count, (op, arg, pos) in enumerate(pickletools.genops(reader), 1):
        if count > MAX_PICKLE_OPCODES:
            raise ValueError(f"more than {MAX_PICKLE_OPCODES:,} opcodes "
                             "(fastmlp.datasets.MAX_PICKLE_OPCODES)")
        if op.name in _MEMO_OPCODES and not 0 <= arg <= MAX_PICKLE_OPCODES:
            raise ValueError(f"memo index {arg} at byte {pos} is out of range")
        if op.name == "FRAME" and arg > MAX_PICKLE_BYTES:
            raise ValueError(f"frame of {arg:,} bytes at byte {pos} is over the limit")


class _BoundedReader:
    """A binary stream read in bounded chunks, keeping what was read, refusing to
    read more than ``limit`` bytes in all (for :func:`pickletools.genops`)."""

    def __init__(self, f, limit):
        self._f, self._limit = f, limit
        self._parts, self._pos = [], 0

    def read(self, n=-1):
        """Up to ``n`` bytes (all if negative), fewer at the end of the stream."""
        n = self._limit + 1 if n is None or n < 0 else n
        pieces = []
        while n > 0:
            piece = self._f.read(min(n, _CHUNK, self._limit + 1 - self._pos))
            if not piece:
                break
            pieces.append(piece)
            n -= len(piece)
            self._advance(len(piece))
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._parts.append(data)
        return data

    def readline(self):
        """One line, at most as long as what is left of the limit."""
        line = self._f.readline(self._limit + 1 - self._pos)
        self._advance(len(line))
        self._parts.append(line)
        return line

    def tell(self):
        """Bytes read so far."""
        return self._pos

    def parts(self):
        """Everything read, as the list of bytes objects returned (no copy)."""
        return self._parts

    def _advance(self, n):
        self._pos += n
        if self._pos > self._limit:
            raise ValueError(f"it decompresses to more than {self._limit:,} bytes "
                             "(fastmlp.datasets.MAX_PICKLE_BYTES)")


class _Replay:
    """Reads the bytes objects of ``parts`` in order, dropping each once read, so the
    pickle is never held twice (as parts and as one joined copy)."""

    def __init__(self, parts):
        self._parts = collections.deque(parts)
        parts.clear()
        self.size = sum(len(p) for p in self._parts)

    def read(self, n=-1):
        """Up to ``n`` bytes (all if negative)."""
        n = self.size if n is None or n < 0 else n
        pieces = []
        while n > 0 and self._parts:
            part = self._parts.popleft()
            if len(part) > n:
                self._parts.appendleft(part[n:])
                part = part[:n]
            pieces.append(part)
            n -= len(part)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readline(self):
        """Bytes up to and including the next newline."""
        pieces = []
        while self._parts:
            part = self._parts.popleft()
            end = part.find(b"\n") + 1
            if end:
                if end < len(part):
                    self._parts.appendleft(part[end:])
                pieces.append(part[:end])
                break
            pieces.append(part)
        return b"".join(pieces)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numeric NumPy arrays, tuples and lists, and nothing that could run code.

    Arrays are built here, not by NumPy's ``_reconstruct`` and
    ``ndarray.__setstate__``: each must have a numeric dtype and exactly the
    data its shape needs, and all bytes built in total may not exceed the
    pickle's own size, so nothing is allocated beyond what the file holds.
    """

    MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")

    def __init__(self, stream):
        super().__init__(stream, encoding="latin1")
        self._budget = stream.size

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes in Python 3
            return self._encode
        callables = {"_reconstruct": self._reconstruct, "ndarray": _ndarray_token,
                     "dtype": _PickledDtype, "scalar": self._scalar}
        if module in self.MODULES and name in callables:
            return callables[name]
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")

    def spend(self, nbytes):
        """Account for ``nbytes`` of data built; raise past the pickle's size."""
        self._budget -= nbytes
        if self._budget < 0:
            raise pickle.UnpicklingError("the pickle builds more data than it holds")

    def as_bytes(self, data):
        """``data`` (bytes, or a latin-1 str from a Python 2 pickle) as bytes."""
        if isinstance(data, str):
            self.spend(len(data))
            return data.encode("latin1")
        if isinstance(data, bytes):
            return data
        raise pickle.UnpicklingError(f"expected bytes; got {type(data).__name__}")

    def _encode(self, text, encoding="latin1"):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError("_codecs.encode: expected a str and 'latin1'")
        return self.as_bytes(text)

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not _ndarray_token:
            raise pickle.UnpicklingError("_reconstruct: only numpy.ndarray can be rebuilt")
        return _PickledArray(self)

    def _scalar(self, dtype, data):
        dtype = _numeric_dtype(dtype)
        data = self.as_bytes(data)
        if len(data) != dtype.itemsize:
            raise pickle.UnpicklingError(f"scalar of {dtype} from {len(data)} bytes")
        return np.frombuffer(data, dtype)[0]


def _ndarray_token(*args):
    """Stands for ``numpy.ndarray`` in a pickle: may be named, never called."""
    raise pickle.UnpicklingError("refusing to call numpy.ndarray")


class _PickledDtype:
    """A dtype named in a pickle: numeric, without fields or sub-arrays."""

    def __init__(self, obj, align=False, copy=False):
        self.dtype = _numeric_dtype(obj)

    def __setstate__(self, state):
        ok = (isinstance(state, tuple) and len(state) >= 5 and isinstance(state[1], str)
              and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None))
        if not ok:
            raise pickle.UnpicklingError(f"unsupported dtype state {state!r:.80}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _numeric_dtype(obj):
    """``obj`` (a type code, or a :class:`_PickledDtype`) as a plain numeric dtype."""
    if isinstance(obj, _PickledDtype):
        return obj.dtype
    if isinstance(obj, bytes):
        obj = obj.decode("latin1")
    if not isinstance(obj, str) or len(obj) > 8:
        raise pickle.UnpicklingError(f"unsupported dtype {obj!r:.40}")
    try:
        dtype = np.dtype(obj)
    except TypeError:
        raise pickle.UnpicklingError(f"unsupported dtype {obj!r}") from None
    if (dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None
            or dtype.itemsize > 8):
        raise pickle.UnpicklingError(f"unsupported dtype {dtype}")
    return dtype


class _PickledArray:
    """An array being unpickled: ``__setstate__`` checks the state and builds it."""

    def __init__(self, unpickler):
        self._unpickler = unpickler
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(f"unsupported array state {state!r:.80}")
        shape, dtype, fortran, data = state[-4:]
        if (not isinstance(shape, tuple) or len(shape) > 32
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise pickle.UnpicklingError(f"bad array shape {shape!r:.80}")
        dtype = _numeric_dtype(dtype)
        data = self._unpickler.as_bytes(data)
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise pickle.UnpicklingError(f"array of shape {shape} and dtype {dtype} from "
                                         f"{len(data)} bytes of data")
        self.array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _pickled_part(unpickled, index, subset, path):
    """(images, labels) of part ``index`` of the (train, valid, test) tuple, checked."""
    if not isinstance(unpickled, (tuple, list)) or len(unpickled) != 3:
        raise ValueError(f"{path} is not an mnist.pkl.gz: expected a (train, valid, test) "
                         f"tuple; got {_describe(unpickled)}")
    part = unpickled[index]
    if not isinstance(part, (tuple, list)) or len(part) != 2:
        raise ValueError(f"{path}: the {subset!r} part must be an (images, labels) pair; got "
                         f"{_describe(part)}")
    images, labels = (_pickled_array(x, what, path) for x, what in zip(part, ("images", "labels"),
                                                                      strict=True))
    if images.ndim not in (2, 3) or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{path}: {subset!r} images {images.shape} and labels {labels.shape} "
                         "do not match (expected (n, 784) or (n, 28, 28), and (n,))")
    return images, labels


def _pickled_array(x, what, path):
    if isinstance(x, _PickledArray) and x.array is not None:
        return x.array
    if isinstance(x, np.generic):
        return np.asarray(x)  # a scalar: rejected by its shape
    raise ValueError(f"{path}: the MNIST {what} must be a NumPy array; got {_describe(x)}")


def _describe(x):
    return f"a {type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (tuple, list))
                                      else "")


def load_digits(*, layout="columns", dtype=np.float64):
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), pixels scaled to [0, 1].

    Real data that ships with scikit-learn, so it needs no download.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    dtype = check_dtype(dtype)
    data = sk_load_digits()
    X = (data.data / 16.0).astype(dtype)
    return _arrange(X, data.target.astype(np.int64), 10, layout, dtype)


def make_blobs(n_samples=1000, n_features=20, n_classes=3, *, spread=1.0, seed=0,
               layout="columns", dtype=np.float64):
    """A classification problem: Gaussian blobs (standard deviation ``spread``)
    around random centres.

    With an int ``seed`` (default 0) the same arguments always give the same
    arrays; ``seed`` may also be a RandomState or Generator, or None for
    NumPy's global generator.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    n_samples = check_int(n_samples, "n_samples", 1)
    n_features = check_int(n_features, "n_features", 1)
    n_classes = check_int(n_classes, "n_classes", 1)
    spread = check_positive_float(spread, "spread", allow_zero=True)
    rng = as_rng(seed)
    centres = rng.normal(0, 3, size=(n_classes, n_features))
    y = draw_indices(rng, n_classes, n_samples)
    X = (centres[y] + rng.normal(0, spread, size=(n_samples, n_features))).astype(dtype)
    return _arrange(X, y, n_classes, layout, check_dtype(dtype))


def _arrange(X, labels, n_classes, layout, dtype):
    """Row-major samples x features data and int labels, in the requested layout."""
    if layout == "rows":
        return X, labels
    return X.T, one_hot(labels, n_classes, dtype)
