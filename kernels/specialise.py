"""Per-sample SGD kernels specialised per network shape, generated and cached on disk.

The generic one-pass kernel (:func:`fastmlp.kernels.per_sample.sgd_per_sample_generic`)
reads the network's shape from arrays at run time: each step loops over
layers of unknown count, takes views of the flat buffers, and dispatches on
activation codes. On a small network that fixed cost is most of the step
(2-10-10-2: about 140 multiply-adds, 0.25 µs of overhead or more).

Here the shape is compile-time: for each (widths, activations, loss) one
kernel is written out as Python source, with every width, offset,
activation and the loss spelled as constants, the layers unrolled, every
array access a constant offset into the flat buffers (no views or slices
inside the step), and narrow layers (at most :data:`REGISTER_WIDTH` units)
carried in named locals, which the compiler keeps in registers. The kernel
does the generic kernel's arithmetic, operation for operation where the
order matters: the first layer's update deferred into the next step's
forward pass (for first layers of at least :data:`DEFER_MIN_WEIGHTS`
weights), zero inputs skipped (but in a dense first layer's pass), later
layers' updates fused into their backward products.

The blocked per-sample kernels (:mod:`fastmlp.kernels.blocked`) are
generated the same way (:func:`blocked_source`): the first layer's blocks
call that module's small shared kernels, the layers above are spelled out
as here. Generating them also keeps a first call's compile small: a kernel
holds only its network's layers and its kind of block (dense or sparse),
where the generic kernels compiled every activation, loss and both kinds.

Caching: Numba caches a function by its source file, so a function made with
``exec`` cannot be cached (numba issue 3501). The source is therefore written
to a file, once, named by a hash of the shape, this generator's own source
and Numba's version, in the first writable folder of: ``NUMBA_CACHE_DIR``,
the kernels' ``__pycache__``, the user's cache folder
(``$XDG_CACHE_HOME/fastmlp``), a private per-user temporary folder. The file
is imported as a module and compiled with ``cache=True`` (the project's
:func:`~fastmlp.kernels._jit.jit`), so the next process loads machine code.
A file is never rewritten once there (Numba's index records its time
stamp), and a changed generator or Numba writes new files, so a stale
kernel is never loaded. Where no folder is writable, :func:`kernel_for`
returns None and the caller runs the generic kernel.
"""

import hashlib
import importlib.util
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path

import numba

from .codes import IDENTITY, NLL, RELU, SIGMOID, SOFTMAX, TANH

__all__ = ["DEFER_MIN_WEIGHTS", "KINDS", "REGISTER_WIDTH", "blocked_source", "kernel_for",
           "source"]

#: Layers of at most this many outputs keep their sums and gradients in
#: locals (registers) instead of a buffer.
REGISTER_WIDTH = 16
#: First layers with at least this many weights defer their update into the
#: next step's forward pass (one pass over W per step instead of two), on
#: column blocks (fastmlp.kernels.columns), skipping zero inputs through a
#: list of nonzero rows (unless dense); smaller ones do the plain forward
#: product and update, with no list.
DEFER_MIN_WEIGHTS = 1024

_VERSION = None
_KERNELS = {}
_lock = threading.Lock()


# -- source generation ---------------------------------------------------------

class _Code:
    def __init__(self):
        self.lines = []
        self.depth = 0

    def __call__(self, line):
        self.lines.append("    " * self.depth + line)

    def block(self):
        code = self

        class _Indent:
            def __enter__(self):
                code.depth += 1

            def __exit__(self, *exc):
                code.depth -= 1

        return _Indent()


def _act_forward(c, code, off, n):
    """Apply activation ``code`` in place to A[off:off + n] (softmax: max-shifted)."""
    a = f"A[{off} + j]"
    if code == SOFTMAX:
        c(f"mx = A[{off}]")
        c(f"for j in range(1, {n}):")
        c(f"    mx = max(mx, {a})")
        c("ssum = zero")
        c(f"for j in range({n}):")
        c(f"    e = np.exp({a} - mx)")
        c(f"    {a} = e")
        c("    ssum += e")
        c(f"for j in range({n}):")
        c(f"    {a} /= ssum")
        return
    if code == IDENTITY:
        return
    c(f"for j in range({n}):")
    with c.block():
        if code == RELU:
            c(f"if {a} < zero:")
            c(f"    {a} = zero")
        elif code == TANH:
            c(f"{a} = np.tanh({a})")
        else:  # SIGMOID, without overflow
            c(f"v = {a}")
            c("if v >= zero:")
            c(f"    {a} = one / (one + np.exp(-v))")
            c("else:")
            c("    e = np.exp(v)")
            c(f"    {a} = e / (one + e)")


