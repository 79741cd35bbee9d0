"""scikit-learn estimators: MLPClassifier and MLPRegressor on fastmlp's kernels.

A drop-in for ``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor``
(scikit-learn 1.9): the same parameters, defaults, fitted attributes, solvers
("adam", the default, "sgd" and "lbfgs"), ``sample_weight``, losses, output
units (softmax for several classes, one logistic unit for two classes and
for each label of a multilabel problem, identity or exp for the regressor),
sparse input, verbose lines, warnings and errors, plus ``dtype`` and
``engine``. With the same ``random_state`` the initial weights, the
validation split, the batch order and every update follow scikit-learn's,
so ``loss_curve_`` is scikit-learn's up to rounding.

How it runs: the stochastic solvers run each epoch as one compiled call
(:func:`fastmlp.kernels.minibatch.train_batches`) under the one training
driver (:func:`fastmlp.training.train`), scikit-learn's bookkeeping plugged in
as its policy; L-BFGS is scipy's ``minimize(method="L-BFGS-B")``, called as
scikit-learn calls it, on the flat parameter buffer, with loss and gradient
over the whole data set from one compiled call per evaluation
(:mod:`fastmlp.kernels.full_batch`) on
:func:`fastmlp.inference.default_threads` threads. Predictions run the
inference kernels (:mod:`fastmlp.inference`).

The parameters live in one flat buffer; ``coefs_`` and ``intercepts_`` are
views into it (assigning other arrays to them, as scikit-learn allows, is
picked up by the next call).
"""

import itertools
import warnings
from typing import ClassVar

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit, xlogy
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    is_classifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkClassifier
from sklearn.neural_network import MLPRegressor as _SkRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import baseline
from .blas import one_blas_thread
from .engines import get_engine, kernel_module
from .inference import class_order, default_threads, thread_pool
from .inference import forward as forward_many
from .kernels import codes
from .layers import ACTIVATION_NAMES, Linear, Sigmoid, SoftMax
from .losses import MSE, NLL
from .optimizers import SGD, Adam
from .plan import rows_max_fill
from .sequential import Sequential
from .training import Round, train

__all__ = ["MLPClassifier", "MLPRegressor"]

#: Activation codes of the kernels, by scikit-learn's name.
ACT_CODES = {"identity": codes.IDENTITY, "relu": codes.RELU, "tanh": codes.TANH,
             "logistic": codes.SIGMOID, "softmax": codes.SOFTMAX, "exp": codes.IDENTITY}
#: The kernels' loss code and the factor on its summed loss that gives
#: scikit-learn's, by output activation (for squared error, times 1 / outputs).
HEADS = {"softmax": (codes.NLL, 1.0), "logistic": (codes.LOGISTIC, 1.0),
         "identity": (codes.MSE, 0.5), "exp": (codes.POISSON, 1.0)}
STOCHASTIC = ("sgd", "adam")
#: Rows per chunk of the full-batch kernel (L-BFGS) when its first layer may
#: work on the nonzeros: small enough that a chunk's copy and lists stay in
#: the core's cache. Measured on MNIST (60,000 x 784 float64, 784-100-10, one
#: thread, interleaved in one process): 7.4 us a sample in chunks of 1,024,
#: 6.5 in chunks of 128; and 5.5 in chunks of 128 taken in
#: :func:`fastmlp.inference.class_order` (6.1 in chunks of 256, 6.2 of 64).
CHUNK = 128
#: Rows per chunk on the BLAS path (dense or CSR X), whose GEMMs run better
#: on taller chunks (dense 20,000 x 200, 200-256-10: 5% faster than 128).
DENSE_CHUNK = 1024
#: Rows per chunk of a prediction on sparse X (densified a chunk at a time).
SPARSE_PREDICT_CHUNK = 1 << 14
#: Below this many multiply-adds per L-BFGS evaluation, one thread.
PARALLEL_MIN_WORK = 2_000_000

