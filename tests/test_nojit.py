"""The kernel and fused-loop tests (and the mini-batch gate's exact count) again
with NUMBA_DISABLE_JIT=1.

Run as plain Python, the kernels are visible to coverage and debuggers, and
any construct that only works by accident of compilation shows up.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastmlp.engines import numba_available

HERE = Path(__file__).parent


@pytest.mark.skipif(not numba_available(), reason="numba not importable")
def test_kernels_as_python():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           str(HERE / "test_kernels.py"), str(HERE / "test_fused.py"),
           str(HERE / "test_sparse_batch.py") + "::test_gate_counts_exactly_the_list_entries",
           str(HERE / "test_minibatch_sparse.py") + "::test_column_blocks_hold_w",
           str(HERE / "test_minibatch_sparse.py") + "::test_blocked_products_equal_numpy"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
