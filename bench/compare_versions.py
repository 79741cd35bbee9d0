"""Time two installs of fastmlp side by side: the same workloads, interleaved.

Usage::

    python bench/compare_versions.py OLD_PYTHON NEW_PYTHON [--rounds 7]

Each interpreter (for example ``/path/to/old-venv/bin/python``, with another
commit installed) runs a worker process that builds every workload once,
warms it up, then times one call per command; the rounds alternate between
the two workers, so a busy neighbour on a shared machine slows both alike.
Prints the median seconds per call of each and their ratio (new / old).
Only the public API is used (``Sequential``, ``sgd``, ``fit``), so any two
versions compare. BLAS is pinned to one thread in both workers.
"""

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(r"""
    import json, sys, time
    import numpy as np
    from threadpoolctl import threadpool_limits
    import scipy.linalg  # (so that its BLAS is pinned too)
    import fastmlp
    from fastmlp import Linear, MSE, NLL, ReLU, Sequential, Sigmoid, SoftMax
    from fastmlp.datasets import load_mnist

    limits = threadpool_limits(1, user_api="blas")
    mnist = sys.argv[1]

    def data(kind, dtype):
        rng = np.random.RandomState(0)
        if kind == "mnist":
            X, Y = load_mnist(mnist, "train", dtype=dtype)
            return X, Y
        if kind == "dense":
            X = rng.rand(20000, 784).astype(dtype).T
            return X, np.eye(10, dtype=dtype)[rng.randint(10, size=20000)].T
        if kind == "toy":
            from fastmlp.datasets import make_blobs
            return make_blobs(2000, 2, 2, spread=2.0, seed=0, dtype=dtype)
        x, t = rng.randn(20000, 1000).astype(dtype), rng.randn(20000, 10).astype(dtype)
        return x.T, t.T

    def net(sizes, act, head, dtype):
        np.random.seed(0)
        mods = []
        for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(Linear(m, n))
            if i < len(sizes) - 2:
                mods.append(act())
        if head == "nll":
            return Sequential(mods + [SoftMax()], NLL(), dtype=dtype)
        return Sequential(mods, MSE(), dtype=dtype)

    CASES = {}
    for dtype in ("float64", "float32"):
        for key, sizes, act, head, kind, mode, work, lr in [
            ("W1", (2, 10, 10, 2), ReLU, "nll", "toy", 1, 50000, 0.005),
            ("W2", (784, 100, 10), Sigmoid, "nll", "mnist", 1, 20000, 0.01),
            ("W2d", (784, 100, 10), Sigmoid, "nll", "dense", 1, 20000, 0.01),
            ("W4", (784, 512, 512, 10), ReLU, "nll", "mnist", 1, 1500, 0.01),
            ("W3", (1000, 100, 10), ReLU, "mse", "randn", 64, 2560, 1e-4),
            ("W4b", (784, 512, 512, 10), ReLU, "nll", "mnist", 128, 1536, 0.01),
        ]:
            X, Y = data(kind, dtype)
            model = net(sizes, act, head, dtype)
            if mode == 1:
                def run(model=model, X=X, Y=Y, k=work, lr=lr):
                    model.sgd(X, Y, iters=k, lrate=lr, verbose=False)
            else:
                Xs, Ys = X[:, :work], Y[:, :work]
                def run(model=model, Xs=Xs, Ys=Ys, b=mode, lr=lr):
                    model.fit(Xs, Ys, epochs=1, batch_size=b, lrate=lr, momentum=0.9, seed=0,
                              verbose=0)
            run()  # warm-up: compiles, tunes, settles malloc
            CASES[f"{key} {'per-sample' if mode == 1 else 'batch%d' % mode} {dtype}"] = (run, work)
    print(json.dumps({"ready": list(CASES), "version": fastmlp.__file__}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        run, work = CASES[name]
        t = time.perf_counter()
        run()
        print(json.dumps({"seconds": time.perf_counter() - t, "samples": work}), flush=True)
""")


def start(python, mnist):
    proc = subprocess.Popen([python, "-c", WORKER, mnist], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd="/")
    hello = json.loads(proc.stdout.readline())
    return proc, hello


def ask(proc, name):
    proc.stdin.write(name + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--mnist", default="/work/shared/data/mnist")
    args = p.parse_args(argv)
    old, hello_old = start(args.old, args.mnist)
    new, hello_new = start(args.new, args.mnist)
    print(f"old: {hello_old['version']}\nnew: {hello_new['version']}")
    times = {name: ([], []) for name in hello_new["ready"] if name in hello_old["ready"]}
    for r in range(args.rounds):
        for name, (a, b) in times.items():
            if r % 2 == 0:  # alternate which goes first
                a.append(ask(old, name)["seconds"])
                b.append(ask(new, name)["seconds"])
            else:
                b.append(ask(new, name)["seconds"])
                a.append(ask(old, name)["seconds"])
    print(f"{'workload':<28} {'old s/call':>11} {'new s/call':>11} {'new/old':>8}")
    for name, (a, b) in times.items():
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:<28} {ma:>11.4f} {mb:>11.4f} {mb / ma:>8.3f}")
    for proc in (old, new):
        proc.stdin.close()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
