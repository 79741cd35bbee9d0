"""The Numba kernel cache: training works when no cache location is writable (a
warning at most), and a damaged cache is repaired (one warning).
"""

import importlib.util
import os
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
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
print(nn.path, "trained", np.isfinite(nn.modules[0].W).all())
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
    assert proc.stdout.startswith("fused") and "trained True" in proc.stdout
    assert proc.stderr.count("no writable Numba cache location") == 1


# --- A damaged cache heals itself (issue 14) -------------------------------

KERNEL_SOURCE = """
from fastmlp.kernels._jit import jit


@jit
def add(a, b):
    return a + b
"""

DAMAGE = {
    "empty": lambda data: b"",
    "half": lambda data: data[: len(data) // 2],
    "random": lambda data: random.Random(0).randbytes(max(len(data), 16)),
}


def fresh_kernel(path, name):
    """A new dispatcher for the kernel in ``path`` (same cache files every time)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.add


@pytest.mark.skipif(not numba_available(), reason="numba not importable")
@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("ext", [".nbi", ".nbc"])
def test_damaged_cache_entry_is_dropped_and_recompiled(tmp_path, monkeypatch, ext, damage):
    from fastmlp.kernels import _jit

    monkeypatch.setattr(_jit, "_healed_folders", set())
    source = tmp_path / "healme.py"
    source.write_text(KERNEL_SOURCE)
    first = fresh_kernel(source, "healme_1")
    assert first(1, 2) == 3
    files = [Path(p) for p in first._cache.cache_files() if p.endswith(ext)]
    assert len(files) == 1, first._cache.cache_files()
    files[0].write_bytes(DAMAGE[damage](files[0].read_bytes()))

    second = fresh_kernel(source, "healme_2")
    with pytest.warns(RuntimeWarning, match="repaired the Numba kernel cache in ") as record:
        assert second(1, 2) == 3
    assert len(record) == 1 and second._cache.cache_path in str(record[0].message)
    assert sum(second._cache_misses.values()) == 1

    third = fresh_kernel(source, "healme_3")  # the entry was saved again, readable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert third(1, 2) == 3
    assert sum(third._cache_hits.values()) == 1


@pytest.mark.slow
@pytest.mark.skipif(not numba_available(), reason="numba not importable")
def test_library_cache_damaged_every_way_recovers_with_one_warning(tmp_path):
    """Finding 2: with one .nbi/.nbc file of the kernel cache emptied, halved or
    randomised, every later process failed with EOFError or UnpicklingError.

    Every cache file of the library's kernels is damaged in each of the 6 ways
    in turn; each time the next process trains, with one warning naming the
    cache folder, and the process after the last loads the repaired cache
    silently. (One cache folder throughout: a copy elsewhere would not be
    found, since Numba names cache subfolders after the sources' paths.)
    """
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}

    def run():
        proc = subprocess.run([sys.executable, "-W", "always", "-c", SCRIPT], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("fused") and "trained True" in proc.stdout
        return proc.stderr

    run()
    for ext in (".nbi", ".nbc"):
        for damage in sorted(DAMAGE):
            files = sorted(cache.rglob(f"*{ext}"))
            assert files
            for f in files:
                f.write_bytes(DAMAGE[damage](f.read_bytes()))
            err = run()
            assert err.count("repaired the Numba kernel cache in") == 1, (ext, damage, err)
            assert str(cache) in err
    assert "repaired" not in run()  # saved again: the next process loads cleanly


def test_every_kernel_file_is_part_of_each_cache_key():
    """Numba does not see a change in a callee's file: the key carries a digest
    of every kernel source, so such a change recompiles every kernel."""
    from fastmlp.kernels import _jit
    from fastmlp.kernels.update import update

    from fastmlp.optimizers import SGD

    digest = _jit.sources_digest()
    assert len(digest) == 64
    cache = update._cache
    if not isinstance(cache, _jit.SelfHealingCache):
        pytest.skip("no disk cache in this process")
    opt, P = SGD(0.1), np.ones(3)
    update(opt.code, P, np.ones(3), np.zeros((1, 3)), 0, 3, opt.hyper(), 1.0, True)
    key = cache._index_key(update.signatures[0], update.targetctx.codegen())
    assert key[-1] == digest
    _jit.sources_digest.cache_clear()
    try:
        assert _jit.sources_digest() == digest  # read again: the same files, the same key
    finally:
        _jit.sources_digest.cache_clear()
