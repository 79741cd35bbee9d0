"""fastmlp.sklearn against scikit-learn for each solver, default parameters:
fit time side by side (same process, interleaved), test accuracy to
``extra_info``; on the bundled digits and on MNIST (60,000 x 784, skipped when
/work/shared/data/mnist or $FASTMLP_MNIST is absent). ``max_iter`` is small
so a fit takes seconds; ``--benchmark-disable`` (quick mode) runs one tiny
fit of each. Threads: the suite pins BLAS to FASTMLP_BENCH_THREADS (one by
default), which is scikit-learn's thread count here, and fastmlp's too: its
L-BFGS and prediction workers follow the BLAS limit
(:func:`fastmlp.inference.default_threads`, recorded in ``extra_info``)."""

import os
import time
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

from fastmlp.inference import default_threads
from fastmlp.sklearn import MLPClassifier

MNIST = os.environ.get("FASTMLP_MNIST", "/work/shared/data/mnist")
#: Epochs (sgd, adam) or iterations (lbfgs) per fit.
MAX_ITER = {"digits": {"adam": 30, "sgd": 30, "lbfgs": 100},
            "mnist": {"adam": 3, "sgd": 3, "lbfgs": 20}}


def data(name):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        return train_test_split(X / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    if not os.path.isdir(MNIST):
        pytest.skip(f"no MNIST at {MNIST}")
    from fastmlp.datasets import load_mnist
    Xtr, ytr = load_mnist(MNIST, layout="rows", dtype=np.float64)
    Xte, yte = load_mnist(MNIST, "test", layout="rows", dtype=np.float64)
    return Xtr, Xte, ytr, yte


def fit(cls, solver, max_iter, Xtr, ytr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(solver=solver, max_iter=max_iter, random_state=0).fit(Xtr, ytr)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_solver_fit_time(benchmark, solver, dataset, scale, request):
    Xtr, Xte, ytr, yte = data(dataset)
    quick = request.config.getoption("benchmark_disable", False)
    max_iter = 1 if quick else max(1, int(MAX_ITER[dataset][solver] * scale))
    if quick:
        Xtr, ytr = Xtr[:2000], ytr[:2000]
    fit(MLPClassifier, solver, 1, Xtr[:500], ytr[:500])  # warm-up (compiles the kernels)
    times = {"fastmlp": [], "scikit-learn": []}
    models = {}
    for _ in range(1 if quick else 3):  # interleaved, same process
        for name, cls in (("fastmlp", MLPClassifier), ("scikit-learn", SkMLPClassifier)):
            t0 = time.perf_counter()
            models[name] = fit(cls, solver, max_iter, Xtr, ytr)
            times[name].append(time.perf_counter() - t0)
    benchmark.group = f"scikit-learn API: {dataset}, solver={solver}, max_iter={max_iter}"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    med = {k: float(np.median(v)) for k, v in times.items()}
    acc = {k: float(m.score(Xte, yte)) for k, m in models.items()}
    benchmark.extra_info.update(
        solver=solver, dataset=dataset, max_iter=max_iter, seconds=med, accuracy=acc,
        fastmlp_threads=default_threads(),
        speedup=med["scikit-learn"] / med["fastmlp"], load=os.getloadavg()[0])
    print(f"\n{dataset} {solver} max_iter={max_iter}: fastmlp {med['fastmlp']:.2f}s "
          f"scikit-learn {med['scikit-learn']:.2f}s x{med['scikit-learn'] / med['fastmlp']:.1f}"
          f" accuracy {acc['fastmlp']:.4f} vs {acc['scikit-learn']:.4f} "
          f"(load {os.getloadavg()[0]:.1f})")
    assert abs(acc["fastmlp"] - acc["scikit-learn"]) <= (0.05 if quick else 0.01)
