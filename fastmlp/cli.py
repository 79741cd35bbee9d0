"""The ``fastmlp`` command: train, bench and info.

Exit codes: 0 on success, 2 on bad arguments (with argparse's usage
message), 1 with a one-line error on a bad data path or file, a network over
the parameter limit, an unusable ``--save`` path (checked before training) or
running out of memory.
"""

import argparse
import itertools
import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from . import __version__
from .datasets import load_digits, load_mnist
from .engines import kernel_module
from .io import check_save_path
from .layers import Linear, ReLU, Sigmoid, SoftMax, Tanh
from .losses import MSE, NLL
from .sequential import Sequential

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")

#: Most parameters (weights and biases) ``fastmlp train`` builds a network
#: with: 100 million, 400 MB in float32 before gradients and momentum. A larger
#: ``--hidden`` is refused with a one-line error instead of a MemoryError.
MAX_PARAMETERS = 100_000_000


def main(argv=None):
    """Run the command line; return the exit code (0, 1 on bad data, 2 on bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 1
    except MemoryError as exc:
        print(f"fastmlp: error: out of memory ({exc or 'MemoryError'}); try a smaller "
              "network, --batch-size or dataset", file=sys.stderr)
        return 1


def _parser():
    parser = argparse.ArgumentParser(
        prog="fastmlp", description="Train and benchmark MLPs with fastmlp.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,bench,info}")

    train = sub.add_parser("train", help="train and evaluate a network (default: digits)",
                           description="Train an MLP with Sequential.fit and report test "
                                       "accuracy and wall time.")
    train.add_argument("--data", choices=("digits", "mnist"), default="digits",
                       help="dataset (default: scikit-learn's bundled 8x8 digits)")
    train.add_argument("--data-dir", default=None,
                       help="folder of MNIST IDX files, or an mnist.pkl.gz (for --data mnist)")
    train.add_argument("--hidden", type=_widths, default=(100,), metavar="W[,W...]",
                       help="hidden layer widths, e.g. 100,100 (default: 100); the "
                            f"network may have at most {MAX_PARAMETERS:,} parameters")
    train.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--lrate", type=_positive_float, default=0.05)
    train.add_argument("--momentum", type=_momentum, default=0.9)
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--engine", choices=("numba", "numpy"), default="numba")
    train.add_argument("--seed", type=_seed, default=0)
    train.add_argument("--save", default=None, metavar="PATH",
                       help="write the trained model to PATH (.npz); its folder is "
                            "checked before training")
    train.set_defaults(run=_train)

    bench = sub.add_parser("bench", help="quick NumPy vs Numba comparison on this machine",
                           description="Time per-sample and mini-batch SGD on the NumPy and "
                                       "Numba engines, side by side (under a minute).")
    bench.add_argument("--seconds", type=_positive_float, default=0.5,
                       help="target time of each measurement (default: 0.5)")
    bench.set_defaults(run=_bench)

    info = sub.add_parser("info", help="versions, CPU, threading and Numba cache location")
    info.set_defaults(run=_info)
    return parser


def _positive_int(text):
    value = _number(text, int, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def _seed(text):
    expected = "an integer from 0 to 2**32 - 1"
    value = _number(text, int, expected)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
    return value


def _positive_float(text):
    value = _number(text, float, "a number > 0")
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}")
    return value


def _momentum(text):
    value = _number(text, float, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1); got {text!r}")
    return value


def _number(text, kind, expected):
    """``kind(text)``, or the argparse error "must be <expected>; got '<text>'"."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}") from None


def _widths(text):
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers >= 1, e.g. 100,100; got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be >= 1; got {text!r}")
    return widths


def _check_network(sizes):
    """Refuse, before allocating anything, a network with more than MAX_PARAMETERS."""
    count = sum((m + 1) * n for m, n in itertools.pairwise(sizes))
    if count > MAX_PARAMETERS:
        raise ValueError(f"network {'-'.join(map(str, sizes))} has {count:,} parameters; "
                         f"the command line trains at most {MAX_PARAMETERS:,} "
                         "(choose smaller --hidden widths)")


def _load(args):
    """(X, Y, X_test, Y_test) in the notebook's layout, and a description."""
    if args.data == "mnist":
        if args.data_dir is None:
            raise ValueError("--data mnist needs --data-dir (a folder of IDX files or "
                             "an mnist.pkl.gz)")
        X, Y = load_mnist(args.data_dir, "train", dtype=args.dtype)
        Xt, Yt = load_mnist(args.data_dir, "test", dtype=args.dtype)
        return X, Y, Xt, Yt, f"MNIST from {args.data_dir}"
    X, y = load_digits(layout="rows", dtype=args.dtype)
    order = np.random.RandomState(args.seed).permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    Y = np.eye(10, dtype=args.dtype)[y].T
    return X[train].T, Y[:, train], X[test].T, Y[:, test], "digits (80/20 split)"


