"""The one training driver, the rounds it runs, and ``fit``'s policy and history.

:func:`train` is the loop that ``Sequential.sgd``, ``Sequential.fit`` and
the scikit-learn estimators all run, with different objects:

* a *steps* executor (:mod:`fastmlp.steps`), made from the plan
  (:mod:`fastmlp.plan`), which takes runs of SGD steps in compiled or
  layer-by-layer code;
* a *rounds* source: :class:`Draws` (``sgd``: samples drawn with replacement,
  in runs between two reports) or :class:`Epochs` (a permutation per epoch);
* an *optimizer* (:mod:`fastmlp.optimizers`), which gives each round's rate
  and hears when an epoch ends;
* a *policy*, which reads each round's losses and says when to stop:
  :class:`NotebookReports` (``sgd``), :class:`FitPolicy` (``fit``, with a
  stopping rule from :mod:`fastmlp.stopping`), or the estimators' own.
"""

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _validation as v
from .config import INDEX_CHUNK

__all__ = ["Draws", "Epochs", "FitPolicy", "History", "NotebookReports", "Round", "train"]


@dataclass
class Round:
    """One run of steps: ``order`` (sample indices), taken ``batch`` at a time.

    ``epoch`` is the epoch it makes up (None for ``sgd``'s draws); ``start``
    and ``stop`` count steps, and ``report_next`` says whether a report falls
    right after it.
    """

    order: np.ndarray
    batch: int
    epoch: int | None = None
    lr: float | None = None  # the rate it ran with, set by train()
    start: int = 0
    stop: int = 0
    report_next: bool = False


