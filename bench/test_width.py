"""Speed-up against hidden width: per-sample SGD on MNIST-shaped data,
784-w-10 ReLU / SoftMax + NLL, for w from 16 to 1024 (float64).

Both paths of a width take the same number of steps (about half a second of
the NumPy engine's time), on the first 10,000 samples so the per-call input
check stays small.
"""

import numpy as np
import pytest
from workloads import data

from fastmlp import NLL, Linear, ReLU, Sequential, SoftMax

WIDTHS = (16, 32, 64, 128, 256, 512, 1024)
PATHS = ("numpy", "numba-fused")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("width", WIDTHS)
def test_width(benchmark, width, path, scale):
    X, Y, source = data("W2", "float64")
    X, Y = X[:, :10_000], Y[:, :10_000]
    np.random.seed(0)
    nn = Sequential([Linear(784, width), ReLU(), Linear(width, 10), SoftMax()], NLL(),
                    engine="numpy" if path == "numpy" else "numba")
    steps = max(20, int(scale * 500_000 / (40 + 1.5 * width)))

    def run(k=steps):
        nn.sgd(X, Y, iters=k, lrate=0.01, verbose=False)

    run(max(1, steps // 20))  # warm-up
    benchmark.group = f"width {width:4d} per-sample float64"
    benchmark.extra_info.update(width=width, path=path, samples_per_call=steps, data=source)
    benchmark.pedantic(run, rounds=5, iterations=1)
    if getattr(benchmark, "stats", None) is not None:
        benchmark.extra_info["samples_per_s"] = steps / benchmark.stats.stats.median
