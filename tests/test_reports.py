"""The reports of ``sgd``: fastmlp.inference.Accuracy, and the printed lines.

Accuracy counts what score() counts (the hits) while the weights change in
place between calls, with X's nonzeros listed once (in class order) or, over
the list budget, chunk by chunk; sgd's report lines equal the notebook's.
"""

import contextlib
import io
import itertools
import re

import notebook002 as nb
import numpy as np
import pytest

import fastmlp
from fastmlp import inference as inf

NETS = [([60, 32, 5], [1, 4]), ([60, 24, 24, 4], [3, 1, 4])]


def make_params(sizes, dtype, seed=0):
    rng = np.random.RandomState(seed)
    parts = []
    for m, n in itertools.pairwise(sizes):
        parts += [rng.normal(0, 2 / np.sqrt(m), m * n), rng.normal(0, 0.5, n)]
    return np.concatenate(parts).astype(dtype)


def data(d, n, density, c, seed=1, dtype=np.float64):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, d)
    X[rng.rand(n, d) > density] = 0
    y = rng.randint(c, size=n)
    return X.astype(dtype).T, np.eye(c, dtype=dtype)[y].T


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("net", range(len(NETS)))
@pytest.mark.parametrize("density", [0.15, 1.0])
@pytest.mark.parametrize("n", [1, 3, 1001])
@pytest.mark.parametrize("layout", ["F", "C"])
def test_accuracy_counts_what_score_counts(dtype, net, density, n, layout):
    sizes, acts = NETS[net]
    X, Y = data(sizes[0], n, density, sizes[-1], dtype=dtype)
    X = np.asfortranarray(X) if layout == "F" else np.ascontiguousarray(X)
    P = make_params(sizes, dtype)
    sizes, acts = np.array(sizes), np.array(acts)
    hits = inf.Accuracy(P, sizes, acts, X, Y, chunk=64)
    for step in range(3):  # the weights change in place between reports
        assert hits() == inf.score(P, sizes, acts, 0, X, Y, chunk=64)[1]
        P += np.random.RandomState(step).normal(0, 0.3, P.shape).astype(dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("budget", [0, 1 << 30], ids=["chunk-lists", "listed-once"])
def test_accuracy_with_and_without_the_lists(monkeypatch, threads, budget):
    monkeypatch.setattr(inf, "LIST_CACHE_BYTES", budget)
    sizes, acts = np.array([60, 32, 5]), np.array([1, 4])
    X, Y = data(60, 3001, 0.08, 5)  # lists within half of X's bytes
    P = make_params(sizes, np.float64)
    hits = inf.Accuracy(P, sizes, acts, X, Y, n_threads=threads, chunk=256)
    ref = inf.predict_classes(P, sizes, acts, X, n_threads=1)
    assert hits() == np.count_nonzero(ref == Y.argmax(axis=0))
    assert (hits.lists is None) == (budget == 0)
    if hits.lists is not None:  # in class order
        assert np.array_equal(hits.lists.cols, inf.class_order(X, Y.argmax(axis=0)))
    P[:] = make_params(sizes, np.float64, seed=5)
    ref = inf.predict_classes(P, sizes, acts, X, n_threads=1)
    assert hits() == np.count_nonzero(ref == Y.argmax(axis=0))


def group_fill(X, order):
    """The share of (input, group of four) entries with a nonzero, the
    samples grouped in ``order``: the first layer's work from the lists."""
    nz = X[:, order] != 0
    nz = np.pad(nz, ((0, 0), (0, -nz.shape[1] % 4)))
    return nz.reshape(nz.shape[0], -1, 4).any(axis=2).mean()


def test_class_order():
    """A permutation; classes contiguous, in order; inside each class the
    Gray-code order of that class's keys; and fewer list entries than by
    class alone on data whose samples come in a few shapes per class."""
    rng = np.random.RandomState(0)
    d, n, c = 64, 4000, 3
    labels = rng.randint(c, size=n)
    shapes = rng.rand(c, 4, d) < 0.3  # four nonzero patterns per class
    X = (shapes[labels, rng.randint(4, size=n)] * rng.rand(n, d)).T
    X[:, rng.rand(n) < 0.05] = 0  # some samples all zero
    labels[:5] = 7  # a class of five samples, one of four
    labels[5:9] = 8
    order = inf.class_order(X, labels)
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.all(np.diff(labels[order]) >= 0)
    for k in np.unique(labels):
        cols = order[labels[order] == k]
        keys = inf.sort_keys(X, np.flatnonzero(labels == k))  # (chosen in the given order)
        if keys is None:
            assert k == 8 and np.array_equal(cols, np.flatnonzero(labels == k))
            continue
        binary = np.zeros(cols.shape[0], np.int64)  # the Gray code read as binary
        for key in keys:
            binary = 2 * binary + ((binary & 1) ^ (X[key, cols] != 0))
        assert np.all(np.diff(binary) >= 0)
    by_class = np.argsort(labels, kind="stable")
    assert group_fill(X, order) < 0.8 * group_fill(X, by_class)


def test_accuracy_checks_its_arguments():
    sizes, acts = np.array([60, 32, 5]), np.array([1, 4])
    X, Y = data(60, 10, 0.15, 5)
    P = make_params(sizes, np.float64)
    with pytest.raises(ValueError, match="samples"):
        inf.Accuracy(P, sizes, acts, X, Y[:, :9])
    with pytest.raises(ValueError, match="outputs"):
        inf.Accuracy(P, sizes, acts, X, Y[:4])


def notebook_lines(lib, X, Y, steps, **kw):
    np.random.seed(3)
    model = lib.Sequential([lib.Linear(X.shape[0], 32), lib.ReLU(), lib.Linear(32, 16),
                            lib.ReLU(), lib.Linear(16, Y.shape[0]), lib.SoftMax()],
                           lib.NLL(), **kw)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.sgd(X, Y, iters=steps, lrate=0.01)
    return out.getvalue()


@pytest.mark.parametrize("density", [0.08, 1.0], ids=["sparse", "dense"])
def test_sgd_reports_print_the_notebooks_lines(density):
    """Sparse inputs (first layer from X's nonzeros, listed once) and dense."""
    X, Y = data(60, 2003, density, 4)
    want = notebook_lines(nb, X, Y, 1300)
    got = notebook_lines(fastmlp, X, Y, 1300, engine="numba")
    pat = r"Iteration = (\d+) \tAcc = ([\d.]+) \tLoss = ([\d.e-]+)"
    w, g = re.findall(pat, want), re.findall(pat, got)
    assert [x[:2] for x in g] == [x[:2] for x in w]  # iterations and accuracies, as printed
    assert [x[0] for x in w] == ["1", "251", "501", "751", "1001", "1251"]
    np.testing.assert_allclose([float(x[2]) for x in g], [float(x[2]) for x in w], rtol=1e-9)
