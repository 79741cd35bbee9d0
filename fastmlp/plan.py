"""The planning step: which kernel runs, decided once, by rules, in one place.

Every training and inference entry point asks :func:`plan_training` or
:func:`route` and nothing else decides. A :class:`Plan` says which path
(fused compiled loops or the notebook's layer-by-layer loop), which kernel
(per-sample one-pass or blocked, mini-batch), whether the first layer works
on the nonzero inputs, how the data are laid out for the kernels, and how
many BLAS threads run; ``str(plan)`` says it in words, as
:attr:`Sequential.path <fastmlp.Sequential.path>` shows it.

The rules look at the network's shape, the dtype and the input's density
(constants in :mod:`fastmlp.config`), never at timings, so the same seed and
data give bit-identical weights on every run. ``block="tune"`` opts in to
timing (:mod:`fastmlp.tuning`).
"""

from dataclasses import dataclass

import numpy as np

from .config import (
    BLOCK_MAX,
    COLUMNS_MAX_BYTES,
    DENSE_BLOCK,
    DENSITY_SAMPLE,
    SPARSE_DENSITY,
    SPARSE_FILL_MAX,
    SPARSE_MIN_WIDTH,
    TRANSPOSE_MIN_FRACTION,
)
from .inference import pair_fill
from .inference import sparse_limit as forward_sparse_limit
from .network import describe
from .tuning import tuned_block

__all__ = ["BLOCK_SETTINGS", "Plan", "check_block", "plan_inference", "plan_training", "route"]

#: The non-integer values of ``Sequential(block=...)``.
BLOCK_SETTINGS = ("auto", "off", "tune")


@dataclass(frozen=True)
class Plan:
    """How one call trains (or evaluates) a model.

    Attributes
    ----------
    route : {"fused", "layer-by-layer"}
    reason : str or None
        Why the layer-by-layer path, in words.
    mode : {"per-sample", "mini-batch", "forward"} or None
        What the call does: train one sample or one mini-batch a step, or a
        forward pass over many samples (inference); None before any call.
    kernel : {"one-pass", "blocked"} or None
        The per-sample kernel.
    block : int
        Steps per block of the blocked kernel.
    sparse : bool
        The first layer works on the nonzero inputs (blocked kernel; or the
        mini-batch kernel for batches of fill at most ``max_fill``).
    every_row : bool
        The one-pass kernel's first layer visits every input (dense inputs)
        instead of listing the nonzero ones (its weights are in column blocks
        either way: :mod:`fastmlp.kernels.columns`).
    max_fill : float
        The mini-batch kernel's sparse threshold (0: dense first layer).
    layout : {"rows", "transpose", "gather"} or None
        Samples are rows already (the transpose of a samples x features
        array), X is transposed once, or each run gathers its samples.
    blas_threads : int or None
        BLAS threads the kernel runs with (None: as configured).
    tuned : bool
        The block size was measured (``block="tune"``).
    """

    route: str
    reason: str | None = None
    mode: str | None = None
    kernel: str | None = None
    block: int = 0
    sparse: bool = False
    every_row: bool = False
    max_fill: float = 0.0
    layout: str | None = None
    blas_threads: int | None = None
    tuned: bool = False

    @property
    def fused(self):
        """True for the fused compiled loops."""
        return self.route == "fused"

    def __str__(self):
        if not self.fused:
            return f"layer-by-layer ({self.reason})"
        if self.mode is None:
            return "fused"
        if self.mode == "forward":
            first = "first layer on nonzeros" if self.sparse else "dense first layer"
            return f"fused forward, {first}; later layers after a ReLU on nonzeros where sparse"
        if self.mode == "per-sample" and self.kernel == "one-pass":
            what = "fused per-sample, one-pass" + (", dense first layer" if self.every_row else "")
        elif self.mode == "per-sample":
            how = "on nonzeros" if self.sparse else "with GEMMs"
            what = f"fused per-sample, blocked k={self.block} {how}"
            if self.tuned:
                what += " (tuned)"
        elif self.sparse:
            what = f"fused mini-batch, first layer on nonzeros (batch fill <= {self.max_fill:.2f})"
        else:
            what = "fused mini-batch, dense first layer"
        layout = {"rows": "samples read in place", "transpose": "X transposed once",
                  "gather": "drawn samples gathered"}[self.layout]
        threads = f"; BLAS on {self.blas_threads} thread" if self.blas_threads == 1 else ""
        return f"{what}; {layout}{threads}"


def check_block(block):
    """Validate ``Sequential(block=...)``: "auto", "off", "tune" or an int in 1..4096."""
    if isinstance(block, str) and block in BLOCK_SETTINGS:
        return block
    if (isinstance(block, (int, np.integer)) and not isinstance(block, bool)
            and 1 <= block <= BLOCK_MAX):
        return int(block)
    raise ValueError(f"block must be one of {BLOCK_SETTINGS} or an integer from 1 to "
                     f"{BLOCK_MAX}; got {block!r}")