def _grad_factor(code, a):
    """The expression of the activation's derivative at output ``a`` (None: 1)."""
    return {IDENTITY: None, RELU: None, TANH: f"(one - {a} * {a})",
            SIGMOID: f"{a} * (one - {a})"}[code]


def _forward(c, ell, m, n, wo, bo, ain, aout):
    """z = W.T @ a + W0 for layer ``ell`` >= 1 (input A[ain:], output A[aout:]),
    skipping zero inputs."""
    if n <= REGISTER_WIDTH:
        for j in range(n):
            c(f"z{j} = zero")
        c(f"for i in range({m}):")
        with c.block():
            c(f"ai = A[{ain} + i]")
            c("if ai != zero:")
            with c.block():
                c(f"r = {wo} + i * {n}")
                for j in range(n):
                    c(f"z{j} += ai * P[r + {j}]")
        for j in range(n):
            c(f"A[{aout + j}] = z{j} + P[{bo + j}]")
    else:
        c(f"for j in range({n}):")
        c(f"    A[{aout} + j] = zero")
        c(f"for i in range({m}):")
        with c.block():
            c(f"ai = A[{ain} + i]")
            c("if ai != zero:")
            with c.block():
                c(f"r = {wo} + i * {n}")
                c(f"for j in range({n}):")
                c(f"    A[{aout} + j] += ai * P[r + j]")
        c(f"for j in range({n}):")
        c(f"    A[{aout} + j] += P[{bo} + j]")


def _backward(c, m, n, wo, bo, ain, dout, din, act_in):
    """One pass over layer W: the input gradient with the weights before the
    update, the update ``W -= lr * a dz^T``, ``W0 -= lr * dz``, and the
    gradient before the input's activation into D[din:din + m]."""
    reg = n <= REGISTER_WIDTH
    if reg:
        for j in range(n):
            c(f"d{j} = D[{dout + j}]")
    dz = (lambda j: f"d{j}") if reg else (lambda j: f"D[{dout} + j]")
    c(f"for i in range({m}):")
    with c.block():
        c(f"ai = A[{ain} + i]")
        c(f"r = {wo} + i * {n}")
        c("acc = zero")
        c("if ai != zero:")
        with c.block():
            if reg:
                for j in range(n):
                    c(f"w = P[r + {j}]")
                    c(f"acc += w * d{j}")
                    c(f"P[r + {j}] = w - lr * (ai * d{j})")
            else:
                c(f"for j in range({n}):")
                c("    w = P[r + j]")
                c(f"    acc += w * {dz(0)}")
                c(f"    P[r + j] = w - lr * (ai * {dz(0)})")
        if act_in != RELU:  # a zero input still passes a gradient
            c("else:")
            with c.block():
                if reg:
                    for j in range(n):
                        c(f"acc += P[r + {j}] * d{j}")
                else:
                    c(f"for j in range({n}):")
                    c(f"    acc += P[r + j] * {dz(0)}")
        factor = _grad_factor(act_in, "ai")
        c(f"D[{din} + i] = " + (f"{factor} * acc" if factor else "acc"))
    if reg:
        for j in range(n):
            c(f"P[{bo + j}] -= lr * d{j}")
    else:
        c(f"for j in range({n}):")
        c(f"    P[{bo} + j] -= lr * D[{dout} + j]")


def _head(c, n, off, code, loss):
    """The loss of A[off:off + n] against Y[s], its gradient into D[off:], the hit."""
    c("total = zero")
    if loss == NLL:
        c(f"for j in range({n}):")
        with c.block():
            c("y = Y[s, j]")
            c("if y != zero:")
            c(f"    total -= y * np.log(max(A[{off} + j], eps))")
            c(f"D[{off} + j] = A[{off} + j] - y")
    else:
        c(f"for j in range({n}):")
        with c.block():
            c(f"e = A[{off} + j] - Y[s, j]")
            c("total += e * e")
            c(f"D[{off} + j] = two * e")
        if code == SOFTMAX:
            c("ssum = zero")
            c(f"for j in range({n}):")
            c(f"    ssum += A[{off} + j] * D[{off} + j]")
            c(f"for j in range({n}):")
            c(f"    D[{off} + j] = A[{off} + j] * (D[{off} + j] - ssum)")
        elif code == RELU:
            c(f"for j in range({n}):")
            c(f"    D[{off} + j] = D[{off} + j] if A[{off} + j] != zero else D[{off} + j] * zero")
        elif code != IDENTITY:
            factor = _grad_factor(code, f"A[{off} + j]")
            c(f"for j in range({n}):")
            c(f"    D[{off} + j] = {factor} * D[{off} + j]")
    c("losses[t] = total")
    c("best = 0")
    c("ybest = 0")
    c(f"for j in range(1, {n}):")
    with c.block():
        c(f"if A[{off} + j] > A[{off} + best]:")
        c("    best = j")
        c("if Y[s, j] > Y[s, ybest]:")
        c("    ybest = j")
    c("hits[t] = best == ybest")


