"""Losses: negative log-likelihood and squared error, as in the notebooks.

Both return the *total* over outputs and batch, matching the notebook's NLL
and the summed gradients of its ``Linear.backward``. For MSE the notebooks
disagree (notebook 001 averages, notebook 004 sums with gradient
``2 * (y - t)``); fastmlp sums, which is the reading under which both
notebooks' training code runs as written (with one output and one sample,
as in notebook 001, mean and sum coincide). The mean over a mini-batch is
taken by the training loops, which scale the step by ``1 / batch_size``.
"""

from .kernels import codes
from .layers import Layer, as_float

__all__ = ["MSE", "NLL"]


class _Loss(Layer):
    _forward_fn = _backward_fn = None  # names of the engine functions

    def forward(self, Ypred, Y):
        """Return the loss of predictions ``Ypred`` against targets ``Y``, a float.

        Both are (outputs, batch) arrays of the same shape; they are kept for
        :meth:`backward`.
        """
        Ypred = as_float(Ypred, "Ypred")
        Y = as_float(Y, "Y", Ypred.dtype)
        if Y.shape != Ypred.shape:
            raise ValueError(f"Y must have the shape of Ypred, {Ypred.shape}; got {Y.shape}")
        return self.step_forward(Ypred, Y)

    def step_forward(self, Ypred, Y):
        """:meth:`forward` without checks, for loops that checked their data once."""
        self.Ypred, self.Y = Ypred, Y
        return getattr(self._ops, self._forward_fn)(Ypred, Y)

    def backward(self):
        """Return the gradient of the loss with respect to ``Ypred``."""
        if getattr(self, "Ypred", None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return getattr(self._ops, self._backward_fn)(self.Ypred, self.Y)


class NLL(_Loss):
    """Negative log-likelihood of one-hot targets: ``-sum(Y * log(Ypred))``.

    Probabilities are floored at ``np.finfo(dtype).eps`` (2.2e-16 in float64,
    1.2e-7 in float32) before the logarithm and the division in ``backward``,
    so a probability of exactly 0 gives a large finite loss, never inf or NaN.
    """

    _forward_fn, _backward_fn = "nll_forward", "nll_backward"
    code = codes.NLL


class MSE(_Loss):
    """Squared error summed over outputs and batch: ``sum((Ypred - Y)**2)``.

    ``backward`` returns ``2 * (Ypred - Y)``.
    """

    _forward_fn, _backward_fn = "mse_forward", "mse_backward"
    code = codes.MSE


def is_classification(loss):
    """Return True if ``loss`` needs one-hot targets."""
    return isinstance(loss, NLL)

