"""Saving and loading models: bit-exact, atomic, and strict about what it reads."""

import io
import json
import os
import stat
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import blobs, peak_bytes

import fastmlp
from fastmlp import MSE, NLL, Layer, Linear, ReLU, Sequential, Sigmoid, SoftMax, Tanh
from fastmlp import io as fio


def trained(engine, dtype):
    np.random.seed(0)
    nn = Sequential([Linear(5, 7), Tanh(), Linear(7, 6), ReLU(), Linear(6, 3), SoftMax()], NLL(),
                    engine=engine, dtype=dtype)
    X, Y = blobs(5, 3, 100)
    nn.fit(X, Y, epochs=2, batch_size=8, momentum=0.9, verbose=0)
    return nn, X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(engine, dtype, tmp_path):
    nn, X = trained(engine, dtype)
    path = nn.save(tmp_path / "model")
    assert path.name == "model.npz"
    back = fastmlp.load(path, engine=engine)
    assert back.dtype == dtype and repr(back.modules) == repr(nn.modules)
    assert type(back.loss) is type(nn.loss)
    np.testing.assert_array_equal(back.forward(X.astype(dtype)), nn.forward(X.astype(dtype)))
    np.testing.assert_array_equal(back.predict(X), nn.predict(X))
    with np.load(path, allow_pickle=False) as f:  # readable without pickle
        meta = json.loads(str(f["fastmlp_meta"]))
    assert meta["dtype"] == np.dtype(dtype).name and meta["loss"] == "NLL"


def test_loading_draws_nothing_from_the_global_generator(tmp_path):
    nn, _ = trained("numpy", np.float64)
    path = nn.save(tmp_path / "m.npz")
    np.random.seed(1)
    fastmlp.load(path)
    assert np.random.randint(1000) == np.random.RandomState(1).randint(1000)


def test_regression_model_round_trip(tmp_path):
    np.random.seed(0)
    nn = Sequential([Linear(3, 4), Sigmoid(), Linear(4, 2)], MSE())
    back = fastmlp.load(nn.save(tmp_path / "r.npz"))
    X = np.random.rand(3, 5)
    np.testing.assert_array_equal(back.predict(X), nn.predict(X))


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    nn, _ = trained("numpy", np.float64)
    path = nn.save(tmp_path / "m.npz")
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(fio.np, "savez", broken_savez)
    nn.modules[0].W += 1
    with pytest.raises(KeyboardInterrupt):
        nn.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind


def test_user_layers_cannot_be_saved(tmp_path):
    class Mine(Layer):
        def forward(self, A):
            return A

        def backward(self, dLdA):
            return dLdA

    nn = Sequential([Linear(2, 2), Mine()], MSE())
    with pytest.raises(TypeError, match=r"cannot save modules\[1\]"):
        nn.save(tmp_path / "x.npz")


def rewrite(path, mutate):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["fastmlp_meta"]))
    mutate(arrays, meta)
    arrays["fastmlp_meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_malformed_files_are_rejected(tmp_path):
    nn, _ = trained("numpy", np.float64)
    good = nn.save(tmp_path / "good.npz")
    data = good.read_bytes()

    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a readable fastmlp model"):
        fastmlp.load(junk)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        fastmlp.load(truncated)

    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="holds a single array"):
        fastmlp.load(single)

    plain = tmp_path / "plain.npz"
    np.savez(plain, W=np.zeros(3))
    with pytest.raises(ValueError, match="is not a fastmlp model: it has no fastmlp_meta"):
        fastmlp.load(plain)

    def tamper_weight(arrays, meta):
        arrays["modules.0.W"] = arrays["modules.0.W"] + 1e-9

    rewrite(good, tamper_weight)
    with pytest.raises(ValueError, match="do not match their checksum"):
        fastmlp.load(good)

    def tamper_meta(arrays, meta):
        meta["modules"][0]["type"] = "Conv2d"

    good.write_bytes(data)
    rewrite(good, tamper_meta)
    with pytest.raises(ValueError, match="is not a fastmlp model of format version 1"):
        fastmlp.load(good)

    def reshape_consistently(arrays, meta):  # checksum recomputed: shapes must still match
        arrays["modules.0.W"] = arrays["modules.0.W"].T.copy()
        meta["sha256"] = fio._digest({k: a for k, a in arrays.items() if k != "fastmlp_meta"})

    good.write_bytes(data)
    rewrite(good, reshape_consistently)
    with pytest.raises(ValueError, match=r"parameters of modules\[0\] .* Linear\(5, 7\)"):
        fastmlp.load(good)

    with pytest.raises(FileNotFoundError):
        fastmlp.load(tmp_path / "missing.npz")


