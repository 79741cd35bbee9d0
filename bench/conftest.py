"""Benchmark settings shared by the suite.

Run the timed suite with OpenBLAS on its natural kernels: some machines here
set OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (older OpenBLAS builds need them),
which force slower kernels on a current NumPy. Unset both in the benchmark
command only (never in tests or CI)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/ \
        --benchmark-json out.json

The report records which BLAS kernel ran (threadpoolctl's ``architecture``),
the thread counts, and whether those variables were set.

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
PINNED = []  # threadpoolctl's BLAS entries while pinned


@pytest.fixture(scope="session", autouse=True)
def pinned_blas():
    # threadpoolctl limits the BLAS libraries loaded when it is called: load
    # SciPy's (which Numba's np.dot calls) as well as NumPy's first.
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=THREADS, user_api="blas"):
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == THREADS for i in blas), blas
        PINNED[:] = blas  # (the report's BLAS rows: as the benchmarks ran)
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
    from threadpoolctl import threadpool_info

    machine_info["blas_threads"] = THREADS
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["blas"] = [
        {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                               "threading_layer", "filepath")}
        for i in (PINNED or [i for i in threadpool_info() if i["user_api"] == "blas"])]
    machine_info["blas_env"] = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE",
                                                           "OPENBLAS_L2_SIZE",
                                                           "OPENBLAS_NUM_THREADS")
                                if k in os.environ}
    machine_info["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    machine_info["cpu_flags"] = cpu_flags()


def cpu_flags():
    """The vector extensions the CPU reports (from /proc/cpuinfo, where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return "?"
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")
    return " ".join(f for f in wanted if f in flags) or "no AVX"
