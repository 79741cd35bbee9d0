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

import gzip
import io
import pickle
from pathlib import Path

import numpy as np

from ._validation import as_rng, check_dtype, check_int, check_positive_float, draw_indices

__all__ = ["load_digits", "load_mnist", "make_blobs", "one_hot"]

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

    Validates the magic number, the dimensions and the file length, and never
    reads past the end of the data: a truncated or malformed file raises
    ValueError saying what was wrong.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        magic = raw[:4].hex() or "(empty file)"
        raise ValueError(f"{path} is not an IDX file: bad magic number {magic}")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions but the file is "
                         f"{len(raw)} bytes long")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"{path}: IDX data is {what}: dimensions {shape} need {expected} "
                         f"bytes, the file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


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
    labels = labels.astype(np.int64)
    return _arrange(X, labels, 10, layout, dtype)


def _mnist_idx(folder, subset):
    if subset not in MNIST_FILES:
        raise ValueError(f"subset must be 'train' or 'test' for IDX files; got {subset!r}")
    arrays = []
    for stem in MNIST_FILES[subset]:
        candidates = [folder / f"{stem}.gz", folder / stem]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{folder} has no {stem}[.gz]")
        arrays.append(read_idx(found))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: MNIST images {images.shape} and labels {labels.shape} "
                         "do not match (expected (n, 28, 28) and (n,))")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{folder}: MNIST labels must be digits 0-9")
    return images, labels


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays and tuples, and nothing that could run code."""

    MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
    NAMES = ("_reconstruct", "ndarray", "dtype", "scalar")

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes in Python 3
            return super().find_class(module, name)
        if module in self.MODULES and name in self.NAMES:
            if module == "numpy.core.multiarray":  # the pre-2.0 name of the same module
                module = _MULTIARRAY
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


_MULTIARRAY = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"


def _mnist_pickle(path, subset):
    parts = {"train": 0, "valid": 1, "test": 2}
    if subset not in parts:
        raise ValueError(f"subset must be 'train', 'valid' or 'test'; got {subset!r}")
    try:
        with gzip.open(path, "rb") as f:
            data = _ArraysOnly(io.BytesIO(f.read()), encoding="latin1").load()
        images, labels = data[parts[subset]]
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{path} is not a readable mnist.pkl.gz: {exc}") from None
    return np.asarray(images), np.asarray(labels)


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
