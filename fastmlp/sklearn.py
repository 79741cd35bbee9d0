"""scikit-learn estimators: MLPClassifier and MLPRegressor on fastmlp's fused training.

Rows are samples, as everywhere in scikit-learn. The parameters are those of
scikit-learn's own MLP estimators with ``solver="sgd"`` (the only solver
here), with the same meaning, defaults and stopping rules, plus ``dtype`` and
``engine``. Training runs :meth:`fastmlp.Sequential.fit`, so on the Numba
engine every epoch is one compiled call.

Differences from scikit-learn, by design: the classifier always has a
softmax output with one unit per class (scikit-learn uses a single logistic
unit for two classes; the probabilities are the same function class), and
sparse input is not accepted.
"""

import itertools
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .layers import ACTIVATION_NAMES, Linear, SoftMax
from .losses import MSE, NLL
from .optimizers import SGD
from .sequential import Sequential
from .stopping import ScikitLearnRule
from .training import Epochs, train

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names.
ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
SCHEDULES = ("constant", "invscaling", "adaptive")


class _BaseMLP(BaseEstimator):
    """Shared parameters, checks and training loop of the two estimators."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 dtype=np.float64, engine=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.engine = engine

    # -- public API ---------------------------------------------------------

    def fit(self, X, y):
        """Fit the network to data matrix X (samples x features) and targets y.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    @property
    def coefs_(self):
        """Weight matrices, ``coefs_[i]`` of shape (inputs, outputs) of layer i (views)."""
        check_is_fitted(self, "model_")
        return [m.W for m in self._linears()]

    @property
    def intercepts_(self):
        """Bias vectors, ``intercepts_[i]`` of shape (outputs,) of layer i (views)."""
        check_is_fitted(self, "model_")
        return [m.W0[:, 0] for m in self._linears()]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    # -- training -----------------------------------------------------------

    def _fit(self, X, y, incremental, classes=None):
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not (incremental or self.warm_start) or not hasattr(self, "model_")
        if not first:
            self._check_same_model()
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32),
                             multi_output=self._multi_output, y_numeric=not self._classifier)
        X = X.astype(self.dtype, copy=False)
        Y = self._encode_targets(y, first, classes, incremental)
        rng = check_random_state(self.random_state)  # anew each call, as scikit-learn
        if first:
            self.model_ = self._build(X.shape[1], Y.shape[1], rng)
            self.t_, self.loss_curve_ = 0, []
            self._rule = ScikitLearnRule(self.tol, self.n_iter_no_change, self.early_stopping)
            self.validation_scores_ = []
        if first or not incremental:  # scikit-learn: a new optimizer for each fit()
            self._optimizer = SGD(self.learning_rate_init, momentum=self.momentum,
                                  nesterov=self.nesterovs_momentum, alpha=self.alpha,
                                  grad_scale=1.0 if self._classifier else 0.5,
                                  lr_schedule=self.learning_rate, power_t=self.power_t)
        early = self.early_stopping and not incremental
        X_val = Y_val = None
        if early:
            stratify = y if self._classifier else None
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rng, stratify=stratify,
                                                  test_size=self.validation_fraction)
            if len(X_val) < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
        if self.batch_size == "auto":
            batch = min(200, len(X))
        else:
            if self.batch_size > len(X):
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=3)
            batch = int(np.clip(self.batch_size, 1, len(X)))
        self.n_iter_ = 0
        epochs = 1 if incremental else self.max_iter
        policy = _EpochRule(self, len(X), batch, X_val, Y_val, early)
        Xc, Yc = X.T, Y.T  # the model's layout: features x samples
        steps = self.model_.steps_for(Xc, Yc, samples=epochs * len(X), batch_size=batch,
                                      optimizer=self._optimizer)
        self.t_ = train(steps, Epochs(rng, len(X), batch, epochs, self.shuffle), self._optimizer,
                        policy, time_step=self.t_)
        if early:
            self._rule.finish(self.model_, self.n_iter_ - 1)
        finite = np.isfinite(self.loss_curve_[-1]) and all(
            np.isfinite(p).all() for p in self.model_.parameters())
        if not finite:
            raise ValueError("Solver produced non-finite parameter weights or loss. The input "
                             "data may contain large values and need to be preprocessed.")
        if not incremental and self.n_iter_ == self.max_iter and not policy.converged:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        return self

    @property
    def best_loss_(self):
        """Lowest training loss so far (None with early stopping)."""
        check_is_fitted(self, "model_")
        return None if self.early_stopping else self._rule.best_loss

    @property
    def best_validation_score_(self):
        """Best validation score so far (with early stopping)."""
        check_is_fitted(self, "model_")
        return self._rule.best_validation_score

    def _penalty(self, n, batch):
        """scikit-learn's L2 term of an epoch's loss: each batch adds
        0.5 * alpha * |W|^2 / batch_size, weighted by its share of the epoch."""
        n_batches = -(-n // batch)
        squares = sum(float(np.vdot(W, W)) for W in self.coefs_)
        return 0.5 * self.alpha * squares * n_batches / n

    def _check_same_model(self):
        model = self.model_
        if np.dtype(self.dtype) != model.dtype or (
                self.engine is not None and self.engine != model.engine):
            raise ValueError(f"warm_start and partial_fit continue the fitted model "
                             f"({model.dtype.name}, engine {model.engine!r}); got dtype="
                             f"{np.dtype(self.dtype).name}, engine={self.engine!r}. Fit anew "
                             "to change them.")
        if self._hidden() != [m.n for m in self._linears()][:-1]:
            raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r} differs from the "
                             "fitted model's; fit anew to change it")

    def _build(self, n_in, n_out, rng):
        """The network, initialized as scikit-learn does (Glorot uniform)."""
        sizes = [n_in, *self._hidden(), n_out]
        Act = ACTIVATION_NAMES[self.activation]
        factor = 2.0 if self.activation == "logistic" else 6.0
        modules = []
        for i, (m, n) in enumerate(itertools.pairwise(sizes)):
            bound = np.sqrt(factor / (m + n))
            W = rng.uniform(-bound, bound, (m, n)).astype(self.dtype)
            W0 = rng.uniform(-bound, bound, (n, 1)).astype(self.dtype)
            modules.append(Linear.from_arrays(W, W0))
            if i < len(sizes) - 2 and Act is not None:
                modules.append(Act())
        if self._classifier:
            modules.append(SoftMax())
        loss = NLL() if self._classifier else MSE()
        return Sequential(modules, loss, engine=self.engine, dtype=self.dtype)

    def _linears(self):
        return [m for m in self.model_.modules if isinstance(m, Linear)]

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.outputs(X.T).T

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers; got "
                             f"{self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_params(self):
        def positive(name, value, allow_zero=False):
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
                value > 0 or (allow_zero and value == 0)) and np.isfinite(value)
            if not ok:
                raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'}"
                                 f" 0; got {value!r}")

        self._hidden()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; "
                             f"got {self.activation!r}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(f"learning_rate must be one of {SCHEDULES}; got "
                             f"{self.learning_rate!r}")
        positive("alpha", self.alpha, allow_zero=True)
        positive("learning_rate_init", self.learning_rate_init)
        positive("power_t", self.power_t, allow_zero=True)
        positive("tol", self.tol, allow_zero=True)
        if not (isinstance(self.momentum, numbers.Real) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum!r}")
        if not (isinstance(self.validation_fraction, numbers.Real)
                and 0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1); got "
                             f"{self.validation_fraction!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.batch_size != "auto" and not (
                isinstance(self.batch_size, numbers.Integral) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1; got "
                             f"{self.batch_size!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.dtype!r}")