class _BaseMLP(BaseEstimator):
    """Shared parameters, checks and solvers of the two estimators."""

    _parameter_constraints: ClassVar[dict] = {
        **_SkClassifier._parameter_constraints,
        "dtype": "no_validation",
        "engine": [StrOptions({"numba", "numpy"}), None],
    }

    # -- public API ---------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X (dense or sparse) and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_P", None)  # the buffer the views share: rebuilt on the next call
        state.pop("_views", None)
        return state

    # -- parameters as one flat buffer --------------------------------------

    def _layout(self):
        """(sizes, offsets of each layer's W and b) of the fitted network."""
        sizes = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        spans, o = [], 0
        for m, n in itertools.pairwise(sizes):
            spans.append((o, o + m * n, o + m * n + n))
            o += m * n + n
        return np.array(sizes, dtype=np.int64), spans, o

    def _flat(self):
        """The flat parameter buffer (per layer W row-major, then b), with
        ``coefs_`` and ``intercepts_`` views into it; arrays assigned to them
        since are copied in first."""
        views = getattr(self, "_views", None)
        current = (*self.coefs_, *self.intercepts_)
        if views is not None and len(views) == len(current) and all(
                a is b for a, b in zip(views, current, strict=True)):
            return self._P
        _, spans, total = self._layout()
        dtype = np.result_type(*[np.asarray(a).dtype for a in current])
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        P = np.empty(total, dtype=dtype)
        coefs, intercepts = [], []
        for (w, b, e), W, W0 in zip(spans, self.coefs_, self.intercepts_, strict=True):
            n_out = e - b
            cw = P[w:b].reshape((b - w) // n_out, n_out)
            cw[...] = np.asarray(W).reshape(cw.shape)
            cb = P[b:e]
            cb[...] = np.asarray(W0).reshape(n_out)
            coefs.append(cw)
            intercepts.append(cb)
        self.coefs_, self.intercepts_ = coefs, intercepts
        self._P = P
        self._views = (*coefs, *intercepts)
        return P

    def _acts(self):
        hidden = ACT_CODES[self.activation]
        return np.array([hidden] * (len(self.coefs_) - 1) + [ACT_CODES[self.out_activation_]],
                        dtype=np.int64)

    # -- training -----------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        dtype = self._check_dtype()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if not first_pass:
            self._check_same_model(hidden, dtype)
            dtype = self._flat().dtype
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if dtype is None:
            dtype = X.dtype
        X = X.astype(dtype, copy=False)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, dtype)
        if self.solver in STOCHASTIC:
            self._fit_stochastic(X, y, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, y, sample_weight)
        if not np.isfinite(self._flat()).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _check_dtype(self):
        if self.dtype is None:
            return None
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be None, float32 or float64; got {self.dtype!r}")
        return dtype

    def _check_same_model(self, hidden, dtype):
        P = self._flat()
        if dtype is not None and dtype != P.dtype:
            raise ValueError(f"warm_start and partial_fit continue the fitted model "
                             f"({P.dtype.name}); got dtype={dtype.name}. Fit anew to change "
                             "it.")
        if hidden != [c.shape[1] for c in self.coefs_][:-1]:
            raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r} differs from the "
                             "fitted model's; fit anew to change it")

    def _initialize(self, y, layer_units, dtype):
        """scikit-learn's ``_initialize``: attributes, and Glorot-uniform weights
        drawn from ``self._random_state`` layer by layer (W, then b)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not self._classifier:
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in itertools.pairwise(layer_units):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out))
        self.coefs_ = [c.astype(dtype, copy=False) for c in coefs]
        self.intercepts_ = [b.astype(dtype, copy=False) for b in intercepts]
        self._views = None
        self._best_P = self._flat().copy()
        if self.solver in STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _head(self):
        """(loss code, factor from the kernels' summed loss to scikit-learn's,
        factor on the kernels' output gradient)."""
        code, scale = HEADS[self.out_activation_]
        if code == codes.MSE:
            return code, scale / self.n_outputs_, 0.5
        return code, scale, 1.0

    def _data(self, X, Y, sw):
        """The kernels' view of X, Y and sample weights: (X dense rows or a
        (0, d) stand-in, CSR arrays or empty ones, Y, weights or empty)."""
        P = self._flat()
        dtype = P.dtype
        Y = np.ascontiguousarray(Y, dtype=dtype)
        sw = (np.empty(0, dtype=dtype) if sw is None
              else np.ascontiguousarray(sw, dtype=dtype))
        if sp.issparse(X):
            X = sp.csr_matrix(X)  # CSC: converted to CSR once
            X.sort_indices()
            csr = (X.indptr.astype(np.int64), X.indices.astype(np.int32, copy=False),
                   X.data.astype(dtype, copy=False))
            return np.empty((0, X.shape[1]), dtype=dtype), csr, Y, sw, X.shape[0]
        X = np.ascontiguousarray(X, dtype=dtype)
        none = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32),
                np.empty(0, dtype=dtype))
        return X, none, Y, sw, X.shape[0]

    def _max_fill(self, X):
        """The batch fill below which the first layer works on the nonzeros
        (the planner's rule, :func:`fastmlp.plan.rows_max_fill`)."""
        return rows_max_fill(X, int(self.coefs_[0].shape[1]))

    def _make_optimizer(self):
        scale = self._head()[2]
        if self.solver == "sgd":
            return SGD(self.learning_rate_init, momentum=self.momentum,
                       nesterov=self.nesterovs_momentum, alpha=self.alpha, grad_scale=scale,
                       lr_schedule=self.learning_rate, power_t=self.power_t)
        return Adam(self.learning_rate_init, beta_1=self.beta_1, beta_2=self.beta_2,
                    epsilon=self.epsilon, alpha=self.alpha, grad_scale=scale)

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        P = self._flat()
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early = self.early_stopping
        if early:
            stratify = y if (self._classifier and self.n_outputs_ == 1) else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
                sw_train = sw_val = None
            else:
                X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if self._classifier:
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = sw_val = None
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=4)
            batch = int(np.clip(self.batch_size, 1, n))
        self._optimizer.prepare(P.size, P.dtype, previous=None)
        steps = self._steps(X_train, y_train, sw_train)
        policy = _EpochRule(self, n, batch, X_val, y_val, sw_val, steps, incremental)
        self.n_iter_ = 0
        rounds = _Epochs(self._random_state, n, batch, 1 if incremental else self.max_iter,
                         self.shuffle)
        try:
            self.t_ = train(steps, rounds, self._optimizer, policy, time_step=self.t_)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if early:  # the best validation score's weights
            if self._best_P is not None:
                P[...] = self._best_P
            self._best_P = None  # scikit-learn's best weights now are the weights

    def _steps(self, X, y, sw):
        if self._engine() == "numpy":
            return _NumpySteps(self, X, y, sw)
        return _KernelSteps(self, X, y, sw)

    def _engine(self):
        return get_engine(self.engine).name

    def _fit_lbfgs(self, X, y, sample_weight):
        P = self._flat()
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        objective = _FullBatch(self, X, y, sample_weight)
        opt_res = scipy.optimize.minimize(
            objective, P.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        P[...] = opt_res.x

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        """scikit-learn's rule, on scikit-learn's attributes."""
        if early_stopping:
            val_score = self._score(X, y, sample_weight=sample_weight)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            last = self.validation_scores_[-1]
            if last < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last > self.best_validation_score_:
                self.best_validation_score_ = last
                self._best_P = self._flat().copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # -- prediction ---------------------------------------------------------

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        P = self._flat()
        sizes, _, _ = self._layout()
        acts = self._acts()
        if self._engine() == "numpy":
            out = _numpy_forward(self, P, X)
        elif sp.issparse(X):
            X = sp.csr_matrix(X)
            out = np.empty((X.shape[0], sizes[-1]), dtype=P.dtype)
            step = SPARSE_PREDICT_CHUNK
            for lo in range(0, X.shape[0], step):
                dense = X[lo:lo + step].toarray()
                out[lo:lo + step] = forward_many(P, sizes, acts, dense.T).T
        else:
            X = np.asarray(X)
            if X.dtype not in (np.float32, np.float64):
                X = X.astype(P.dtype)
            out = forward_many(P, sizes, acts, X.T).T
        if self.out_activation_ == "exp":
            np.exp(out, out=out)
        return out

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def _check_solver(self):
        if self.solver not in STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    @property
    def model_(self):
        """The fitted network as a fastmlp ``Sequential`` (with copies of the parameters)
        (a softmax classifier or an identity-output regressor; for logistic
        and exp outputs, the network up to the output activation's input
        with a stand-in loss)."""
        check_is_fitted(self)
        self._flat()
        Act = ACTIVATION_NAMES[self.activation]
        modules = []
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            lin = Linear.from_arrays(W, b.reshape(-1, 1))
            modules.append(lin)
            if i < len(self.coefs_) - 1 and Act is not None:
                modules.append(Act())
        if self.out_activation_ == "softmax":
            modules.append(SoftMax())
        elif self.out_activation_ == "logistic":
            modules.append(Sigmoid())
        loss = NLL() if self.out_activation_ == "softmax" else MSE()
        return Sequential(modules, loss, engine=self.engine, dtype=self.coefs_[0].dtype)


class _Epochs:
    """scikit-learn's epochs: the sample index is reshuffled in place each epoch
    (``sklearn.utils.shuffle`` with the estimator's RandomState: the previous
    order permuted by a fresh permutation), or left in order."""

    def __init__(self, rng, n, batch, epochs, shuffle):
        self.rng, self.n, self.batch, self.epochs, self.shuffle = rng, n, batch, epochs, shuffle

    def __iter__(self):
        order = np.arange(self.n, dtype=np.int64)
        for epoch in range(self.epochs):
            if self.shuffle:
                perm = np.arange(self.n)
                self.rng.shuffle(perm)
                order = order[perm]
            yield Round(order, self.batch, epoch=epoch)


class _EpochRule:
    """scikit-learn's bookkeeping after each epoch, as the training driver's
    policy: the loss (with each batch's L2 term at that batch's weights),
    ``n_iter_``, the verbose lines, the validation score and the stopping
    rule, with scikit-learn's messages."""

    wants_hits = False

    def __init__(self, est, n, batch, X_val, y_val, sw_val, steps, incremental):
        self.est, self.n, self.batch, self.steps = est, n, batch, steps
        self.X_val, self.y_val, self.sw_val = X_val, y_val, sw_val
        self.incremental = incremental

    def after_round(self, r, losses, hits, seconds, optimizer):
        est = self.est
        scale = est._head()[1]
        stats = self.steps.stats
        n_steps = len(losses)
        lens = np.full(n_steps, float(self.batch))
        lens[-1] = self.n - self.batch * (n_steps - 1)
        batch_loss = (losses * scale + (0.5 * est.alpha) * stats[:, 1]) / stats[:, 0]
        est.n_iter_ += 1
        est.loss_ = float(np.sum(batch_loss * lens)) / self.n
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_:d}, loss = {est.loss_:.8f}")
        est._update_no_improvement_count(est.early_stopping, self.X_val, self.y_val,
                                         self.sw_val)
        if est._no_improvement_count > est.n_iter_no_change:
            if est.early_stopping:
                msg = (f"Validation score did not improve more than tol={est.tol:f} for "
                       f"{int(est.n_iter_no_change)} consecutive epochs.")
            else:
                msg = (f"Training loss did not improve more than tol={est.tol:f} for "
                       f"{int(est.n_iter_no_change)} consecutive epochs.")
            if _trigger_stopping(optimizer, msg, est.verbose):
                return True
            est._no_improvement_count = 0
        if self.incremental:
            return True
        if est.n_iter_ == est.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({est.max_iter:d}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=5)
        return False


