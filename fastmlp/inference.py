"""Fast inference: the forward pass over many samples, in bounded chunks, on all cores.

Function-level API on the flat network description of the training kernels
(see :mod:`fastmlp.network`): ``P`` (per Linear layer its W, inputs x outputs,
row-major, then its biases), ``sizes`` (int64 widths, input first) and
``acts`` (int64 activation code after each Linear layer: IDENTITY=0,
RELU=1, TANH=2, SIGMOID=3, SOFTMAX=4, the last only).

* :func:`forward` -- every output, (outputs, samples), as ``Sequential.forward``;
* :func:`predict_classes` -- the index of the largest output of each sample;
* :func:`score` -- the summed loss and the number of correct argmaxes,
  without materialising the outputs;
* :class:`Accuracy` -- the correct argmaxes again and again on fixed X, Y
  while the weights change in place (``sgd``'s reports), X's nonzeros listed
  once for all of them.

``X`` is (features, samples), float32 or float64, in any layout: the
transpose of a row-major array (each sample contiguous, as the dataset
loaders give), row-major, or a strided view. It is never copied whole: each
chunk of samples is read where it lies, or converted (dtype, or a layout BLAS
cannot take) into a chunk-sized buffer. The outputs have P's dtype. Results
equal the layer-by-layer forward of :mod:`fastmlp.baseline` up to rounding.

How a chunk runs
----------------
Activations are stored samples x units, so each layer is ``A @ W``:

* **First layer, sparse input** (decided once per call from the fill of
  groups of four adjacent samples in about 256 sampled columns,
  :func:`pair_fill`, against :func:`sparse_limit`): the chunk's samples are
  sorted so that similar ones share groups of four (by key inputs chosen
  once per call, :func:`sort_keys`), then products over the nonzeros only
  (:func:`fastmlp.kernels.inference.sparse_columns`, W in L2-sized column
  blocks, four samples' outputs in registers); the nonzero structure is
  listed once per chunk, straight from X in its own layout and dtype. Every
  later layer keeps the sorted order; the last one's outputs are put back in
  place.
* **First layer, dense input**: NumPy's ``matmul`` on the chunk, a view of X
  when BLAS can read it as it lies (P's dtype and one unit stride: F- and
  C-ordered both qualify), else a converted chunk buffer.
* **Later layers**: narrow ones (at most ``INFERENCE_NARROW`` outputs) on
  the register kernel over every input
  (:func:`fastmlp.kernels.inference.dense_layer`; BLAS is slow on narrow
  products); others by ``matmul``, or, after a ReLU
  whose outputs in this chunk are sparse enough (the fill of their groups,
  counted on every ``FILL_STEP``-th group, against :func:`sparse_limit`;
  unless ``sparse=False``), the sparse kernel.
* Bias and activation: added by the register kernels as the outputs leave
  the registers for identity and ReLU; otherwise one vectorised compiled
  pass (:func:`fastmlp.kernels.inference.bias_activate`) over C-ordered rows
  (the kernels' outputs keep their block padding until the next layer reads
  them, as a view, rather than being compacted).
* Tail: outputs written into ``out`` (directly by the last product when
  ``out`` is F-ordered, the default, and the samples were not sorted), or
  their argmax, or loss and hits.

Threads
-------
Chunks are shared out to ``n_threads`` workers (the caller's thread and
``n_threads - 1`` threads of a module-wide ``ThreadPoolExecutor``), which
take the next chunk from a shared counter; every kernel and BLAS call
releases the GIL. Calls too small to share (under ``PARALLEL_MIN_WORK``
multiply-adds) run in the caller's thread alone. During a call from the main
thread BLAS is limited to one thread (:func:`fastmlp.blas.one_blas_thread`,
re-entrant; the previous limits come back when the outermost ends), so
``n_threads`` is the number of cores a call uses, two workers never start
four BLAS threads on two cores, and results do not depend on BLAS's thread
count (OpenBLAS's float32 products round differently on one and two threads).
(Two chunk workers with one BLAS thread each against one worker with two BLAS
threads was not measured side by side on a quiet machine; the sparse kernels
and the activations run in parallel only in the first design.) Numba's parallel threading layers
are not used at all, so any number of Python threads may call these
functions at once (each call has its own workspaces; the pool only queues
their chunks, and the caller's thread always works on its own call).

Results do not depend on ``n_threads`` or on which worker runs a chunk:
chunk boundaries depend only on the chunk size, and :func:`score` sums
per-chunk partials in chunk order. One caveat, from OpenBLAS (0.3.30-0.3.31
as NumPy and SciPy ship it), measured: a thread limit set from a thread
other than the process's main thread reports itself but does not change how
products run, so a call made from another thread runs BLAS as configured
(two threads here) and its float32 outputs may differ in the last bits from
the same call made from the main thread. float64 gave the same bits.

Memory bound
------------
Per worker, the workspace is at most about ``WORKSPACE_BYTES`` (16 MiB): two
activation buffers of ``chunk x widest layer`` (widths rounded up to 16, at
least the kernels' block padding), the sparse kernel's lists (``LIST_ENTRIES``
entries of an int32 and four values, 576 KiB in float64) and the chunk's
sort (three int64 arrays of ``chunk`` and 2**SORT_BITS + 1 counters, 56 KiB),
both on top of the 16 MiB, and, for a dense first layer whose X
BLAS cannot read in place (another dtype, or no unit stride), a ``chunk x
inputs`` conversion buffer, plus the blocked copy of each sparse layer's W
(shared by the workers). The chunk is the largest multiple of 16 samples
(16 to 2048) that fits. So the peak extra memory of a call is at most about
``n_threads x 16 MiB`` plus its result (the outputs for :func:`forward`, 8
bytes a sample for :func:`predict_classes`). Measured (tests/test_inference.py,
VmHWM in a fresh process): 784 x 60,000 float64 inputs through 784-512-512-10
on two threads, F- or C-ordered: 38-39 MiB above the resident size before
the call (into a preallocated ``out``; the default output adds 4.8 MB); 33
MiB before both of its first two layers could run sparse, whose blocked
copies of W are 5 MB.
:class:`Accuracy` keeps, besides its workers' buffers, X's lists for as long
as it lives (one ``sgd`` call): at most ``LIST_CACHE_BYTES`` (256 MiB) and
half of X's bytes (140 MB for MNIST's 60,000 float64 images), and the
classes of Y (8 bytes a sample).
"""

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .blas import blas_threads, one_blas_thread
from .config import (
    CHUNK_MAX,
    CHUNK_MIN,
    DENSITY_SAMPLES,
    INFERENCE_FILL_MAX,
    INFERENCE_FILL_MAX_WIDE,
    INFERENCE_FILL_MIN_WIDTH,
    INFERENCE_NARROW,
    INFERENCE_WIDE,
    LIST_CACHE_BYTES,
    PARALLEL_MIN_WORK,
    WORKSPACE_BYTES,
)
from .engines import kernel_module
from .kernels.codes import IDENTITY, MSE, NLL, RELU, SOFTMAX

