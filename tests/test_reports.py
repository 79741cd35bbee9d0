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
    if hits.lists is not None:  # grouped by class
        assert np.all(np.diff(Y.argmax(axis=0)[hits.lists.cols]) >= 0)
    P[:] = make_params(sizes, np.float64, seed=5)
    ref = inf.predict_classes(P, sizes, acts, X, n_threads=1)
    assert hits() == np.count_nonzero(ref == Y.argmax(axis=0))


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
