"""``block="tune"``: measure the blocked per-sample kernel against the one-pass one.

Opt-in and machine-dependent: the choice follows timings, so two runs may
pick different kernels and end on weights that differ by rounding. The
default, ``block="auto"``, follows the rules of :mod:`fastmlp.plan` instead.
A choice is remembered per network shape, dtype and input density for the
process.
"""

import time

import numpy as np

from .blas import one_blas_thread
from .config import (
    BLOCK_CANDIDATES,
    BLOCK_MARGIN,
    SPARSE_BLOCK_CANDIDATES,
    TUNE_MIN_STEPS,
)
from .engines import kernel_module

__all__ = ["measure_blocks", "tuned_block"]

_TUNED = {}


def tuned_block(flat, X, Y, sparse, density, steps):
    """The block size to use (0: one-pass), measured once per key, or None when
    nothing is remembered and a call of ``steps`` is too short to measure."""
    net = flat.network
    key = (tuple(int(s) for s in net.sizes), tuple(int(a) for a in net.acts), net.loss,
           flat.P.dtype.name, round(density, 1), sparse)
    if key not in _TUNED:
        if steps < TUNE_MIN_STEPS:
            return None
        times = measure_blocks(flat, X, Y, sparse)
        k = min((c for c in times if c), key=times.get)
        _TUNED[key] = k if times[k] < BLOCK_MARGIN * times[0] else 0
    return _TUNED[key]


def measure_blocks(flat, X, Y, sparse, candidates=None):
    """Seconds per step of per-sample SGD for each block size (0: one-pass kernel).

    X and Y hold samples as rows. ``candidates`` defaults to 0 and the block
    sizes of the blocked kernel on the nonzeros (``sparse``) or with GEMMs.
    Runs on scratch copies of the parameters, with samples drawn from a
    private generator; interleaved rounds, best of five, so a busy neighbour
    on a shared machine skews every candidate alike.
    """
    if candidates is None:
        candidates = (0, *(SPARSE_BLOCK_CANDIDATES if sparse else BLOCK_CANDIDATES))
    net = flat.network
    rng = np.random.RandomState(0)
    sgd_per_sample = kernel_module("per_sample").sgd_per_sample
    sgd_blocked = kernel_module("blocked").sgd_blocked

    def timed(k, idx):
        P, G = flat.P.copy(), np.zeros_like(flat.G)
        losses, hits = np.empty(len(idx)), np.empty(len(idx), dtype=np.int64)
        args = (P, G, net.sizes, net.acts, net.loss, X, Y, idx, 1e-3, losses, hits)
        with one_blas_thread():
            t0 = time.perf_counter()
            if k == 0:
                sgd_per_sample(*args, not sparse)  # (dense inputs: every row, no list)
            else:
                sgd_blocked(*args, k, sparse)
            return time.perf_counter() - t0

    kmax = max(max(candidates), 1)
    warm = rng.randint(len(X), size=2 * kmax).astype(np.int64)
    per_step = min(timed(0, warm) for _ in range(2)) / len(warm)  # also compiles
    timed(kmax, warm)
    steps = int(np.clip(0.02 / max(per_step, 1e-9), 2 * kmax, 8192))
    idx = rng.randint(len(X), size=steps).astype(np.int64)
    best = dict.fromkeys(candidates, np.inf)
    for _ in range(5):
        for k in candidates:
            best[k] = min(best[k], timed(k, idx))
    return {k: t / steps for k, t in best.items()}
