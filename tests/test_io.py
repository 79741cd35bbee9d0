"""Saving and loading models: bit-exact, atomic, and strict about what it reads."""

import json

import numpy as np
import pytest
from conftest import blobs

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
    assert back.dtype == dtype and repr(back) == repr(nn)
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
