"""Training under stress: concurrent threads, interrupts, read-only or diverging
weights, and the smaller misuses of issue 14 (one test per finding)."""

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import blobs, dims, network, params_of

from fastmlp import MSE, NLL, Linear, ReLU, Sequential, SoftMax
from fastmlp.blas import one_blas_thread
from fastmlp.engines import numba_available

ENGINES = ["numpy", "numba"] if numba_available() else ["numpy"]


def blas_threads():
    import scipy.linalg  # noqa: F401  (its BLAS too)
    from threadpoolctl import threadpool_info

    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_blas_pin_is_reentrant_in_the_main_thread_and_idle_in_others():
    """Only the main thread changes the process's BLAS limits (set and restored
    by the outermost pin); threads pinning at once leave them as they were."""
    before = blas_threads()
    with one_blas_thread():
        with one_blas_thread():
            assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
    entered = threading.Barrier(2)

    def hold():
        with one_blas_thread():
            entered.wait()
            time.sleep(0.05)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert blas_threads() == before


def _cores():
    from fastmlp.inference import cores

    return cores()


@pytest.mark.skipif(_cores() < 2, reason="one core: every limit gives one thread")
def test_worker_threads_follow_the_callers_blas_limit():
    """fastmlp's workers obey the BLAS limit a caller sets (as scikit-learn's
    MLP does through BLAS), not the pin fastmlp itself holds during a call,
    seen from the pinning thread or any other."""
    from threadpoolctl import threadpool_limits

    from fastmlp.inference import cores, default_threads

    free = default_threads()
    assert free == min(cores(), min(blas_threads()))
    if free < 2:
        pytest.skip("BLAS is limited to one thread in this environment")
    with threadpool_limits(limits=1, user_api="blas"):
        assert default_threads() == 1
        with one_blas_thread():
            assert default_threads() == 1
    seen = []
    with one_blas_thread():  # its own limit of one does not count
        assert blas_threads() == [1] * len(blas_threads())
        seen.append(default_threads())
        worker = threading.Thread(target=lambda: seen.append(default_threads()))
        worker.start()
        worker.join()
    assert seen == [free, free]
    assert default_threads() == free


@pytest.mark.skipif(_cores() < 2, reason="one core: every limit gives one thread")
def test_blas_thread_variable_limits_the_workers():
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    code = "from fastmlp.inference import default_threads; print(default_threads())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


