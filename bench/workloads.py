"""The benchmark workloads, each from a seed notebook, and the paths that run them.

A *case* is one (workload, mode, dtype, path). ``make_runner(case)`` builds
the model and data and returns a function that takes ``case.steps`` training
steps; the benchmarks time that function.

Workloads (shared/seeds/):

* W1 ``toy`` -- notebook 002: 2-10-10-2 ReLU / SoftMax + NLL, per sample.
* W2 ``mnist-sigmoid`` -- notebook 003: 784-100-10 Sigmoid / SoftMax + NLL,
  per sample, on MNIST (synthetic data of the same shape where absent).
* W3 ``relu-mse`` -- notebook 004: 1000-100-10 ReLU + MSE, mini-batches of
  64 through ``fit`` (randn data, as the notebook).
* W4 ``wide`` -- 784-512-512-10 ReLU / SoftMax + NLL on MNIST, per sample
  and in mini-batches of 128 through ``fit``.
* W5 ``mnist-relu`` -- 784-100-10 ReLU / SoftMax + NLL on MNIST, in
  mini-batches of 32 through ``fit`` (the small-batch MNIST case of the
  peer comparison).

Paths: ``numpy`` (the NumPy engine, layer by layer), ``numba-layer`` (the
Numba engine with fusion turned off), ``numba-fused`` (the default: fused
compiled loops), ``notebook`` (notebook 002's classes as written, einsum
softmax Jacobian; W1 and W2 only) and ``stream`` (the memory floor: one
compiled read-modify-write pass over the model's parameters per sample).
"""

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import notebook002 as nb  # noqa: E402  (the seed notebook's own classes)

import fastmlp  # noqa: E402
from fastmlp import Sequential  # noqa: E402
from fastmlp.datasets import load_mnist, make_blobs  # noqa: E402


def mnist_dir():
    """The shared MNIST folder if present (FASTMLP_MNIST_DIR overrides)."""
    for c in (os.environ.get("FASTMLP_MNIST_DIR"), ROOT.parent / "shared" / "data" / "mnist",
              Path("/work/shared/data/mnist")):
        if c and (Path(c) / "train-images-idx3-ubyte.gz").is_file():
            return Path(c)
    return None


@dataclass(frozen=True)
class Workload:
    key: str
    name: str
    sizes: tuple  # widths, input first
    hidden: str  # activation between Linear layers
    head: str  # "softmax-nll" or "identity-mse"
    data: str  # "mnist", "toy" or "randn"
    lrate: float


WORKLOADS = {
    "W1": Workload("W1", "toy", (2, 10, 10, 2), "relu", "softmax-nll", "toy", 0.005),
    "W2": Workload("W2", "mnist-sigmoid", (784, 100, 10), "sigmoid", "softmax-nll", "mnist", 0.01),
    "W3": Workload("W3", "relu-mse", (1000, 100, 10), "relu", "identity-mse", "randn", 1e-4),
    "W2d": Workload("W2d", "mnist-sigmoid, dense inputs", (784, 100, 10), "sigmoid",
                    "softmax-nll", "dense", 0.01),
    "W4": Workload("W4", "wide", (784, 512, 512, 10), "relu", "softmax-nll", "mnist", 0.01),
    "W5": Workload("W5", "mnist-relu", (784, 100, 10), "relu", "softmax-nll", "mnist", 0.01),
}


@dataclass(frozen=True)
class Case:
    workload: str
    mode: str  # "per-sample" or "batch64"/"batch128"
    dtype: str
    path: str
    steps: int  # per timed call (per-sample cases); mini-batch cases run one epoch

    @property
    def batch(self):
        return 1 if self.mode == "per-sample" else int(self.mode.removeprefix("batch"))

    @property
    def group(self):
        w = WORKLOADS[self.workload]
        return f"{w.key} {w.name} {self.mode} {self.dtype}"

    @property
    def id(self):
        return f"{self.workload}-{self.mode}-{self.dtype}-{self.path}"


