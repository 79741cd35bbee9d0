"""Input checks in one compiled pass: finiteness, and one-hot targets.

:mod:`fastmlp._validation` calls these (through
:func:`fastmlp.engines.kernel_module`, on first use) on the flat buffer of a
contiguous array, in chunks run on several threads for large arrays (the
kernels release the GIL). They only find *whether* and *where* a check
fails; the error message is then built by NumPy, so it reads the same
whichever path found the problem.
"""

import numpy as np

from ._jit import REASSOC, jit

#: Elements summed between two tests for a non-finite value.
_BLOCK = 16384


@jit(fastmath=REASSOC)
def first_nonfinite(a, lo, hi):
    """Index of the first NaN or infinity in the 1-D ``a[lo:hi]``, or -1.

    Vectorised: ``x * 0`` is 0 for a finite x and NaN otherwise, and a NaN
    survives any order of summation (no "nnan"/"ninf" flags), so a block's
    sum tells whether to look element by element.
    """
    zero = a.dtype.type(0)
    start = lo
    while start < hi:
        stop = min(start + _BLOCK, hi)
        b = a[start:stop]  # (indices from 0: no negative-index check, so it vectorises)
        acc = zero
        for i in range(b.shape[0]):
            acc += b[i] * zero
        if acc != zero:
            for i in range(b.shape[0]):
                if not np.isfinite(b[i]):
                    return start + i
        start = stop
    return -1


@jit
def first_not_one_hot(y, rows, row_step, col_step, lo, hi):
    """The first column in ``lo:hi`` of a (rows x columns) array that is not
    one-hot (entries 0 or 1, exactly one 1), or -1. The array is the flat
    buffer ``y``: entry (r, c) at ``r * row_step + c * col_step``."""
    one = y.dtype.type(1)
    zero = y.dtype.type(0)
    for c in range(lo, hi):
        base = c * col_step
        ones = 0
        bad = False
        for r in range(rows):
            v = y[base + r * row_step]
            ones += v == one
            bad |= (v != zero) & (v != one)
        if bad or ones != 1:
            return c
    return -1