def _list_rows(c, m, cond):
    """rows[:k] = the inputs i < m where ``cond`` (of ``i``) holds. (Spelled
    out, not :func:`fastmlp.kernels.columns.nonzero_rows`: with the width a
    constant here, the whole MNIST step was 4-7% faster.)"""
    c("k = nz")
    c(f"for i in range({m}):")
    c(f"    if {cond}:")
    c("        rows[k] = i")
    c("        k += 1")


def _first_columns(c, m, n, bo, dense):
    """The first layer's forward product, with the previous step's update
    ``W -= lr * x_prev dz_prev^T`` applied in the same pass, over its column
    blocks (:mod:`fastmlp.kernels.columns`; ``Wc``, made before the first
    step): every row (``dense``), or the rows of nonzero ``x`` or ``x_prev``.
    dz_prev is D[0:n], zeros before the first step, where the update is
    exactly nothing (w - c * 0 == w)."""
    c("p = idx[t - 1] if t > 0 else s")
    c(f"for j in range({n}):")
    c(f"    P[{bo} + j] -= lr * D[j]")
    c("    dz[j] = D[j]")
    if dense:
        c(f"first_pass(Wc, widths, mi, None, mi, Xf, s * {m}, Xf, p * {m}, dz, lr, zc, cw)")
    else:
        _list_rows(c, m, "X[s, i] != zero or X[p, i] != zero")
        c(f"first_pass(Wc, widths, mi, rows, k, Xf, s * {m}, Xf, p * {m}, dz, lr, zc, cw)")
    c(f"for j in range({n}):")
    c(f"    A[j] = zc[j] + P[{bo} + j]")


def _columns_begin(c, m, n, wo):
    """Before the first step: the first layer's weights into column blocks.

    The shared kernels get the sizes as int64 variables, not literal
    constants: Numba would compile them again for every literal value."""
    c("nz = steps - steps")
    c(f"mi = nz + {m}")
    c(f"ni = nz + {n}")
    c(f"woi = nz + {wo}")
    c("widths = widths_for(ni, P)")
    c("Wc = to_columns(P, woi, mi, ni, widths)")
    # (total_width, not widths.sum(): np.sum's implementation module would be
    # imported, with SciPy, to load the cached kernel)
    c("dz = np.zeros(total_width(widths), dtype=P.dtype)")
    c("zc = np.zeros(total_width(widths), dtype=P.dtype)")
    c(f"cw = np.empty({m}, dtype=P.dtype)")
    c(f"Xf = X.reshape({m} * X.shape[0])")


def _columns_end(c, m, n, wo, bo, dense):
    """After the last step: its deferred update, by the same pass (with zero
    inputs, so with the arithmetic of a step's), and the blocks back into P."""
    c("s = idx[steps - 1]")
    c(f"for j in range({n}):")
    c(f"    P[{bo} + j] -= lr * D[j]")
    c("    dz[j] = D[j]")
    c(f"x0 = np.zeros({m}, dtype=P.dtype)")
    if dense:
        c(f"first_pass(Wc, widths, mi, None, mi, x0, nz, Xf, s * {m}, dz, lr, zc, cw)")
    else:
        _list_rows(c, m, "X[s, i] != zero")
        c(f"first_pass(Wc, widths, mi, rows, k, x0, nz, Xf, s * {m}, dz, lr, zc, cw)")
    c("from_columns(Wc, widths, P, woi, mi, ni)")


