"""Training: the two paths that take SGD steps, and ``fit`` built on them.

A *steps* object prepares the data of one training call and then runs
batches of steps on request: ``run(order, batch, lrate, ...)`` takes one step
per run of ``batch`` consecutive entries of ``order`` (the last may be
shorter) and returns each step's summed loss and hit count. The fused path
does that in one compiled call; the layer-by-layer path loops in Python over
the modules, exactly as the notebook, for networks the kernels cannot run.
"""

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _validation as v
from ._progress import Progress
from .fused import blocked_kernel, choose_block
from .layers import BUILTIN, Linear, SoftMax
from .losses import MSE, NLL

__all__ = ["History", "fit"]


_BLAS = []


def one_blas_thread():
    """A context in which BLAS runs on one thread.

    The blocked kernel calls BLAS for small products between bursts of
    per-sample work; on a 2-core machine, two BLAS threads made those calls
    slower and erratic (they sleep and wake between products), one thread
    made them steady, so it runs with one.
    """
    if not _BLAS:
        import scipy.linalg  # noqa: F401  (loads the BLAS Numba calls, so the controller sees it)
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def make_steps(model, X, Y, samples=0, per_sample=False):
    """Return the steps object for ``model`` on checked data X, Y.

    ``samples`` (how many samples this training call will visit) lets the
    fused path choose between transposing X once and gathering per run, and
    ``per_sample`` whether measuring the blocked kernel can be worth it.
    """
    model._bind_engine()
    plan = model._plan()
    if plan is not None:
        return FusedSteps(model, model._flat_network(plan), X, Y, samples, per_sample)
    return LayerSteps(model, X, Y)


