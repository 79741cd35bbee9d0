"""The fused path: planning a network for the compiled loops, and its flat buffers.

A network qualifies when it is made only of built-in layers (exact types, not
subclasses): Linear layers, each followed by at most one of ReLU, Tanh,
Sigmoid (or SoftMax, last only), with an NLL loss after a SoftMax or an MSE
loss after anything. Its parameters then live in one flat buffer that the
kernels update in place, and each Linear layer's ``W``, ``W0``, ``dLdW`` and
``dLdW0`` become views into it, so the layers always show the trained values
without copies.
"""

from dataclasses import dataclass

import numpy as np

from .layers import Linear, ReLU, Sigmoid, SoftMax, Tanh
from .losses import MSE, NLL

#: Activation codes of the kernels (fastmlp.kernels.fused), by layer type.
ACT_CODES = {ReLU: 1, Tanh: 2, Sigmoid: 3, SoftMax: 4}
IDENTITY, SOFTMAX = 0, 4
LOSS_CODES = {NLL: 0, MSE: 1}


@dataclass(frozen=True)
class Plan:
    """A network as the kernels see it."""

    sizes: np.ndarray  # int64 (L + 1,): widths, input first
    acts: np.ndarray  # int64 (L,): activation code after each Linear
    loss: int  # LOSS_CODES value
    linears: tuple  # the Linear layers, in order

    @property
    def n_params(self):
        """Number of parameters (weights and biases)."""
        s = self.sizes
        return int(np.sum(s[:-1] * s[1:] + s[1:]))


def make_plan(modules, loss):
    """Return the Plan of a network of built-in layers, or None if it has none."""
    if type(loss) not in LOSS_CODES or not modules or type(modules[0]) is not Linear:
        return None
    linears, acts = [], []
    for m in modules:
        if type(m) is Linear:
            if linears and acts[-1] == SOFTMAX:
                return None  # SoftMax inside the network
            linears.append(m)
            acts.append(IDENTITY)
        elif type(m) in ACT_CODES and acts[-1] == IDENTITY:
            acts[-1] = ACT_CODES[type(m)]
        else:
            return None  # a user layer, or two activations in a row
    if type(loss) is NLL and acts[-1] != SOFTMAX:
        return None
    if SOFTMAX in acts[:-1]:
        return None
    sizes = [linears[0].m] + [lin.n for lin in linears]
    return Plan(
        sizes=np.array(sizes, dtype=np.int64),
        acts=np.array(acts, dtype=np.int64),
        loss=LOSS_CODES[type(loss)],
        linears=tuple(linears),
    )


#: The Linear attributes kept in the flat buffers P (parameters), G (last
#: gradients) and V (optimizer velocities), in the order of FlatNetwork.views.
BOUND = ("W", "W0", "dLdW", "dLdW0", "_VW", "_VW0")


class FlatNetwork:
    """Parameters ``P``, gradients ``G`` and velocities ``V`` of a planned network.

    Layout of each buffer, per Linear layer in order: the (m x n) matrix,
    row-major, then the n biases. :meth:`bind` makes each layer's arrays
    views into the buffers, copying in any array the user replaced since.
    """

    def __init__(self, plan, dtype):
        self.plan = plan
        self.P = np.zeros(plan.n_params, dtype=dtype)
        self.G = np.zeros(plan.n_params, dtype=dtype)
        self.V = np.zeros(plan.n_params, dtype=dtype)
        self.views = []
        o = 0
        for m, n in zip(plan.sizes[:-1], plan.sizes[1:], strict=True):
            w, b = slice(o, o + m * n), slice(o + m * n, o + m * n + n)
            self.views.append(tuple(
                view for buf in (self.P, self.G, self.V)
                for view in (buf[w].reshape(m, n), buf[b].reshape(n, 1))
            ))
            o += m * n + n
        self.bind()

    def bind(self):
        """Make every layer's parameters, gradients and velocities views into the buffers."""
        for i, (lin, views) in enumerate(zip(self.plan.linears, self.views, strict=True)):
            for name, view in zip(BOUND, views, strict=True):
                current = getattr(lin, name, None)
                if current is view:
                    continue
                if current is not None:
                    current = np.asarray(current)
                    if current.shape != view.shape:
                        raise ValueError(
                            f"Linear layer {i} ({lin!r}) has {name} of shape {current.shape}; "
                            f"expected {view.shape}"
                        )
                    view[...] = current
                setattr(lin, name, view)


# -- choosing the blocked path (fastmlp.kernels.blocked) ----------------------