def test_save_into_a_missing_folder_names_the_target(tmp_path):
    nn = Sequential([Linear(3, 2), SoftMax()], NLL())
    target = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(FileNotFoundError, match=r"cannot save to .*model\.npz.*does not exist"):
        nn.save(target)
    assert not (tmp_path / "no").exists()


# --- Hostile and unusual files and paths (issue 14) ---------------------------


def small_model(dtype=np.float64):
    np.random.seed(0)
    return Sequential([Linear(3, 4), ReLU(), Linear(4, 2), SoftMax()], NLL(), engine="numpy",
                      dtype=dtype)


def npy_bytes(arr, shape=None):
    """The .npy file of ``arr``, its header optionally declaring another ``shape``."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False,
              "shape": arr.shape if shape is None else shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + arr.tobytes()


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def meta_member(meta):
    return npy_bytes(np.array(json.dumps(meta)))


def test_load_rejects_a_declared_size_beyond_the_file_before_reading(tmp_path):
    """Finding 6: a 1.8 KB npz declaring 10^12 elements raised a bare MemoryError."""
    path = small_model().save(tmp_path / "m.npz")
    members = members_of(path)
    members["modules.0.W.npy"] = npy_bytes(np.zeros((3, 4)), shape=(10**6, 10**6))
    write_zip(path, members)
    exc, peak = peak_bytes(lambda: fastmlp.load(path))
    assert isinstance(exc, ValueError), exc
    assert "modules.0.W.npy" in str(exc) and "truncated or corrupt" in str(exc)
    assert peak < 1e6


def test_load_rejects_an_extra_member_without_reading_it(tmp_path):
    """Finding 6: a small npz with an extra deflated array peaked at 801 MB."""
    path = small_model().save(tmp_path / "m.npz")
    members = members_of(path)
    members["extra.npy"] = npy_bytes(np.zeros(12_500_000))  # 100 MB, 100 KB deflated
    write_zip(path, members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 500_000
    exc, peak = peak_bytes(lambda: fastmlp.load(path))
    assert isinstance(exc, ValueError) and "unexpected entries ['extra']" in str(exc), exc
    assert peak < 1e6


@pytest.mark.parametrize("size, match", [
    (1_600_000, "the description is 1,600,[0-9]+ characters long; the limit is 100,000"),
    (40_000, "its description nests 20000 levels deep; the limit is 16"),
])
def test_load_rejects_a_huge_or_deeply_nested_description(tmp_path, size, match):
    """Finding 6: a 1.6 MB deeply nested JSON description raised RecursionError."""
    path = small_model().save(tmp_path / "m.npz")
    members = members_of(path)
    members["fastmlp_meta.npy"] = npy_bytes(np.array("[" * (size // 2) + "]" * (size // 2)))
    write_zip(path, members)
    with pytest.raises(ValueError, match=match):
        fastmlp.load(path)


def test_load_rejects_a_description_over_the_parameter_limit(tmp_path):
    path = small_model().save(tmp_path / "m.npz")
    members = members_of(path)
    meta = json.loads(str(np.load(path)["fastmlp_meta"]))
    meta["modules"][0].update(m=10**6, n=10**6)
    members["fastmlp_meta.npy"] = meta_member(meta)
    write_zip(path, members)
    with pytest.raises(ValueError, match=r"declares 8,000,008,000,080 bytes of parameters; "
                                         r"the limit is 4,294,967,296"):
        fastmlp.load(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_weights_load_only_when_asked(tmp_path, bad):
    """Finding 11: models with NaN or inf weights loaded without a word."""
    nn = small_model()
    nn.modules[2].W0[1, 0] = bad
    path = nn.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"W0 of modules\[2\] holds NaN or infinity.*"
                                         "allow_nonfinite=True"):
        fastmlp.load(path)
    back = fastmlp.load(path, allow_nonfinite=True, engine="numpy")
    np.testing.assert_array_equal(back.modules[2].W0, nn.modules[2].W0)
    with pytest.raises(TypeError, match="allow_nonfinite must be True or False"):
        fastmlp.load(path, allow_nonfinite="yes")


@pytest.mark.parametrize("mutate, match", [
    (lambda m: m.update({"modules.0.W.npy": npy_bytes(np.zeros((3, 4), np.float32))}),
     r"modules\[0\] do not match Linear\(3, 4\) in float64: modules.0.W has shape \(3, 4\) "
     "and dtype float32"),
    (lambda m: m.update({"modules.0.W.npy": m["modules.0.W.npy"][:-8]}),
     "declares shape .* but holds 88: truncated or corrupt"),
    (lambda m: m.pop("modules.2.W0.npy"), r"parameters \['modules.2.W0'\] are missing"),
    (lambda m: m.update({"modules.0.W.npy": npy_bytes(np.zeros(1, dtype=object))}),
     "not a readable .npy array|holds Python objects"),
    (lambda m: m.update({"fastmlp_meta.npy": npy_bytes(np.zeros(3))}),
     "fastmlp_meta is an array of dtype float64"),
    (lambda m: m.update({"notes.txt": b"hello"}), "unexpected or repeated entry 'notes.txt'"),
    (lambda m: m.update({"fastmlp_meta.npy": m["fastmlp_meta.npy"].replace(
        b"{\0\0\0", b"{\0\xff\0", 1)}),  # code point 0xFF007B (found by the fuzz test)
     "unreadable description .*utf-32"),
])
def test_load_checks_every_member_header(tmp_path, mutate, match):
    path = small_model().save(tmp_path / "m.npz")
    members = members_of(path)
    mutate(members)
    write_zip(path, members)
    with pytest.raises(ValueError, match=match):
        fastmlp.load(path)


def test_save_gives_the_umask_permissions_and_keeps_an_overwritten_mode(tmp_path):
    """Finding 10: files were written 0600 whatever the umask, and overwriting
    a 0644 file made it 0600."""
    nn = small_model()
    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(nn.save(tmp_path / "a.npz").stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(nn.save(tmp_path / "b.npz").stat().st_mode) == 0o600
        os.chmod(tmp_path / "a.npz", 0o640)
        assert stat.S_IMODE(nn.save(tmp_path / "a.npz").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_save_to_a_folder_or_an_empty_path_is_an_error(tmp_path, monkeypatch):
    """Finding 10: save("dir/") wrote dir.npz beside it; save("") named PosixPath('.')."""
    nn = small_model()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    for target in ("dir/", "dir", tmp_path / "dir", "new/", "."):
        with pytest.raises(IsADirectoryError, match="it is a folder; give a file name"):
            nn.save(target)
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=r"cannot save to 'x\.npz': it is a folder"):
        nn.save("x")
    for target in ("", "  "):
        with pytest.raises(ValueError, match="the path is empty; give a file name"):
            nn.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "x.npz"]


def test_failed_save_leaves_no_temporary(tmp_path, monkeypatch):
    nn = small_model()

    def failing_savez(f, **arrays):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fio.np, "savez", failing_savez)
    with pytest.raises(OSError, match="No space left"):
        nn.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_the_same_target_are_removed(tmp_path):
    """Finding 10: kill -9 during a save left hidden .model.npz.*.tmp files."""
    old = time.time() - 2 * fio.STALE_TEMP_SECONDS
    names = {
        ".m.npz.ab12cd34.tmp": old,  # ours, stale: removed
        ".m.npz.x_9Kq2zP.tmp": old,  # tempfile.mkstemp's, stale: removed
        ".m.npz.ef56ab78.tmp": time.time(),  # a save in progress: kept
        ".m.npz.notours.tmp": old,  # another pattern: kept
        ".other.npz.ab12cd34.tmp": old,  # another target: kept
    }
    for name, mtime in names.items():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (mtime, mtime))
    small_model().save(tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".m.npz.ef56ab78.tmp", ".m.npz.notours.tmp", ".other.npz.ab12cd34.tmp", "m.npz"]


KILLED_SAVER = """
import sys
import numpy as np
from fastmlp import Linear, MSE, Sequential
nn = Sequential([Linear(2000, 1000), Linear(1000, 2000)], MSE(), engine="numpy")
print("ready", flush=True)
while True:
    nn.save(sys.argv[1])
"""


def test_a_killed_save_keeps_the_old_file_and_the_next_save_cleans_up(tmp_path):
    target = tmp_path / "m.npz"
    small_model().save(target)
    before = target.read_bytes()
    for _ in range(20):  # (until the kill lands during a write)
        proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 30
            while not list(tmp_path.glob(".m.npz.*.tmp")) and time.monotonic() < deadline:
                time.sleep(0.001)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        temporaries = list(tmp_path.glob(".m.npz.*.tmp"))
        if temporaries:
            break
        target.write_bytes(before)
    assert temporaries, "the kill never landed during a write"
    fastmlp.load(target)  # the previous (or a complete new) file, never a partial one
    small_model().save(target)
    assert list(tmp_path.glob(".m.npz.*.tmp")) == temporaries  # too recent to remove
    stale = time.time() - 2 * fio.STALE_TEMP_SECONDS
    for t in temporaries:
        os.utime(t, (stale, stale))
    small_model().save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