#: Steps per timed call of the per-sample cases: the same for every path of a
#: group, so pytest-benchmark's ratios compare equal work. Sized so the
#: slowest path takes a few seconds per call and the fastest long enough that
#: the per-call input check (one pass over X) stays a few percent.
PER_SAMPLE_STEPS = {"W1": 50_000, "W2": 20_000, "W2d": 20_000, "W4": 1_500}


BLOCKED = ("numba-onepass", "numba-blocked", "numba-fused", "stream")
PER_SAMPLE_PATHS = {
    "W1": ("notebook", "numpy", "numba-layer", "numba-fused"),
    "W2": ("notebook", "numpy", "numba-layer", *BLOCKED),
    "W2d": BLOCKED,
    "W4": ("numpy", "numba-layer", *BLOCKED),
}

BATCH_PATHS = ("numpy", "numba-layer", "numba-fused")
BATCH_MODES = {"W3": ("batch64",), "W4": ("batch128",), "W5": ("batch32",)}
#: Samples per mini-batch epoch (a fixed subset, so each timed call is one epoch).
BATCH_SUBSET = {"W3": 64 * 40, "W4": 128 * 12, "W5": 32 * 80}


def all_cases():
    cases = []
    for dtype in ("float64", "float32"):
        for w, paths in PER_SAMPLE_PATHS.items():
            cases += [Case(w, "per-sample", dtype, p, PER_SAMPLE_STEPS[w]) for p in paths]
        for w, modes in BATCH_MODES.items():
            cases += [Case(w, m, dtype, p, 0) for m in modes for p in BATCH_PATHS]
    return cases


_DATA = {}


def data(workload, dtype):
    """(X, Y, source) for a workload: features x samples, one-hot or real targets."""
    key = (WORKLOADS[workload].data, dtype)
    if key not in _DATA:
        kind = key[0]
        if kind == "mnist":
            folder = mnist_dir()
            if folder is not None:
                X, Y = load_mnist(folder, "train", dtype=dtype)
                _DATA[key] = (X, Y, "MNIST")
            else:  # same shape and about the same sparsity: uniform pixels, 80% zeros
                rng = np.random.RandomState(0)
                Xr = rng.rand(60000, 784).astype(dtype)
                Xr[rng.rand(60000, 784) < 0.8] = 0
                y = rng.randint(10, size=60000)
                _DATA[key] = (Xr.T, np.eye(10, dtype=dtype)[y].T, "synthetic MNIST-shaped")
        elif kind == "dense":  # MNIST's shape without its zeros: where blocking pays
            rng = np.random.RandomState(0)
            Xr = rng.rand(20000, 784).astype(dtype)
            y = rng.randint(10, size=20000)
            _DATA[key] = (Xr.T, np.eye(10, dtype=dtype)[y].T, "uniform random pixels")
        elif kind == "toy":
            X, Y = make_blobs(2000, 2, 2, spread=2.0, seed=0, dtype=dtype)
            _DATA[key] = (X, Y, "synthetic 2-D blobs")
        else:  # notebook 004: x ~ randn(batch, 1000), t ~ randn(batch, 10)
            rng = np.random.RandomState(0)
            x, t = rng.randn(20000, 1000).astype(dtype), rng.randn(20000, 10).astype(dtype)
            _DATA[key] = (x.T, t.T, "randn (notebook 004)")
    return _DATA[key]


def n_params(sizes):
    return sum(m * n + n for m, n in itertools.pairwise(sizes))


def flops_per_sample(sizes):
    """Dense-equivalent training FLOPs per sample: forward, weight gradient and
    input gradient (none for the first layer) at 2 FLOPs per multiply-add."""
    mn = [m * n for m, n in itertools.pairwise(sizes)]
    return 2 * (2 * sum(mn) + sum(mn[1:]))