def _train(args):
    save_to = check_save_path(args.save) if args.save is not None else None
    X, Y, Xt, Yt, what = _load(args)
    act = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "identity": None}[args.activation]
    sizes = [X.shape[0], *args.hidden, Y.shape[0]]
    _check_network(sizes)
    rng = np.random.RandomState(args.seed)
    modules = []
    for i, (m, n) in enumerate(itertools.pairwise(sizes)):
        modules.append(Linear(m, n, dtype=args.dtype, seed=rng))
        if i < len(sizes) - 2 and act is not None:
            modules.append(act())
    model = Sequential([*modules, SoftMax()], NLL(), engine=args.engine, dtype=args.dtype)
    print(f"{what}: {X.shape[1]} training and {Xt.shape[1]} test samples; network "
          f"{'-'.join(map(str, sizes))} {args.activation}, {args.dtype}, "
          f"engine {model.engine} ({model.path})", flush=True)
    t0 = time.perf_counter()
    model.fit(X, Y, epochs=args.epochs, batch_size=args.batch_size, lrate=args.lrate,
              momentum=args.momentum, seed=rng, validation_data=(Xt, Yt), verbose=1)
    seconds = time.perf_counter() - t0
    _, accuracy = model.evaluate(Xt, Yt)
    if save_to is not None:
        print(f"saved {model.save(save_to)}")
    print(f"test accuracy {accuracy:.4f}, wall time {seconds:.2f} s")
    return 0


def _bench(args):
    rng = np.random.RandomState(0)
    X784 = rng.rand(784, 10_000)
    X784[rng.rand(*X784.shape) < 0.8] = 0  # MNIST-like: mostly zero pixels
    Y10 = np.eye(10)[rng.randint(10, size=10_000)].T
    X2 = rng.uniform(-1, 1, (2, 2000))
    Y2 = np.eye(2)[(X2[0] * X2[1] > 0).astype(int)].T
    X1000, T10 = rng.randn(1000, 5000), rng.randn(10, 5000)
    cases = [
        ("notebook 002: 2-10-10-2, per sample", lambda: [Linear(2, 10), ReLU(), Linear(10, 10),
         ReLU(), Linear(10, 2), SoftMax()], NLL, X2, Y2, 1),
        ("notebook 003: 784-100-10 sigmoid, per sample", lambda: [Linear(784, 100), Sigmoid(),
         Linear(100, 10), SoftMax()], NLL, X784, Y10, 1),
        ("notebook 004: 1000-100-10 relu, batch 64", lambda: [Linear(1000, 100), ReLU(),
         Linear(100, 10)], MSE, X1000, T10, 64),
    ]
    print(f"fastmlp {__version__} on {_cpu()}, float64, BLAS on one thread; each engine "
          "timed after a warm-up, best of three")
    print(f"{'workload':48} {'NumPy samples/s':>16} {'Numba samples/s':>16} {'speed-up':>9}")
    with threadpool_limits(1, user_api="blas"):
        for name, build, Loss, X, Y, batch in cases:
            rates = [_rate(build, Loss, X, Y, batch, engine, args.seconds)
                     for engine in ("numpy", "numba")]
            print(f"{name:48} {rates[0]:16,.0f} {rates[1]:16,.0f} {rates[1] / rates[0]:8.1f}x",
                  flush=True)
    return 0


def _rate(build, Loss, X, Y, batch, engine, seconds):
    """Samples per second of sgd on one engine: best of three timed calls."""
    np.random.seed(0)
    model = Sequential(build(), Loss(), engine=engine)

    def run(steps):
        t0 = time.perf_counter()
        model.sgd(X, Y, iters=steps, lrate=1e-3, batch_size=batch, verbose=False)
        return time.perf_counter() - t0

    run(10)  # compile and warm up
    steps = max(10, int(seconds / max(run(50) / 50, 1e-7)))
    return steps * batch / min(run(steps) for _ in range(3))


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _info(args):
    import numba
    import scipy
    import scipy.linalg
    import sklearn

    cache = kernel_module("_jit").cache_folder()
    rows = [
        ("fastmlp", __version__), ("python", platform.python_version()),
        ("numpy", np.__version__), ("numba", numba.__version__), ("scipy", scipy.__version__),
        ("scikit-learn", sklearn.__version__),
        ("cpu", f"{_cpu()} ({os.cpu_count()} logical cores)"),
        ("numba threading layer", numba.config.THREADING_LAYER),
        ("numba cache", cache or "not cached (no writable cache location)"),
        ("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", "(unset)")),
    ]
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            rows.append((f"{lib['user_api']} ({lib['internal_api']})",
                         f"{lib['num_threads']} threads, {os.path.basename(lib['filepath'])}"))
    except ImportError:
        pass
    for key, value in rows:
        print(f"{key + ':':24} {value}")
    return 0
