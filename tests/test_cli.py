"""The fastmlp command: train, bench, info, and its exit codes."""

import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import MNIST_DIR, needs_mnist

import fastmlp
import fastmlp.cli
from fastmlp.cli import main


def test_train_with_defaults_on_digits(capsys, tmp_path):
    assert main(["train", "--save", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy ") and "wall time" in last
    assert float(last.split()[2].rstrip(",")) >= 0.95
    model = fastmlp.load(tmp_path / "m.npz")
    assert model.dtype.name == "float32" and repr(model.modules[0]) == "Linear(64, 100)"


def test_train_options(capsys):
    args = ["train", "--hidden", "32,16", "--activation", "tanh", "--epochs", "3",
            "--batch-size", "16", "--lrate", "0.1", "--momentum", "0.5", "--dtype", "float64",
            "--engine", "numpy", "--seed", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "network 64-32-16-10 tanh, float64, engine numpy (layer-by-layer" in out


@needs_mnist
def test_train_on_mnist(capsys):
    # (batches of 256: 235 steps instead of 1,875; what is tested is reading the MNIST
    # folder, and in batches of 32 this epoch took 3 to 50 s on a busy 2-core machine)
    assert main(["train", "--data", "mnist", "--data-dir", str(MNIST_DIR), "--epochs", "1",
                 "--hidden", "32", "--batch-size", "256"]) == 0
    assert "MNIST from" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [["train", "--epochs", "0"], ["train", "--hidden", "a,b"], ["train", "--momentum", "1"],
     ["train", "--data", "cifar"], ["train", "--seed", "-1"], ["fly"], []],
)
def test_bad_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "usage: fastmlp" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "mnist"], "--data mnist needs --data-dir"),
        (["train", "--data", "mnist", "--data-dir", "/no/such/dir"], "no MNIST data at"),
    ],
)
def test_bad_data_exit_1_with_one_line(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastmlp: error: ") and message in err and err.count("\n") == 1


def test_bad_data_file_exit_1(tmp_path, capsys):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01junk")
    assert main(["train", "--data", "mnist", "--data-dir", str(tmp_path)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("fastmlp:", "numpy:", "numba:", "cpu:", "numba threading layer:",
                "numba cache:"):
        assert key in out


def test_bench(capsys):
    assert main(["bench", "--seconds", "0.05"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and "speed-up" in lines[1]
    assert all(line.rstrip().endswith("x") for line in lines[2:])


def test_python_dash_m_and_console_script():
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastmlp {fastmlp.__version__}"


# --- Hardening (issue 14) -----------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1.5"], "argument --epochs: must be an integer >= 1; got '1.5'"),
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1; got '0'"),
    (["--batch-size", "x"], "argument --batch-size: must be an integer >= 1; got 'x'"),
    (["--lrate", "fast"], "argument --lrate: must be a number > 0; got 'fast'"),
    (["--momentum", "high"], "argument --momentum: must be a number in [0, 1); got 'high'"),
    (["--seed", "1e3"], "argument --seed: must be an integer from 0 to 2**32 - 1; got '1e3'"),
])
def test_bad_numbers_name_the_option_and_value(args, message, capsys):
    """Finding 11: --epochs 1.5 said "invalid _positive_int value"."""
    with pytest.raises(SystemExit) as exc:
        main(["train", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "invalid" not in err


def test_hidden_over_the_parameter_limit_is_one_line(capsys):
    """Finding 11: --hidden 100000000 printed a MemoryError traceback."""
    assert main(["train", "--hidden", "100000000"]) == 1
    err = capsys.readouterr().err
    assert err == ("fastmlp: error: network 64-100000000-10 has 7,500,000,010 parameters; the "
                   "command line trains at most 100,000,000 (choose smaller --hidden widths)\n")


def test_out_of_memory_is_one_line(capsys, monkeypatch):
    def no_memory(args):
        raise MemoryError("Unable to allocate 7.28 TiB")

    monkeypatch.setattr(fastmlp.cli, "_load", no_memory)
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastmlp: error: out of memory (Unable to allocate 7.28 TiB)")
    assert err.count("\n") == 1


@pytest.mark.parametrize("target, message", [
    ("missing/m", "cannot save to 'DIR/missing/m.npz': folder 'DIR/missing' does not exist"),
    ("DIR/", "cannot save to 'DIR/': it is a folder"),
    ("", "cannot save to '': the path is empty"),
])
def test_save_path_is_checked_before_training(tmp_path, capsys, target, message):
    """Finding 10: --save into a missing folder failed only after training."""
    target = target.replace("DIR", str(tmp_path)) if target.startswith("DIR") else (
        str(tmp_path / target) if target else target)
    assert main(["train", "--save", target]) == 1
    out, err = capsys.readouterr()
    assert out == "" and message.replace("DIR", str(tmp_path)) in err and err.count("\n") == 1


def test_corrupt_mnist_gzip_is_one_line(tmp_path, capsys):
    """Finding 7: corrupt deflate data printed a zlib.error traceback."""
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(100, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=100).astype(np.uint8)
    for stem, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
        data = bytearray(gzip.compress(header + arr.tobytes()))
        if stem.startswith("train-images"):
            data[10:14] = b"\xff" * 4  # the deflate stream's first block: a zlib.error
        (tmp_path / f"{stem}.gz").write_bytes(bytes(data))
    assert main(["train", "--data", "mnist", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastmlp: error: ") and "train-images-idx3-ubyte.gz: corrupt gzip data" \
        in err and err.count("\n") == 1
