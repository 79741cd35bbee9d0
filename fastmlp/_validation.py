"""Argument checks shared by the public API.

Every check raises before any model state changes, and every message names the
argument, says what was received and what was expected.
"""

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_int(value, name, minimum=0):
    """Return ``value`` as an int, requiring an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_bool(value, name):
    """Return ``value`` as a bool, requiring True or False (a NumPy bool too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_positive_float(value, name, allow_zero=False):
    """Return ``value`` as a float, requiring a finite real number > 0 (or >= 0)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite real number; got {value!r}")
    value = float(value)
    bad = not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {expected}; got {value!r}")
    return value


def check_dtype(dtype, name="dtype"):
    """Return ``dtype`` as a NumPy float32 or float64 dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64; got {dtype!r}")
    return dt


def as_matrix(value, name, dtype, rows=None, what="features"):
    """Return ``value`` as a finite 2-D array of ``dtype`` with ``rows`` rows.

    Integer, boolean and non-contiguous inputs are accepted and converted;
    the original is never modified.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape ({what}, samples); "
            f"got an array of shape {arr.shape} ({arr.ndim}-D)"
        )
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(
            f"{name} must have {rows} rows ({what}) for this network; got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: it has shape {arr.shape}, with no samples")
    arr = arr.astype(dtype, copy=False)
    check_finite(arr, name)
    return arr


def as_float_matrix(value, name, dtype, rows=None, what="features"):
    """Return ``value`` as a finite 2-D float array with ``rows`` rows, converted
    only if it is not float32 or float64 (then to ``dtype``): float data are
    read as they are, in any layout, with no copy."""
    arr = np.asarray(value)
    if arr.dtype in FLOAT_DTYPES:
        return as_matrix(arr, name, arr.dtype, rows, what)
    return as_matrix(arr, name, dtype, rows, what)


def check_finite(arr, name):
    """Raise ValueError if ``arr`` holds NaN or infinity."""
    # A sum in the array's own dtype is one pass with no temporary; only if it
    # is not finite (NaN, inf, or an overflow of finite values) do we look
    # element by element.
    if not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name} must contain only finite values; found {arr[bad]} at index {bad}"
        )


def check_one_hot(Y, name="Y"):
    """Raise ValueError unless every column of ``Y`` is a one-hot vector."""
    zeros_and_ones = np.all((Y == 0) | (Y == 1))
    if not zeros_and_ones or not np.all(Y.sum(axis=0) == 1):
        col = int(np.flatnonzero(~(((Y == 0) | (Y == 1)).all(axis=0) & (Y.sum(axis=0) == 1)))[0])
        raise ValueError(
            f"{name} must be one-hot (classes x samples, a single 1 per column) for a "
            f"classification loss; column {col} is {Y[:, col].tolist()}"
        )


def as_rng(seed):
    """Return the random source for ``seed``.

    None means NumPy's global generator (``np.random``), drawn exactly as the
    notebook draws; an int gives a private ``RandomState`` with the same
    stream as ``np.random.seed(seed)``; a ``RandomState`` or ``Generator`` is
    used as given.
    """
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, (np.random.RandomState, np.random.Generator)):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an int from 0 to 2**32 - 1; got {seed!r}")
        return np.random.RandomState(int(seed))
    raise TypeError(
        f"seed must be None, an int, a numpy RandomState or Generator; got {seed!r}"
    )


def draw_indices(rng, n, size):
    """Draw ``size`` sample indices uniformly from ``range(n)``, with replacement.

    For a RandomState (and the global generator) this is the stream of
    ``size`` successive ``np.random.randint(n)`` calls, as in the notebook.
    """
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, n, size=size)
    return rng.randint(n, size=size)
