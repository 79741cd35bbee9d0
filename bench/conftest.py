"""Benchmark settings shared by the suite.

BLAS is pinned to one thread (threadpoolctl) for every engine, so each path
gets one core of this 2-core machine and figures do not depend on what the
other core is doing; set FASTMLP_BENCH_THREADS to change it. Every engine is
timed in this one warm process, after a warm-up call (which also compiles).
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

THREADS = int(os.environ.get("FASTMLP_BENCH_THREADS", "1"))


@pytest.fixture(scope="session", autouse=True)
def pinned_blas():
    # threadpoolctl limits the BLAS libraries loaded when it is called: load
    # SciPy's (which Numba's np.dot calls) as well as NumPy's first.
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=THREADS, user_api="blas"):
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == THREADS for i in blas), blas
        yield


@pytest.fixture(scope="session")
def scale(request):
    """1 for a timed run; 1/50 of the work with --benchmark-disable (the quick mode
    CI uses, where each benchmark body runs once, untimed)."""
    return 0.02 if request.config.getoption("benchmark_disable") else 1.0


def pytest_benchmark_update_machine_info(config, machine_info):
    import numba
    import numpy

    import fastmlp

    machine_info["versions"] = {"fastmlp": fastmlp.__version__, "numpy": numpy.__version__,
                                "numba": numba.__version__}
    machine_info["blas_threads"] = THREADS
    machine_info["cpu_count"] = os.cpu_count()
