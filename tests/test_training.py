"""Mini-batches, fit, momentum, weight decay, schedules, history, early stopping."""

import numpy as np
import pytest
from conftest import assert_float32_fit_tracks, assert_same_state, blobs, hard_data, params_of

from fastmlp import MSE, NLL, History, Linear, ReLU, Sequential, Sigmoid, SoftMax, Tanh
from fastmlp.engines import numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not importable")


def build(engine, dtype=np.float64, seed=0, arch="relu"):
    np.random.seed(seed)
    if arch == "relu":
        mods, loss = [Linear(5, 12), ReLU(), Linear(12, 8), Tanh(), Linear(8, 3), SoftMax()], NLL()
    else:
        mods, loss = [Linear(5, 12), Sigmoid(), Linear(12, 3)], MSE()
    return Sequential(mods, loss, engine=engine, dtype=dtype)


class InOrder(np.random.RandomState):
    """A generator whose integer draws are 0, 1, 2, ...: sgd in a fixed order."""

    def randint(self, n, size=None):
        return np.arange(size) % n


def test_fit_batch1_no_momentum_equals_sgd_in_the_same_order(engine):
    X, Y = blobs(5, 3, 60)
    a, b = build(engine), build(engine)
    a.fit(X, Y, epochs=1, batch_size=1, lrate=0.05, shuffle=False, verbose=0)
    b.sgd(X, Y, iters=60, lrate=0.05, seed=InOrder(0), verbose=False)
    assert_same_state(a, b, rtol=1e-12, atol=1e-14)


@needs_numba
@pytest.mark.parametrize("momentum, nesterov, decay", [(0.0, False, 0.0), (0.9, False, 1e-3),
                                                      (0.8, True, 1e-2), (0.0, False, 1e-2)])
@pytest.mark.parametrize("batch", [1, 7, 32])
@pytest.mark.parametrize("arch", ["relu", "mse"])
def test_fused_fit_equals_numpy_engine(momentum, nesterov, decay, batch, arch):
    X, Y = blobs(5, 3, 150)
    a, b = build("numpy", arch=arch), build("numba", arch=arch)
    kw = dict(epochs=1, batch_size=batch, lrate=0.02, momentum=momentum, nesterov=nesterov,
              weight_decay=decay, seed=3, verbose=0)
    ha, hb = a.fit(X, Y, **kw), b.fit(X, Y, **kw)
    assert b.path.startswith("fused ")
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=1e-9)
    assert ha.accuracy == hb.accuracy


@needs_numba
def test_fused_fit_float32_tolerance():
    """float32: same trajectory to float32 round-off (documented: rtol 1e-4)."""
    X, Y = blobs(5, 3, 150)
    assert_float32_fit_tracks(build("numpy", np.float32), build("numba", np.float32), X, Y)


@needs_numba
@pytest.mark.parametrize("batch", [2, 5])
def test_sgd_minibatch_fused_equals_numpy(batch):
    X, Y = hard_data(100)
    np.random.seed(0)
    a = Sequential([Linear(2, 8), ReLU(), Linear(8, 2), SoftMax()], NLL(), engine="numpy")
    np.random.seed(0)
    b = Sequential([Linear(2, 8), ReLU(), Linear(8, 2), SoftMax()], NLL(), engine="numba")
    a.sgd(X, Y, iters=300, lrate=0.1, batch_size=batch, seed=2, verbose=False)
    b.sgd(X, Y, iters=300, lrate=0.1, batch_size=batch, seed=2, verbose=False)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


def test_velocity_persists_across_fit_calls(engine):
    X, Y = blobs(5, 3, 64)
    a, b = build(engine), build(engine)
    a.fit(X, Y, epochs=2, batch_size=8, momentum=0.9, shuffle=False, verbose=0)
    b.fit(X, Y, epochs=1, batch_size=8, momentum=0.9, shuffle=False, verbose=0)
    b.fit(X, Y, epochs=1, batch_size=8, momentum=0.9, shuffle=False, verbose=0)
    assert_same_state(a, b, rtol=1e-12, atol=1e-14)


def test_history(engine):
    X, Y = blobs(5, 3, 200)
    Xv, Yv = blobs(5, 3, 50, seed=1)
    h = build(engine).fit(X, Y, epochs=4, batch_size=16, validation_data=(Xv, Yv), verbose=0)
    assert isinstance(h, History) and h.epochs == 4
    for key in ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]:
        assert len(getattr(h, key)) == 4 and key in h.history
    assert h.loss[-1] < h.loss[0] and 0 <= h.accuracy[-1] <= 1
    assert all(t > 0 for t in h.time) and h.lr == [0.01] * 4
    assert not h.stopped_early and h.best_epoch is not None
    reg = build(engine, arch="mse").fit(X, Y, epochs=2, verbose=0)
    assert reg.accuracy == [None, None] and "val_loss" not in reg.history


def test_evaluate_and_predict(engine):
    X, Y = blobs(5, 3, 300)
    nn = build(engine)
    nn.fit(X, Y, epochs=15, batch_size=16, lrate=0.05, verbose=0)
    loss, acc = nn.evaluate(X, Y)
    pred = nn.predict(X)
    assert pred.shape == (300,) and pred.dtype.kind == "i"
    assert acc == pytest.approx(np.mean(pred == Y.argmax(axis=0))) and acc > 0.9
    assert loss == pytest.approx(nn.loss.forward(nn.forward(X), Y) / 300)
    out = build(engine, arch="mse").predict(X)
    assert out.shape == (3, 300)
    assert build(engine, arch="mse").evaluate(X, Y)[1] is None


