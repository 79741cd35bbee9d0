"""What compilation costs: the first sgd call of the notebook-003 network in a
fresh process, with a cold Numba cache and then with a warm one."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
from fastmlp import Linear, NLL, Sequential, Sigmoid, SoftMax
t2 = time.perf_counter()
nn = Sequential([Linear(784, 100), Sigmoid(), Linear(100, 10), SoftMax()], NLL(), dtype="{dtype}")
X = np.random.rand(784, 100)
Y = np.eye(10)[np.random.randint(10, size=100)].T
nn.sgd(X, Y, iters=10, print_every=5)
t3 = time.perf_counter()
print(json.dumps({{"import_numpy": t1 - t0, "import_fastmlp": t2 - t1, "first_sgd": t3 - t2}}))
"""


WARMED = {}


def run_fresh(cache_dir, dtype):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(dtype=dtype)], env=env,
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_compile(benchmark, tmp_path_factory, cache, dtype):
    if cache == "cold":
        target = WARMED[dtype] = tmp_path_factory.mktemp(f"numba_cache_{dtype}")
    elif dtype in WARMED:
        target = WARMED[dtype]
    else:  # warm a cache first, whatever order the tests run in
        target = WARMED[dtype] = tmp_path_factory.mktemp(f"numba_cache_{dtype}")
        run_fresh(target, dtype)
    result = {}

    def once():
        result.update(run_fresh(target, dtype))

    benchmark.group = "compile: first sgd in a fresh process"
    benchmark.extra_info.update(cache=cache, dtype=dtype)
    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