@pytest.mark.skipif(not numba_available(), reason="numba not importable")
def test_two_models_on_the_blocked_path_in_two_threads():
    before = blas_threads()
    X, Y = blobs(*dims("200-100-3"), 300)
    X = X / 10
    results = {}

    def train(i):
        nn = Sequential(*network("200-100-3", seed=0), block=16)
        nn.sgd(X, Y, iters=3000, seed=i, verbose=False)
        results[i] = params_of(nn)

    threads = [threading.Thread(target=train, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert blas_threads() == before
    threaded = results[1]
    train(1)  # sequentially: the same weights as in its thread (float64, up to rounding)
    for a, b in zip(threaded, results[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("engine", ENGINES)
def test_sgd_warns_when_it_diverges(engine):
    X = np.random.RandomState(0).rand(2, 30) * 1e200
    Y = np.eye(2)[np.arange(30) % 2].T
    np.random.seed(0)
    nn = Sequential(*network("notebook002"), engine=engine)
    # (NumPy's own overflow warnings of the NumPy engine are not what is tested)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning,
                                                 match=r"training diverged at step \d+"):
        nn.sgd(X, Y, 50, 0.01, verbose=False)
    with pytest.raises(ValueError, match=r"W of Linear\(2, 10\) holds non-finite values"):
        nn.predict(X)


@pytest.mark.parametrize("path", ["numpy", "layer", "fused"])
def test_read_only_weights_are_refused_before_any_change(path):
    np.random.seed(0)
    kw = {"numpy": dict(engine="numpy"), "layer": dict(fuse=False), "fused": {}}[path]
    if path != "numpy" and not numba_available():
        pytest.skip("numba not importable")
    nn = Sequential([Linear(2, 4), ReLU(), Linear(4, 2), SoftMax()], NLL(), **kw)
    X, Y = blobs(2, 2, 20)
    frozen = nn.modules[2].W.copy()
    frozen.flags.writeable = False
    nn.modules[2].W = frozen
    before, state = params_of(nn), np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match=r"W of Linear\(4, 2\) is a read-only array"):
        nn.sgd(X, Y, iters=10, verbose=False)
    for p, q in zip(before, params_of(nn), strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(state, np.random.get_state()[1])  # no draw made


def test_one_model_trained_from_two_threads_is_refused():
    X, Y = blobs(20, 3, 2000)
    nn = Sequential([Linear(20, 64), ReLU(), Linear(64, 3), SoftMax()], NLL(), engine="numpy")
    errors = []

    def long_training():
        nn.sgd(X, Y, iters=4000, verbose=False)

    worker = threading.Thread(target=long_training)
    worker.start()
    deadline = time.time() + 10
    while not nn._busy.locked() and time.time() < deadline:
        time.sleep(0.001)
    try:
        nn.fit(X, Y, epochs=1, verbose=0)
    except RuntimeError as exc:
        errors.append(str(exc))
    worker.join()
    assert errors and "already training in another thread" in errors[0]
    nn.fit(X, Y, epochs=1, verbose=0)  # free again


#: (notebook 003's network: the children load its kernels from the session's cache)
INTERRUPT = r"""
import sys, time
import numpy as np
from fastmlp import Linear, NLL, ReLU, Sequential, Sigmoid, SoftMax
rng = np.random.RandomState(0)
X = np.asfortranarray(rng.rand(784, 3000))
Y = np.asfortranarray(np.eye(10)[rng.randint(10, size=3000)].T)
mode = sys.argv[1]
if mode == "adam-1":
    # Batches of one with Adam through a wide network: each step's update
    # pass over 670,000 parameters is most of its time (an epoch is one
    # call of several seconds unless the calls count that pass).
    nn = Sequential([Linear(784, 512), ReLU(), Linear(512, 512), ReLU(), Linear(512, 10),
                     SoftMax()], NLL())
else:
    nn = Sequential([Linear(784, 100), Sigmoid(), Linear(100, 10), SoftMax()], NLL())
run = {"sgd": lambda: nn.sgd(X, Y, iters=10**7, lrate=1e-3, verbose=False),
       "fit": lambda: nn.fit(X, Y, epochs=10**4, batch_size=32, lrate=1e-3, verbose=0),
       "adam-1": lambda: nn.fit(X, Y, epochs=10**4, batch_size=1, optimizer="adam",
                                lrate=1e-5, verbose=0)}[mode]
if mode == "sgd":
    nn.sgd(X, Y, iters=10, verbose=False)
nn.fit(X[:, :64], Y[:, :64], epochs=1, batch_size=32, verbose=0)  # compiled, cached
print("ready", flush=True)
try:
    run()
except KeyboardInterrupt:
    print("stopped", time.time(), flush=True)
ok = all(np.isfinite(p).all() for p in nn.parameters())
nn.fit(X[:, :64], Y[:, :64], epochs=1, batch_size=32, verbose=0)  # resumes
print("finite", ok, flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not numba_available(), reason="numba not importable")
@pytest.mark.parametrize("mode", ["sgd", "fit", "adam-1"])
def test_ctrl_c_stops_training_quickly(mode):
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT, mode], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].split()
    assert out[0] == "stopped" and out[-1] == "True"
    delay = float(out[1]) - sent
    # The calls are sized to about 30 ms of work; the margin is for a busy CI machine.
    assert delay < 0.5, delay


def test_smaller_misuses():
    X, Y = blobs(3, 2, 40)
    nn = Sequential([Linear(3, 4), ReLU(), Linear(4, 2), SoftMax()], NLL())
    h = nn.fit(X, Y, epochs=1, batch_size=2**40, verbose=0)  # clamped to the 40 samples
    assert h.epochs == 1
    with pytest.raises(ValueError, match=r"batch_size must be an integer from 1 to 4194304"):
        nn.sgd(X, Y, iters=1, batch_size=2**40)
    with pytest.raises(TypeError, match=r"X is a masked array"):
        nn.fit(np.ma.masked_array(X, X > 1), Y, verbose=0)
    with pytest.raises(TypeError, match=r"verbose must be True or False; got 'no'"):
        nn.sgd(X, Y, iters=1, verbose="no")
    lin = Linear(3, 2)
    lin.W = [[0.1, 0.2]] * 3  # a list, assigned before building the model
    model = Sequential([lin], MSE())
    assert isinstance(lin.W, np.ndarray) and model.dtype == np.float64


def test_data_that_overflows_its_products_warns():
    """X = 1e308 is finite, but its products overflow: training says so."""
    X = np.full((2, 10), 1e308)
    Y = np.eye(2)[np.arange(10) % 2].T
    nn = Sequential(*network("notebook002"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nn.sgd(X, Y, iters=5, verbose=False)
    assert any("training diverged" in str(w.message) for w in caught)