class _EpochRule:
    """scikit-learn's bookkeeping after each epoch, as a policy of the training
    driver: the loss curve (log-loss or half squared error, plus the L2
    penalty), ``n_iter_``, the verbose line, the validation score with early
    stopping, and scikit-learn's stopping rule (:class:`ScikitLearnRule`)."""

    wants_hits = False

    def __init__(self, est, n, batch, X_val, Y_val, early):
        self.est, self.n, self.batch = est, n, batch
        self.X_val, self.Y_val, self.early = X_val, Y_val, early
        self.converged = False

    def after_round(self, r, losses, hits, seconds, optimizer):
        est = self.est
        est.n_iter_ += 1
        loss = float(losses.sum()) / self.n * est._loss_scale + est._penalty(self.n, self.batch)
        est.loss_curve_.append(loss)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if not np.isfinite(loss):
            return True
        if self.early:
            value = est._score_on(self.X_val, self.Y_val)
            est.validation_scores_.append(value)
        else:
            value = loss
        if est._rule.update(value, r.epoch, est.model_):
            if optimizer.reduce_on_plateau():
                est._rule.reset()
                return False
            self.converged = True
            return True
        return False


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by SGD with momentum.

    The parameters follow :class:`sklearn.neural_network.MLPClassifier` with
    ``solver="sgd"``: ``hidden_layer_sizes``, ``activation`` ("relu",
    "tanh", "logistic", "identity"), ``alpha`` (L2 penalty), ``batch_size``
    ("auto" is ``min(200, n_samples)``), ``learning_rate`` ("constant",
    "invscaling", "adaptive"), ``learning_rate_init``, ``power_t``,
    ``max_iter`` (epochs), ``shuffle``, ``random_state``, ``tol``,
    ``verbose``, ``warm_start``, ``momentum``, ``nesterovs_momentum``,
    ``early_stopping``, ``validation_fraction``, ``n_iter_no_change``; plus
    ``dtype`` (float64 or float32) and ``engine`` ("numba", "numpy" or None
    for the fastest).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    coefs_, intercepts_ : list of ndarray
        Weights (inputs x outputs) and biases of each layer, views of the
        trained :class:`fastmlp.Sequential` in ``model_``.
    loss_curve_ : list of float
        Training loss (log-loss plus L2 penalty) after each epoch.
    n_iter_ : int
        Epochs run.
    best_loss_ : float or None
        Lowest training loss (None with early stopping).
    validation_scores_, best_validation_score_
        Accuracy on the held-out fraction, with early stopping.
    model_ : fastmlp.Sequential
        The trained network (softmax output, one unit per class).
    """

    _classifier, _multi_output, _loss_scale = True, False, 1.0

    def partial_fit(self, X, y, classes=None):
        """One epoch over X, y, continuing from the current state.

        ``classes`` (all the labels y may ever contain) is required on the
        first call.
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if (classes is not None and hasattr(self, "classes_")
                and not np.array_equal(self.classes_, unique_labels(classes))):
            raise ValueError(f"classes={classes!r} is not the same as on the last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        return self._forward(X)

    def predict(self, X):
        """Predicted class label of each sample."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def _encode_targets(self, y, first, classes, incremental):
        check_classification_targets(y)
        if first:
            self.classes_ = unique_labels(y) if classes is None else unique_labels(classes)
        elif (self.warm_start and not incremental
              and not np.array_equal(unique_labels(y), self.classes_)):
            raise ValueError(f"warm_start can only be used where y has the same classes as in "
                             f"the previous call to fit: {self.classes_} before, "
                             f"{unique_labels(y)} now")
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y contains labels {unseen.tolist()} not in classes "
                             f"{self.classes_.tolist()}")
        Y = np.zeros((len(y), len(self.classes_)), dtype=self.dtype)
        Y[np.arange(len(y)), np.searchsorted(self.classes_, y)] = 1
        return Y

    def _score_on(self, X, Y):
        proba = self.model_.outputs(X.T).T
        return accuracy_score(np.argmax(Y, axis=1), np.argmax(proba, axis=1))


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (squared error) trained by SGD with momentum.

    Parameters and attributes as :class:`MLPClassifier` (without
    ``classes_``); targets may have several outputs. ``loss_curve_`` is
    scikit-learn's squared loss, ``mean((y - y_pred) ** 2) / 2`` plus the L2
    penalty, and the validation score of early stopping is R².
    """

    _classifier, _multi_output = False, True

    def partial_fit(self, X, y):
        """One epoch over X, y, continuing from the current state."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs)."""
        out = self._forward(X)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _encode_targets(self, y, first, classes, incremental):
        if first:
            self._y_1d = y.ndim == 1
        Y = (y[:, None] if y.ndim == 1 else y).astype(self.dtype)
        if not first and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} outputs; this model was fitted with "
                             f"{self.n_outputs_}")
        self.n_outputs_ = Y.shape[1]
        return Y

    @property
    def _loss_scale(self):
        # fastmlp's MSE per sample sums over outputs; scikit-learn's squared loss
        # averages over outputs and halves.
        return 0.5 / self.n_outputs_

    def _score_on(self, X, Y):
        return r2_score(Y, self.model_.outputs(X.T).T)