#: Block sizes the tuner tries: with GEMMs (dense inputs), and on the nonzeros
#: (sparse inputs), whose Gram terms cost more per step as blocks grow.
BLOCK_CANDIDATES = (16, 32, 64, 128)
SPARSE_BLOCK_CANDIDATES = (8, 16, 32)
#: Inputs with at most this fraction of nonzeros take the sparse blocked kernel.
SPARSE_DENSITY = 0.5
#: Below this many multiply-adds in the first layer, GEMMs cannot pay: one-pass.
BLOCK_MIN_WEIGHTS = 16_384
#: Training calls shorter than this use a cached choice, or the one-pass kernel.
TUNE_MIN_STEPS = 4_096
#: The blocked path must beat the one-pass kernel by this factor to be chosen,
#: so measurement noise never makes the automatic choice slower.
BLOCK_MARGIN = 0.9

_TUNED = {}


#: Largest block size accepted (the k x k Gram buffer grows with its square).
BLOCK_MAX = 4096


def check_block(block):
    """Validate the ``block`` argument of Sequential: "auto", "off" or an int in 1..4096."""
    if isinstance(block, str) and block in ("auto", "off"):
        return block
    if (isinstance(block, (int, np.integer)) and not isinstance(block, bool)
            and 1 <= block <= BLOCK_MAX):
        return int(block)
    raise ValueError(f"block must be 'auto', 'off' or an integer from 1 to {BLOCK_MAX}; "
                     f"got {block!r}")


def choose_block(setting, flat, X, Y, steps):
    """Return the block size for per-sample steps, 0 meaning the one-pass kernel.

    ``setting`` is the model's ``block``: an int is used as given, "off" gives
    0, and "auto" looks up (or, for a long enough call, measures) what runs
    fastest for this network, dtype and input density, on a scratch copy of
    the parameters, and remembers it for the process.
    """
    if setting == "off":
        return 0
    if setting != "auto":
        return setting
    sizes = flat.plan.sizes
    if sizes[0] * sizes[1] < BLOCK_MIN_WEIGHTS:
        return 0
    density = _density(X)
    key = (tuple(int(s) for s in sizes), tuple(int(a) for a in flat.plan.acts),
           flat.plan.loss, flat.P.dtype.name, round(density, 1),
           density <= SPARSE_DENSITY)  # (densities rounding alike may pick either kernel)
    if key not in _TUNED:
        if steps < TUNE_MIN_STEPS:
            return 0
        _TUNED[key] = _measure(flat, X, Y)
    return _TUNED[key]


def _density(X):
    """Fraction of nonzero inputs in about 256 evenly spaced samples (rows of X)."""
    rows = X[:: max(1, len(X) // 256)]
    return float(np.count_nonzero(rows)) / rows.size


def _measure(flat, X, Y):
    """The block size the kernels run fastest with, 0 for the one-pass kernel."""
    times = measure_blocks(flat, X, Y)
    k = min((c for c in times if c), key=times.get)
    return k if times[k] < BLOCK_MARGIN * times[0] else 0


def blocked_kernel(X):
    """The blocked kernel for inputs X (samples as rows): on the nonzeros for
    sparse inputs, with GEMMs otherwise."""
    from .kernels.blocked import sgd_blocked, sgd_blocked_sparse

    return sgd_blocked_sparse if _density(X) <= SPARSE_DENSITY else sgd_blocked


def measure_blocks(flat, X, Y, candidates=None):
    """Seconds per step of per-sample SGD for each block size (0: one-pass kernel).

    ``candidates`` defaults to 0 and the block sizes of the blocked kernel
    that X's density selects. Runs on scratch copies of the parameters, with
    samples drawn from a private generator; interleaved rounds, best of
    five, so a busy neighbour on a shared machine skews every candidate alike.
    """
    import time

    from .kernels.blocked import sgd_blocked_sparse
    from .kernels.fused import sgd_per_sample
    from .training import one_blas_thread

    sgd_blocked = blocked_kernel(X)
    if candidates is None:
        sparse = sgd_blocked is sgd_blocked_sparse
        candidates = (0, *(SPARSE_BLOCK_CANDIDATES if sparse else BLOCK_CANDIDATES))

    plan = flat.plan
    rng = np.random.RandomState(0)

    def timed(k, idx):
        P, G = flat.P.copy(), np.zeros_like(flat.G)
        losses, hits = np.empty(len(idx)), np.empty(len(idx), dtype=np.int64)
        args = (P, G, plan.sizes, plan.acts, plan.loss, X, Y, idx, 1e-3, losses, hits)
        with one_blas_thread():
            t0 = time.perf_counter()
            if k == 0:
                sgd_per_sample(*args)
            else:
                sgd_blocked(*args, k)
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
