"""The one-pass per-sample step's first layer, in column blocks.

The one-pass kernel (:mod:`fastmlp.kernels.per_sample`) makes one pass over
the first weight matrix per step: the previous step's update
``W -= lr * x_prev dz_prev^T`` fused with this step's product ``z = W^T x``,
over the rows of nonzero inputs (``x`` or ``x_prev``; every row on dense
inputs). Walked in row-major order, four rows at a time, that loop added
into ``z`` in memory once per four rows and left a scalar tail in every row
whose width is not a multiple of the vector length: on dense inputs it ran
at 1.5-1.7x the memory floor (one read and one write of each weight,
784 x 100, one process).

Here W is copied, for the whole call, into blocks of columns: block ``b``
holds columns ``j0_b .. j0_b + J_b`` of every row, row after row, padded
with zero columns to a whole number of vectors. A block is narrow enough
that its running sums and the previous step's gradient stay in vector
registers (:data:`BLOCK_VECTORS`), so a step reads and writes each weight
it visits once and touches nothing else. Measured on 784 x 100 in one
process: the whole step on dense inputs 1.1-1.5x faster than the row-major
loop's, and on MNIST (rows listed) 1.09-1.12x faster in float32, 0.96x in
float64, with the same weights to the bit on MNIST. The dense pass alone
takes 1.7x (float32) and 1.4x (float64) the time of one read-modify-write
pass over a cache-aligned buffer of the same size (``bench/stream_kernel.py``);
a pass that only updates, with no product, 1.2-1.5x. Not found why: neither
the rows' width, nor the order of loads and stores, nor the factors'
loads (4K aliasing) moved it.

The loop over one block's rows is written in LLVM IR with explicit vectors
(:func:`_pass_block`): Numba's compiler, given the same loop in Python,
either vectorised it across rows (the sums' reassociation allows it) or not
at all. Its arithmetic is fixed by the IR: per weight ``v = w - c * d`` and
``acc += x * v``, rows in order, one accumulator per vector of columns.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit

__all__ = ["BLOCK_VECTORS", "LANE_BYTES", "PASS_WIDTHS", "block_widths", "first_pass",
           "from_columns", "nonzero_rows", "to_columns", "total_width", "widths_for"]

#: Bytes per vector register the blocks are sized for (AVX2: 8 float32 or 4
#: float64 values; on wider or narrower machines the compiler splits or
#: joins the vectors, and the arithmetic stays the same).
LANE_BYTES = 32
#: Vectors of columns per block: its running sums and the gradient take two
#: registers per vector, 8-10 of the 16. Measured (784 x 100, one process,
#: time per pass over the matrix against the memory floor): float32 blocks
#: of 4 vectors 1.21x, 3 vectors 1.23x, 2 vectors 1.39x; float64 4 vectors
#: 1.19x, 8 vectors 1.24x.
BLOCK_VECTORS = 4
_FLAGS = ("contract",)  # (a product and the sum it feeds may fuse into one FMA)


#: The block widths :func:`_pass_block` has a loop for: 1-5 vectors of
#: either dtype (an import-time check below ties them to block_widths).
PASS_WIDTHS = (4, 8, 12, 16, 20, 24, 32, 40)


@intrinsic
def _pass_block(typingctx, W, base, stride, rows, x, xoff, c, d, j0, out, k, J):
    """One block's pass over ``k`` rows: row ``i = rows[q]`` (``i = q`` when
    ``rows`` is None) for ``q < k`` in order, with ``w`` the ``J`` weights at
    ``W[base + i * stride:]``: ``w = w - c[q] * d[j0:j0 + J]`` (stored) and
    ``acc += x[xoff + i] * w``; then ``out[j0:j0 + J] = acc``.

    One loop is compiled per width in :data:`PASS_WIDTHS`, its vectors
    constants, and ``J`` picks one at run time (another width raises
    ValueError). Vectors are of :data:`LANE_BYTES` or, where that does not
    divide the width, of the largest power of two lanes that does. The
    arrays must be 1-D and contiguous, the float ones of W's dtype (the loop
    indexes their data directly)."""
    floats = (W, x, c, d, out)
    listed = not isinstance(rows, types.NoneType)
    arrays = floats + ((rows,) if listed else ())
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    if not isinstance(W.dtype, types.Float) or any(a.dtype != W.dtype for a in floats):
        return None
    if (listed and not isinstance(rows.dtype, types.Integer)) or not isinstance(J, types.Integer):
        return None
    dtype = W.dtype
    sig = types.void(W, base, stride, rows, x, xoff, c, d, j0, out, k, J)

    def codegen(context, builder, signature, args):
        tys = signature.args
        # (every index as intp, whatever integer type the caller passed)
        args = [context.cast(builder, a, t, types.intp) if isinstance(t, types.Integer) else a
                for a, t in zip(args, tys, strict=True)]
        Wa, base_, stride_, ra, xa, xoff_, ca, da, j0_, outa, k_, J_ = args
        ptrs = [context.make_array(tys[q])(context, builder, a).data
                for q, a in ((0, Wa), (4, xa), (6, ca), (7, da), (9, outa))]
        Wd, xd, cd, dd, outd = ptrs
        rd = context.make_array(tys[3])(context, builder, ra).data if listed else None
        scalar = context.get_value_type(dtype)
        i32 = ir.IntType(32)
        align = dtype.bitwidth // 8

        def block_loop(width):
            lanes = LANE_BYTES * 8 // dtype.bitwidth
            while width % lanes:
                lanes //= 2
            nvec = width // lanes
            vty = ir.VectorType(scalar, lanes)

            def at(ptr, index, u):
                p = builder.gep(ptr, [builder.add(index, ir.Constant(index.type, u * lanes))])
                return builder.bitcast(p, vty.as_pointer())

            def broadcast(ptr):
                # (a load straight into every lane: no arithmetic port is used)
                v = builder.insert_element(ir.Constant(vty, ir.Undefined), builder.load(ptr),
                                           ir.Constant(i32, 0))
                return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined),
                                              ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))

            dz = [builder.load(at(dd, j0_, u), align=align) for u in range(nvec)]
            zero = ir.Constant(vty, [ir.Constant(scalar, 0.0)] * lanes)
            acc = [cgutils.alloca_once_value(builder, zero) for _ in range(nvec)]
            with cgutils.for_range(builder, k_) as loop:
                q = loop.index
                i = q
                if listed:
                    i = context.cast(builder, builder.load(builder.gep(rd, [q])), tys[3].dtype,
                                     types.intp)
                xi = broadcast(builder.gep(xd, [builder.add(xoff_, i)]))
                ci = broadcast(builder.gep(cd, [q]))
                row = builder.add(base_, builder.mul(i, stride_))
                for u in range(nvec):
                    p = at(Wd, row, u)
                    v = builder.fsub(builder.load(p, align=align),
                                     builder.fmul(ci, dz[u], flags=_FLAGS), flags=_FLAGS)
                    builder.store(v, p, align=align)
                    s = builder.fadd(builder.load(acc[u]), builder.fmul(xi, v, flags=_FLAGS),
                                     flags=_FLAGS)
                    builder.store(s, acc[u])
            for u in range(nvec):
                builder.store(builder.load(acc[u]), at(outd, j0_, u), align=align)

        done = builder.append_basic_block("pass.done")
        other = builder.append_basic_block("pass.other_width")
        switch = builder.switch(J_, other)
        for width in PASS_WIDTHS:
            case = builder.append_basic_block(f"pass.width{width}")
            switch.add_case(ir.Constant(J_.type, width), case)
            builder.position_at_end(case)
            block_loop(width)
            builder.branch(done)
        builder.position_at_end(other)
        context.call_conv.return_user_exc(builder, ValueError,
                                          ("a block width not in PASS_WIDTHS",))
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


def _pass_block_python(W, base, stride, rows, x, xoff, c, d, j0, out, k, J):
    """:func:`_pass_block` in NumPy, for ``NUMBA_DISABLE_JIT=1`` (an intrinsic
    cannot run as Python); the same arithmetic up to FMA contraction."""
    if J not in PASS_WIDTHS:
        raise ValueError("a block width not in PASS_WIDTHS")
    acc = np.zeros(J, dtype=W.dtype)
    for q in range(k):
        i = q if rows is None else int(rows[q])
        w = W[base + i * stride:base + i * stride + J]
        w -= c[q] * d[j0:j0 + J]
        acc += x[xoff + i] * w
    out[j0:j0 + J] = acc


if numba.config.DISABLE_JIT:
    _pass_block = _pass_block_python


def block_widths(n, itemsize):
    """Column widths of the blocks of an ``n``-column matrix of ``itemsize``-byte
    values: :data:`BLOCK_VECTORS` vectors each, the remainder a last, narrower
    block, or joined to the one before when it is a single vector. Their sum
    is ``n`` rounded up to whole vectors."""
    lanes = LANE_BYTES // itemsize
    nvec = -(-n // lanes)
    q, r = divmod(nvec, BLOCK_VECTORS)
    vectors = [BLOCK_VECTORS] * q
    if r == 1 and q:
        vectors[-1] += 1
    elif r:
        vectors.append(r)
    return np.array([v * lanes for v in vectors], dtype=np.int64)


_block_widths = jit(block_widths)


@jit
def total_width(widths):
    """``widths.sum()``, without NumPy's reduction (whose implementation
    module, and SciPy with it, a cached kernel that used it would import
    on load)."""
    total = 0
    for J in widths:
        total += J
    return total


@jit
def widths_for(n, P):
    """:func:`block_widths` for the dtype of ``P`` (inside compiled kernels)."""
    return _block_widths(n, P.itemsize)


@jit
def to_columns(P, wo, m, n, widths):
    """A copy of the ``m x n`` row-major matrix at ``P[wo:]`` in column blocks
    of ``widths`` (padding columns zero)."""
    # (plain loops: slice assignments took 45 us against 80 for 784 x 100,
    # but doubled the first call's compile time, to 9.5 s)
    Wc = np.zeros(m * total_width(widths), dtype=P.dtype)
    base, j0 = 0, 0
    for J in widths:
        for i in range(m):
            src, dst = wo + i * n + j0, base + i * J
            for j in range(min(J, n - j0)):
                Wc[dst + j] = P[src + j]
        base += m * J
        j0 += J
    return Wc


@jit
def from_columns(Wc, widths, P, wo, m, n):
    """Copy the column blocks back into the row-major matrix at ``P[wo:]``."""
    base, j0 = 0, 0
    for J in widths:
        for i in range(m):
            src, dst = base + i * J, wo + i * n + j0
            for j in range(min(J, n - j0)):
                P[dst + j] = Wc[src + j]
        base += m * J
        j0 += J


@jit
def nonzero_rows(x, xoff, xp, xpoff, m, rows):
    """List in ``rows`` the inputs ``i < m`` where ``x[xoff + i]`` or
    ``xp[xpoff + i]`` is nonzero (the rows a step's pass must visit); return
    how many."""
    zero = x.dtype.type(0)
    k = 0
    for i in range(m):
        if x[xoff + i] != zero or xp[xpoff + i] != zero:
            rows[k] = i
            k += 1
    return k


@jit
def first_pass(Wc, widths, m, rows, k, x, xoff, xp, xpoff, d, lr, out, c):
    """The first layer's one pass of a step: ``W -= lr * xp dz^T`` and
    ``out = W^T x`` over the column blocks ``Wc`` (``m`` rows, ``widths``),
    on the rows ``rows[:k]`` (every row when ``rows`` is None and ``k == m``),
    with ``x = x[xoff:xoff + m]``, ``xp = xp[xpoff:xpoff + m]`` and
    ``dz = d`` (padded with zeros to ``widths.sum()``, as is ``out``). A row
    left out must have ``x`` and ``xp`` zero there. ``c`` is a workspace of
    ``m`` values."""
    # (each row's factor once, not once per block: 8-12% of the dense pass)
    for q in range(k):
        c[q] = lr * xp[xpoff + (q if rows is None else rows[q])]
    base, j0 = 0, 0
    for J in widths:
        _pass_block(Wc, base, J, rows, x, xoff, c, d, j0, out, k, J)
        base += m * J
        j0 += J


# (every width block_widths can give, in either dtype, must have its loop)
assert {v * LANE_BYTES // size for size in (4, 8)
        for v in range(1, BLOCK_VECTORS + 2)} <= set(PASS_WIDTHS)
