"""The figure a switching user sees: a notebook script run as written, with
only its import changed.

Notebook 002's classes (as written, plus a notebook-style Sigmoid) against
fastmlp: notebook 003's 784-100-10 Sigmoid/SoftMax/NLL network on MNIST
(features x samples), ``np.random.seed(0)``, ``nn.sgd(X, Y, iters=5000,
lrate=0.005)`` with the notebook's report every 250 steps (an accuracy over
all 60,000 images each time; the printed lines go to a buffer), and the same
with reporting off.

Threads: the machine's defaults, as a user runs the script, for both sides,
whatever FASTMLP_BENCH_THREADS says (it pins the rest of the suite): BLAS on
every core for the notebook's products, and fastmlp's reports on every core
(its inference workers, which follow BLAS's limit:
fastmlp.inference.default_threads). The report
records both counts and threadpoolctl's BLAS architecture.
"""

import contextlib
import io

import numpy as np
import pytest
from workloads import _Notebook, data

import fastmlp
from fastmlp.inference import cores

STEPS = 5000


def script(lib, steps, report):
    """Build the network as the notebook does and train it; return the printed lines."""
    np.random.seed(0)
    nn = lib.Sequential([lib.Linear(784, 100), lib.Sigmoid(), lib.Linear(100, 10),
                         lib.SoftMax()], lib.NLL())
    X, Y, _ = data("W2", "float64")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if lib is fastmlp:
            nn.sgd(X, Y, iters=steps, lrate=0.005, verbose=report)
        else:
            if not report:
                nn.print_accuracy = lambda *args, **kwargs: None
            nn.sgd(X, Y, iters=steps, lrate=0.005)
    return out.getvalue()


class _NotebookReporting(_Notebook):
    """Notebook 002's classes with its own print_accuracy (not silenced)."""

    Sequential = _Notebook.Sequential.__mro__[1]


@pytest.fixture(autouse=True, scope="module")
def default_threads(pinned_blas):
    """Undo the suite's BLAS pin: every core, as BLAS starts by default."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cores(), user_api="blas"):
        yield


def blas_threads():
    from threadpoolctl import threadpool_info

    return sorted({(i.get("architecture"), i["num_threads"])
                   for i in threadpool_info() if i["user_api"] == "blas"})


@pytest.mark.parametrize("report", [True, False], ids=["reporting", "silent"])
@pytest.mark.parametrize("who", ["notebook", "fastmlp"])
def test_dropin_script(benchmark, who, report, scale):
    lib = fastmlp if who == "fastmlp" else _NotebookReporting
    steps = max(2, int(STEPS * scale))
    script(lib, 300, report)  # warm-up: compiles, fills caches
    benchmark.group = f"drop-in script, 784-100-10 MNIST, {STEPS} steps, " + (
        "report every 250" if report else "no reports")
    benchmark.extra_info.update(who=who, report=report, steps=steps, blas=blas_threads(),
                                fastmlp_threads=fastmlp.inference.default_threads())
    lines = benchmark.pedantic(script, args=(lib, steps, report), rounds=3, iterations=1)
    if report:
        assert lines.count("Iteration = ") == len(range(1, steps, 250))
