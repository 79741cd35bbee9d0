"""Argument checks shared by the public API.

Every check raises before any model state changes, and every message names the
argument, says what was received and what was expected.
"""

import itertools
import numbers
import threading

import numpy as np

from .engines import kernel_module
from .inference import cores

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Float arrays of at least this many bytes are checked by one compiled pass
#: (:mod:`fastmlp.kernels.checks`, where Numba imports); smaller ones by NumPy.
COMPILED_CHECK_BYTES = 1 << 16
#: From this size the pass runs in chunks on up to CHECK_THREADS threads.
PARALLEL_CHECK_BYTES = 8 << 20
CHECK_THREADS = 4

_checks = []  # [module or None], set on first use
_pool = []
_lock = threading.Lock()


def _check_kernels():
    """The compiled check kernels, or None where Numba does not import."""
    if not _checks:
        try:
            module = kernel_module("checks")
        except ImportError:
            module = None
        _checks.append(module)
    return _checks[0]


def _flat(arr):
    """The 1-D view of a C- or F-contiguous float array big enough for the
    compiled checks, or None."""
    if arr.dtype not in FLOAT_DTYPES or arr.nbytes < COMPILED_CHECK_BYTES:
        return None
    if arr.flags.c_contiguous:
        return arr.reshape(-1)
    if arr.flags.f_contiguous:
        return arr.T.reshape(-1)
    return None


def _first(fn, args, n, nbytes):
    """The smallest non-negative ``fn(*args, lo, hi)`` over chunks of range(n)
    (-1 if none): one call, or chunks on threads for a large array."""
    workers = min(CHECK_THREADS, cores())
    if nbytes < PARALLEL_CHECK_BYTES or workers < 2:
        return fn(*args, 0, n)
    with _lock:
        if not _pool:
            from concurrent.futures import ThreadPoolExecutor

            _pool.append(ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="fastmlp-check"))
    bounds = [n * i // workers for i in range(workers + 1)]
    futures = [_pool[0].submit(fn, *args, lo, hi) for lo, hi in itertools.pairwise(bounds)]
    found = [f.result() for f in futures]
    return min((i for i in found if i >= 0), default=-1)


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
    # One compiled pass where Numba imports; else a sum in the array's own dtype
    # (one pass, no temporary). Only if that finds something (NaN, inf, or for
    # the sum an overflow of finite values) do we look element by element.
    flat = _flat(arr)
    kernels = _check_kernels() if flat is not None else None
    if kernels is not None:
        clean = _first(kernels.first_nonfinite, (flat,), flat.size, flat.nbytes) < 0
    else:
        clean = np.isfinite(arr.sum())
    if not clean and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name} must contain only finite values; found {arr[bad]} at index {bad}"
        )


def check_one_hot(Y, name="Y"):
    """Raise ValueError unless every column of ``Y`` is a one-hot vector."""
    flat = _flat(Y) if Y.ndim == 2 else None
    kernels = _check_kernels() if flat is not None else None
    if kernels is not None:
        rows, cols = Y.shape
        steps = (cols, 1) if Y.flags.c_contiguous else (1, rows)
        if _first(kernels.first_not_one_hot, (flat, rows, *steps), cols, flat.nbytes) < 0:
            return
    zeros_and_ones = np.all((Y == 0) | (Y == 1))
    if not zeros_and_ones or not np.all(Y.sum(axis=0) == 1):
        col = int(np.flatnonzero(~(((Y == 0) | (Y == 1)).all(axis=0) & (Y.sum(axis=0) == 1)))[0])
        raise ValueError(
            f"{name} must be one-hot (classes x samples, a single 1 per column) for a "
            f"classification loss; column {col} is {Y[:, col].tolist()}"
        )


class _Unseeded(np.random.bit_generator.ISeedSequence):
    """A seed source for a bit generator that is seeded again at once.

    ``RandomState(seed)`` first seeds its MT19937 from a SeedSequence (hashing
    624 words: 0.1 ms, a fixed cost of every ``fit(seed=...)``), then again
    with the legacy seeding, which replaces every word. This source fills
    the first state with ones at no cost instead."""

    def generate_state(self, n_words, dtype=np.uint32):
        return np.ones(n_words, dtype=dtype)


_UNSEEDED = _Unseeded()


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
        rng = np.random.RandomState(np.random.MT19937(_UNSEEDED))
        rng.seed(int(seed))  # (the legacy seeding: RandomState(seed)'s stream)
        return rng
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
