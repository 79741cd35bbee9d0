"""Fuzzing every loader (IDX raw and gzipped, mnist.pkl.gz, model .npz) with
hypothesis, in a child process under a memory limit.

Each example mutates a small valid file (bytes overwritten, 4-byte integers
planted where sizes live, truncated, lengthened) either in its container
(the gzip or zip bytes) or in its contents (then compressed again, so the
damage gets past the checksums). Every outcome must be success or one
ValueError / FileNotFoundError; anything else, a MemoryError from the address
space limit included, makes hypothesis report the falsifying file.

FASTMLP_FUZZ_EXAMPLES (default 150 per loader) and FASTMLP_FUZZ_RANDOM=1
(fresh examples instead of the fixed, derandomized ones) tune a longer run.
"""

import os
import time

import pytest
from childproc import AVAILABLE, run

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="RLIMIT_AS is enforced on Linux only")

#: Address space the child may add after its imports. The fuzzed files are
#: a few kilobytes, so a correct loader allocates a few MB at most (measured
#: peak RSS growth: under 10 MB); anything sized by a declared length fails.
HEADROOM = 256 * 2**20
EXAMPLES = int(os.environ.get("FASTMLP_FUZZ_EXAMPLES", "150"))

CHILD = r'''
import gzip, io, os, pickle, struct, sys, zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import fastmlp
from fastmlp import NLL, Linear, ReLU, Sequential, SoftMax
from fastmlp.datasets import load_mnist

loader, folder, headroom, examples, derandomize = sys.argv[1:6]
folder = Path(folder)
INTERESTING = [0, 1, 2, 3, 255, 256, 2**15, 2**16 - 1, 2**16, 2**24, 2**31 - 1, 2**31,
               2**32 - 1]


@st.composite
def mutated(draw, data):
    """``data`` with a few random edits."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["byte", "int", "cut", "insert", "repeat"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "byte":
            data[pos:pos + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "int":
            fmt = draw(st.sampled_from([">I", "<I", "<Q", ">H", "<H"]))
            value = draw(st.sampled_from(INTERESTING)) % (1 << 8 * struct.calcsize(fmt))
            packed = struct.pack(fmt, value)
            data[pos:pos + len(packed)] = packed
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
    return bytes(data)


def idx_file(arr, type_code=0x08):
    head = struct.pack(">BBBB", 0, 0, type_code, arr.ndim)
    head += struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


rng = np.random.RandomState(0)
IMAGES = idx_file(rng.randint(0, 256, (3, 28, 28)).astype(np.uint8))
LABELS = idx_file(rng.randint(0, 10, 3).astype(np.uint8))
PICKLE = pickle.dumps(tuple((rng.rand(n, 784).astype(np.float32), rng.randint(10, size=n))
                            for n in (2, 1, 1)), protocol=2)
np.random.seed(0)
MODEL_PATH = Sequential([Linear(3, 2), ReLU(), Linear(2, 2), SoftMax()], NLL(),
                        engine="numpy").save(folder / "seed.npz")
MODEL = MODEL_PATH.read_bytes()
with zipfile.ZipFile(MODEL_PATH) as zf:
    MEMBERS = {name: zf.read(name) for name in zf.namelist()}


def rezip(members, compression):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def expect_clean(load, path):
    """Success, or one ValueError / FileNotFoundError naming the file."""
    try:
        load(path)
    except (ValueError, FileNotFoundError) as exc:
        assert str(path) in str(exc) or "subset" in str(exc), f"not naming the file: {exc}"


def run_idx(data, gz):
    target = folder / "idx"
    target.mkdir(exist_ok=True)
    for name in os.listdir(target):
        os.unlink(target / name)
    suffix = ".gz" if gz else ""
    (target / f"train-images-idx3-ubyte{suffix}").write_bytes(data)
    (target / "train-labels-idx1-ubyte").write_bytes(LABELS)
    expect_clean(load_mnist, target)


strategies = {
    "idx": st.builds(lambda d: (d, False), mutated(IMAGES)),
    "idx.gz": st.one_of(
        st.builds(lambda d: (gzip.compress(d, 1), True), mutated(IMAGES)),
        st.builds(lambda d: (d, True), mutated(gzip.compress(IMAGES)))),
    "pkl.gz": st.one_of(
        st.builds(lambda d: gzip.compress(d, 1), mutated(PICKLE)),
        mutated(gzip.compress(PICKLE))),
    "npz": st.one_of(
        mutated(MODEL),
        st.builds(lambda name, d, c: rezip({**MEMBERS, name: d}, c),
                  st.sampled_from(sorted(MEMBERS)),
                  st.sampled_from(sorted(MEMBERS)).flatmap(lambda n: mutated(MEMBERS[n])),
                  st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))),
}


def check(example):
    if loader in ("idx", "idx.gz"):
        run_idx(*example)
    elif loader == "pkl.gz":
        path = folder / "mnist.pkl.gz"
        path.write_bytes(example)
        expect_clean(load_mnist, path)
    else:
        path = folder / "model.npz"
        path.write_bytes(example)
        expect_clean(lambda p: fastmlp.load(p, engine="numpy", allow_nonfinite=True), path)


test = settings(max_examples=int(examples), deadline=None, database=None,
                derandomize=derandomize == "1", print_blob=True,
                suppress_health_check=list(HealthCheck))(given(strategies[loader])(check))
limit_memory(int(headroom))
before = peak_rss_growth()
test()
print(f"peak RSS growth while fuzzing: {peak_rss_growth() - before:.1f} MB")
'''


@pytest.mark.parametrize("loader", ["idx", "idx.gz", "pkl.gz", "npz"])
def test_fuzzed_files_load_or_raise_value_error(tmp_path, loader):
    derandomize = "0" if os.environ.get("FASTMLP_FUZZ_RANDOM") == "1" else "1"
    t0 = time.perf_counter()
    proc = run(CHILD, loader, tmp_path, HEADROOM, EXAMPLES, derandomize, timeout=300,
               cwd=tmp_path)  # (hypothesis writes its .hypothesis folder there)
    assert proc.returncode == 0, (f"child exited {proc.returncode}:\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-5000:]}")
    assert "peak RSS growth while fuzzing" in proc.stdout
    if EXAMPLES <= 150:
        assert time.perf_counter() - t0 < 15