def _trigger_stopping(optimizer, msg, verbose):
    """scikit-learn's ``trigger_stopping``: True to stop; "adaptive" SGD lowers
    its rate instead while above 1e-6."""
    if optimizer.lr_schedule != "adaptive":
        if verbose:
            print(msg + " Stopping.")
        return True
    if optimizer.learning_rate <= 1e-6:
        if verbose:
            print(msg + " Learning rate too small. Stopping.")
        return True
    optimizer.reduce_on_plateau()
    if verbose:
        print(msg + f" Setting learning rate to {optimizer.learning_rate:f}")
    return False


class _KernelSteps:
    """Epochs in one compiled call each (:func:`fastmlp.kernels.minibatch.train_batches`),
    with sample weights, CSR input and each step's L2 statistics."""

    def __init__(self, est, X, y, sw):
        self.P = est._flat()
        self.G = np.zeros_like(self.P)
        self.sizes, _, _ = est._layout()
        self.acts = est._acts()
        self.loss = est._head()[0]
        self.X, self.csr, self.Y, self.sw, self.n = est._data(X, y, sw)
        self.max_fill = est._max_fill(X)
        self.kernel = kernel_module("minibatch")
        self.stats = None
        self.ws = None  # (batch, the sparse first layer's workspace), made once

    def run(self, order, batch, optimizer, hits=False):
        steps = -(-len(order) // batch)
        losses, hit = np.empty(steps), np.empty(steps, dtype=np.int64)
        self.stats = np.empty((steps, 2))
        # No weights, dense X: None, so the kernel compiles without that code.
        # (The sparse first layer's workspace is always made, even when
        # max_fill is 0: one compiled kernel for dense and sparse data.)
        k = self.kernel
        if self.ws is None or self.ws[0] != batch:
            self.ws = (batch, k.sparse_workspace(self.P, int(batch), int(self.sizes[0]),
                                                 int(self.sizes[1])))
        ws = self.ws[1]
        k.train_batches(self.P, self.G, optimizer.state, self.sizes, self.acts, self.loss,
                        self.X, self.Y, self.sw if self.sw.size else None,
                        self.csr if self.csr[0].size else None,
                        np.ascontiguousarray(order, dtype=np.int64), int(batch), optimizer.code,
                        optimizer.hyper(), losses, hit, self.stats, float(self.max_fill), ws)
        return losses, hit


class _NumpySteps:
    """The same steps in NumPy (``engine="numpy"``): scikit-learn's backprop,
    with the update of :func:`fastmlp.baseline.sgd_update`."""

    def __init__(self, est, X, y, sw):
        self.est, self.ops = est, baseline
        self.P = est._flat()
        self.G = np.zeros_like(self.P)
        self.X = X.tocsr() if sp.issparse(X) else np.asarray(X, dtype=self.P.dtype)
        self.Y = np.asarray(y, dtype=self.P.dtype)
        self.sw = None if sw is None else np.asarray(sw, dtype=self.P.dtype)
        self.stats = None

    def run(self, order, batch, optimizer, hits=False):
        est, P, G, S = self.est, self.P, self.G, optimizer.state
        _, spans, _ = est._layout()
        code, _, _ = est._head()
        steps = -(-len(order) // batch)
        losses, hit = np.empty(steps), np.zeros(steps, dtype=np.int64)
        self.stats = np.empty((steps, 2))
        hyper = optimizer.hyper()
        L = len(spans)
        for s in range(steps):
            rows = order[s * batch:(s + 1) * batch]
            xb, yb = self.X[rows], self.Y[rows]
            w = None if self.sw is None else self.sw[rows]
            Ws = [P[a:b].reshape(-1, e - b) for a, b, e in spans]
            bs = [P[b:e] for a, b, e in spans]
            self.stats[s] = (len(rows) if w is None else float(w.sum()),
                             sum(float(np.dot(W.ravel(), W.ravel())) for W in Ws))
            A = [xb]
            for i in range(L):
                z = xb @ Ws[0] if i == 0 else A[-1] @ Ws[i]
                z = np.asarray(z) + bs[i]
                A.append(_numpy_activate(est.activation if i < L - 1 else est.out_activation_,
                                         z))
            a = A[-1]
            per, delta = _numpy_head(code, a, yb, P.dtype)
            if w is not None:
                per, delta = per * w, delta * w[:, None]
            losses[s] = per.sum()
            if code == codes.MSE:
                delta = 2 * delta  # the kernels' gradient of the summed squared error
            grads = [None] * L
            for i in range(L - 1, -1, -1):
                grads[i] = (A[i].T @ delta, delta.sum(axis=0))
                if i > 0:
                    delta = _numpy_derivative(est.activation, A[i], delta @ Ws[i].T)
            if optimizer.code == codes.ADAM:
                hyper[codes.H_T] += 1
            for i, (a0, b0, e0) in enumerate(spans):
                G[a0:b0] = np.asarray(grads[i][0]).ravel()
                G[b0:e0] = grads[i][1]
                self.ops.sgd_update(P[a0:b0], P[b0:e0], G[a0:b0], G[b0:e0], S[:, a0:b0],
                                    S[:, b0:e0], optimizer.code, hyper, self.stats[s, 0])
        return losses, hit


def _numpy_activate(name, z):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "logistic":
        return expit(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z  # identity; "exp" is applied by the head or the caller


def _numpy_derivative(name, a, d):
    if name == "relu":
        return d * (a != 0)
    if name == "tanh":
        return d * (1 - a * a)
    if name == "logistic":
        return d * a * (1 - a)
    return d


def _numpy_head(code, a, y, dtype):
    """(per-sample summed loss, output gradient) as the kernels' head."""
    eps = np.finfo(dtype).eps
    if code == codes.NLL:
        return -(y * np.log(np.maximum(a, eps))).sum(axis=1), a - y
    if code == codes.LOGISTIC:
        p = np.clip(a, eps, 1 - eps)
        return -(xlogy(y, p) + xlogy(1 - y, 1 - p)).sum(axis=1), a - y
    if code == codes.POISSON:
        p = np.exp(a)
        return (xlogy(y, y / p) - y + p).sum(axis=1), p - y
    e = a - y
    return (e * e).sum(axis=1), e


def _numpy_forward(est, P, X):
    _, spans, _ = est._layout()
    a = X
    for i, (w, b, e) in enumerate(spans):
        z = a @ P[w:b].reshape(-1, e - b)
        a = np.asarray(z, dtype=P.dtype) + P[b:e]
        last = i == len(spans) - 1
        a = _numpy_activate(est.out_activation_ if last else est.activation, a)
    return a


class _FullBatch:
    """scikit-learn's L-BFGS objective ``(loss, gradient)`` at a point, over
    the whole data set: the full-batch kernel on ``default_threads()``
    threads (rows split between threads, partial sums added), then the L2
    term and the division by the sum of weights, as scikit-learn's
    ``_backprop``."""

    def __init__(self, est, X, y, sw):
        self.est = est
        self.P = est._flat()
        self.sizes, spans, _ = est._layout()
        self.weights = [slice(a, b) for a, b, _ in spans]
        self.acts = est._acts()
        self.loss, self.scale, self.gscale = est._head()
        self.X, self.csr, self.Y, self.sw, self.n = est._data(X, y, sw)
        self.max_fill = 0.0 if sp.issparse(X) else est._max_fill(X)
        self.sw_sum = float(self.n if sw is None else np.sum(sw))
        self.numpy = est._engine() == "numpy"
        self.order = self._order()
        self.raw = (X, y, sw)
        sizes = self.sizes
        work = self.n * int(np.sum(sizes[:-1] * sizes[1:]))
        self.chunk = CHUNK if self.max_fill > 0 else DENSE_CHUNK
        threads = min(default_threads(), max(1, self.n // self.chunk))
        self.threads = threads if work >= PARALLEL_MIN_WORK else 1
        self.G = [np.zeros_like(self.P) for _ in range(self.threads)]
        self.kernel = None if self.numpy else kernel_module("full_batch")

    def _order(self):
        """The order the kernel takes the rows in when its first layer may
        work on the nonzeros (dense X): grouped by class, then alike inputs
        (:func:`fastmlp.inference.class_order`), made once per fit; empty (the
        given order) otherwise. The class of a row: its label for a binary
        classifier, its first largest target for multiclass (its class) and
        multilabel (its first label), none for a regressor. Any order gives
        the same sums up to rounding; this one makes the lists shorter."""
        if self.max_fill <= 0 or self.numpy:
            return np.empty(0, dtype=np.int64)
        if not is_classifier(self.est):
            labels = np.zeros(self.n, dtype=np.int64)
        elif self.Y.shape[1] == 1:
            labels = (self.Y[:, 0] > 0.5).astype(np.int64)
        else:
            labels = np.argmax(self.Y, axis=1)
        return np.ascontiguousarray(class_order(self.X.T, labels), dtype=np.int64)

    def _part(self, k, lo, hi):
        G = self.G[k]
        G[...] = 0
        return self.kernel.loss_grad(self.P, G, self.sizes, self.acts, self.loss, self.X,
                                     self.Y, self.sw, *self.csr, self.order, lo, hi,
                                     self.chunk, self.max_fill)

    def __call__(self, x):
        P = self.P
        P[...] = x
        if self.numpy:
            total, G = self._numpy()
        elif self.threads == 1:
            total = self._part(0, 0, self.n)
            G = self.G[0]
        else:
            cuts = np.linspace(0, self.n, self.threads + 1).astype(int)
            with one_blas_thread():
                futures = [thread_pool().submit(self._part, k, cuts[k], cuts[k + 1])
                           for k in range(1, self.threads)]
                total = self._part(0, cuts[0], cuts[1])
                total += sum(f.result() for f in futures)
            G = self.G[0]
            for other in self.G[1:]:
                G += other
        squares = sum(float(np.dot(P[s], P[s])) for s in self.weights)
        alpha = self.est.alpha
        loss = total * self.scale / self.sw_sum + (0.5 * alpha) * squares / self.sw_sum
        grad = G.astype(np.float64) * self.gscale
        for s in self.weights:
            grad[s] += alpha * P[s]
        grad /= self.sw_sum
        return loss, grad

    def _numpy(self):
        X, y, sw = self.raw
        est, P = self.est, self.P
        _, spans, _ = est._layout()
        Ws = [P[a:b].reshape(-1, e - b) for a, b, e in spans]
        A = [X]
        for i, (_, b0, e0) in enumerate(spans):
            z = np.asarray(A[-1] @ Ws[i], dtype=P.dtype) + P[b0:e0]
            last = i == len(spans) - 1
            A.append(_numpy_activate(est.out_activation_ if last else est.activation, z))
        per, delta = _numpy_head(self.loss, A[-1], np.asarray(y, dtype=P.dtype), P.dtype)
        if sw is not None:
            per, delta = per * sw, delta * np.asarray(sw)[:, None]
        if self.loss == codes.MSE:
            delta = 2 * delta
        G = np.empty_like(P)
        for i in range(len(spans) - 1, -1, -1):
            a0, b0, e0 = spans[i]
            G[a0:b0] = np.asarray(A[i].T @ delta).ravel()
            G[b0:e0] = delta.sum(axis=0)
            if i > 0:
                delta = _numpy_derivative(est.activation, A[i], delta @ Ws[i].T)
        return float(per.sum()), G


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on
    fastmlp's kernels.

    Parameters are scikit-learn 1.9's, with the same defaults and meaning
    (``hidden_layer_sizes``, ``activation``, ``solver`` "adam", "sgd" or
    "lbfgs", ``alpha``, ``batch_size``, ``learning_rate``,
    ``learning_rate_init``, ``power_t``, ``max_iter``, ``shuffle``,
    ``random_state``, ``tol``, ``verbose``, ``warm_start``, ``momentum``,
    ``nesterovs_momentum``, ``early_stopping``, ``validation_fraction``,
    ``beta_1``, ``beta_2``, ``epsilon``, ``n_iter_no_change``, ``max_fun``),
    plus:

    dtype : None, float32 or float64, default None
        The parameters' and the arithmetic's type. None follows X (float32
        stays float32, anything else becomes float64), as scikit-learn.
    engine : {"numba", "numpy"} or None, default None
        "numpy" runs the same algorithm in NumPy (a reference); None: Numba.

    Fitted attributes are scikit-learn's: ``classes_``, ``loss_``,
    ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``t_``, ``coefs_``, ``intercepts_``,
    ``n_features_in_``, ``feature_names_in_``, ``n_iter_``, ``n_layers_``,
    ``n_outputs_``, ``out_activation_``; and ``model_``, the network as a
    fastmlp ``Sequential``.
    """

    _classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, engine=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
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
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.engine = engine

    loss = "log_loss"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predicted classes, shape (n_samples,) or (n_samples, n_classes) (multilabel)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y, continuing from the current state (``classes``
        required on the first call)."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on
    fastmlp's kernels.

    Parameters and attributes as :class:`MLPClassifier` (without
    ``classes_``), plus ``loss``: "squared_error" (half the squared error,
    identity output) or "poisson" (half the Poisson deviance, exp output; y
    must be >= 0).
    """

    _classifier = False
    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        **_SkRegressor._parameter_constraints,
        "dtype": "no_validation",
        "engine": [StrOptions({"numba", "numpy"}), None],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, engine=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
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
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.engine = engine

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    @available_if(lambda est: est._check_solver)  # (always, as scikit-learn's)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y, continuing from the current state."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

