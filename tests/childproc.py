"""Run test code in a child Python process under an address-space limit.

A loader that allocates what a hostile file declares then fails with
MemoryError in the child (which the test reports) instead of swapping or
being killed, and a crash (segmentation fault) fails only that test.
"""

import os
import subprocess
import sys

#: RLIMIT_AS is enforced on Linux (macOS ignores it).
AVAILABLE = sys.platform.startswith("linux")

PRELUDE = '''
import os
import resource


def address_space():
    """This process's mapped address space, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def limit_memory(headroom):
    """Cap the address space at its current size plus ``headroom`` bytes; return the size."""
    size = address_space()
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, size + headroom))
    return size


def peak_rss_growth(start_kb=[resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]):
    """Peak resident memory growth since this prelude ran, in MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb[0]) / 1024
'''


def run(code, *args, timeout=120, env=None, cwd=None):
    """Run ``PRELUDE + code`` with ``args`` in a child (in folder ``cwd``); return the
    CompletedProcess.

    The child's environment keeps one malloc arena and one BLAS thread, so its
    address space does not grow with threads the test does not need.
    """
    child_env = {**os.environ, "MALLOC_ARENA_MAX": "1", "OPENBLAS_NUM_THREADS": "1",
                 "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", PRELUDE + code, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=child_env,
                          cwd=cwd)