def test_early_stopping_restores_the_best_weights(engine):
    X, Y = blobs(5, 3, 100)
    Xv, Yv = blobs(5, 3, 100, seed=7)
    seen = []

    def record(model, history):
        seen.append([p.copy() for p in params_of(model)])

    nn = build(engine)
    h = nn.fit(X, Y, epochs=200, batch_size=4, lrate=0.5, validation_data=(Xv, Yv),
               early_stopping=True, patience=3, callbacks=record, verbose=0)
    assert h.stopped_early and h.epochs < 200
    assert h.epochs - 1 - h.best_epoch == 3  # stopped after `patience` epochs without progress
    assert h.val_loss[h.best_epoch] == min(h.val_loss)
    for p, q in zip(seen[h.best_epoch], params_of(nn), strict=True):
        np.testing.assert_array_equal(p, q)


def test_schedules(engine):
    X, Y = blobs(5, 3, 40)
    h = build(engine).fit(X, Y, epochs=3, lrate=0.1, lr_schedule="invscaling", verbose=0)
    np.testing.assert_allclose(h.lr, [0.1, 0.1 / 41 ** 0.5, 0.1 / 81 ** 0.5])
    h = build(engine).fit(X, Y, epochs=3, lrate=0.1, lr_schedule=lambda e, lr: lr / (e + 1),
                          verbose=0)
    np.testing.assert_allclose(h.lr, [0.1, 0.05, 0.1 / 3])
    # adaptive: with an impossible min_delta only epoch 0 counts as progress; after every
    # `patience` epochs without progress the rate is divided by 5
    h = build(engine).fit(X, Y, epochs=6, lrate=0.1, lr_schedule="adaptive", patience=2,
                          min_delta=1e9, verbose=0)
    np.testing.assert_allclose(h.lr, [0.1, 0.1, 0.1, 0.02, 0.02, 0.004])


def test_callback_stops(engine):
    X, Y = blobs(5, 3, 40)
    h = build(engine).fit(X, Y, epochs=10, callbacks=[lambda m, hist: hist.epochs == 2],
                          verbose=0)
    assert h.epochs == 2 and h.stopped_early


def test_divergence_stops_with_a_warning(engine):
    X, Y = blobs(5, 3, 40)
    Y = Y * 1e150
    nn = build(engine, arch="mse")
    with pytest.warns(RuntimeWarning, match="training diverged"):
        h = nn.fit(X, Y, epochs=5, lrate=1.0, verbose=0)
    assert h.stopped_early


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"epochs": -1}, ValueError, "epochs must be an integer >= 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\); got 1.0"),
        ({"momentum": -0.5}, ValueError, "momentum must be a finite number >= 0"),
        ({"weight_decay": np.nan}, ValueError, "weight_decay must be a finite number >= 0"),
        ({"lr_schedule": "cosine"}, ValueError, "lr_schedule must be one of"),
        ({"monitor": "val_loss"}, ValueError, "monitor='val_loss' needs validation_data"),
        ({"monitor": "f1"}, ValueError, "monitor must be one of"),
        ({"patience": 0}, ValueError, "patience must be an integer >= 1"),
        ({"validation_data": np.zeros(3)}, TypeError, "validation_data must be a pair"),
        ({"validation_data": (np.zeros((4, 3)), np.zeros((3, 3)))}, ValueError,
         r"validation_data: X must have 5 rows"),
        ({"callbacks": 3}, TypeError, "callbacks must be callables"),
    ],
)
def test_bad_fit_input(engine, kwargs, exc, match):
    X, Y = blobs(5, 3, 20)
    nn = build(engine)
    before = params_of(nn)
    with pytest.raises(exc, match=match):
        nn.fit(X, Y, verbose=0, **kwargs)
    for p, q in zip(before, params_of(nn), strict=True):
        np.testing.assert_array_equal(p, q)


def test_verbose_output(engine, capsys):
    X, Y = blobs(5, 3, 40)
    build(engine).fit(X, Y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    build(engine).fit(X, Y, epochs=2, verbose=1)  # not a terminal: plain lines
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - loss ")
    assert " - accuracy " in lines[1] and lines[1].endswith("s")


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    import io
    import sys

    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    X, Y = blobs(5, 3, 40)
    build("numpy").fit(X, Y, epochs=3, verbose=1)
    nn = build("numpy")
    nn.sgd(X, Y, iters=600, print_every=100)
    err = capsys.readouterr().err
    assert "3/3" in err and "epoch" in err and "loss=" in err and "600/600" in err
    assert "Epoch 1/3" not in term.getvalue()


def test_large_batches_draw_in_small_chunks(engine):
    """sgd with big batches draws its indices a bounded chunk at a time (the
    buffers once held every step's indices: 2 GB at 65,536 steps of 4,096),
    and still leaves the global generator where iters * batch_size draws do."""
    import tracemalloc

    X, Y = blobs(4, 3, 1000)
    np.random.seed(0)
    nn = Sequential([Linear(4, 6), ReLU(), Linear(6, 3), SoftMax()], NLL(), engine=engine)
    nn.sgd(X, Y, iters=2, batch_size=1000, verbose=False)  # compile first
    np.random.seed(5)
    np.random.randint(1000, size=3000 * 1000)
    expected = np.random.get_state()[1].copy()
    np.random.seed(5)
    tracemalloc.start()
    try:
        nn.sgd(X, Y, iters=3000, batch_size=1000, verbose=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6, peak  # all the run's indices would be 24 MB; a chunk is 0.5 MB
    np.testing.assert_array_equal(np.random.get_state()[1], expected)
