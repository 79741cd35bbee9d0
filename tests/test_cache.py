"""Training works when no Numba cache location is writable (a warning at most)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastmlp.engines import numba_available

SCRIPT = """
import warnings
import numpy as np
from fastmlp import Linear, NLL, ReLU, Sequential, SoftMax
nn = Sequential([Linear(2, 3), ReLU(), Linear(3, 2), SoftMax()], NLL())
X = np.random.rand(2, 50)
Y = np.eye(2)[np.random.randint(2, size=50)].T
nn.sgd(X, Y, iters=100, verbose=False)
print(nn.path.split()[0], "trained", np.isfinite(nn.modules[0].W).all())
"""


@pytest.mark.skipif(not numba_available(), reason="numba not importable")
def test_unwritable_cache_still_trains(tmp_path):
    import fastmlp.kernels

    # A copy of the package where no cache can be written: __pycache__ is a
    # file (so not even root can create the in-tree cache), and both
    # NUMBA_CACHE_DIR and the user-wide cache point below a file.
    pkg = tmp_path / "fastmlp"
    shutil.copytree(Path(fastmlp.__file__).parent, pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "kernels"))
    shutil.copytree(Path(fastmlp.kernels.__file__).parent, pkg / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d in (pkg, pkg / "kernels"):
        (d / "__pycache__").write_text("not a directory")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1",
           "NUMBA_CACHE_DIR": "/dev/null/numba", "XDG_CACHE_HOME": "/dev/null/xdg",
           "HOME": "/dev/null/home"}
    proc = subprocess.run([sys.executable, "-W", "always", "-c", SCRIPT], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fused trained True" in proc.stdout
    assert proc.stderr.count("no writable Numba cache location") == 1
