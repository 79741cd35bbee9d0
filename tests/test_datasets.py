"""Dataset loaders: MNIST (IDX, gzipped or not, and mnist.pkl.gz), digits, one_hot, blobs."""

import gzip
import pickle
import re
import struct

import numpy as np
import pytest
from conftest import MNIST_DIR, needs_mnist, peak_bytes

from fastmlp import datasets
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


# --- Hostile files (issue 14) -------------------------------------------------


def idx_header(type_code, *shape):
    return struct.pack(f">BBBB{len(shape)}I", 0, 0, type_code, len(shape), *shape)


def test_gzip_of_zeros_is_rejected_before_decompressing(tmp_path):
    """Finding 7: a 306 KB gzip of zeros reached 640 MB before "bad magic number"."""
    path = tmp_path / "zeros.gz"
    path.write_bytes(gzip.compress(bytes(64_000_000), 1))
    exc, peak = peak_bytes(lambda: read_idx(path))
    assert isinstance(exc, ValueError) and "bad magic number 00000000" in str(exc), exc
    assert peak < 4e6


@pytest.mark.parametrize("gz", [False, True])
def test_declared_size_over_the_limit_is_rejected_before_reading(tmp_path, gz):
    data = idx_header(0x08, 60_000, 100_000, 10_000) + bytes(1000)
    path = tmp_path / ("big.gz" if gz else "big")
    path.write_bytes(gzip.compress(data) if gz else data)
    exc, peak = peak_bytes(lambda: read_idx(path))
    assert isinstance(exc, ValueError) and str(path) in str(exc), exc
    assert "60,000,000,000,000 bytes of data; the limit is 1,073,741,824" in str(exc)
    assert peak < 1e6


def test_limit_can_be_raised_or_lowered(tmp_path, monkeypatch):
    write_mnist(tmp_path, n=20)
    monkeypatch.setattr(datasets, "MAX_IDX_BYTES", 1000)
    with pytest.raises(ValueError, match=r"15,680 bytes of data; the limit is 1,000 bytes "
                                         r"\(fastmlp.datasets.MAX_IDX_BYTES\)"):
        load_mnist(tmp_path)


def test_gzip_too_small_for_its_header_is_rejected_before_decompressing(tmp_path):
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(idx_header(0x08, 1000, 1000, 100) + bytes(100)))
    with pytest.raises(ValueError, match=r"declares dimensions \(1000, 1000, 100\) "
                                         r"\(100,000,016 bytes\) but [0-9]+ bytes of gzip "
                                         "data can hold at most"):
        read_idx(path)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d + b"\x00", "longer than its header says"),
    (lambda d: d[:-1], r"truncated: dimensions \(20, 28, 28\) need 15696 bytes, the "
                       "decompressed data has 15695"),
])
def test_gzip_payload_of_the_wrong_length(tmp_path, mutate, match):
    write_mnist(tmp_path, gz=False)
    raw = tmp_path / "train-images-idx3-ubyte"
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(mutate(raw.read_bytes())))
    raw.unlink()
    with pytest.raises(ValueError, match=match):
        load_mnist(tmp_path)


@pytest.mark.parametrize("offset, junk, error", [
    (10, b"\xff" * 4, "error: Error -3"),  # the first deflate block: zlib.error
    (-100, bytes(4), "BadGzipFile: CRC check failed"),
    (-6, b"\xff" * 4, "BadGzipFile: CRC check failed"),
    (-4, b"\xff" * 4, "BadGzipFile: Incorrect length of data produced"),
    (0, b"\x1f\x8b\x09\x00", "BadGzipFile: Unknown compression method"),
])
def test_corrupt_deflate_data_is_a_value_error(tmp_path, offset, junk, error):
    """Finding 7: corrupt deflate data raised an uncaught zlib.error."""
    write_mnist(tmp_path, n=200)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    offset %= len(data)
    data[offset:offset + 4] = junk
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: corrupt gzip data \("
                                         + re.escape(error)):
        load_mnist(tmp_path)


def test_float_idx_with_nan_or_inf_is_rejected(tmp_path):
    """Finding 11: float IDX with NaN loaded."""
    path = tmp_path / "f.idx"
    path.write_bytes(idx_bytes(np.array([0.5, np.nan, np.inf, 1.0], ">f4"), 0x0D))
    with pytest.raises(ValueError, match=r"f\.idx: IDX data holds 2 NaN or infinite values"):
        read_idx(path)


@pytest.mark.parametrize("type_code, dtype, shown", [(0x09, np.int8, "int8"),
                                                     (0x0B, np.int16, ">i2"),
                                                     (0x0C, np.int32, ">i4")])
def test_signed_integer_pixels_are_rejected(tmp_path, type_code, dtype, shown):
    """Finding 11: int32 IDX pixels were not scaled to [0, 1]."""
    write_mnist(tmp_path, n=5, gz=False)
    images = np.full((5, 28, 28), 7, dtype)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images, type_code))
    with pytest.raises(ValueError, match=r"MNIST pixels must be uint8 \(scaled by 1/255\) or "
                                         r"floating point in \[0, 1\] \(used as stored\); got "
                                         + shown):
        load_mnist(tmp_path)


def test_float_pixels_are_used_as_stored_if_in_unit_range(tmp_path):
    write_mnist(tmp_path, n=5, gz=False)
    images = np.linspace(0, 1, 5 * 784).reshape(5, 28, 28)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images, 0x0E))
    X, _ = load_mnist(tmp_path, layout="rows", dtype=np.float64)
    np.testing.assert_array_equal(X, images.reshape(5, -1))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images * 255, 0x0E))
    with pytest.raises(ValueError, match=r"pixels stored as >f8 must lie in \[0, 1\]; got "
                                         "values from 0.0 to 255.0"):
        load_mnist(tmp_path)


