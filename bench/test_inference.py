"""Inference: forward pass plus accuracy over many samples, side by side.

Groups ``inference <net> <data> <dtype>``: 784-100-10 Sigmoid/SoftMax and
784-512-512-10 ReLU/SoftMax, over the 60,000 MNIST training images (skipped
when absent) and over dense uniform random inputs of the same shape; paths:

* ``numpy`` -- the NumPy engine's forward: ``W.T @ A + W0`` then the
  :mod:`fastmlp.baseline` activation, layer by layer, then the argmax;
* ``fastmlp`` -- :func:`fastmlp.inference.predict_classes` on
  FASTMLP_BENCH_THREADS threads (BLAS gets the same number in the other paths);
* ``sklearn`` -- ``MLPClassifier.predict`` holding the same weights.

For figures, unset the OpenBLAS kernel overrides in the command only:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/test_inference.py``;
``extra_info["blas"]`` records threadpoolctl's architecture of each BLAS.
"""

import itertools

import numpy as np
import pytest
from conftest import THREADS
from workloads import mnist_dir

from fastmlp import baseline as B
from fastmlp import inference as inf
from fastmlp.datasets import load_mnist

NETS = {"784-100-10 sigmoid": ((784, 100, 10), (3, 4)),
        "784-512-512-10 relu": ((784, 512, 512, 10), (1, 1, 4))}
ACTS = {1: B.relu_forward, 3: B.sigmoid_forward, 4: B.softmax_forward}
PATHS = ("numpy", "fastmlp", "sklearn")

_DATA = {}


def data(kind, dtype):
    if (kind, dtype) not in _DATA:
        if kind == "mnist":
            folder = mnist_dir()
            if folder is None:
                pytest.skip("MNIST files not on this machine")
            _DATA[kind, dtype] = load_mnist(folder, "train", dtype=dtype)
        else:
            rng = np.random.RandomState(0)
            X = rng.rand(60000, 784).astype(dtype).T
            _DATA[kind, dtype] = X, np.eye(10, dtype=dtype)[rng.randint(10, size=60000)].T
    return _DATA[kind, dtype]


def params(sizes, dtype):
    rng = np.random.RandomState(0)
    Ws = [rng.normal(0, 1 / np.sqrt(m), (m, n)).astype(dtype) for m, n in itertools.pairwise(sizes)]
    bs = [rng.normal(0, 0.1, n).astype(dtype) for n in sizes[1:]]
    P = np.concatenate([v for W, b in zip(Ws, bs, strict=True) for v in (W.ravel(), b)])
    return Ws, bs, P


def numpy_classes(Ws, bs, acts, X):
    A = X
    for W, b, code in zip(Ws, bs, acts, strict=True):
        A = ACTS[code](B.linear_forward(W, b.reshape(-1, 1), A))
    return A.argmax(axis=0)


def sklearn_model(Ws, bs, acts):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import LabelBinarizer

    clf = MLPClassifier(hidden_layer_sizes=tuple(W.shape[1] for W in Ws[:-1]),
                        activation={1: "relu", 3: "logistic"}[acts[0]])
    clf.coefs_, clf.intercepts_ = list(Ws), list(bs)
    clf.n_layers_ = len(Ws) + 1
    clf.n_outputs_ = Ws[-1].shape[1]
    clf.out_activation_ = "softmax"
    clf.n_features_in_ = Ws[0].shape[0]
    clf.classes_ = np.arange(clf.n_outputs_)
    clf._label_binarizer = LabelBinarizer().fit(clf.classes_)
    return clf


def blas_arch():
    from threadpoolctl import threadpool_info

    return sorted({f"{i.get('internal_api')}:{i.get('architecture')}"
                   for i in threadpool_info() if i["user_api"] == "blas"})


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["mnist", "dense"])
@pytest.mark.parametrize("net", list(NETS))
def test_inference(benchmark, net, kind, dtype, path, scale):
    sizes, acts = NETS[net]
    X, Y = data(kind, dtype)
    n = max(1000, int(X.shape[1] * scale))
    X, Y = X[:, :n], Y[:, :n]
    Ws, bs, P = params(sizes, np.dtype(dtype))
    sizes_a, acts_a = np.array(sizes), np.array(acts)
    labels = Y.argmax(axis=0)
    if path == "numpy":
        def run():
            return np.mean(numpy_classes(Ws, bs, acts, X) == labels)
    elif path == "fastmlp":
        def run():
            return np.mean(inf.predict_classes(P, sizes_a, acts_a, X, n_threads=THREADS) == labels)
    else:
        clf = sklearn_model(Ws, bs, acts)
        Xr = X.T

        def run():
            return np.mean(clf.predict(Xr) == labels)
    acc = run()  # warm-up (compiles)
    ref = np.mean(numpy_classes(Ws, bs, acts, X) == labels)
    assert abs(acc - ref) <= 2 / n  # the same predictions, up to ties
    benchmark.group = f"inference {net} {kind} {dtype}"
    benchmark.extra_info.update(net=net, data=kind, dtype=dtype, path=path, samples=n,
                                threads=THREADS, blas=blas_arch(), accuracy=float(acc))
    benchmark.pedantic(run, rounds=5, iterations=1)
