"""Dataset loaders: MNIST (IDX, gzipped or not, and mnist.pkl.gz), digits, one_hot, blobs."""

import gzip
import pickle
import struct

import numpy as np
import pytest
from conftest import MNIST_DIR, needs_mnist

from fastmlp.datasets import load_digits, load_mnist, make_blobs, one_hot, read_idx


def idx_bytes(arr, type_code=0x08):
    header = struct.pack(">BBBB", 0, 0, type_code, arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder, n=20, gz=True, seed=0):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=n).astype(np.uint8)
    for stem, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    images, labels = write_mnist(tmp_path, gz=gz)
    X, Y = load_mnist(tmp_path, "train")
    assert X.shape == (784, 20) and Y.shape == (10, 20) and X.dtype == np.float32
    assert X.flags.f_contiguous  # samples contiguous: the fused loops read them as is
    np.testing.assert_allclose(X[:, 3], images[3].ravel() / 255, rtol=1e-6)
    np.testing.assert_array_equal(Y.argmax(axis=0), labels)
    Xr, y = load_mnist(tmp_path, "train", layout="rows", dtype=np.float64)
    assert Xr.shape == (20, 784) and y.dtype == np.int64 and Xr.max() <= 1
    np.testing.assert_array_equal(y, labels)


def test_read_idx_other_types(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b"\x00\x01" + b[2:], "bad magic number 0001"),
        (lambda b: b[:2] + b"\x07" + b[3:], "bad magic number"),
        (lambda b: b[:-1], r"truncated: dimensions \(20, 28, 28\) need 15696 bytes, the file has "
                           r"15695"),
        (lambda b: b + b"\x00", "longer than its header says"),
        (lambda b: b[:10], "declares 3 dimensions but the file is 10 bytes long"),
        (lambda b: b"", r"bad magic number \(empty file\)"),
        (lambda b: b[:3] + b"\x00" + b[4:], "declares 0 dimensions"),
    ],
)
def test_malformed_idx_is_rejected(tmp_path, mutate, match):
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(ValueError, match=match):
        load_mnist(tmp_path, "train")


def test_mismatched_images_and_labels(tmp_path):
    write_mnist(tmp_path, n=20)
    labels = np.zeros(19, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(ValueError, match=r"images \(20, 28, 28\) and labels \(19,\) do not match"):
        load_mnist(tmp_path, "train")


def test_corrupt_gzip_and_missing_files(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt gzip data"):
        load_mnist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="has no t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no MNIST data at"):
        load_mnist(tmp_path / "nowhere")


def test_mnist_pickle(tmp_path):
    rng = np.random.RandomState(0)
    parts = [(rng.rand(n, 784).astype(np.float32), rng.randint(10, size=n)) for n in (5, 3, 4)]
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(parts), f, protocol=2)
    for subset, (images, labels) in zip(("train", "valid", "test"), parts, strict=True):
        X, y = load_mnist(path, subset, layout="rows")
        np.testing.assert_array_equal(X, images)
        np.testing.assert_array_equal(y, labels)
    with pytest.raises(ValueError, match="subset must be 'train', 'valid' or 'test'"):
        load_mnist(path, "extra")


def test_mnist_pickle_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_mnist(path)


@needs_mnist
def test_real_mnist():
    X, Y = load_mnist(MNIST_DIR, "test")
    assert X.shape == (784, 10_000) and Y.sum() == 10_000
    assert 0 <= X.min() and X.max() == 1.0


def test_one_hot():
    np.testing.assert_array_equal(one_hot([2, 0, 1]), [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert one_hot(np.array([1, 1]), 4, dtype=np.float32).shape == (4, 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); got values from 0 to 3"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="labels must be a 1-D array of integers"):
        one_hot([0.5, 1.0])


def test_digits_and_blobs():
    X, Y = load_digits()
    assert X.shape == (64, 1797) and Y.shape == (10, 1797) and X.max() == 1.0
    Xr, y = load_digits(layout="rows")
    assert Xr.shape == (1797, 64) and y.shape == (1797,)
    a = make_blobs(100, 5, 3, seed=4)
    b = make_blobs(100, 5, 3, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (5, 100) and a[1].shape == (3, 100)
    with pytest.raises(ValueError, match="layout must be one of"):
        make_blobs(layout="columns-first")


def test_one_hot_of_no_labels():
    Y = one_hot([], 3)
    assert Y.shape == (3, 0) and Y.dtype == np.float64


@pytest.mark.parametrize("spread, shown", [(-1, "-1"), (np.nan, "nan")])
def test_make_blobs_rejects_bad_spread(spread, shown):
    with pytest.raises(ValueError, match=rf"spread must be a finite number >= 0; got {shown}"):
        make_blobs(10, 2, 2, spread=spread)


def test_make_blobs_seeds():
    a, b = make_blobs(50, 3, 2, seed=1), make_blobs(50, 3, 2, seed=np.random.RandomState(1))
    np.testing.assert_array_equal(a[0], b[0])
    g1, g2 = (make_blobs(50, 3, 2, seed=np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(g1[0], g2[0])
    with pytest.raises(ValueError, match=r"seed must be an int from 0 to 2\*\*32 - 1; got -1"):
        make_blobs(10, 2, 2, seed=-1)