def build(lib, workload, dtype=None, **kw):
    """The workload's network from ``lib`` (fastmlp or the notebook's classes)."""
    w = WORKLOADS[workload]
    act = {"relu": lib.ReLU, "sigmoid": getattr(lib, "Sigmoid", None)}[w.hidden]
    mods = []
    for i, (m, n) in enumerate(itertools.pairwise(w.sizes)):
        mods.append(lib.Linear(m, n))
        if i < len(w.sizes) - 2:
            mods.append(act())
    if w.head == "softmax-nll":
        mods.append(lib.SoftMax())
        loss = lib.NLL()
    else:
        loss = lib.MSE()
    if lib is fastmlp:
        return Sequential(mods, loss, dtype=dtype, **kw)
    return lib.Sequential(mods, loss)


def best_block(model, X, Y):
    """The fastest block size for the blocked kernel on this model and data
    (measured as ``block="tune"`` does)."""
    from fastmlp.config import SPARSE_DENSITY
    from fastmlp.plan import density
    from fastmlp.tuning import measure_blocks

    model.sgd(X, Y, iters=2, verbose=False)  # binds the flat buffers
    times = measure_blocks(model._flat, np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T),
                           density(X) <= SPARSE_DENSITY)
    return min((k for k in times if k), key=times.get)


class _Notebook:
    """Notebook 002's classes as written; its print_accuracy silenced for timing,
    plus a Sigmoid written in the notebook's style (notebook 002 has none)."""

    Layer, Linear, ReLU, SoftMax, NLL = nb.Layer, nb.Linear, nb.ReLU, nb.SoftMax, nb.NLL

    class Sigmoid(nb.Layer):
        def forward(self, Z):
            self.A = 1 / (1 + np.exp(-Z))
            return self.A

        def backward(self, dLdA):
            return self.A * (1 - self.A) * dLdA

    class Sequential(nb.Sequential):
        def print_accuracy(self, it, X, Y, cur_loss, every=250):
            pass


def make_runner(case, scale=1.0, momentum=0.9):
    """Return (run, samples_per_call, source), or None for a case that does not exist.

    ``run()`` takes the case's steps (times ``scale``, for the quick mode);
    ``run(k)`` takes ``k`` steps (per-sample cases) or an epoch over ``k``
    samples (mini-batch cases: the first ``k`` of the data, SGD with
    ``momentum``), for warming up the same model.
    """
    w = WORKLOADS[case.workload]
    X, Y, source = data(case.workload, case.dtype)
    dtype = np.dtype(case.dtype)
    np.random.seed(0)
    if case.batch == 1:
        steps = max(1, int(case.steps * scale))
        if case.path == "stream":
            from stream_kernel import aligned_buffer, stream_passes

            P = aligned_buffer(np.random.rand(n_params(w.sizes)).astype(dtype))
            return (lambda k=steps: stream_passes(P, 1e-7, k)), steps, "parameter-sized buffer"
        if case.path == "notebook":
            if dtype != np.float64:
                return None  # the notebook's classes are float64 only
            nb_model = build(_Notebook, case.workload)
            return (lambda k=steps: nb_model.sgd(X, Y, iters=k, lrate=w.lrate)), steps, source
    block = {"numba-onepass": "off", "numba-blocked": 64}.get(case.path, "auto")
    model = build(fastmlp, case.workload, dtype=dtype, fuse=case.path != "numba-layer",
                  engine="numpy" if case.path == "numpy" else "numba", block=block)
    if case.batch == 1:
        def run(k=steps):
            model.sgd(X, Y, iters=k, lrate=w.lrate, verbose=False)
        if case.path == "numba-blocked":
            model.block = best_block(model, X, Y)
        run.model = model
        return run, steps, source
    n = max(case.batch, int(BATCH_SUBSET[case.workload] * scale))
    Xs, Ys = X[:, :n], Y[:, :n]

    def run_epoch(k=n):
        model.fit(Xs[:, :k], Ys[:, :k], epochs=1, batch_size=case.batch, lrate=w.lrate,
                  momentum=momentum, seed=0, verbose=0)
    return run_epoch, n, source