def _first_dense(c, m, n, wo, bo):
    """The first layer's forward product for a small first layer (no deferral)."""
    if n <= REGISTER_WIDTH:
        for j in range(n):
            c(f"z{j} = zero")
        c(f"for i in range({m}):")
        with c.block():
            c("xi = X[s, i]")
            c(f"r = {wo} + i * {n}")
            for j in range(n):
                c(f"z{j} += xi * P[r + {j}]")
        for j in range(n):
            c(f"A[{j}] = z{j} + P[{bo + j}]")
    else:
        c(f"for j in range({n}):")
        c("    A[j] = zero")
        c(f"for i in range({m}):")
        with c.block():
            c("xi = X[s, i]")
            c(f"r = {wo} + i * {n}")
            c(f"for j in range({n}):")
            c("    A[j] += xi * P[r + j]")
        c(f"for j in range({n}):")
        c(f"    A[j] += P[{bo} + j]")


def _first_dense_update(c, m, n, wo, bo):
    """``W -= lr * x dz^T``, ``W0 -= lr * dz`` for a small first layer."""
    reg = n <= REGISTER_WIDTH
    if reg:
        for j in range(n):
            c(f"d{j} = D[{j}]")
    c(f"for i in range({m}):")
    with c.block():
        c("xi = X[s, i]")
        c(f"r = {wo} + i * {n}")
        if reg:
            for j in range(n):
                c(f"P[r + {j}] -= lr * (xi * d{j})")
        else:
            c(f"for j in range({n}):")
            c("    P[r + j] -= lr * (xi * D[j])")
    if reg:
        for j in range(n):
            c(f"P[{bo + j}] -= lr * d{j}")
    else:
        c(f"for j in range({n}):")
        c(f"    P[{bo} + j] -= lr * D[j]")


def _layout(sizes):
    """Offsets in the flat buffers: (wo, bo, ao, n_act) -- each layer's W, W0
    and output, and the length of the activation buffers."""
    wo, bo, ao, o, a = [], [], [], 0, 0
    for ell in range(len(sizes) - 1):
        wo.append(o)
        o += sizes[ell] * sizes[ell + 1]
        bo.append(o)
        o += sizes[ell + 1]
        ao.append(a)
        a += sizes[ell + 1]
    return wo, bo, ao, a


def _prologue(c, n_act):
    """Start of a kernel body: no steps, no work; constants in P's dtype; A, D."""
    c("steps = idx.shape[0]")
    c("if steps == 0:")
    c("    return")
    c("zero = P.dtype.type(0)")
    c("one = P.dtype.type(1)")
    c("two = P.dtype.type(2)")
    c("lr = P.dtype.type(lrate)")
    # (not np.finfo: its implementation's module, numba.np.arraymath, would
    # be imported, with SciPy, to load the cached kernel; and it is slow to
    # compile)
    c("eps = P.dtype.type(2.0 ** -52 if P.itemsize == 8 else 2.0 ** -23)")
    c(f"A = np.zeros({n_act}, dtype=P.dtype)")
    c(f"D = np.zeros({n_act}, dtype=P.dtype)")


def _upper(c, sizes, acts, loss, wo, bo, ao):
    """The step from the first layer's pre-activation in A[0:n0]: its
    activation, the layers above, the head (sample ``s``, step ``t``), and
    backward with the updates above the first layer, down to the first
    layer's gradient before activation in D[0:n0]."""
    L = len(sizes) - 1
    _act_forward(c, acts[0], ao[0], sizes[1])
    for ell in range(1, L):
        _forward(c, ell, sizes[ell], sizes[ell + 1], wo[ell], bo[ell], ao[ell - 1], ao[ell])
        _act_forward(c, acts[ell], ao[ell], sizes[ell + 1])
    _head(c, sizes[L], ao[L - 1], acts[L - 1], loss)
    for ell in range(L - 1, 0, -1):
        _backward(c, sizes[ell], sizes[ell + 1], wo[ell], bo[ell], ao[ell - 1], ao[ell],
                  ao[ell - 1], acts[ell - 1])


def _gradients(c, sizes, wo, bo, ao):
    """The last step's gradients into G: dLdW = a dz^T, dLdW0 = dz, every layer."""
    c("s = idx[steps - 1]")
    for ell in range(len(sizes) - 1):
        m, n = sizes[ell], sizes[ell + 1]
        a_in = "X[s, i]" if ell == 0 else f"A[{ao[ell - 1]} + i]"
        c(f"for i in range({m}):")
        with c.block():
            c(f"ai = {a_in}")
            c(f"r = {wo[ell]} + i * {n}")
            c(f"for j in range({n}):")
            c(f"    G[r + j] = ai * D[{ao[ell]} + j]")
        c(f"for j in range({n}):")
        c(f"    G[{bo[ell]} + j] = D[{ao[ell]} + j]")


