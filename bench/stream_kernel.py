"""The memory floor of a fused step: one read-modify-write pass over the parameters.

Benchmark code only (not part of the installed package).

``bench/`` times :func:`stream_pass` over a buffer the size of a model's
parameters; a per-sample step that streams every weight matrix once cannot
be faster than this (unless it skips rows).

The buffer is aligned to a cache line (:func:`aligned_buffer`). NumPy aligns
its arrays to 16 bytes only, so half of them start 16 bytes into a 32-byte
vector, and then every other vector load and store of the pass spans two
cache lines: measured on this machine, 784-100-10's parameters took 6.2 us
(float32) and 13.0 us (float64) a pass that way, against 4.1 and 9.5 us
aligned. The bench's floor moved between those two values from one process
to the next, by where the allocator put the buffer.
"""

import numpy as np
from fastmlp.kernels._jit import jit

#: Bytes the floor's buffer is aligned to (a cache line).
ALIGN = 64


def aligned_buffer(values):
    """A copy of the 1-D array ``values`` that starts on an :data:`ALIGN`-byte boundary."""
    values = np.asarray(values)
    raw = np.empty(values.size * values.itemsize + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    out = raw[start:start + values.size * values.itemsize].view(values.dtype)
    out[:] = values
    return out


@jit
def stream_pass(P, c):
    """``P -= c * P``, in P's dtype: one read and one write of every element."""
    k = P.dtype.type(c)
    for i in range(P.shape[0]):
        P[i] -= k * P[i]


@jit
def stream_passes(P, c, k):
    """``k`` stream passes in one compiled call (no dispatch cost between them)."""
    for _ in range(k):
        stream_pass(P, c)
