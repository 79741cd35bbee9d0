"""The fastmlp command: train, bench, info, and its exit codes."""

import subprocess
import sys

import pytest
from conftest import MNIST_DIR, needs_mnist

import fastmlp
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
    assert "network 64-32-16-10 tanh, float64, engine numpy (layer-by-layer)" in out


@needs_mnist
def test_train_on_mnist(capsys):
    assert main(["train", "--data", "mnist", "--data-dir", str(MNIST_DIR), "--epochs", "1",
                 "--hidden", "32"]) == 0
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