#: Entries of a worker's sparse lists (at least the layer's inputs): each
#: entry is an int32 offset and four values, 576 KiB in float64. Groups of
#: samples are listed until the lists are full, then every column block of W
#: runs over them; measured on MNIST: 4,096 to 65,536 entries run alike.
LIST_ENTRIES = 16_384
#: Samples a sparse list covers (kernels.inference.GROUP).
GROUP = 4
#: Key inputs by which a sparse first layer sorts each chunk's samples
#: (kernels.inference.sort_columns; 2**SORT_BITS counters). On MNIST the
#: fill of the lists is 0.388 unsorted, 0.330 / 0.324 / 0.322 with 8 / 10 /
#: 12 keys (chunks of 2,048).
SORT_BITS = 10
#: The fill of a chunk's ReLU outputs is counted on every FILL_STEP-th group.
FILL_STEP = 16

__all__ = [
    "Accuracy",
    "cores",
    "default_threads",
    "forward",
    "pair_fill",
    "predict_classes",
    "score",
    "sparse_limit",
    "thread_pool",
]


def cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads():
    """The threads a call uses unless told: the cores this process may run
    on, but no more than BLAS may use (:func:`fastmlp.blas.blas_threads`).

    scikit-learn's MLP runs on as many threads as BLAS is allowed, and code
    that shares out cores does it by limiting BLAS: joblib's process workers,
    ``threadpoolctl.threadpool_limits(1)``, ``OMP_NUM_THREADS=1``. fastmlp
    follows the same limit, so swapping the import does not oversubscribe
    the cores of a parallel hyper-parameter search. (A BLAS built without
    threads reports one, and so holds fastmlp to one: pass ``n_threads`` to
    the functions here to choose.)
    """
    limit = blas_threads()
    return cores() if limit is None else max(1, min(cores(), limit))


