"""Peer libraries doing fastmlp's arithmetic, for side-by-side rows in the bench.

Optional (the ``peers`` extra): JAX, with the whole training loop in one
``jit``-compiled ``lax.scan``, and PyTorch on the CPU, eager, one autograd
step per sample or batch. Each trains the workload's network (same widths,
activations, loss, learning rate) on the same data with plain SGD, one step
per sample (or the mean gradient of a batch), from weights of the same scale.

Threads: JAX (XLA) and PyTorch are held to ``THREADS`` threads, as the BLAS
of fastmlp's rows. PyTorch obeys ``torch.set_num_threads``. XLA does not
obey its thread flags any more (jax 0.10 with ``--xla_cpu_multi_thread_eigen
=false``: 1.9 cores busy on the 784-512-512-10 batch-128 scan, 1.6x faster
than on one core): it sizes its thread pool from the process's CPU affinity
when its CPU client starts, so :func:`jax_runner` starts it with the
affinity cut to ``THREADS`` cores and then gives the caller its cores back
(the pool's threads keep the cut mask). The bench records each side's
measured cores (CPU time / wall time) next to its time, so a peer that
escapes the pin shows. This module must be imported before anything else
starts JAX's backend.
"""

import contextlib
import itertools
import os

import numpy as np

THREADS = int(os.environ.get("FASTMLP_BENCH_THREADS", "1"))
if THREADS == 1 and "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1")

PEERS = ("jax", "torch")


def available(peer):
    """True if ``peer`` ("jax" or "torch") imports."""
    try:
        __import__(peer)
    except ImportError:
        return False
    return True


def version(peer):
    return __import__(peer).__version__


def _start_jax_on(threads):
    """Start JAX's CPU client with its thread pool on ``threads`` cores."""
    import jax

    cpus = sorted(os.sched_getaffinity(0))
    if threads >= len(cpus):
        jax.devices("cpu")
        return
    os.sched_setaffinity(0, cpus[:threads])
    try:
        jax.devices("cpu")  # creates the client and its pool under the cut mask
    finally:
        os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def same_cores():
    """Run the calling thread on the cores :func:`_start_jax_on` gives XLA's
    pool (the first ``THREADS``), then give it its cores back.

    Each core of this machine is a virtual CPU whose speed moves with the
    host's load, one core at a time (W5 float32 alone, in one process: 3.7
    us/sample on either core, then minutes later 5.6 on core 0 and 4.7 on
    core 1). With XLA's pool held to core 0 and fastmlp free to run on
    either, a slow phase of one core could slow one side only: in five of
    nine runs on 2026-11-30, fastmlp's median in the W5 float32 JAX row read
    6.0-6.4 us/sample while the PyTorch row of the same run read 4.1-5.6.
    On the same cores, both sides of an interleaved row see the same
    phases. (fastmlp's own thread counts follow the calling thread's
    affinity, :func:`fastmlp.inference.cores`, so they too see ``THREADS``
    cores here; thread pools made before, BLAS's, stay where they were,
    which is why this holds for one thread only.)"""
    cpus = sorted(os.sched_getaffinity(0))
    if THREADS >= len(cpus):
        yield
        return
    os.sched_setaffinity(0, cpus[:THREADS])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


def _init(sizes, dtype, seed=0):
    """Weights (m x n) and biases (n,) of each layer, scaled as fastmlp's Linear."""
    rng = np.random.RandomState(seed)
    return [((rng.randn(m, n) / np.sqrt(m)).astype(dtype), np.zeros(n, dtype=dtype))
            for m, n in itertools.pairwise(sizes)]


def jax_runner(workload, Xr, Yr, dtype, batch=1, seed=0):
    """``run(idx)`` trains on the samples ``idx`` (steps x batch int array) in one
    jitted ``lax.scan`` and waits for the result; returns it."""
    import jax

    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)
    _start_jax_on(THREADS)
    import jax.numpy as jnp

    act = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[workload.hidden]
    n_layers = len(workload.sizes) - 1
    lr = np.dtype(dtype).type(workload.lrate)

    def loss_fn(params, x, y):
        a = x
        for i, (W, b) in enumerate(params):
            a = a @ W + b
            if i < n_layers - 1:
                a = act(a)
        if workload.head == "softmax-nll":
            return -(y * jax.nn.log_softmax(a)).sum() / x.shape[0]
        return ((a - y) ** 2).sum() / x.shape[0]

    grad = jax.grad(loss_fn)

    @jax.jit
    def train(params, X, Y, idx):
        def step(p, ix):
            g = grad(p, X[ix], Y[ix])
            return jax.tree.map(lambda w, gw: w - lr * gw, p, g), None

        return jax.lax.scan(step, params, idx)[0]

    X = jax.device_put(jnp.asarray(Xr, dtype=dtype))
    Y = jax.device_put(jnp.asarray(Yr, dtype=dtype))
    state = {"p": jax.tree.map(jnp.asarray, _init(workload.sizes, dtype, seed))}

    def run(idx):
        state["p"] = jax.block_until_ready(train(state["p"], X, Y, jnp.asarray(idx)))

    return run


def torch_runner(workload, Xr, Yr, dtype, batch=1, seed=0):
    """``run(idx)``: eager PyTorch, one autograd step per row of ``idx``."""
    import torch

    torch.set_num_threads(THREADS)
    tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(dtype)]
    X, Y = torch.from_numpy(np.ascontiguousarray(Xr, dtype=dtype)), torch.from_numpy(
        np.ascontiguousarray(Yr, dtype=dtype))
    params = [t for W, b in _init(workload.sizes, dtype, seed)
              for t in (torch.from_numpy(W).requires_grad_(), torch.from_numpy(b).requires_grad_())]
    act = {"relu": torch.relu, "sigmoid": torch.sigmoid}[workload.hidden]
    n_layers = len(workload.sizes) - 1
    lr = workload.lrate
    assert tdt == X.dtype

    def run(idx):
        for ix in torch.from_numpy(np.asarray(idx)):
            x, y = X[ix], Y[ix]
            a = x
            for i in range(n_layers):
                a = a @ params[2 * i] + params[2 * i + 1]
                if i < n_layers - 1:
                    a = act(a)
            if workload.head == "softmax-nll":
                loss = -(y * torch.log_softmax(a, dim=1)).sum() / x.shape[0]
            else:
                loss = ((a - y) ** 2).sum() / x.shape[0]
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
                    p.grad = None

    return run


RUNNERS = {"jax": jax_runner, "torch": torch_runner}