def _header(c, sizes, acts, loss, kind):
    c(f"# Generated by fastmlp.kernels.specialise: {kind} kernel, sizes {sizes}, "
      f"activations {acts}, loss {loss}.")
    c("import numpy as np")
    c("")
    c("from fastmlp.kernels._jit import REASSOC, jit")


def source(sizes, acts, loss, name="kernel", dense=False):
    """Python source of the per-sample kernel ``name`` for one network shape.

    The kernel's signature is ``name(P, G, X, Y, idx, lrate, losses, hits)``:
    :func:`~fastmlp.kernels.per_sample.sgd_per_sample`'s without the shape.
    A deferred first layer runs on column blocks (:mod:`fastmlp.kernels.columns`),
    over the rows of nonzero inputs, or over every row with ``dense``.
    """
    sizes, acts = [int(s) for s in sizes], [int(a) for a in acts]
    wo, bo, ao, n_act = _layout(sizes)
    m0, n0 = sizes[0], sizes[1]
    deferred = m0 * n0 >= DEFER_MIN_WEIGHTS
    c = _Code()
    _header(c, sizes, acts, loss, "one-pass" + (" (dense inputs)" if dense and deferred else ""))
    if deferred:
        c("from fastmlp.kernels.columns import (first_pass, from_columns, to_columns, "
          "total_width, widths_for)")
    c("")
    c("")
    c("@jit(fastmath=REASSOC)")
    c(f"def {name}(P, G, X, Y, idx, lrate, losses, hits):")
    with c.block():
        _prologue(c, n_act)
        if deferred:
            if not dense:
                c(f"rows = np.empty({m0}, dtype=np.uint32)")
            _columns_begin(c, m0, n0, wo[0])
        c("for t in range(steps):")
        with c.block():
            c("s = idx[t]")
            if deferred:
                _first_columns(c, m0, n0, bo[0], dense)
            else:
                _first_dense(c, m0, n0, wo[0], bo[0])
            _upper(c, sizes, acts, loss, wo, bo, ao)
            if not deferred:
                _first_dense_update(c, m0, n0, wo[0], bo[0])
        if deferred:
            _columns_end(c, m0, n0, wo[0], bo[0], dense)
        _gradients(c, sizes, wo, bo, ao)
    return "\n".join(c.lines) + "\n"


def blocked_source(sizes, acts, loss, sparse, name="kernel"):
    """Python source of the blocked per-sample kernel ``name`` for one network
    shape, on the block's nonzero inputs (``sparse``) or with GEMMs.

    The first layer's blocks are :mod:`fastmlp.kernels.blocked`'s (compiled
    once per dtype, shared by every shape); the layers above are this
    module's, as in :func:`source`. Signature ``name(P, G, X, Y, idx, lrate,
    losses, hits, block)``: :func:`~fastmlp.kernels.blocked.sgd_blocked`'s
    without the shape and ``sparse``.
    """
    sizes, acts = [int(s) for s in sizes], [int(a) for a in acts]
    wo, bo, ao, n_act = _layout(sizes)
    m0, n0 = sizes[0], sizes[1]
    how = "sparse" if sparse else "dense"
    c = _Code()
    _header(c, sizes, acts, loss, f"blocked ({how})")
    c(f"from fastmlp.kernels.blocked import {how}_begin, {how}_end, {how}_preactivation, "
      f"{how}_workspace, safe_norm")
    c("")
    c("")
    c("@jit(fastmath=REASSOC)")
    c(f"def {name}(P, G, X, Y, idx, lrate, losses, hits, block):")
    with c.block():
        _prologue(c, n_act)
        c(f"W = P[{wo[0]}:{wo[0] + m0 * n0}].reshape(({m0}, {n0}))")
        c(f"b = P[{bo[0]}:{bo[0] + n0}]")
        c("k = min(block, steps)")
        # (sizes from W's shape, not constants: the shared kernels are then
        # compiled once for int64 arguments, not once per literal shape)
        c(f"ws = {how}_workspace(P, W.shape[0], W.shape[1], k)")
        c(f"Dm = np.empty((k, {n0}), dtype=P.dtype)")
        c(f"z = A[0:{n0}]")
        c("safe = safe_norm(P)")
        # (an int64 0: a literal 0 would compile the block kernels twice)
        c("start = steps - steps")
        c("while start < steps:")
        with c.block():
            c(f"kb = {how}_begin(X, idx, start, min(k, steps - start), W, ws, safe)")
            # (the block's step is jb: the layers' code uses j, i, r, ...)
            c("for jb in range(kb):")
            with c.block():
                c("t = start + jb")
                c("s = idx[t]")
                if sparse:
                    c("sparse_preactivation(X, idx, start, jb, W, b, Dm, lr, ws, z)")
                else:
                    c("dense_preactivation(ws, kb, jb, b, Dm, lr, z)")
                _upper(c, sizes, acts, loss, wo, bo, ao)
                c(f"for q in range({n0}):")
                c("    d = D[q]")
                c("    Dm[jb, q] = d")
                c(f"    P[{bo[0]} + q] -= lr * d")
            c(f"{how}_end(kb, W, ws, Dm, lr)")
            c("start += kb")
        _gradients(c, sizes, wo, bo, ao)
    return "\n".join(c.lines) + "\n"


