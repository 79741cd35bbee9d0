"""Stopping-policy objects: when training has stalled, and which weights to keep.

A rule watches one value per epoch and says when it has stopped
improving (a *plateau*); the training driver's policy then lets the
optimizer lower its rate ("adaptive"), or stops where the rule says a
plateau ends training. :class:`Patience` is ``Sequential.fit``'s rule
(Keras's). The scikit-learn estimators keep scikit-learn's own rule and
attributes (``_no_improvement_count``, ``best_loss_``, ...), which
scikit-learn's tests read, in their policy (``fastmlp.sklearn``).
"""

import numpy as np

__all__ = ["Patience", "restore", "snapshot"]


def snapshot(model):
    """Copies of ``model.parameters()``."""
    return [p.copy() for p in model.parameters()]


def restore(model, saved):
    """Write a :func:`snapshot` back into ``model.parameters()``, in place."""
    for p, s in zip(model.parameters(), saved, strict=True):
        p[...] = s


class Patience:
    """Plateau after ``patience`` epochs without an improvement of more than
    ``min_delta`` in the monitored value (lower is better for a loss, higher
    for an accuracy).

    Parameters
    ----------
    monitor : str
        Name of the watched value ("loss", "val_accuracy", ...).
    patience : int
    min_delta : float
    early_stopping : bool
        A plateau the optimizer cannot answer ends training.
    restore_best : bool
        With ``early_stopping``, end on the weights of the best epoch.
    """

    def __init__(self, monitor, patience, min_delta, early_stopping, restore_best):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.stop_on_plateau = early_stopping
        self.keep_best = early_stopping and restore_best
        self.sign = -1.0 if monitor.endswith("loss") else 1.0
        self.best = self.best_epoch = self.saved = None
        self.wait = 0

    def update(self, value, epoch, model):
        """Record the epoch's value; return True on a plateau."""
        if value is not None and np.isfinite(value) and (
                self.best is None or self.sign * (value - self.best) > self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.keep_best:
                self.saved = snapshot(model)
        else:
            self.wait += 1
        return self.wait >= self.patience

    def reset(self):
        """Start counting anew (after the optimizer lowered its rate)."""
        self.wait = 0

    def finish(self, model, last_epoch):
        """Restore the best epoch's weights if they are kept and not the last."""
        if self.saved is not None and self.best_epoch != last_epoch:
            restore(model, self.saved)
