"""The one decorator every fastmlp kernel is compiled with.

All kernels are nopython, release the GIL, use NumPy's error model (a float
division by zero gives inf, with no check in the loop) and are cached on disk,
so a second process loads machine code instead of compiling. If no cache
location is writable (a read-only install and an unwritable NUMBA_CACHE_DIR),
the kernels still compile, once per process, with a warning.
"""

import warnings

import numba

#: fastmath flags for loops whose results may be reassociated (dot products
#: and sums). Not "nnan"/"ninf": non-finite values must still propagate.
REASSOC = {"reassoc", "contract", "nsz"}

_warned = []


def jit(fn=None, **options):
    """``numba.njit(cache=True, nogil=True, error_model="numpy", **options)``."""
    if fn is None:
        return lambda f: jit(f, **options)
    opts = {"cache": True, "nogil": True, "error_model": "numpy", **options}
    try:
        return numba.njit(**opts)(fn)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        if not _warned:
            _warned.append(True)
            warnings.warn(
                f"fastmlp: no writable Numba cache location ({exc}); kernels will be "
                "compiled in every process. Set NUMBA_CACHE_DIR to a writable folder.",
                RuntimeWarning,
                stacklevel=3,
            )
        opts["cache"] = False
        return numba.njit(**opts)(fn)