class FusedSteps:
    """Steps in compiled code: one kernel call per run of steps.

    The kernels read samples as rows. A Fortran-ordered X (the transpose of a
    samples x features array, as the dataset loaders return) is that already,
    at no cost. Otherwise a training call that visits about the whole data
    set transposes it once; a short one gathers just the samples each run
    draws, so a few hundred steps never pay for a copy of all of X.
    """

    def __init__(self, model, flat, X, Y, samples, per_sample):
        from .kernels.fused import sgd_per_sample
        from .kernels.minibatch import train_minibatch

        self.per_sample, self.minibatch = sgd_per_sample, train_minibatch
        self.model, self.flat = model, flat
        self.tune_steps = samples if per_sample else 0
        self.columns = (X, Y)
        self.rows = None
        if X.T.flags.c_contiguous and Y.T.flags.c_contiguous:
            self.rows = (X.T, Y.T)
        elif 4 * samples >= X.shape[1]:
            self.rows = (np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T))
        self.block = None  # decided at the first per-sample run

    def _data(self, order):
        """Samples-as-rows X and Y for the steps in ``order``, and their indices there."""
        if self.rows is not None:
            return (*self.rows, order)
        X, Y = self.columns
        rows = np.arange(len(order), dtype=np.int64)
        return np.ascontiguousarray(X.T[order]), np.ascontiguousarray(Y.T[order]), rows

    def _tuning_rows(self):
        """Samples-as-rows data to measure the blocked kernel on: all of it, or
        (when the call gathers its samples) a random few thousand samples."""
        if self.rows is not None:
            return self.rows
        X, Y = self.columns
        pick = np.random.RandomState(0).randint(X.shape[1], size=min(X.shape[1], 4096))
        return np.ascontiguousarray(X.T[pick]), np.ascontiguousarray(Y.T[pick])

    def run(self, order, batch, lrate, momentum=0.0, nesterov=False, weight_decay=0.0,
            hits=False):
        # (the kernels count hits whatever ``hits`` says: it costs them nothing)
        flat, plan = self.flat, self.flat.plan
        X, Y, order = self._data(np.ascontiguousarray(order, dtype=np.int64))
        steps = -(-len(order) // batch)
        losses, hit = np.empty(steps), np.empty(steps, dtype=np.int64)
        if batch == 1 and momentum == 0 and weight_decay == 0:
            if self.block is None:
                rows = self._tuning_rows()
                self.blocked = blocked_kernel(rows[0])
                self.block = choose_block(self.model.block, flat, *rows, self.tune_steps)
                self.model._block_size = self.block or None
            args = (flat.P, flat.G, plan.sizes, plan.acts, plan.loss, X, Y, order,
                    float(lrate), losses, hit)
            if self.block:
                with one_blas_thread():
                    self.blocked(*args, self.block)
            else:
                self.per_sample(*args)
        else:
            self.minibatch(flat.P, flat.G, flat.V, plan.sizes, plan.acts, plan.loss, X, Y,
                           order, int(batch), float(lrate), float(momentum), bool(nesterov),
                           float(weight_decay), losses, hit)
        return losses, hit


class LayerSteps:
    """The notebook's step: one Python call per module per batch.

    Works for any mix of built-in and user layers; built-in layers still do
    their arithmetic on the model's engine, through their unchecked steps
    (the data were checked once, up front), so this path is also a fair
    NumPy baseline. Where a SoftMax feeds NLL the combined gradient
    ``Ypred - Y`` replaces the two backward steps, and a first Linear layer
    skips its input gradient, which nothing uses. Momentum and weight decay
    apply to built-in Linear layers; a layer of your own gets
    ``sgd_step(lrate / batch)``.
    """

    def __init__(self, model, X, Y):
        self.model, self.X, self.Y = model, X, Y
        mods, loss = model.modules, model.loss
        builtin = [type(m) in BUILTIN for m in mods]
        self.forwards = [m._fwd if b else m.forward for m, b in zip(mods, builtin, strict=True)]
        self.backwards = [m._bwd if b else m.backward for m, b in zip(mods, builtin, strict=True)]
        self.combined = type(mods[-1]) is SoftMax and type(loss) is NLL
        top = len(mods) - 2 if self.combined else len(mods) - 1
        self.chain = self.backwards[top:0:-1]  # backward through modules top .. 1
        self.first = None if top < 0 else self.backwards[0]
        self.first_linear = type(mods[0]) is Linear
        self.linears = [m for m in mods if type(m) is Linear]
        self.others = [m for m, b in zip(mods, builtin, strict=True) if not b]
        for m in self.linears:
            m._ensure_grad_buffers()
        self.builtin_loss = type(loss) in (NLL, MSE)

    def run(self, order, batch, lrate, momentum=0.0, nesterov=False, weight_decay=0.0,
            hits=False):
        from .sequential import _sgd_step

        X, Y, ops, loss_fn = self.X, self.Y, self.model._ops, self.model.loss
        plain = batch == 1 and momentum == 0 and weight_decay == 0
        steps = -(-len(order) // batch)
        losses, hit = np.empty(steps), np.zeros(steps, dtype=np.int64)
        for s in range(steps):
            rows = order[s * batch:(s + 1) * batch]
            if len(rows) == 1:  # the notebook's slice: a view, no copy
                t = rows[0]
                Xt, Yt = X[:, t:t + 1], Y[:, t:t + 1]
            else:
                Xt, Yt = X[:, rows], Y[:, rows]
            A = Xt
            for f in self.forwards:
                A = f(A)
            losses[s] = self._loss(loss_fn, ops, A, Yt)
            if hits:
                hit[s] = np.count_nonzero(np.argmax(A, axis=0) == np.argmax(Yt, axis=0))
            grad = ops.softmax_nll_backward(A, Yt) if self.combined else loss_fn.backward()
            for b in self.chain:
                grad = b(grad)
            if self.first is not None:
                if self.first_linear:
                    self.first(grad, False)
                else:
                    self.first(grad)
            scale = 1.0 / len(rows)
            for m in self.linears:
                if plain:
                    ops.linear_update(m.W, m.W0, m.dLdW, m.dLdW0, lrate)
                else:
                    ops.sgd_update(m.W, m.W0, m.dLdW, m.dLdW0, *m._velocity(), lrate, scale,
                                   momentum, nesterov, weight_decay)
            for m in self.others:
                _sgd_step(m, lrate * scale)
        return losses, hit

    def _loss(self, loss_fn, ops, Ypred, Y):
        """The loss of the step; the loss object keeps Ypred and Y, as in the notebook."""
        if not self.builtin_loss:
            return loss_fn.forward(Ypred, Y)
        loss_fn.Ypred, loss_fn.Y = Ypred, Y
        return getattr(ops, loss_fn._forward_fn)(Ypred, Y)


@dataclass
class History:
    """What :meth:`Sequential.fit <fastmlp.Sequential.fit>` recorded, epoch by epoch.

    Attributes
    ----------
    loss : list of float
        Mean training loss per sample, accumulated over the epoch's steps.
    accuracy : list of float or None
        Fraction of training samples classified right during the epoch (None
        entries for a regression loss).
    val_loss, val_accuracy : list of float
        The same on ``validation_data`` after each epoch (empty without it).
    lr : list of float
        Learning rate used in each epoch.
    time : list of float
        Wall time of each epoch's training steps, in seconds.
    best_epoch : int or None
        Epoch (from 0) with the best monitored value.
    stopped_early : bool
        Whether early stopping (or a callback) ended training.
    """

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    time: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def epochs(self):
        """Number of epochs trained."""
        return len(self.loss)

    @property
    def history(self):
        """The per-epoch lists as a dict, Keras style."""
        keys = ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
        return {k: getattr(self, k) for k in keys if getattr(self, k)}


SCHEDULES = ("constant", "invscaling", "adaptive")
MONITORS = ("loss", "accuracy", "val_loss", "val_accuracy")


class _Schedule:
    """Learning rate per epoch: constant, inverse scaling, adaptive, or a callable.

    "invscaling" is scikit-learn's ``lrate / (t + 1) ** power_t``, ``t`` the
    number of samples seen before the epoch; "adaptive" divides the rate by 5
    each time the monitored value fails to improve for ``patience`` epochs; a
    callable is called as ``f(epoch, lrate)`` and returns the epoch's rate.
    """

    def __init__(self, kind, lrate, power_t):
        if not (callable(kind) or kind in SCHEDULES):
            raise ValueError(f"lr_schedule must be one of {SCHEDULES} or a callable; got {kind!r}")
        self.kind, self.lrate0, self.power_t = kind, lrate, power_t
        self.current = lrate

    def rate(self, epoch, seen):
        if callable(self.kind):
            lr = self.kind(epoch, self.lrate0)
            return v.check_positive_float(lr, f"lr_schedule({epoch}, {self.lrate0})")
        if self.kind == "invscaling":
            return self.lrate0 / (seen + 1) ** self.power_t
        return self.current

    def plateau(self):
        """Divide an adaptive rate by 5; return False when it is already tiny."""
        if self.kind != "adaptive" or self.current <= 1e-6:
            return False
        self.current /= 5
        return True


class _Monitor:
    """Tracks the best value of a metric and epochs without improvement."""

    def __init__(self, name, min_delta):
        self.name, self.min_delta = name, min_delta
        self.sign = -1.0 if name.endswith("loss") else 1.0  # higher is better for accuracy
        self.best, self.best_epoch, self.wait = None, None, 0

    def update(self, value, epoch):
        """Record ``value``; return True if it improved on the best by more than min_delta."""
        if value is None or not np.isfinite(value):
            self.wait += 1
            return False
        if self.best is None or self.sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False


def fit(model, X, Y, *, epochs, batch_size, lrate, momentum, nesterov, weight_decay,
        lr_schedule, power_t, shuffle, seed, validation_data, early_stopping, patience,
        monitor, min_delta, restore_best, callbacks, verbose, checked=False):
    """Implementation of :meth:`Sequential.fit`; see there.

    ``checked=True`` skips the data checks, for callers (the scikit-learn
    estimators) that made X and Y finite arrays of the model's dtype and
    shapes themselves.
    """
    if not checked:
        X, Y = model._check_data(X, Y)
    epochs = v.check_int(epochs, "epochs", 0)
    batch_size = v.check_int(batch_size, "batch_size", 1)
    lrate = v.check_positive_float(lrate, "lrate")
    momentum = v.check_positive_float(momentum, "momentum", allow_zero=True)
    if momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")
    weight_decay = v.check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    power_t = v.check_positive_float(power_t, "power_t", allow_zero=True)
    patience = v.check_int(patience, "patience", 1)
    min_delta = v.check_positive_float(min_delta, "min_delta", allow_zero=True)
    nesterov, shuffle = v.check_bool(nesterov, "nesterov"), v.check_bool(shuffle, "shuffle")
    early_stopping = v.check_bool(early_stopping, "early_stopping")
    restore_best = v.check_bool(restore_best, "restore_best")
    if isinstance(verbose, (bool, np.bool_)):
        verbose = int(verbose)
    if verbose not in (0, 1, 2) or not isinstance(verbose, (int, np.integer)):
        raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
    schedule = _Schedule(lr_schedule, lrate, power_t)
    val = _check_validation(model, validation_data)
    classifier = model._classifier
    monitor = _check_monitor(monitor, val is not None, classifier)
    callbacks = _check_callbacks(callbacks)
    rng = v.as_rng(seed)

    n = X.shape[1]
    steps = make_steps(model, X, Y, epochs * n, per_sample=batch_size == 1)
    history = History()
    tracker = _Monitor(monitor, min_delta)
    best_params = None
    progress = Progress(verbose, epochs, "epoch")
    try:
        for epoch in range(epochs):
            lr = schedule.rate(epoch, epoch * n)
            order = rng.permutation(n) if shuffle else np.arange(n)
            t0 = time.perf_counter()
            losses, hits = steps.run(order, batch_size, lr, momentum, nesterov, weight_decay,
                                     hits=True)
            history.time.append(time.perf_counter() - t0)
            history.lr.append(lr)
            history.loss.append(float(losses.sum()) / n)
            history.accuracy.append(float(hits.sum()) / n if classifier else None)
            if val is not None:
                vl, va = model.evaluate(*val)
                history.val_loss.append(vl)
                history.val_accuracy.append(va)
            metrics = _latest(history)
            progress.update(1, line=_epoch_line(epoch, epochs, metrics, history.time[-1]),
                            **{k: x for k, x in metrics.items() if x is not None})
            stop = any(cb(model, history) for cb in callbacks)
            if not math.isfinite(history.loss[-1]):
                warnings.warn(f"training diverged at epoch {epoch} (loss {history.loss[-1]}); "
                              "try a smaller lrate", RuntimeWarning, stacklevel=3)
                history.stopped_early = True
                break
            if tracker.update(metrics[monitor], epoch) and early_stopping and restore_best:
                best_params = _snapshot(model)
            if tracker.wait >= patience:
                if schedule.plateau():
                    tracker.wait = 0
                elif early_stopping:
                    stop = True
            if stop:
                history.stopped_early = True
                break
    finally:
        progress.close()
    history.best_epoch = tracker.best_epoch
    if best_params is not None and history.best_epoch != history.epochs - 1:
        _restore(model, best_params)
    return history


def _latest(history):
    out = {"loss": history.loss[-1], "accuracy": history.accuracy[-1]}
    if history.val_loss:
        out.update(val_loss=history.val_loss[-1], val_accuracy=history.val_accuracy[-1])
    return out


def _epoch_line(epoch, epochs, metrics, seconds):
    parts = [f"Epoch {epoch + 1}/{epochs}"]
    parts += [f"{k} {x:.4f}" for k, x in metrics.items() if x is not None]
    parts.append(f"{seconds:.3f}s")
    return " - ".join(parts)


def _check_validation(model, validation_data):
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError(f"validation_data must be a pair (X_val, Y_val); got {validation_data!r}")
    try:
        return model._check_data(*validation_data)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"validation_data: {exc}") from None


def _check_monitor(monitor, has_val, classification):
    if monitor is None:
        return "val_loss" if has_val else "loss"
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}; got {monitor!r}")
    if monitor.startswith("val_") and not has_val:
        raise ValueError(f"monitor={monitor!r} needs validation_data")
    if monitor.endswith("accuracy") and not classification:
        raise ValueError(f"monitor={monitor!r} needs a classifier (a last layer with class_fun)")
    return monitor


def _check_callbacks(callbacks):
    if callbacks is None:
        return []
    callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables cb(model, history); got {cb!r}")
    return callbacks


def _snapshot(model):
    return [(m, m.W.copy(), m.W0.copy()) for m in model.modules if isinstance(m, Linear)]


def _restore(model, snapshot):
    for m, W, W0 in snapshot:
        m.W[...] = W
        m.W0[...] = W0