def sparse_limit(n_out, itemsize):
    """The largest list fill (:func:`pair_fill`: listed entries over dense
    entries) at which a layer with ``n_out`` outputs runs faster over the
    nonzeros than BLAS: ``INFERENCE_FILL_MAX`` from ``INFERENCE_FILL_MIN_WIDTH``
    outputs up, ``INFERENCE_FILL_MAX_WIDE`` from ``INFERENCE_WIDE`` up, else
    0 (never sparse).

    A fixed rule (not timed per call). Measured on this machine (2-core AMD
    EPYC, one thread, thread CPU time of chunks of 2,048 samples, 784
    inputs) with the first kernel (adjacent groups, two-register blocks):
    its time over single-threaded OpenBLAS's was 0.5-0.65 at MNIST's fill
    (0.39), 0.6-0.9 at fill 0.59, 0.7-1.0 at 0.68 and 0.8-1.2 at 0.76, for
    16 to 1024 outputs in either dtype (float32 crosses 1 first, at 0.65 for
    16-32 outputs); see the closing notes of issue 12. With the cheaper
    lists (the kernel's nz_mask8), wide layers gain most, the lists' cost
    being shared by more blocks: 512 inputs to 256-512 outputs measured 0.8-0.9
    at fill 0.8 and about 1 at 0.9-0.95, 16-128 outputs still crossing 1 at
    0.6-0.7 (one thread, random nonzeros; noisy machine). MNIST's ReLU
    outputs after 784-512 fill 0.76 sorted.
    """
    if n_out < INFERENCE_FILL_MIN_WIDTH:
        return 0.0
    if n_out >= INFERENCE_WIDE:
        return float(INFERENCE_FILL_MAX_WIDE)
    return float(INFERENCE_FILL_MAX)


# -- argument checks ---------------------------------------------------------------

def _check_net(P, sizes, acts):
    sizes = np.asarray(sizes)
    acts = np.asarray(acts)
    if sizes.ndim != 1 or sizes.shape[0] < 2 or sizes.dtype.kind not in "iu" or sizes.min() < 1:
        raise ValueError(f"sizes must be a 1-D integer array of at least 2 positive widths; "
                         f"got {sizes!r}")
    L = sizes.shape[0] - 1
    if acts.shape != (L,) or acts.dtype.kind not in "iu" or acts.min() < 0 or acts.max() > 4:
        raise ValueError(f"acts must hold {L} activation codes from 0 to 4; got {acts!r}")
    if SOFTMAX in acts[:-1]:
        raise ValueError("SOFTMAX (code 4) may only follow the last layer")
    P = np.asarray(P)
    if P.dtype not in (np.float32, np.float64) or P.ndim != 1:
        raise TypeError(f"P must be a 1-D float32 or float64 array; got {P.dtype} {P.shape}")
    n_params = int(np.sum(sizes[:-1] * sizes[1:] + sizes[1:]))
    if P.shape[0] != n_params:
        raise ValueError(f"P has {P.shape[0]} entries; sizes {sizes.tolist()} need {n_params}")
    layers = []
    o = 0
    for ell in range(L):
        m, n = int(sizes[ell]), int(sizes[ell + 1])
        layers.append((P[o:o + m * n].reshape(m, n), P[o + m * n:o + m * n + n], int(acts[ell])))
        o += m * n + n
    return P, [int(s) for s in sizes], layers


def _check_data(X, rows, name, what="features"):
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64; got {X.dtype}")
    if X.ndim != 2 or X.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows} {what}, samples); got {X.shape}")
    return X


# -- the plan of one call ------------------------------------------------------------

