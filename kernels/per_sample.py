"""Fused per-sample SGD: many notebook steps in one compiled call.

The network arrives as flat buffers (see :mod:`fastmlp.kernels.step`).
Samples are rows of ``X`` and ``Y``, and ``idx`` lists the sample of each
step, drawn by the caller exactly as the NumPy engine draws them.

One pass over the first weight matrix per step
----------------------------------------------
The notebook updates after the backward pass, and the first layer's input is
data, known in advance. So the update of step t is deferred and applied row
by row during the forward product of step t+1: each row of the first W is
read and written once per step, instead of once for the forward product and
again for the update. The first layer needs no input gradient. Later layers
read each row twice: for the forward product, then for the backward product
fused with the update (their inputs depend on the step's own updates, so no
deferral can merge those passes).

The first weight matrix is held in column blocks for the call, and the
pass runs on the rows of nonzero input (every row on dense inputs):
:mod:`fastmlp.kernels.columns`. Rows of zero input are skipped on sparse
inputs; on dense ones (the plan's ``every_row``) every row is visited, with no
list to make.

No step allocates: all workspace is made once per call.
"""

import numpy as np

from ._jit import jit
from .activations import activate
from .columns import first_pass, from_columns, nonzero_rows, to_columns, total_width, widths_for
from .specialise import DEFER_MIN_WEIGHTS, kernel_for
from .step import step_state, upper_step, write_gradients


@jit
def first_layer_pass(Wc, widths, m, rows, x, xoff, xp, xpoff, dz, lr, zc, cw, dense):
    """The first layer's pass of a step on its column blocks
    (:func:`fastmlp.kernels.columns.first_pass`): the update with input
    ``xp[xpoff:xpoff + m]`` and the product with ``x[xoff:xoff + m]``, over
    the rows where either is nonzero (every row if ``dense``). ``rows`` is
    workspace of length m."""
    if dense:
        first_pass(Wc, widths, m, None, m, x, xoff, xp, xpoff, dz, lr, zc, cw)
    else:
        k = nonzero_rows(x, xoff, xp, xpoff, m, rows)
        first_pass(Wc, widths, m, rows, k, x, xoff, xp, xpoff, dz, lr, zc, cw)


#: Run the kernels specialised per network shape (:mod:`fastmlp.kernels.specialise`);
#: False runs :func:`sgd_per_sample_generic` (for comparisons).
SPECIALISE = True


def sgd_per_sample(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, dense=False):
    """Run one SGD step per entry of ``idx`` on the network in ``P``, in place.

    On the kernel specialised for this network's shape (generated and compiled
    on first use, then cached on disk: :func:`fastmlp.kernels.specialise.kernel_for`),
    or, where none can be made, on :func:`sgd_per_sample_generic`. Same
    arithmetic either way. Arguments as :func:`sgd_per_sample_generic`.
    """
    # (a first layer too small to defer has no pass to put in columns)
    dense = dense and sizes[0] * sizes[1] >= DEFER_MIN_WEIGHTS
    kind = "one-pass-dense" if dense else "one-pass"
    kernel = kernel_for(sizes, acts, loss, kind) if SPECIALISE else None
    if kernel is None:
        sgd_per_sample_generic(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, dense)
    else:
        kernel(P, G, X, Y, idx, lrate, losses, hits)


@jit
def sgd_per_sample_generic(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits,
                           dense=False):
    """Run one SGD step per entry of ``idx`` on the network in ``P``, in place,
    for any network shape (read from ``sizes`` and ``acts`` at run time).

    Parameters
    ----------
    P : 1-D float array
        Parameters, layer by layer: W (row-major), then W0.
    G : 1-D float array like P
        Receives the gradients of the last step (the layers' dLdW, dLdW0).
    sizes : int64 array of length L + 1
        Layer widths, input first.
    acts : int64 array of length L
        Activation code after each Linear layer (IDENTITY ... SOFTMAX).
    loss : int
        NLL (requires a SOFTMAX head) or MSE.
    X, Y : 2-D C-contiguous arrays, one sample per row
    idx : int64 array
        The sample of each step.
    lrate : float
        Learning rate, applied in P's dtype.
    losses : float64 array like idx
        Receives the loss of each step.
    hits : int64 array like idx
        Receives 1 where the step's largest output is where Y's is, else 0.
    dense : bool
        The first layer's pass visits every input row (dense inputs), with
        no list of the nonzero ones; its weights are in column blocks
        (:mod:`fastmlp.kernels.columns`) either way.
    """
    steps = idx.shape[0]
    if steps == 0:
        return
    lr, eps, woff, boff, aoff, A, D, da = step_state(P, sizes, lrate)
    m0, n0 = sizes[0], sizes[1]
    rows = np.empty(m0, dtype=np.uint32)
    b = P[boff[0]:boff[0] + n0]
    widths = widths_for(n0, P)
    Wc = to_columns(P, woff[0], m0, n0, widths)
    dz = np.zeros(total_width(widths), dtype=P.dtype)
    zc = np.zeros(total_width(widths), dtype=P.dtype)
    cw = np.empty(m0, dtype=P.dtype)
    Xf = X.reshape(m0 * X.shape[0])
    for t in range(steps):
        s = idx[t]
        prev = idx[t - 1] if t > 0 else s
        for j in range(n0):
            b[j] -= lr * D[j]
            dz[j] = D[j]
        first_layer_pass(Wc, widths, m0, rows, Xf, s * m0, Xf, prev * m0, dz, lr, zc, cw, dense)
        for j in range(n0):
            A[j] = zc[j] + b[j]
        activate(acts[0], A[0:n0])
        losses[t], hits[t] = upper_step(P, sizes, acts, loss, woff, boff, aoff, A, D, da, Y[s],
                                        lr, eps)
    last = idx[steps - 1]
    write_gradients(G, sizes, woff, boff, X[last], A, D, aoff)
    # (the last step's update by the same pass, with zero inputs)
    for j in range(n0):
        b[j] -= lr * D[j]
        dz[j] = D[j]
    x0 = np.zeros(m0, dtype=P.dtype)
    first_layer_pass(Wc, widths, m0, rows, x0, m0 - m0, Xf, last * m0, dz, lr, zc, cw, dense)
    from_columns(Wc, widths, P, woff[0], m0, n0)
