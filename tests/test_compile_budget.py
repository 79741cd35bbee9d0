"""What a first ``sgd`` compiles, checked by structure, never by time (issue 15's
compile budget is measured in ``bench/test_compile.py``).

Each case runs in a fresh process with its own empty Numba cache and lists,
through Numba's event API (``numba.core.event``), every fastmlp kernel the
call compiles. Checked: exactly one kernel generated for the network's shape,
for the call's dtype; no kernel compiled twice (for the other dtype too, or
for a literal argument) or with ``parallel=True``; a blocked call compiles
only its kind of block (dense or sparse); a warm process compiles nothing;
and loading the one-pass kernel from the cache does not import
``numba.np.arraymath`` (which imports SciPy: a warm process's largest fixed
cost).
"""

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

SCRIPT = r"""
import json, sys
import numpy as np
from numba.core import event

compiled = []


class Listener(event.Listener):
    def on_start(self, ev):
        pass

    def on_end(self, ev):
        disp = ev.data.get("dispatcher")
        fn = getattr(disp, "py_func", None)
        if fn is None or not fn.__module__.startswith("fastmlp"):
            return
        compiled.append({"name": fn.__module__ + "." + fn.__qualname__,
                         "args": str(ev.data.get("args")),
                         "parallel": bool(disp.targetoptions.get("parallel"))})


event.register("numba:compile", Listener())
from fastmlp import Linear, NLL, ReLU, Sequential, SoftMax

case, dtype = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
if case == "one-pass":
    nn = Sequential([Linear(2, 10), ReLU(), Linear(10, 10), ReLU(), Linear(10, 2), SoftMax()],
                    NLL(), dtype=dtype)
    X = rng.random((2, 50))
elif case.startswith("one-pass-deferred"):  # a first layer in column blocks
    nn = Sequential([Linear(64, 40), ReLU(), Linear(40, 3), SoftMax()], NLL(), dtype=dtype)
    X = rng.random((64, 50))
    if case.endswith("sparse"):
        X[X < 0.8] = 0
else:  # blocked, forced small: block=8 on a small network
    nn = Sequential([Linear(20, 12), ReLU(), Linear(12, 3), SoftMax()], NLL(), dtype=dtype,
                    block=8)
    X = rng.random((20, 50))
    if case == "blocked-sparse":
        X[X < 0.8] = 0
n_out = nn.modules[-2].W.shape[1]
Y = np.eye(n_out)[rng.integers(n_out, size=50)].T
nn.sgd(X, Y, iters=40, print_every=None)
print(json.dumps({"compiled": compiled, "path": nn.path,
                  "arraymath": "numba.np.arraymath" in sys.modules}))
"""


def run(case, dtype, cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT, case, dtype], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(cold, warm) results per (case, dtype), each case in its own cache."""
    done = {}

    def get(case, dtype):
        if (case, dtype) not in done:
            cache = tmp_path_factory.mktemp(f"cache_{case}_{dtype}")
            done[case, dtype] = (run(case, dtype, cache), run(case, dtype, cache))
        return done[case, dtype]

    return get


CASES = [("one-pass", "float64"), ("one-pass", "float32"), ("blocked-dense", "float64"),
         ("blocked-sparse", "float32"), ("one-pass-deferred-dense", "float64"),
         ("one-pass-deferred-sparse", "float32")]


@pytest.mark.parametrize(("case", "dtype"), CASES)
def test_first_sgd_compiles_only_what_it_needs(runs, case, dtype):
    cold, _ = runs(case, dtype)
    names = [c["name"] for c in cold["compiled"]]
    assert names, "nothing compiled: is the cache really empty?"
    assert not [c for c in cold["compiled"] if c["parallel"]], "a parallel kernel on the first path"
    # Each kernel once: not for the other dtype too, nor again for a literal argument.
    twice = {n: k for n, k in Counter(names).items() if k > 1}
    assert not twice, f"kernels compiled more than once: {twice}"
    kernel = [c for c in cold["compiled"] if c["name"].startswith("fastmlp_ps_")]
    assert len(kernel) == 1, names  # the one kernel generated for this shape
    assert kernel[0]["args"].startswith(f"(Array({dtype}, 1"), kernel[0]["args"]
    if case.startswith("one-pass"):
        assert "one-pass" in cold["path"], cold["path"]
        assert ("dense first layer" in cold["path"]) == (not case.endswith("sparse")), cold["path"]
        assert not [n for n in names if ".blocked." in n], names
    else:
        assert "blocked" in cold["path"], cold["path"]
        other_kind = "dense_" if case == "blocked-sparse" else "sparse_"
        assert not [n for n in names if other_kind in n], names
        assert not [n for n in names if "sgd_blocked_generic" in n], names


@pytest.mark.parametrize(("case", "dtype"), CASES)
def test_warm_process_compiles_nothing(runs, case, dtype):
    _, warm = runs(case, dtype)
    assert warm["compiled"] == [], warm["compiled"]


@pytest.mark.parametrize("case", ["one-pass", "one-pass-deferred-dense",
                                  "one-pass-deferred-sparse"])
def test_warm_one_pass_load_skips_numba_array_math(runs, case):
    _, warm = runs(case, "float64" if case != "one-pass-deferred-sparse" else "float32")
    assert not warm["arraymath"]