class _Call:
    """Everything one call decides before its chunks run."""

    def __init__(self, P, sizes, acts, X, n_threads, chunk, sparse, report=False):
        self.K = kernel_module("inference")
        self.P, self.sizes, self.layers = _check_net(P, sizes, acts)
        self.X = X = _check_data(X, self.sizes[0], "X")
        self.dtype = self.P.dtype
        self.N = N = X.shape[1]
        m = self.sizes[0]
        item = self.dtype.itemsize
        # First layer: sparse or dense (``sparse`` forces it).
        first = sparse
        if first is None:
            first = pair_fill(X) <= sparse_limit(self.sizes[1], item)
        self.sparse0 = bool(first)
        # The reports' Accuracy lists X once, in its own order (class_order),
        # and runs narrow layers by BLAS: fewer kernels to compile for a
        # first sgd.
        self.keys = sort_keys(X) if self.sparse0 and not report else None
        # Later layers: narrow ones on the dense group kernel; after a ReLU,
        # over the nonzeros when a chunk's are sparse enough (unless
        # ``sparse=False``), whichever path the first layer took.
        self.narrow = [ell > 0 and self.sizes[ell + 1] <= INFERENCE_NARROW and not report
                       for ell in range(len(self.layers))]
        self.hidden_sparse = [
            ell > 0 and not self.narrow[ell] and self.layers[ell - 1][2] == RELU
            and sparse is not False and sparse_limit(self.sizes[ell + 1], item) > 0
            for ell in range(len(self.layers))
        ]
        bw = self.K.block_width(self.dtype)  # (narrow layers: blocks of two registers)
        self.padded = [-(-n // bw) * bw if self.narrow[ell]
                       else self.K.padded_width(n, self.dtype)
                       for ell, n in enumerate(self.sizes[1:])]
        self.refresh()
        # How the dense first layer reads X.
        self.convert = None
        if not self.sparse0:
            s0, s1 = X.strides
            ok = X.dtype == self.dtype and (s0 == X.itemsize or s1 == X.itemsize)
            if not ok:
                self.convert = "rows" if abs(s0) <= abs(s1) else "cols"
        self.widest = widest = max(_round16(n) for n in self.sizes[1:])
        per_sample = 2 * widest * item + (m * item if self.convert else 0)
        if chunk is None:
            chunk = WORKSPACE_BYTES // max(per_sample, 1)
            chunk = int(min(CHUNK_MAX, max(CHUNK_MIN, chunk // 16 * 16)))
        self.chunk = C = int(max(GROUP, chunk + (-chunk) % GROUP))
        self.n_chunks = (N + C - 1) // C
        work = N * sum(a * b for a, b in itertools.pairwise(self.sizes))
        if n_threads is not None:
            n_threads = max(1, int(n_threads))
        if work < PARALLEL_MIN_WORK:
            n_threads = 1
        elif n_threads is None:  # (only here: the query takes ~10 us)
            n_threads = default_threads()
        self.n_threads = min(n_threads, self.n_chunks)

    def refresh(self):
        """Copy the weights of the sparse and narrow layers into column blocks
        (kernels.inference.split_weights; two-register blocks only for narrow
        layers), their biases padded alike: again whenever P has changed."""
        self.blocked = [
            None if not ((ell == 0 and self.sparse0) or self.hidden_sparse[ell] or self.narrow[ell])
            else (None, self.K.block_weights(W)) if self.narrow[ell]
            else self.K.split_weights(W)
            for ell, (W, _, _) in enumerate(self.layers)
        ]
        # Their biases padded as the blocks (zeros), and zeros alike.
        self.zero_pad = [None if Wb is None else np.zeros(self._padded(ell), self.dtype)
                         for ell, Wb in enumerate(self.blocked)]
        self.bias_pad = [None if z is None else z.copy() for z in self.zero_pad]
        for ell, (_, bias, _) in enumerate(self.layers):
            if self.bias_pad[ell] is not None:
                self.bias_pad[ell][:bias.shape[0]] = bias

    def _padded(self, ell):
        """Layer ``ell``'s outputs, padding included, in column blocks."""
        return self.padded[ell]

    def workspace(self):
        """One worker's buffers (see "Memory bound")."""
        C, dt = self.chunk, self.dtype
        cap = max([LIST_ENTRIES] + [m for m, Wb in zip(self.sizes, self.blocked, strict=False)
                                    if Wb is not None])
        ws = {"A": self.K.aligned_empty(C * self.widest, dt),
              "B": self.K.aligned_empty(C * self.widest, dt),
              "lists": (np.empty(cap, np.int32), np.empty((cap, GROUP), dt),
                        np.empty(C // GROUP + 1, np.int64)),
              "ident": np.arange(C, dtype=np.int64), "cols": np.empty(C, np.int64)}
        if self.keys is not None:
            ws["counts"] = np.empty((1 << len(self.keys)) + 1, np.int64)
            ws["ranks"] = np.empty(C, np.int64)
        if self.convert == "rows":
            ws["conv"] = np.empty((C, self.sizes[0]), dt)
        elif self.convert == "cols":
            ws["conv"] = np.empty((self.sizes[0], C), dt)
        return ws

    def run_chunk(self, lo, hi, ws, final=None, lists=None):
        """Return the last layer's outputs (rows x outputs) of samples lo:hi,
        also written into ``final`` (rows x outputs) if given. With ``lists``
        (:class:`_Lists`, of a sparse first layer), samples ``lo:hi`` are
        the listed columns ``lists.cols[lo:hi]``, their lists made already."""
        with np.errstate(all="ignore"):  # non-finite values propagate silently
            return self._run_chunk(lo, hi, ws, final, lists)

    def _run_chunk(self, lo, hi, ws, final, lists):
        b = hi - lo
        X = self.X
        K = self.K
        bufs = (ws["A"], ws["B"])
        L = len(self.layers)
        # A sparse first layer runs the samples sorted (kernels.inference.
        # sort_columns): the rows of every layer's activations are then in
        # the order ``cols``, put back in place after the last layer.
        cols = None
        if self.sparse0 and lists is None:
            cols = ws["cols"][:b]
            if self.keys is None:
                np.add(ws["ident"][:b], lo, out=cols)
            else:
                K.sort_columns(X, lo, hi, self.keys, cols, ws["counts"], ws["ranks"][:b])
        reordered = cols is not None and self.keys is not None
        A = Afull = None  # activations (b x n view), and a C-ordered array holding them
        density = 1.0
        for ell, (W, bias, code) in enumerate(self.layers):
            m, n = W.shape
            last = ell == L - 1 and final is not None and not reordered
            use_sparse = (ell == 0 and self.sparse0) or (
                self.hidden_sparse[ell] and self._sparse_enough(Afull, m, n, b, density, ws))
            if use_sparse or self.narrow[ell]:
                W3, W2 = self.blocked[ell]
                npad = self._padded(ell)
                be = b + (-b) % GROUP  # the kernels fill whole groups of rows
                Zp = bufs[ell % 2][:be * npad].reshape(be, npad)
                # The kernels add the biases (and a ReLU) as the outputs
                # leave the registers; other activations run after them.
                fused = code in (IDENTITY, RELU)
                bpad = self.bias_pad[ell] if fused else self.zero_pad[ell]
                relu = code == RELU
                if not use_sparse:
                    K.dense_layer(A, m, W2, Zp, bpad, relu)
                elif ell == 0 and lists is not None:
                    g0, g1 = lo // GROUP, (hi + GROUP - 1) // GROUP
                    K.group_layer(W3, W2, lists.idx, lists.ccf, lists.starts[g0:g1 + 1], g1 - g0,
                                  Zp, LIST_ENTRIES, bpad, relu)
                elif ell == 0:
                    K.sparse_columns(X, m, cols, W3, W2, Zp, *ws["lists"], bpad, relu, None)
                else:
                    K.sparse_columns(Afull.T, m, ws["ident"][:b], W3, W2, Zp, *ws["lists"],
                                     bpad, relu, None)
                Zfull = Zp[:b]
                if fused:
                    nnz = -2  # (not counted)
                elif code == SOFTMAX:  # over the n outputs only
                    nnz = K.bias_activate(Zfull, bias, code)
                else:  # over whole rows: vectors only, no scalar remainder
                    nnz = K.bias_activate(Zfull, self.bias_pad[ell], code)
                Z = Zfull[:, :n]
                if last:
                    final[...] = Z
                    Z = Zfull = final
            else:
                if last:
                    Z = final
                else:
                    Z = bufs[ell % 2][:b * n].reshape(b, n)
                if ell > 0:
                    np.matmul(A, W, out=Z)
                elif self.convert == "rows":
                    conv = ws["conv"][:b]
                    conv[...] = X.T[lo:hi]
                    np.matmul(conv, W, out=Z)
                elif self.convert == "cols":
                    conv = ws["conv"][:, :b]
                    conv[...] = X[:, lo:hi]
                    np.matmul(conv.T, W, out=Z)
                else:
                    np.matmul(X.T[lo:hi], W, out=Z)
                nnz = K.bias_activate(Z, bias, code)
                Zfull = Z
            A, Afull = Z, Zfull
            density = nnz / max(1, b * n) if nnz >= 0 else (None if nnz == -2 else 1.0)
        if reordered:
            n = A.shape[1]
            out = final if final is not None else bufs[L % 2][:b * n].reshape(b, n)
            K.unsort_rows(A, cols, lo, out)
            return out
        return A

    def _sparse_enough(self, Afull, m, n, b, density, ws):
        """Whether a layer after a ReLU runs over the nonzeros of this chunk's
        activations ``Afull`` (``density`` of them nonzero): its groups' fill,
        counted when the density alone does not settle it, against
        :func:`sparse_limit`."""
        limit = sparse_limit(n, self.dtype.itemsize)
        if density is not None:  # (None: not counted)
            if density > limit:  # the fill is at least the density
                return False
            if _group_fill(density) <= limit:  # nonzeros scattered at random fill this much
                return True
        return self.K.strided_fill(Afull.T, m, b, FILL_STEP) <= limit

    def run(self, body, spaces=None):
        """Call ``body(ci, lo, hi, ws)`` for every chunk, on the call's workers;
        worker k's buffers are ``spaces[k]`` (made there when missing) if a
        list ``spaces`` is given, else new."""
        C, N = self.chunk, self.N
        spaces = [] if spaces is None else spaces
        while len(spaces) < self.n_threads:
            spaces.append(None)
        if self.n_threads == 1:  # too small to share, or one thread asked for
            if spaces[0] is None:
                spaces[0] = self.workspace()
            ws = spaces[0]
            with one_blas_thread():
                for ci in range(self.n_chunks):
                    body(ci, ci * C, min(N, ci * C + C), ws)
            return
        counter = itertools.count()
        lock = threading.Lock()
        errors = []

        def worker(k):
            try:
                if spaces[k] is None:
                    spaces[k] = self.workspace()
                ws = spaces[k]
                while not errors:
                    with lock:
                        ci = next(counter)
                    if ci >= self.n_chunks:
                        return
                    body(ci, ci * C, min(N, ci * C + C), ws)
            except BaseException as exc:
                errors.append(exc)

        with one_blas_thread():
            pool = thread_pool()
            futures = [pool.submit(worker, k) for k in range(1, self.n_threads)]
            worker(0)
            for f in futures:
                f.result()
        if errors:
            raise errors[0]


class _Lists:
    """The first layer's group lists of the columns ``cols`` of X, made once:
    group g is ``cols[4g:4g + 4]``, its entries ``starts[g]:starts[g + 1]``
    of ``idx`` and ``cc`` (see kernels.inference.list_column_groups)."""

    def __init__(self, cols, idx, cc, starts):
        self.cols, self.idx, self.cc, self.starts = cols, idx, cc, starts
        self.ccf = cc.reshape(-1)


def _on_workers(n_threads, fn, jobs):
    """``[fn(*job) for job in jobs]``, the jobs shared out to ``n_threads``
    workers (the caller's thread and the pool's); ``fn`` releases the GIL."""
    if n_threads <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    futures = [thread_pool().submit(fn, *job) for job in jobs[1:]]
    first = fn(*jobs[0])
    return [first] + [f.result() for f in futures]


def _list_all(call, cols, budget):
    """:class:`_Lists` of the columns ``cols`` of ``call.X`` for its first
    layer, made on the call's workers (a counting pass, then the lists),
    or None if they would take more than ``budget`` bytes."""
    K, X, m = call.K, call.X, call.sizes[0]
    G = (cols.shape[0] + GROUP - 1) // GROUP
    cuts = np.linspace(0, G, call.n_threads + 1).astype(np.int64)
    parts = [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]
    counts = _on_workers(call.n_threads, K.count_column_groups,
                         [(X, m, cols, a, b) for a, b in parts])
    E = int(sum(counts))
    if E * (4 + GROUP * call.dtype.itemsize) > budget:
        return None
    idx = np.empty(max(E, 1), np.int32)
    cc = np.empty((max(E, 1), GROUP), call.dtype)
    starts = np.empty(G + 1, np.int64)
    starts[[a for a, _ in parts]] = np.cumsum([0, *counts[:-1]])
    _on_workers(call.n_threads, K.list_column_groups,
                [(X, m, cols, a, b, idx, cc, starts) for a, b in parts])
    return _Lists(cols, idx, cc, starts)


class Accuracy:
    """Hits on fixed X and one-hot Y of a network whose weights change between
    calls: the reports of one ``sgd`` call (``Sequential.sgd``).

    Made once with the network's flat ``P``, which the caller then changes
    in place (training) between calls; X and Y must not change. X and Y are
    checked once and Y's classes found once. For a sparse first layer, the
    first call lists the nonzeros of all of X once (at most
    ``LIST_CACHE_BYTES`` and half of X's bytes, else each chunk is listed
    afresh as :func:`score` does), on the call's workers, and every call
    runs the first layer from those lists. The lists are made in
    :func:`class_order` (samples of one class, similar in key inputs,
    share groups of four: on MNIST the lists hold 0.285 of the dense entries
    instead of 0.388, 27% fewer multiply-adds); each sample's outputs are the
    same in any order, as its zero inputs add exact zeros.

    ``acc()`` returns the number of samples whose largest output is where Y
    is largest (``np.argmax`` of both, as :func:`score` counts them).
    """

    def __init__(self, P, sizes, acts, X, Y, *, n_threads=None, chunk=None, sparse=None):
        self.call = call = _Call(P, sizes, acts, X, n_threads, chunk, sparse, report=True)
        Y = _check_data(Y, call.sizes[-1], "Y", "outputs")
        if Y.shape[1] != call.N:
            raise ValueError(f"X has {call.N} samples but Y has {Y.shape[1]}")
        self.labels = np.argmax(Y, axis=0)
        self.lists = None
        self.first = True
        self.spaces = []  # the workers' buffers, kept from call to call

    def __call__(self):
        call = self.call
        call.refresh()
        if self.first:
            self.first = False
            if call.sparse0:
                order = class_order(call.X, self.labels)
                self.lists = _list_all(call, order, min(LIST_CACHE_BYTES, call.X.nbytes // 2))
                if self.lists is not None:
                    self.labels = self.labels[order]
        lists, labels = self.lists, self.labels
        hits = np.zeros(call.n_chunks, np.int64)

        def body(ci, lo, hi, ws):
            hits[ci] = call.K.class_hits(call.run_chunk(lo, hi, ws, lists=lists), labels, lo)

        call.run(body, self.spaces)
        return int(hits.sum())


def _round16(n):
    return (n + 15) // 16 * 16


def _group_fill(density):
    """Expected fill of group lists for scattered nonzeros of this density."""
    return 1.0 - (1.0 - min(1.0, density)) ** GROUP


def _sampled_columns(N):
    """About DENSITY_SAMPLES columns of N, as groups of four adjacent ones
    evenly spread (for fewer than four, the last repeated)."""
    if N < GROUP:
        return np.minimum(np.arange(GROUP), max(N - 1, 0)).astype(np.int64)
    k = min(DENSITY_SAMPLES // GROUP, N // GROUP)
    starts = np.linspace(0, N - GROUP, k).astype(np.int64)
    return (starts[:, None] + np.arange(GROUP)).reshape(-1)


def sort_keys(X, cols=None):
    """The key inputs of :func:`fastmlp.kernels.inference.sort_columns` for
    X (or its columns ``cols``): the (at most SORT_BITS) inputs nonzero in a
    share of the sampled columns (:func:`pair_fill`'s) closest to one half,
    most balanced first; None if no input is nonzero in some sampled columns
    and zero in others, or there are fewer than two groups of samples."""
    N = X.shape[1] if cols is None else cols.shape[0]
    if N <= GROUP:
        return None
    sampled = _sampled_columns(N)
    if cols is not None:
        sampled = np.ascontiguousarray(cols[sampled], dtype=np.int64)
    counts = np.empty(X.shape[0], np.int64)
    kernel_module("inference").nonzero_counts(X, sampled, counts)
    share = counts / len(sampled)
    varied = np.flatnonzero((share > 0) & (share < 1))
    if varied.size == 0:
        return None
    keys = varied[np.argsort(np.abs(share[varied] - 0.5), kind="stable")[:SORT_BITS]]
    return keys.astype(np.int64)


def class_order(X, labels):
    """The samples (columns of X) grouped by class ``labels``, and within
    each class in the reflected Gray-code order of key inputs chosen for
    that class (:func:`sort_keys` on its columns; the order
    :func:`fastmlp.kernels.inference.sort_columns` makes of a chunk).

    Made once per ``sgd`` call for its reports' lists (:class:`Accuracy`):
    groups of four samples of one class, and of one class alike in those
    inputs, share more nonzero inputs. Measured on MNIST's 60,000 training
    images: the lists hold 0.285 of the dense entries, against 0.331 by
    class alone, 0.324 by keys of all of X and 0.388 in the given order; the
    order takes about 22 ms (``tests/test_reports.py::test_class_order``
    checks the order, and a lower fill, on synthetic data)."""
    order = np.argsort(labels, kind="stable")
    pieces = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    for i, cols in enumerate(pieces):
        keys = sort_keys(X, cols)
        if keys is None:
            continue
        rank = np.zeros(cols.shape[0], np.int64)
        for k in keys:  # Gray code to binary, most significant bit first
            rank = 2 * rank + ((rank & 1) ^ (X[k, cols] != 0))
        pieces[i] = cols[np.argsort(rank, kind="stable")]
    return np.concatenate(pieces)


def pair_fill(X):
    """The fill of the sparse kernel's lists (the share of (input, group)
    entries where any of a group of four adjacent samples is nonzero) in
    about DENSITY_SAMPLES columns of X, taken as groups evenly spread: the
    sparse first layer's share of the dense product's work. (The name is
    older than the groups of four; the kernel once listed pairs.)"""
    return kernel_module("inference").density_sample(X, _sampled_columns(X.shape[1]))[1]


_POOL = None
_POOL_LOCK = threading.Lock()


def thread_pool():
    """The process's pool of worker threads for compiled, GIL-releasing work
    (inference chunks, L-BFGS evaluations): one per core but the caller's."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, cores() - 1),
                                       thread_name_prefix="fastmlp")
        return _POOL


# -- public functions -----------------------------------------------------------------

def forward(P, sizes, acts, X, out=None, *, n_threads=None, chunk=None, sparse=None):
    """Return the network's outputs for every column of ``X``: (outputs, samples).

    Parameters
    ----------
    P, sizes, acts : the flat network (see the module docstring).
    X : ndarray (features, samples), float32 or float64, any layout.
    out : ndarray (outputs, samples) of P's dtype, optional
        Filled and returned. By default a new F-ordered array (each sample's
        outputs contiguous; the transpose of a row-major (samples, outputs)
        array), which the last layer writes directly.
    n_threads : int, optional
        Worker threads (default: :func:`default_threads`, the cores this
        process may use, at most BLAS's thread limit). Small calls run on
        one.
    chunk : int, optional
        Samples per chunk (default: sized to the workspace bound).
    sparse : bool, optional
        Force the first layer's path (default: chosen from the data).
    """
    call = _Call(P, sizes, acts, X, n_threads, chunk, sparse)
    n_out = call.sizes[-1]
    if out is None:
        out = np.empty((call.N, n_out), call.dtype).T
    elif (not isinstance(out, np.ndarray) or out.shape != (n_out, call.N)
          or out.dtype != call.dtype):
        raise ValueError(f"out must be an ndarray of shape {(n_out, call.N)} and dtype "
                         f"{call.dtype}")
    direct = out.T.flags.c_contiguous

    def body(ci, lo, hi, ws):
        if direct:
            call.run_chunk(lo, hi, ws, final=out.T[lo:hi])
        else:
            call.K.write_columns(call.run_chunk(lo, hi, ws), out, lo)

    call.run(body)
    return out


def predict_classes(P, sizes, acts, X, *, n_threads=None, chunk=None, sparse=None):
    """Return the index of the largest output of each sample: int64 (samples,).

    As ``np.argmax(forward(...), axis=0)`` (the first maximum; a NaN counts
    as the maximum), without keeping the outputs.
    """
    call = _Call(P, sizes, acts, X, n_threads, chunk, sparse)
    classes = np.empty(call.N, np.int64)

    def body(ci, lo, hi, ws):
        call.K.write_classes(call.run_chunk(lo, hi, ws), classes, lo)

    call.run(body)
    return classes


def score(P, sizes, acts, loss, X, Y, *, n_threads=None, chunk=None, sparse=None):
    """Return ``(total_loss, hits)`` over every column of X and Y.

    ``total_loss`` (a float) is the loss summed over samples: NLL (code 0)
    ``-sum(Y * log(max(out, eps)))`` with eps of P's dtype, or MSE (code 1)
    ``sum((out - Y)**2)``; ``hits`` (an int) is the number of samples whose
    largest output is where ``Y`` is largest (``np.argmax`` of both).
    ``Y`` is (outputs, samples), float32 or float64, any layout. Sums are
    taken in float64, per chunk, then over chunks in order.
    """
    call = _Call(P, sizes, acts, X, n_threads, chunk, sparse)
    if loss not in (NLL, MSE):
        raise ValueError(f"loss must be 0 (NLL) or 1 (MSE); got {loss!r}")
    Y = _check_data(Y, call.sizes[-1], "Y", "outputs")
    if Y.shape[1] != call.N:
        raise ValueError(f"X has {call.N} samples but Y has {Y.shape[1]}")
    losses = np.zeros(call.n_chunks)
    hits = np.zeros(call.n_chunks, np.int64)

    def body(ci, lo, hi, ws):
        losses[ci], hits[ci] = call.K.score_rows(call.run_chunk(lo, hi, ws), Y, lo, loss)

    call.run(body)
    return float(np.sum(losses)), int(np.sum(hits))
