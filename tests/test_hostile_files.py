"""The hostile files of issue 14, loaded in a child process under a memory limit.

Each file is small and declares (or expands to) far more than it holds; every
loader must reject it with one ValueError naming the file, allocating nothing
like what it declares. Before the fix, these raised MemoryError, crashed the
interpreter (the object-array pickle) or peaked at 0.6 to 16 GB.
"""

import json

import pytest
from childproc import AVAILABLE, run

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="RLIMIT_AS is enforced on Linux only")

#: Address space the child may add once numpy and fastmlp are loaded: the
#: files below are rejected after a few MB at most (measured: under 10 MB).
HEADROOM = 256 * 2**20

CHILD = r'''
import gzip, json, pickle, struct, sys, tracemalloc
from pathlib import Path
import numpy as np
import fastmlp
from fastmlp import NLL, Linear, ReLU, Sequential, SoftMax
from fastmlp.datasets import load_mnist, read_idx

folder = Path(sys.argv[1])
folder.mkdir(exist_ok=True)


def gz(name, data, filler=b"", count=0, tail=b""):
    """Gzip ``data + filler * count + tail`` to ``name``, streaming (little memory)."""
    with gzip.open(folder / name, "wb", compresslevel=1) as f:
        f.write(data)
        block = filler * (1 << 20)
        for _ in range(count >> 20):
            f.write(block)
        f.write(filler * (count & ((1 << 20) - 1)) + tail)
    return folder / name


def idx(type_code, *shape):
    return struct.pack(f">BBBB{len(shape)}I", 0, 0, type_code, len(shape), *shape)


def model_file(name, edit):
    import zipfile
    np.random.seed(0)
    nn = Sequential([Linear(3, 4), ReLU(), Linear(4, 2), SoftMax()], NLL(), engine="numpy")
    path = nn.save(folder / name)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    compression = edit(members)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return path


def npy(arr, shape=None):
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {
        "descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False,
        "shape": arr.shape if shape is None else shape})
    return buf.getvalue() + arr.tobytes()


def huge_w(members):
    members["modules.0.W.npy"] = npy(np.zeros((3, 4)), shape=(10**6, 10**6))
    return 0


def extra(members):
    members["extra.npy"] = npy(np.zeros(20_000_000, np.uint8))
    return 8


def nested(members):
    members["fastmlp_meta.npy"] = npy(np.array("[" * 800_000 + "]" * 800_000))
    return 8


cases = {
    "pkl: numpy.ndarray((10**9, 4)) called": (load_mnist, gz("a.pkl.gz",
        b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;K\x04\x86\x85R.")),
    "pkl: array state declaring 10**9 items": (load_mnist, gz("b.pkl.gz",
        pickle.dumps(np.zeros(3, np.uint8), protocol=2).replace(b"K\x03\x85",
                                                                b"J\x00\xca\x9a;\x85"))),
    "pkl: memo index 2**30": (load_mnist, gz("c.pkl.gz", b"\x80\x02K\x01r\xff\xff\xff\x3f.")),
    "pkl: 200 MB of DUP opcodes": (load_mnist, gz("d.pkl.gz", b"\x80\x02K\x01", b"2",
                                                   200_000_000, b".")),
    "pkl: object array with a short list": (load_mnist, gz("e.pkl.gz",
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b"
        b"\x87R(K\x01M\x10'\x85cnumpy\ndtype\nU\x02O8\x89\x88\x87R(K\x03U\x01|NNNJ\xff"
        b"\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]K\x01atb.")),
    "pkl: bytes8 declaring 2**40": (load_mnist, gz("f.pkl.gz",
        b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.")),
    "idx.gz: 300 MB of zeros": (read_idx, gz("g.gz", b"", b"\0", 300_000_000)),
    "idx.gz: header declaring 6e13 bytes": (read_idx, gz("h.gz",
        idx(8, 60_000, 100_000, 10_000) + bytes(1000))),
    "idx.gz: header declaring 1e9 bytes": (read_idx, gz("i.gz",
        idx(8, 10_000, 100_000) + bytes(100_000))),
    "idx: raw header declaring 2**63 bytes": (read_idx, folder / "j"),
    "npz: member declaring 10**12 elements": (fastmlp.load, model_file("k.npz", huge_w)),
    "npz: extra 20 MB deflated member": (fastmlp.load, model_file("l.npz", extra)),
    "npz: 1.6 MB nested description": (fastmlp.load, model_file("m.npz", nested)),
}
(folder / "j").write_bytes(idx(8, 2**31, 2**16, 2**16) + bytes(100))

limit_memory(int(sys.argv[2]))
before = peak_rss_growth()
for name, (loader, path) in cases.items():
    tracemalloc.start()
    try:
        loader(path)
        outcome = "loaded"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"case": name, "size": path.stat().st_size, "outcome": outcome,
                      "traced_mb": peak / 2**20}), flush=True)
print(json.dumps({"peak_rss_growth_mb": peak_rss_growth() - before}))
'''


def test_hostile_files_are_rejected_within_a_memory_limit(tmp_path):
    proc = run(CHILD, tmp_path / "files", HEADROOM, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, f"child exited {proc.returncode}: {proc.stderr[-3000:]}"
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    results, summary = lines[:-1], lines[-1]
    assert len(results) == 13
    for r in results:
        assert r["outcome"].startswith("ValueError: "), r
        assert r["traced_mb"] < 16, r
    assert summary["peak_rss_growth_mb"] < 64, summary
