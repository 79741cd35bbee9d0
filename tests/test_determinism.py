"""Default training is deterministic: the same seeded run in fresh processes,
one of them while other processes load both cores, ends on the same bits.

One script per process runs every case (784-100-10 on MNIST-like sparse data
and on dense data, per-sample and mini-batch), so the processes load one set
of kernels. They use the Numba cache this session uses (the environment is
inherited), so only the first process compiles whatever the session has not
yet. The runs are sized for what they check: 2,000 per-sample steps are 31
blocks of the blocked kernel, and two epochs of 1,000 samples are 64
mini-batches, reshuffled between epochs.
"""

import os
import subprocess
import sys

import pytest

from fastmlp.engines import numba_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not numba_available(), reason="numba not importable")]

SCRIPT = r"""
import hashlib
import numpy as np
from fastmlp import Linear, NLL, Sequential, Sigmoid, SoftMax

def digest(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()[:16]

rng = np.random.RandomState(0)
out = []
for kind in ("sparse", "dense"):
    X = rng.rand(784, 1000)
    if kind == "sparse":  # MNIST-like: four inputs in five are zero
        X[rng.rand(*X.shape) < 0.8] = 0
    X = np.asfortranarray(X)
    Y = np.asfortranarray(np.eye(10)[rng.randint(10, size=1000)].T)
    for mode in ("per-sample", "mini-batch"):
        np.random.seed(1)
        nn = Sequential([Linear(784, 100), Sigmoid(), Linear(100, 10), SoftMax()], NLL())
        if mode == "per-sample":
            nn.sgd(X, Y, iters=2000, lrate=0.01, seed=2, verbose=False)
        else:
            nn.fit(X, Y, epochs=2, batch_size=32, lrate=0.05, momentum=0.9, seed=2, verbose=0)
        out.append(f"{kind} {mode} [{nn.path}] {digest(nn)}")
print("\n".join(out))
"""

LOAD = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


def run():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_three_fresh_processes_agree_to_the_bit():
    first = run()
    load = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(2)]
    try:
        loaded = run()
    finally:
        for p in load:
            p.kill()
            p.wait()
    third = run()
    assert first == loaded == third
    paths = [line.split("[")[1].split("]")[0] for line in first.splitlines()]
    assert paths[0].startswith("fused per-sample, one-pass")  # sparse: one-pass
    assert paths[2].startswith("fused per-sample, blocked k=64 with GEMMs")  # dense: blocked
    assert paths[1].startswith("fused mini-batch, first layer on nonzeros")