def test_labels_must_be_integer_digits(tmp_path):
    write_mnist(tmp_path, n=5, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([0, 1, 2, 3, 12], np.uint8)))
    with pytest.raises(ValueError, match="labels must be digits 0-9; got values from 0 to 12"):
        load_mnist(tmp_path)
    labels.write_bytes(idx_bytes(np.zeros(5, np.float32), 0x0D))
    with pytest.raises(ValueError, match="MNIST labels must be integers; got >f4"):
        load_mnist(tmp_path)


def gz_pickle(path, obj=None, raw=None):
    data = raw if raw is not None else pickle.dumps(obj, protocol=2)
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def mnist_parts(n_images, n_labels, image_shape=(784,)):
    images = np.zeros((n_images, *image_shape), np.float32)
    return ((images, np.zeros(n_labels, np.int64)),) * 3


# A 92-byte-class attack: numpy.ndarray((10**9, 4)) called directly.
NDARRAY_CALL = b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;K\x04\x86\x85R."
# LONG_BINPUT at memo index 2**30: the C unpickler sizes its memo to the index.
MEMO_BOMB = b"\x80\x02K\x01r\xff\xff\xff\x3f."
# An object array whose state lists 1 item for 10,000 (crashes NumPy's __setstate__).
OBJECT_ARRAY = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b"
                b"\x87R(K\x01M\x10'\x85cnumpy\ndtype\nU\x02O8\x89\x88\x87R(K\x03U\x01|NNNJ\xff"
                b"\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]K\x01atb.")


def huge_setstate():
    """A pickled array whose state declares shape (10**9,) over 3 bytes of data."""
    return pickle.dumps(np.zeros(3, np.uint8), protocol=2).replace(b"K\x03\x85",
                                                                   b"J\x00\xca\x9a;\x85")


@pytest.mark.parametrize("name, data, match", [
    ("ndarray call", NDARRAY_CALL, "refusing to call numpy.ndarray"),
    ("huge setstate", huge_setstate(), r"array of shape \(1000000000,\) and dtype uint8 from "
                                       "3 bytes of data"),
    ("memo bomb", MEMO_BOMB, "memo index 1073741823 at byte 4 is out of range"),
    ("DUP bomb", b"\x80\x02K\x01" + b"2" * 200_000 + b".", "more than 100,000 opcodes"),
    ("object array", OBJECT_ARRAY, "unsupported dtype object"),
    ("bytes8 of 2**40", b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.",
     "expected 1099511627776 bytes in a bytes8"),
    ("not a pickle", b"hello", "is not a readable mnist.pkl.gz"),
])
def test_hostile_pickles_allocate_nothing_beyond_their_size(tmp_path, name, data, match):
    """Finding 1: a 92-byte mnist.pkl.gz made load_mnist allocate 1.2 GB; a declared
    10**12 raised MemoryError."""
    path = gz_pickle(tmp_path / "mnist.pkl.gz", raw=data)
    exc, peak = peak_bytes(lambda: load_mnist(path))
    assert isinstance(exc, ValueError) and str(path) in str(exc), exc
    assert re.search(match, str(exc)), exc
    assert peak < 2e6


@pytest.mark.parametrize("obj, match", [
    (mnist_parts(6, 3), r"'train' images \(6, 784\) and labels \(3,\) do not match"),
    (((np.float32(0.5), np.zeros(3, np.int64)),) * 3, r"images \(\) and labels \(3,\)"),
    (mnist_parts(3, 3, ()), r"images \(3,\) and labels \(3,\) do not match"),
    ((1, 2), r"expected a \(train, valid, test\) tuple; got a tuple of length 2"),
    (((1, 2, 3),) * 3, r"'train' part must be an \(images, labels\) pair; got a tuple of "
                       "length 3"),
    (((np.zeros((2, 784)), [1, 2]),) * 3, "MNIST labels must be a NumPy array; got a list"),
    (((np.full((2, 784), 2.0), np.zeros(2, np.int64)),) * 3, r"must lie in \[0, 1\]"),
    (((np.zeros((2, 784), np.int32), np.zeros(2, np.int64)),) * 3,
     r"pixels must be uint8 .* got int32"),
])
def test_malformed_pickle_contents(tmp_path, obj, match):
    """Finding 1: 6 images and 3 labels loaded; scalar images raised TypeError."""
    path = gz_pickle(tmp_path / "mnist.pkl.gz", obj)
    with pytest.raises(ValueError, match=match):
        load_mnist(path)


def test_pickle_from_python2_layout(tmp_path):
    """The deeplearning.net file: Python 2 strings, numpy.core.multiarray, uint8 pixels too."""
    images = (np.arange(3 * 784) % 256).astype(np.uint8).reshape(3, 784)
    data = pickle.dumps(((images, np.array([1, 2, 3])),) * 3, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    X, y = load_mnist(gz_pickle(tmp_path / "mnist.pkl.gz", raw=data), "test", layout="rows")
    np.testing.assert_allclose(X, images / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, [1, 2, 3])


def test_pickle_decompressing_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_PICKLE_BYTES", 10_000)
    path = gz_pickle(tmp_path / "mnist.pkl.gz", mnist_parts(5, 5))
    with pytest.raises(ValueError, match=r"decompresses to more than 10,000 bytes"):
        load_mnist(path)


def test_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    with pytest.raises(ValueError, match=r"is not an mnist.pkl.gz \(not gzip data\); load_mnist "
                                         "takes a folder of IDX files"):
        load_mnist(path)