# -- files, modules, dispatchers -----------------------------------------------

def _version():
    """A hash of what the generated kernels depend on: this generator, the
    decorator module, the activation codes, the column-block pass, and the
    versions of Numba and Python."""
    global _VERSION
    if _VERSION is None:
        h = hashlib.sha256()
        here = Path(__file__).resolve().parent
        for f in ("specialise.py", "_jit.py", "codes.py", "columns.py"):
            h.update((here / f).read_bytes())
        h.update(numba.__version__.encode())
        h.update(sys.version.encode())
        _VERSION = h.hexdigest()
    return _VERSION


def _private(path):
    """True if ``path`` is a folder only this user can write (for a shared temp dir)."""
    st = os.lstat(path)
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _folders():
    """Candidate folders for the generated sources, best first."""
    out = []
    if os.environ.get("NUMBA_CACHE_DIR"):
        out.append((Path(os.environ["NUMBA_CACHE_DIR"]) / "fastmlp_generated", False))
    out.append((Path(__file__).resolve().parent / "__pycache__" / "generated", False))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    out.append((Path(xdg) / "fastmlp" / "generated", False))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    out.append((Path(tempfile.gettempdir()) / f"fastmlp-{uid}" / "generated", True))
    return out


def _write(folder, private, filename, text):
    """Write ``text`` to ``folder/filename`` unless it holds it already; return the
    path, or None if the folder cannot be used."""
    try:
        if private:
            folder.parent.mkdir(mode=0o700, exist_ok=True)
            if not _private(folder.parent):
                return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / filename
        try:
            if path.read_text() == text:
                return path
        except (OSError, UnicodeDecodeError):
            pass
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        # The numba cache of this file goes beside it (or under NUMBA_CACHE_DIR):
        # it must be writable too, else every process would compile again.
        cache = folder / "__pycache__"
        if not os.environ.get("NUMBA_CACHE_DIR"):
            cache.mkdir(exist_ok=True)
            if not os.access(cache, os.W_OK):
                return None
        return path
    except OSError:
        return None


def _load(path, modname, name):
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # (Numba rebuilds a cached kernel's environment by name)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return getattr(module, name)


#: The kinds of generated kernel, with their source and the kernel's name.
KINDS = ("one-pass", "one-pass-dense", "blocked-dense", "blocked-sparse")


def _kind_source(key):
    sizes, acts, loss, kind = key
    if kind.startswith("one-pass"):
        return source(sizes, acts, loss, name="sgd_step_kernel", dense=kind == "one-pass-dense")
    return blocked_source(sizes, acts, loss, kind == "blocked-sparse", name="sgd_step_kernel")


def kernel_for(sizes, acts, loss, kind="one-pass"):
    """The specialised per-sample kernel of ``kind`` (see :data:`KINDS`) for this
    shape (compiled on first call, cached on disk), or None if no folder can
    hold its source."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    key = (tuple(int(s) for s in sizes), tuple(int(a) for a in acts), int(loss), kind)
    fn = _KERNELS.get(key)
    if fn is not None or key in _KERNELS:
        return fn
    with _lock:
        if key in _KERNELS:
            return _KERNELS[key]
        digest = hashlib.sha256(repr((key, _version())).encode()).hexdigest()[:20]
        modname = f"fastmlp_ps_{digest}"
        text = _kind_source(key)
        fn = None
        for folder, private in _folders():
            path = _write(folder, private, modname + ".py", text)
            if path is not None:
                try:
                    fn = _load(path, modname, "sgd_step_kernel")
                    break
                except Exception:  # (an unusable folder: try the next)
                    fn = None
        _KERNELS[key] = fn
        return fn