def route(model):
    """``(network, plan)``: the kernels' description of ``model`` (None when
    they cannot run it) and the plan that says which path, before any data."""
    if model.engine != "numba":
        return None, Plan("layer-by-layer", reason=f"the {model.engine} engine")
    if not model.fuse:
        return None, Plan("layer-by-layer", reason="fuse=False")
    network, reason = describe(model.modules, model.loss)
    if network is None:
        return None, Plan("layer-by-layer", reason=reason)
    return network, Plan("fused")


def density(X):
    """Fraction of nonzero inputs in about DENSITY_SAMPLE evenly spaced samples
    (columns of X)."""
    cols = X[:, :: max(1, X.shape[1] // DENSITY_SAMPLE)]
    # (The comparison first: np.count_nonzero of a strided view took 0.44 ms
    # for 256 MNIST samples, 4x the time of comparing them into a contiguous
    # mask and counting that, a tenth of a 2,560-sample epoch's time.)
    return float(np.count_nonzero(cols != 0)) / cols.size


def sparse_limit(n):
    """The largest batch fill (:func:`fastmlp.kernels.minibatch.gather`) for
    which a first layer of ``n`` outputs skips zero inputs in the mini-batch
    kernel (0: never)."""
    return SPARSE_FILL_MAX if n >= SPARSE_MIN_WIDTH else 0.0


def batch_max_fill(dens, n):
    """The mini-batch kernels' ``max_fill`` for inputs of density ``dens`` and
    a first layer of ``n`` outputs: :func:`sparse_limit` for sparse inputs,
    0 (always BLAS) for dense ones."""
    return sparse_limit(n) if dens <= SPARSE_DENSITY else 0.0


def rows_max_fill(X, n):
    """:func:`batch_max_fill` for X laid out samples x features (the
    estimators' layout): a NumPy array, sampled as :func:`density` does, or a
    SciPy sparse matrix, whose density is known."""
    if hasattr(X, "nnz"):
        dens = X.nnz / max(1, X.shape[0] * X.shape[1])
    else:
        dens = density(X.T)
    return batch_max_fill(dens, n)


def layout(X, Y, samples):
    """How the kernels read X and Y for a call visiting ``samples`` samples."""
    if X.T.flags.c_contiguous and Y.T.flags.c_contiguous:
        return "rows"
    return "transpose" if samples >= TRANSPOSE_MIN_FRACTION * X.shape[1] else "gather"


def plan_training(model, X, Y, *, samples, batch_size, optimizer, flat=None, tune_rows=None):
    """The plan of one training call on checked data X, Y (features x samples).

    Parameters
    ----------
    model : Sequential
    X, Y : ndarray
    samples : int
        Samples the call will visit (decides transposing against gathering).
    batch_size : int
    optimizer : optimizer object
        Per-sample kernels run the plain update (``optimizer.plain``) only.
    flat : FlatNetwork, optional
        The model's buffers, needed for ``block="tune"`` only, as is
        ``tune_rows``, a callable returning samples-as-rows (X, Y) to measure on.
    """
    network, plan = route(model)
    if network is None:
        mode = "per-sample" if batch_size == 1 else "mini-batch"
        return Plan("layer-by-layer", reason=plan.reason, mode=mode)
    how = layout(X, Y, samples)
    dens = density(X)
    sparse = dens <= SPARSE_DENSITY
    if batch_size == 1 and optimizer.plain:
        kernel, block, tuned = _per_sample_kernel(model.block, network, model.dtype.itemsize,
                                                  sparse, dens, samples, flat, tune_rows)
        return Plan("fused", mode="per-sample", kernel=kernel, block=block,
                    sparse=sparse and kernel == "blocked",
                    every_row=kernel == "one-pass" and not sparse, layout=how,
                    blas_threads=1 if kernel == "blocked" and not sparse else None, tuned=tuned)
    max_fill = batch_max_fill(dens, int(network.sizes[1]))
    return Plan("fused", mode="mini-batch", sparse=max_fill > 0, max_fill=max_fill, layout=how)


def plan_inference(model, X):
    """The plan of a forward pass over the columns of X (features x samples):
    the inference kernels (:mod:`fastmlp.inference`), their first layer on the
    nonzero inputs where the pair fill of sampled columns is low enough, or
    the layer-by-layer forward for networks the kernels cannot run."""
    network, plan = route(model)
    if network is None:
        return Plan("layer-by-layer", reason=plan.reason, mode="forward")
    limit = forward_sparse_limit(int(network.sizes[1]), model.dtype.itemsize)
    return Plan("fused", mode="forward", sparse=limit > 0 and pair_fill(X) <= limit)


def _per_sample_kernel(setting, network, itemsize, sparse, dens, samples, flat, tune_rows):
    """(kernel, block, tuned) for per-sample steps under ``Sequential.block``."""
    if setting == "off":
        return "one-pass", 0, False
    if isinstance(setting, int):
        return "blocked", setting, False
    if setting == "tune":
        k = tuned_block(flat, *tune_rows(), sparse, dens, samples)
        if k is not None:
            return ("blocked", k, True) if k else ("one-pass", 0, True)
    # The rules ("auto", and "tune" on a call too short to measure).
    weights = int(network.sizes[0]) * int(network.sizes[1])
    if not sparse and weights * itemsize > COLUMNS_MAX_BYTES:
        return "blocked", DENSE_BLOCK, False
    return "one-pass", 0, False
