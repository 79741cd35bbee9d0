"""Optimizer objects: hyper-parameters, state and learning-rate schedule in one place.

Modelled on scikit-learn's ``sklearn/neural_network/_stochastic_optimizers.py``:
an optimizer owns its hyper-parameters, its state (momentum's velocity) and
its learning-rate schedule. The training driver (:mod:`fastmlp.training`)
asks it for the rate of each epoch and tells it when an epoch ends or
training stalls; the kernels receive it as a code, a vector of
hyper-parameters and one state buffer (:mod:`fastmlp.kernels.update`), so a
new optimizer is one class here and one branch there.
"""

import numbers

import numpy as np

from . import _validation as v
from .kernels import codes

__all__ = ["SCHEDULES", "SGD", "Adam", "make_optimizer"]

SCHEDULES = ("constant", "invscaling", "adaptive")

#: scikit-learn's floor below which "adaptive" stops dividing the rate.
ADAPTIVE_FLOOR = 1e-6
#: ... and the factor it divides by on a plateau.
ADAPTIVE_FACTOR = 5.0


class _Optimizer:
    """What every optimizer shares: the gradient's extra terms (``weight_decay``,
    ``alpha``, ``grad_scale``), the hyper-parameter vector the kernels read,
    the state buffer kept across calls, and the ``repr``. A subclass sets
    ``code`` and ``n_state`` and fills its own entries of the vector."""

    #: (name, default) of the parameters ``repr`` shows when not at their default.
    _shown = ()

    def _init_terms(self, learning_rate_init, weight_decay, alpha, grad_scale):
        self.learning_rate_init = v.check_positive_float(learning_rate_init, "lrate")
        self.weight_decay = v.check_positive_float(weight_decay, "weight_decay", allow_zero=True)
        self.alpha = v.check_positive_float(alpha, "alpha", allow_zero=True)
        self.grad_scale = v.check_positive_float(grad_scale, "grad_scale")
        self.state = None

    def hyper(self):
        """The hyper-parameter vector the kernels read (layout in ``kernels.codes``)."""
        h = self._vector()
        h[codes.H_DECAY] = self.weight_decay
        h[codes.H_ALPHA] = self.alpha
        h[codes.H_GRAD_SCALE] = self.grad_scale
        for index, value in self._entries():
            h[index] = value
        return h

    def prepare(self, n_params, dtype, previous=None):
        """Make the state for ``n_params`` parameters of ``dtype``; keep the
        current one if it fits, else take ``previous``'s (an optimizer of an
        earlier call, so the state persists across calls, as in Keras)."""
        shape = (max(self.n_state, 1), n_params)
        for source in (self, previous):
            S = getattr(source, "state", None)
            if (isinstance(S, np.ndarray) and S.shape == shape and S.dtype == dtype
                    and self._can_adopt(source)):
                self.state = S
                self._adopt(source)
                return S
        self.state = np.zeros(shape, dtype=dtype)
        self._adopt(None)
        return self.state

    def reset(self):
        """Zero the state and restart the schedule."""
        if self.state is not None:
            self.state[...] = 0
        self._restart()

    def _can_adopt(self, source):
        return True

    def _adopt(self, source):
        """Take over what goes with ``source``'s state (None: fresh state)."""

    def __repr__(self):
        parts = [f"{self.learning_rate_init!r}"]
        for name, default in self._shown:
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class SGD(_Optimizer):
    """Stochastic gradient descent, with optional momentum, Nesterov and L2 decay.

    Parameters
    ----------
    learning_rate_init : float, default 0.01
        The initial step size.
    momentum : float in [0, 1), default 0
        ``V = momentum * V - lr * g``, ``W += V``.
    nesterov : bool, default False
        Nesterov's momentum: ``W += momentum * V - lr * g``.
    weight_decay : float, default 0
        Added to the weights' mean gradient as ``weight_decay * W`` (biases
        are not decayed).
    alpha : float, default 0
        scikit-learn's L2 coefficient: ``alpha * W`` added to the gradient
        *summed* over the batch, so ``alpha / batch * W`` to the mean.
    grad_scale : float, default 1
        Factor on the loss's gradient (scikit-learn's regressor minimises half
        the squared error that fastmlp's ``MSE`` sums).
    lr_schedule : {"constant", "invscaling", "adaptive"} or callable
        "invscaling": ``learning_rate_init / (t + 1) ** power_t`` after each
        epoch, ``t`` the samples seen; "adaptive": divided by 5 on each
        plateau while above 1e-6; a callable ``f(epoch, learning_rate_init)``
        gives each epoch's rate.
    power_t : float, default 0.5
        Exponent of "invscaling".

    Attributes
    ----------
    learning_rate : float
        The current rate.
    state : ndarray of shape (n_state, n_params) or None
        The velocity (one row) of momentum SGD, laid out like
        :meth:`Sequential.parameters <fastmlp.Sequential.parameters>`
        flattened; made by :meth:`prepare`.
    """

    _shown = (("momentum", 0.0), ("nesterov", False), ("weight_decay", 0.0), ("alpha", 0.0),
              ("grad_scale", 1.0), ("lr_schedule", "constant"))

    def __init__(self, learning_rate_init=0.01, *, momentum=0.0, nesterov=False,
                 weight_decay=0.0, alpha=0.0, grad_scale=1.0, lr_schedule="constant",
                 power_t=0.5):
        self._init_terms(learning_rate_init, weight_decay, alpha, grad_scale)
        self.momentum = v.check_positive_float(momentum, "momentum", allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")
        self.nesterov = v.check_bool(nesterov, "nesterov")
        if not (callable(lr_schedule) or lr_schedule in SCHEDULES):
            raise ValueError(f"lr_schedule must be one of {SCHEDULES} or a callable; "
                             f"got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        self.power_t = v.check_positive_float(power_t, "power_t", allow_zero=True)
        self.learning_rate = self.learning_rate_init

    @property
    def code(self):
        """The kernels' code of this update rule."""
        if self.momentum == 0:
            return codes.SGD
        return codes.NESTEROV if self.nesterov else codes.MOMENTUM

    @property
    def n_state(self):
        """Rows of per-parameter state: 1 (the velocity) with momentum, else 0."""
        return 0 if self.momentum == 0 else 1

    @property
    def plain(self):
        """True for the notebook's update, ``W -= lr * mean gradient``: what the
        per-sample kernels run."""
        return (self.momentum == 0 and self.weight_decay == 0 and self.alpha == 0
                and self.grad_scale == 1)

    def _vector(self):
        return np.zeros(codes.N_HYPER)

    def _entries(self):
        return ((codes.H_LR, self.learning_rate), (codes.H_MOMENTUM, self.momentum))

    def _restart(self):
        self.learning_rate = self.learning_rate_init

    def begin_epoch(self, epoch):
        """The rate of epoch ``epoch`` (from 0): a callable schedule is asked."""
        if callable(self.lr_schedule):
            lr = self.lr_schedule(epoch, self.learning_rate_init)
            self.learning_rate = v.check_positive_float(
                lr, f"lr_schedule({epoch}, {self.learning_rate_init})")
        return self.learning_rate

    def iteration_ends(self, time_step):
        """After an epoch, ``time_step`` samples seen in all: "invscaling" rescales."""
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def reduce_on_plateau(self):
        """Training stalled: "adaptive" divides the rate by 5 and returns True
        (keep going), unless it is already at most 1e-6; otherwise False."""
        if self.lr_schedule != "adaptive" or self.learning_rate <= ADAPTIVE_FLOOR:
            return False
        self.learning_rate /= ADAPTIVE_FACTOR
        return True


class Adam(_Optimizer):
    """Adam (Kingma and Ba), exactly as scikit-learn's ``AdamOptimizer``.

    Per step ``t`` (counted over all calls; one per mini-batch):
    ``m = beta_1 m + (1 - beta_1) g``, ``v = beta_2 v + (1 - beta_2) g**2``
    and ``W += -lr_t m / (sqrt(v) + epsilon)``, the bias correction folded
    into the rate, ``lr_t = learning_rate_init sqrt(1 - beta_2**t) / (1 -
    beta_1**t)``. ``g`` is the mean gradient of the batch plus
    ``weight_decay * W`` (and scikit-learn's ``alpha`` term, see :class:`SGD`).

    Parameters
    ----------
    learning_rate_init : float, default 0.001
    beta_1, beta_2 : float in [0, 1), default 0.9 and 0.999
    epsilon : float > 0, default 1e-8
    weight_decay, alpha, grad_scale : float
        As for :class:`SGD`.

    Attributes
    ----------
    t : int
        Steps taken so far.
    state : ndarray of shape (2, n_params) or None
        The first (row 0) and second (row 1) moments.
    """

    code = codes.ADAM
    n_state = 2
    plain = False
    lr_schedule = "constant"

    def __init__(self, learning_rate_init=0.001, *, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 weight_decay=0.0, alpha=0.0, grad_scale=1.0):
        self._init_terms(learning_rate_init, weight_decay, alpha, grad_scale)
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            v.check_positive_float(value, name, allow_zero=True)
            if value >= 1:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = v.check_positive_float(epsilon, "epsilon")
        # The kernels read the hyper-parameters from this vector and advance
        # its step counter in place, so it persists between calls.
        self._hyper = np.zeros(codes.N_HYPER)

    @property
    def t(self):
        """Steps taken so far."""
        return int(self._hyper[codes.H_T])

    @property
    def learning_rate(self):
        """The rate of the last step, bias correction folded in (scikit-learn's
        ``AdamOptimizer.learning_rate``); ``learning_rate_init`` before any."""
        t = self.t
        if t == 0:
            return self.learning_rate_init
        return (self.learning_rate_init * np.sqrt(1 - self.beta_2 ** t)
                / (1 - self.beta_1 ** t))

    _shown = (("beta_1", 0.9), ("beta_2", 0.999), ("epsilon", 1e-8), ("weight_decay", 0.0),
              ("alpha", 0.0), ("grad_scale", 1.0))

    def _vector(self):
        # The same array on every call: the kernels advance its step counter.
        return self._hyper

    def _entries(self):
        return ((codes.H_LR, self.learning_rate_init), (codes.H_BETA1, self.beta_1),
                (codes.H_BETA2, self.beta_2), (codes.H_EPSILON, self.epsilon))

    def _can_adopt(self, source):
        return isinstance(source, Adam)

    def _adopt(self, source):
        # The step counter goes with the moments (bias correction).
        self._hyper[codes.H_T] = 0 if source is None else source._hyper[codes.H_T]

    def _restart(self):
        self._hyper[codes.H_T] = 0

    def begin_epoch(self, epoch):
        return self.learning_rate_init

    def iteration_ends(self, time_step):
        """Adam keeps its rate (scikit-learn's ``AdamOptimizer`` too)."""

    def reduce_on_plateau(self):
        """Adam has no "adaptive" schedule: a plateau ends training."""
        return False


#: Optimizers by name, for ``Sequential.fit(optimizer=...)``.
OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(optimizer, **options):
    """Return an optimizer object: ``optimizer`` itself if it is one, else the
    class named by it (None: "sgd") built from ``options``."""
    if optimizer is None:
        optimizer = "sgd"
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or an optimizer "
                             f"object; got {optimizer!r}")
        return OPTIMIZERS[optimizer](**options)
    if isinstance(optimizer, numbers.Number) or not hasattr(optimizer, "hyper"):
        raise TypeError(f"optimizer must be one of {sorted(OPTIMIZERS)} or an optimizer "
                        f"object such as fastmlp.optimizers.SGD(...); got {optimizer!r}")
    return optimizer
