"""The memory floor of a fused step: one read-modify-write pass over the parameters.

Benchmark code only (not part of the installed package).

``bench/`` times :func:`stream_pass` over a buffer the size of a model's
parameters; a per-sample step that streams every weight matrix once cannot
be faster than this (unless it skips rows).
"""

from fastmlp.kernels._jit import jit


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