def chunk_steps(batch_size):
    """Steps per chunk of index draws (and at most per kernel call)."""
    return max(1, INDEX_CHUNK // batch_size)


class Draws:
    """``sgd``'s rounds: ``iters`` steps of ``batch`` samples drawn uniformly with
    replacement from ``rng`` (one ``randint(n)`` per sample, as the notebook),
    split just before each report step (``it % every == 1``) and at most
    :func:`chunk_steps` steps a round.

    Exactly ``iters * batch`` indices are drawn, in chunks whose boundaries
    depend only on ``iters``, so the global generator ends where the
    notebook's loop leaves it and reporting never changes the trajectory.
    """

    def __init__(self, rng, n, batch, iters, every):
        self.rng, self.n, self.batch, self.iters, self.every = rng, n, batch, iters, every
        self.left = iters
        self.buf = np.empty((0, batch), dtype=np.int64)

    def _take(self, steps):
        while len(self.buf) < steps:
            k = min(chunk_steps(self.batch), self.left)
            new = v.draw_indices(self.rng, self.n, k * self.batch)
            new = new.astype(np.int64, copy=False).reshape(k, self.batch)
            self.buf = np.concatenate([self.buf, new]) if len(self.buf) else new
            self.left -= k
        out, self.buf = self.buf[:steps], self.buf[steps:]
        return out.ravel()

    def __iter__(self):
        start, cap = 0, chunk_steps(self.batch)
        points = range(1, self.iters, self.every) if self.every else ()
        for stop in [*points, self.iters]:
            while stop - start > cap:
                yield Round(self._take(cap), self.batch, start=start, stop=start + cap)
                start += cap
            if stop > start:
                yield Round(self._take(stop - start), self.batch, start=start, stop=stop,
                            report_next=stop < self.iters)
            start = stop


class Epochs:
    """``fit``'s rounds: ``epochs`` passes over ``n`` samples, each in a fresh
    permutation from ``rng`` (in order without ``shuffle``)."""

    def __init__(self, rng, n, batch, epochs, shuffle):
        self.rng, self.n, self.batch, self.epochs, self.shuffle = rng, n, batch, epochs, shuffle

    def __iter__(self):
        for epoch in range(self.epochs):
            order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            yield Round(order, self.batch, epoch=epoch)


def train(steps, rounds, optimizer, policy, time_step=0):
    """Run every round of ``rounds`` on ``steps`` with ``optimizer`` until
    ``policy`` says stop; ``time_step`` counts the samples seen before (for
    "invscaling"). Returns the samples seen in all."""
    for r in rounds:
        if r.epoch is not None:
            optimizer.begin_epoch(r.epoch)
        r.lr = optimizer.learning_rate
        t0 = time.perf_counter()
        losses, hits = steps.run(r.order, r.batch, optimizer, hits=policy.wants_hits)
        seconds = time.perf_counter() - t0
        if r.epoch is not None:
            time_step += len(r.order)
            optimizer.iteration_ends(time_step)
        if policy.after_round(r, losses, hits, seconds, optimizer):
            break
    return time_step


def warn_diverged(where, loss):
    """The warning of a training call whose loss is no longer finite."""
    warnings.warn(f"training diverged {where} (loss {loss}); the weights are not finite "
                  "any more: try a smaller lrate or scale the inputs", RuntimeWarning,
                  stacklevel=4)


class NotebookReports:
    """``sgd``'s policy: the notebook's report lines, and a warning on divergence.

    A report at step ``it`` shows the accuracy on the training data with the
    weights before that step, and that step's loss; ``accuracy()`` computes
    it (None for a network without ``class_fun``).
    """

    wants_hits = False

    def __init__(self, accuracy, progress):
        self.accuracy, self.progress = accuracy, progress
        self.pending = None  # (the accuracy before the next round,) when it reports
        self.warned = False

    def after_round(self, r, losses, hits, seconds, optimizer):
        if self.pending is not None:  # accuracy before this round, loss of its first step
            acc = self.pending[0]
            line = report_line(r.start, acc, losses[0])
            self.progress.update(r.stop - r.start, line, acc=acc, loss=float(losses[0]))
        else:
            self.progress.update(r.stop - r.start)
        if not self.warned and not math.isfinite(float(losses.sum())):
            bad = int(np.flatnonzero(~np.isfinite(losses))[0])
            warn_diverged(f"at step {r.start + bad}", losses[bad])
            self.warned = True
        self.pending = (self.accuracy(),) if r.report_next else None
        return False


def report_line(it, acc, loss):
    """The notebook's report line (the loss only, for a network without class_fun)."""
    if acc is None:
        return f"Iteration = {it} \tLoss = {loss}"
    return f"Iteration = {it} \tAcc = {acc} \tLoss = {loss}"


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

    def latest(self):
        """The last epoch's metrics by name (validation ones only with validation data)."""
        out = {"loss": self.loss[-1], "accuracy": self.accuracy[-1]}
        if self.val_loss:
            out.update(val_loss=self.val_loss[-1], val_accuracy=self.val_accuracy[-1])
        return out


class FitPolicy:
    """``fit``'s policy: record the :class:`History`, score the validation data,
    show progress, call the callbacks, warn on divergence, and ask the
    stopping rule (:class:`fastmlp.stopping.Patience`) about plateaus.

    ``evaluate(X, Y)`` scores validation data: ``(mean loss, accuracy)``.
    """

    wants_hits = True

    def __init__(self, model, n, classifier, rule, *, evaluate, validation=None,
                 callbacks=(), progress=None, epochs=0):
        self.model, self.n, self.classifier, self.rule = model, n, classifier, rule
        self.evaluate, self.validation, self.callbacks = evaluate, validation, callbacks
        self.progress, self.epochs = progress, epochs
        self.history = History()

    def after_round(self, r, losses, hits, seconds, optimizer):
        h, n = self.history, self.n
        h.time.append(seconds)
        h.lr.append(r.lr)
        h.loss.append(float(losses.sum()) / n)
        h.accuracy.append(float(hits.sum()) / n if self.classifier else None)
        if self.validation is not None:
            vl, va = self.evaluate(*self.validation)
            h.val_loss.append(vl)
            h.val_accuracy.append(va)
        metrics = h.latest()
        if self.progress is not None:
            self.progress.update(1, line=epoch_line(r.epoch, self.epochs, metrics, seconds),
                                 **{k: x for k, x in metrics.items() if x is not None})
        stop = any(cb(self.model, h) for cb in self.callbacks)
        if not math.isfinite(h.loss[-1]):
            warn_diverged(f"at epoch {r.epoch}", h.loss[-1])
            h.stopped_early = True
            return True
        if self.rule.update(metrics[self.rule.monitor], r.epoch, self.model):
            if optimizer.reduce_on_plateau():
                self.rule.reset()
            elif self.rule.stop_on_plateau:
                stop = True
        h.stopped_early = stop
        return stop

    def finish(self):
        """End of training: the best epoch, and its weights where they are kept."""
        self.history.best_epoch = self.rule.best_epoch
        self.rule.finish(self.model, self.history.epochs - 1)
        return self.history


def epoch_line(epoch, epochs, metrics, seconds):
    """``fit``'s line for an epoch: its metrics and wall time."""
    parts = [f"Epoch {epoch + 1}/{epochs}"]
    parts += [f"{k} {x:.4f}" for k, x in metrics.items() if x is not None]
    parts.append(f"{seconds:.3f}s")
    return " - ".join(parts)
