"""The Sequential model: the notebook's API, on either engine.

A training call checks its data, asks the planner (:mod:`fastmlp.plan`) how
to run, and hands the plan's executor (:mod:`fastmlp.steps`), an optimizer
(:mod:`fastmlp.optimizers`) and a policy to the one training driver
(:mod:`fastmlp.training`).
"""

import contextlib
import threading

import numpy as np

from . import _validation as v
from ._progress import Progress
from .config import FORWARD_CHUNK, SGD_BATCH_MAX
from .engines import get_engine
from .inference import Accuracy
from .inference import forward as forward_many
from .inference import score as score_many
from .io import read as read_model
from .io import save as save_model
from .layers import ACTIVATIONS, Linear
from .losses import is_classification
from .network import FlatNetwork
from .optimizers import SGD, make_optimizer
from .plan import check_block, plan_inference, plan_training, route
from .steps import FusedSteps, LayerSteps, call_sgd_step
from .stopping import Patience
from .training import Draws, Epochs, FitPolicy, NotebookReports, report_line, train

__all__ = ["Sequential", "load"]

MONITORS = ("loss", "accuracy", "val_loss", "val_accuracy")


def _builtin(module, *types):
    """True if ``module`` is exactly one of the built-in ``types`` (not a subclass)."""
    return type(module) in types


class Sequential:
    """A stack of layers trained by stochastic gradient descent.

    Parameters
    ----------
    modules : list of Layer
        The layers, applied in order. Consecutive :class:`Linear` layers must
        agree in size (``Linear(a, b)`` then ``Linear(b, c)``, with
        activations in between or not).
    loss : NLL or MSE
        The loss applied to the output of the last module.
    engine : {"numba", "numpy"} or None, default None
        Which engine does the arithmetic. None picks the fastest available
        (Numba). Networks of built-in layers on the Numba engine train in
        fused compiled loops; see :attr:`path`.
    dtype : float32, float64 or None, default None
        Floating-point type of parameters, activations and gradients. None
        takes the dtype of the Linear layers (float64 unless created
        otherwise); given, the Linear layers are cast to it.
    fuse : bool, default True
        Allow the fused compiled loops. False forces the layer-by-layer path
        (the notebook's loop, each built-in layer still on the engine's
        kernels), for instance to measure what fusion buys.
    block : "auto", "off", "tune" or int, default "auto"
        How the fused path runs per-sample steps (``sgd``, and ``fit`` with
        ``batch_size=1`` and plain SGD). An int k runs the blocked kernel:
        the first layer's updates are deferred over k steps and applied as
        matrix products (GEMMs for dense inputs; products on the nonzeros
        for inputs at most half nonzero, such as MNIST), with the same
        trajectory up to rounding. "off" always uses the one-pass kernel.
        "auto" decides by rules on the network's shape and the input's
        density (:mod:`fastmlp.config`): deterministic, the same bits on
        every run. "tune" measures both kernels once per network shape,
        dtype and input density and keeps the faster: machine-dependent, so
        runs may differ by rounding.

    Notes
    -----
    Data are laid out as in the notebook: ``X`` is (features, samples) and
    ``Y`` is (outputs, samples), one-hot for a classifier. Parameters are
    updated in place.
    """

    def __init__(self, modules, loss, *, engine=None, dtype=None, fuse=True, block="auto"):
        _check_modules(modules, loss)
        for m in modules:
            if isinstance(m, Linear):
                m.check_parameters()  # (W may have been assigned a list, say)
        self.modules = modules
        self.loss = loss
        self.fuse = bool(fuse)
        self.block = check_block(block)
        self.engine_ops = get_engine(engine)
        self.dtype = _common_dtype(modules, dtype)
        self.optimizer = None  # the optimizer of the last fit (its state carries over)
        self._plan = None  # the plan of the last training call
        self._flat = None  # flat parameter buffers of the fused path, made on first use
        self._busy = threading.Lock()  # held while training: one thread at a time
        for m in modules:
            if isinstance(m, Linear) and m.W.dtype != self.dtype:
                m.W, m.W0 = m.W.astype(self.dtype), m.W0.astype(self.dtype)
        self._bind_engine()

    @property
    def engine(self):
        """Name of the engine doing the arithmetic: "numba" or "numpy"."""
        return self.engine_ops.name

    @property
    def path(self):
        """How this model trains, in words: the plan of the last training call.

        It starts with "fused" (one compiled call runs many steps: the Numba
        engine, built-in layers only, ``fuse`` True) or "layer-by-layer" (the
        notebook's loop of Python calls, built-in layers still on the
        engine's kernels) and the reason. After a training call it names the
        kernel, for instance "fused per-sample, blocked k=64 with GEMMs;
        samples read in place"; see :mod:`fastmlp.plan`.
        """
        plan = self._plan if self._plan is not None else route(self)[1]
        return str(plan)

    @property
    def block_size(self):
        """Block size of the last per-sample run of the fused path (None: one-pass kernel)."""
        plan = self._plan
        if plan is None or plan.mode != "per-sample" or plan.kernel != "blocked":
            return None
        return plan.block

    def parameters(self):
        """Every trainable array, in order: each Linear layer's ``W`` then ``W0``
        (and the ``parameters()`` of any layer of your own that has them).

        The one list that snapshots, optimizer state and the flat buffers of
        the fused kernels follow.
        """
        return [p for m in self.modules for p in getattr(m, "parameters", list)()]

    def __getstate__(self):
        # The engine is a module (pickled by name); the flat buffers are a
        # cache of the layers' parameters, rebuilt on the next fused run.
        state = self.__dict__.copy()
        state["engine_ops"] = self.engine_ops.name
        state["_flat"] = None
        state.pop("_busy", None)
        return state

    def __setstate__(self, state):
        state["engine_ops"] = get_engine(state["engine_ops"])
        state["_busy"] = threading.Lock()
        self.__dict__.update(state)

    @contextlib.contextmanager
    def _exclusive(self):
        """Hold this model for one training call; a second thread is refused."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this model is already training in another thread: train a model "
                               "from one thread at a time (several models in several threads "
                               "are fine)")
        try:
            yield
        finally:
            self._busy.release()

    def _bind_engine(self):
        """Put every layer (and the loss) on this model's engine: modules may have
        been replaced, or shared with a model on another engine, since. And
        check the Linear layers' parameters, which may have been assigned."""
        for m in [*self.modules, self.loss]:
            if getattr(m, "_engine", None) is not self.engine_ops and hasattr(m, "bind_engine"):
                m.bind_engine(self.engine_ops)
            if isinstance(m, Linear):
                m.check_parameters(self.dtype)

    def __repr__(self):
        mods = ", ".join(repr(m) for m in self.modules)
        return (
            f"Sequential([{mods}], {self.loss!r}, engine={self.engine!r}, "
            f"dtype={self.dtype.name}, path={self.path!r})"
        )

    # -- the notebook's methods -------------------------------------------

    def forward(self, Xt):
        """Return the network's output for a batch ``Xt`` of shape (features, batch)."""
        self._bind_engine()
        for m in self.modules:
            Xt = m.forward(Xt)
        return Xt

    def backward(self, dLdA):
        """Back-propagate ``dLdA``, the gradient of the loss for the output, through all layers."""
        for m in self.modules[::-1]:
            dLdA = m.backward(dLdA)

    def sgd_step(self, lrate):
        """Update every layer's parameters with learning rate ``lrate``."""
        for m in self.modules:
            call_sgd_step(m, lrate)

    def sgd(self, X, Y, iters=100, lrate=0.005, *, batch_size=1, seed=None,
            print_every=250, verbose=True):
        """Train by stochastic gradient descent, as the notebook's ``sgd`` does.

        Each step draws ``batch_size`` samples uniformly with replacement
        (one ``np.random.randint(n)`` per sample, as the notebook), runs
        forward and backward, and steps every layer along the gradient. With
        ``batch_size=1`` this is the notebook's loop exactly; with more, the
        step follows the *mean* gradient over the batch (the layers' gradients
        are sums, so the step is scaled by ``1 / batch_size``), the
        convention of scikit-learn, Keras and PyTorch.

        Parameters
        ----------
        X : array-like of shape (features, samples)
            Training inputs, one column per sample.
        Y : array-like of shape (outputs, samples)
            Targets; one-hot columns for an NLL loss.
        iters : int, default 100
            Number of steps.
        lrate : float, default 0.005
            Step size.
        batch_size : int, default 1
            Samples per step.
        seed : None, int, RandomState or Generator, default None
            Source of the sample draws. None uses NumPy's global generator,
            so ``np.random.seed(s)`` reproduces the notebook's run.
        print_every : int or None, default 250
            Report accuracy and loss at the steps ``it = 1, 1 + print_every,
            1 + 2 * print_every, ...`` (the notebook's ``it % every == 1``;
            with 1, every step). None reports nothing. Reports split the
            fused run into several compiled calls; the weights come out the
            same to the bit (on the blocked path, whose blocks restart at
            each report, the same up to rounding).
        verbose : bool, default True
            False silences all reporting (and skips its evaluations).

        Warns
        -----
        RuntimeWarning
            If the loss stops being finite (training diverged).
        """
        X, Y = self._check_data(X, Y)
        iters = v.check_int(iters, "iters", 0)
        optimizer = SGD(lrate)
        batch_size = v.check_int(batch_size, "batch_size", 1)
        if batch_size > SGD_BATCH_MAX:
            raise ValueError(f"batch_size must be an integer from 1 to {SGD_BATCH_MAX} (samples "
                             f"drawn per step, with replacement); got {batch_size!r}")
        every = None if print_every is None else v.check_int(print_every, "print_every", 1)
        if verbose not in (True, False) or isinstance(verbose, str):
            raise TypeError(f"verbose must be True or False; got {verbose!r}")
        rng = v.as_rng(seed)
        if not verbose:
            every = None
        with self._exclusive():
            steps = self.steps_for(X, Y, samples=iters * batch_size, batch_size=batch_size,
                                   optimizer=optimizer)
            rounds = Draws(rng, X.shape[1], batch_size, iters, every)
            accuracy = self._reports_accuracy(X, Y) if every else None
            progress = Progress(bool(every), iters, "step")
            try:
                train(steps, rounds, optimizer, NotebookReports(accuracy, progress))
            finally:
                progress.close()

    def fit(self, X, Y, epochs=10, batch_size=32, lrate=0.01, *, momentum=0.0, nesterov=False,
            weight_decay=0.0, lr_schedule="constant", power_t=0.5, optimizer=None, shuffle=True,
            seed=None, validation_data=None, early_stopping=False, patience=5, monitor=None,
            min_delta=0.0, restore_best=True, callbacks=None, verbose=1):
        """Train for ``epochs`` passes over the data in mini-batches.

        Each epoch visits every sample once, in a fresh random order (or in
        order with ``shuffle=False``), and takes one step per batch along the
        mean gradient of the batch. Networks of built-in layers on the Numba
        engine run each epoch as one compiled call, momentum and weight decay
        included.

        Parameters
        ----------
        X : array-like of shape (features, samples)
        Y : array-like of shape (outputs, samples)
            Targets; one-hot columns for an NLL loss.
        epochs : int, default 10
        batch_size : int, default 32
            Samples per step; the last batch of an epoch may be smaller. A
            batch larger than the data is clamped to it.
        lrate : float, default 0.01
            Initial learning rate.
        momentum : float in [0, 1), default 0
            Momentum coefficient: ``V = momentum * V - lrate * g``, ``W += V``.
            Velocities persist across ``fit`` calls, as in Keras.
        nesterov : bool, default False
            Nesterov's momentum: ``W += momentum * V - lrate * g``.
        weight_decay : float, default 0
            L2 coefficient added to the weights' gradient,
            ``g = mean gradient + weight_decay * W`` (biases are not decayed).
        lr_schedule : {"constant", "invscaling", "adaptive"} or callable
            "invscaling" uses ``lrate / (t + 1) ** power_t`` with ``t`` the
            samples seen (scikit-learn's rule); "adaptive" divides the rate
            by 5 whenever the monitored value has not improved for
            ``patience`` epochs; a callable ``f(epoch, lrate)`` returns the
            rate of each epoch.
        power_t : float, default 0.5
            Exponent of "invscaling".
        optimizer : "sgd" or optimizer object, optional
            An optimizer object (such as ``fastmlp.optimizers.SGD(...)``)
            replaces ``lrate``, ``momentum``, ``nesterov``, ``weight_decay``,
            ``lr_schedule`` and ``power_t``; its state carries over between
            the calls it is passed to.
        shuffle : bool, default True
            Visit the samples in a fresh random order each epoch.
        seed : None, int, RandomState or Generator
            Source of the shuffles; None uses NumPy's global generator.
        validation_data : (X_val, Y_val), optional
            Scored after every epoch.
        early_stopping : bool, default False
            Stop when the monitored value has not improved by more than
            ``min_delta`` for ``patience`` epochs.
        patience : int, default 5
        monitor : {"loss", "accuracy", "val_loss", "val_accuracy"}, optional
            What early stopping and "adaptive" watch; default "val_loss" with
            validation data, else "loss".
        min_delta : float, default 0
        restore_best : bool, default True
            With ``early_stopping``, end training (stopped early or not) with
            the weights of the epoch that had the best monitored value.
        callbacks : callable or list of callables, optional
            Each is called as ``cb(model, history)`` after every epoch;
            returning True stops training.
        verbose : {0, 1, 2}, default 1
            0 is silent; 1 shows a progress bar on a terminal (one line per
            epoch otherwise); 2 always prints one line per epoch.

        Returns
        -------
        History
            Per-epoch loss, accuracy, validation scores, learning rate and
            wall time.
        """
        X, Y = self._check_data(X, Y)
        epochs = v.check_int(epochs, "epochs", 0)
        batch_size = min(v.check_int(batch_size, "batch_size", 1), X.shape[1])
        if optimizer is None or optimizer == "sgd":
            optimizer = SGD(lrate, momentum=momentum, nesterov=nesterov,
                            weight_decay=weight_decay, lr_schedule=lr_schedule, power_t=power_t)
        else:
            optimizer = make_optimizer(optimizer)
        rule = Patience(
            _check_monitor(monitor, validation_data is not None, self._classifier),
            v.check_int(patience, "patience", 1),
            v.check_positive_float(min_delta, "min_delta", allow_zero=True),
            v.check_bool(early_stopping, "early_stopping"),
            v.check_bool(restore_best, "restore_best"))
        shuffle = v.check_bool(shuffle, "shuffle")
        verbose = _check_verbose(verbose)
        val = self._check_validation(validation_data)
        callbacks = _check_callbacks(callbacks)
        rng = v.as_rng(seed)
        with self._exclusive():
            steps = self.steps_for(X, Y, samples=epochs * X.shape[1], batch_size=batch_size,
                                   optimizer=optimizer)
            self.optimizer = optimizer
            progress = Progress(verbose, epochs, "epoch")
            policy = FitPolicy(self, X.shape[1], self._classifier, rule, evaluate=self.evaluate,
                               validation=val, callbacks=callbacks, progress=progress,
                               epochs=epochs)
            rounds = Epochs(rng, X.shape[1], batch_size, epochs, shuffle)
            try:
                train(steps, rounds, optimizer, policy)
            finally:
                progress.close()
            return policy.finish()

    def steps_for(self, X, Y, *, samples, batch_size, optimizer):
        """Plan a training call on checked X, Y and return its executor.

        For training drivers (``sgd``, ``fit``, the scikit-learn estimators):
        binds the layers to the engine, asks the planner, records the plan
        (see :attr:`path`) and readies ``optimizer``'s state for
        :meth:`parameters`. X and Y must be finite arrays of this model's
        dtype and shapes (``_check_data`` makes them so).
        """
        self._bind_engine()
        n_params = sum(p.size for p in self.parameters())
        optimizer.prepare(n_params, self.dtype, previous=self.optimizer)
        flat = self._flat_network()
        plan = plan_training(self, X, Y, samples=samples, batch_size=batch_size,
                             optimizer=optimizer, flat=flat,
                             tune_rows=lambda: _tuning_rows(X, Y))
        self._plan = plan
        if plan.fused:
            return FusedSteps(plan, flat, X, Y)
        return LayerSteps(self, X, Y)

    def _flat_network(self):
        """The flat buffers of a network the kernels can run, bound to its layers
        (made on first use, or anew when the Linear layers changed), else None."""
        network, _ = route(self)
        if network is None:
            return None
        if self._flat is None or not self._flat.fits(network, self.dtype):
            self._flat = FlatNetwork(network, self.dtype)
        else:
            self._flat.bind(network)
        return self._flat

    def predict(self, X):
        """Return class indices (for a last layer with ``class_fun``) or outputs.

        Parameters
        ----------
        X : array-like of shape (features, samples)

        Returns
        -------
        ndarray
            Shape (samples,) of class indices for a classifier, else the
            network's outputs, shape (outputs, samples).
        """
        out = self.outputs(X)
        return self.modules[-1].class_fun(out) if self._classifier else out

    def outputs(self, X):
        """The network's outputs for every column of X, shape (outputs, samples).

        Unlike :meth:`forward` (the notebook's, which keeps each layer's
        input for ``backward``), this checks X once and keeps nothing. On
        the fused path it runs the inference kernels (:mod:`fastmlp.inference`):
        X is read in place in any layout and float dtype (never copied whole),
        in chunks on :func:`fastmlp.inference.default_threads` threads, with
        buffers bounded as documented there.
        """
        n_in, _ = _io_sizes(self.modules)
        X = v.as_float_matrix(_unmasked(X, "X"), "X", self.dtype, n_in, "features")
        flat, plan = self._inference(X)
        if flat is None:
            return self._forward_chunked(X)
        net = flat.network
        return forward_many(flat.P, net.sizes, net.acts, X, sparse=plan.sparse)

    def evaluate(self, X, Y):
        """Return ``(loss, accuracy)`` on X, Y: the mean loss per sample and the
        fraction classified right (None for a network without ``class_fun``).
        """
        n_in, _ = _io_sizes(self.modules)
        X = v.as_float_matrix(_unmasked(X, "X"), "X", self.dtype, n_in, "features")
        Y = self._check_targets(Y, X.shape[1])
        total, hits = self._score(X, Y)
        if not self._classifier:
            return total / X.shape[1], None
        return total / X.shape[1], hits / X.shape[1]

    def _inference(self, X):
        """(flat buffers or None, plan) of a forward pass over X."""
        self._bind_engine()
        plan = plan_inference(self, X)
        return (self._flat_network() if plan.fused else None), plan

    def _score(self, X, Y):
        """(total loss, hits) over the columns of checked X and Y."""
        flat, plan = self._inference(X)
        if flat is None:
            out = self._forward_chunked(X)
            total = self.loss.forward(out, Y)
            if not self._classifier:
                return total, None
            cf = self.modules[-1].class_fun
            return total, int(np.count_nonzero(cf(out) == cf(Y)))
        net = flat.network
        return score_many(flat.P, net.sizes, net.acts, net.loss, X, Y, sparse=plan.sparse)

    def save(self, path):
        """Write the model to a single ``.npz`` file (no pickle); return its path.

        The write is atomic: an interrupted save leaves any previous file at
        ``path`` intact. Read it back with :func:`fastmlp.load`.
        """
        return save_model(self, path)

    def print_accuracy(self, it, X, Y, cur_loss, every=250):
        """Print accuracy on ``X, Y`` and ``cur_loss`` when ``it % every == 1`` (notebook)."""
        if it % every == 1:
            print(report_line(it, self._accuracy(X, Y), cur_loss), flush=True)

    # -- checks -----------------------------------------------------------

    def _check_data(self, X, Y):
        """Return X and Y as finite float arrays of this model's dtype, shapes checked."""
        n_in, _ = _io_sizes(self.modules)
        X = v.as_matrix(_unmasked(X, "X"), "X", self.dtype, n_in, "features")
        return X, self._check_targets(Y, X.shape[1])

    def _check_targets(self, Y, n):
        """Return Y as a finite array of this model's dtype for ``n`` samples
        (one-hot for a classification loss)."""
        _, n_out = _io_sizes(self.modules)
        Y = v.as_matrix(_unmasked(Y, "Y"), "Y", self.dtype, n_out, "outputs")
        if Y.shape[1] != n:
            raise ValueError(
                f"X and Y must have the same number of samples (columns); "
                f"got X with {n} and Y with {Y.shape[1]}"
            )
        if is_classification(self.loss):
            v.check_one_hot(Y, "Y")
        return Y

    def _check_validation(self, validation_data):
        if validation_data is None:
            return None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(f"validation_data must be a pair (X_val, Y_val); "
                            f"got {validation_data!r}")
        try:
            return self._check_data(*validation_data)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"validation_data: {exc}") from None

    # -- internals --------------------------------------------------------

    @property
    def _classifier(self):
        """True if the last module turns outputs into classes (has ``class_fun``)."""
        return callable(getattr(self.modules[-1], "class_fun", None))

    def _forward_chunked(self, X, chunk=FORWARD_CHUNK):
        """The layer-by-layer output for every column of X, a chunk of columns
        at a time, each converted to this model's dtype (the path for networks
        the inference kernels cannot run)."""
        parts = [self.forward(X[:, i:i + chunk].astype(self.dtype, copy=False))
                 for i in range(0, X.shape[1], chunk)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _accuracy(self, X, Y):
        """Fraction of columns of X classified as in Y, or None without a class_fun."""
        if not self._classifier:
            return None
        return self._score(X, Y)[1] / X.shape[1]

    def _reports_accuracy(self, X, Y):
        """``_accuracy(X, Y)`` as a function of no arguments, for the reports of
        one ``sgd`` call on checked X and Y: on the fused path the inference
        kernels' :class:`~fastmlp.inference.Accuracy`, which checks X and Y,
        finds Y's classes and lists X's nonzeros once for all the reports."""
        if not self._classifier:
            return lambda: None
        flat, plan = self._inference(X)
        if flat is None:
            return lambda: self._accuracy(X, Y)
        net = flat.network
        hits = Accuracy(flat.P, net.sizes, net.acts, X, Y, sparse=plan.sparse)
        return lambda: hits() / X.shape[1]


def load(path, *, engine=None, allow_nonfinite=False):
    """Rebuild the model saved at ``path``.

    Parameters
    ----------
    path : str or Path
        A file written by :meth:`Sequential.save`.
    engine : {"numba", "numpy"} or None
        Engine of the rebuilt model; None picks the fastest available.
    allow_nonfinite : bool, default False
        Load weights holding NaN or infinity (a diverged model) instead of
        raising ValueError, to inspect or repair them: training and
        prediction refuse such weights until finite ones are assigned.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a fastmlp model, is truncated or corrupt, exceeds
        the limits (:data:`MAX_DESCRIPTION_CHARS`, :data:`MAX_DESCRIPTION_DEPTH`,
        :data:`MAX_MODEL_BYTES`), its contents do not match its description
        (a parameter changed, missing, reshaped, or an extra member), or a
        weight is NaN or infinite and ``allow_nonfinite`` is False.
    """
    modules, loss, dtype, nonfinite = read_model(path, allow_nonfinite=allow_nonfinite)
    model = Sequential(modules, loss, engine=engine, dtype=dtype)
    for layer, W, W0 in nonfinite:  # allow_nonfinite: for inspection or repair
        layer.W[...], layer.W0[...] = W, W0
    return model


def _unmasked(value, name):
    """``value``, unless it is a masked array: its masked entries would be
    read as the numbers under the mask, so it is refused."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose masked entries would be used as "
                        f"they are; pass {name}.filled(value), or drop the masked samples")
    return value


def _tuning_rows(X, Y):
    """Samples-as-rows data for ``block="tune"`` to measure on: all of it when it
    is laid out so already, else a random few thousand samples."""
    if X.T.flags.c_contiguous and Y.T.flags.c_contiguous:
        return X.T, Y.T
    pick = np.random.RandomState(0).randint(X.shape[1], size=min(X.shape[1], 4096))
    return np.ascontiguousarray(X.T[pick]), np.ascontiguousarray(Y.T[pick])


def _check_verbose(verbose):
    if isinstance(verbose, (bool, np.bool_)):
        verbose = int(verbose)
    if verbose not in (0, 1, 2) or not isinstance(verbose, (int, np.integer)):
        raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
    return verbose


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


def _check_modules(modules, loss):
    """Raise TypeError/ValueError unless ``modules`` and ``loss`` form a valid network."""
    if not isinstance(modules, (list, tuple)) or len(modules) == 0:
        raise TypeError(f"modules must be a non-empty list of layers; got {modules!r}")
    for i, m in enumerate(modules):
        if isinstance(m, type):  # ReLU for ReLU(): the methods exist, unbound
            raise TypeError(f"modules[{i}] is the class {m.__name__}, not a layer; "
                            f"pass an instance: {m.__name__}(...)")
        if not (callable(getattr(m, "forward", None)) and callable(getattr(m, "backward", None))):
            raise TypeError(
                f"modules[{i}] must be a layer with forward and backward methods; got {m!r}"
            )
    if isinstance(loss, type):
        raise TypeError(f"loss is the class {loss.__name__}, not a loss; "
                        f"pass an instance: {loss.__name__}()")
    if not (callable(getattr(loss, "forward", None)) and callable(getattr(loss, "backward", None))):
        raise TypeError(f"loss must be a loss such as NLL() or MSE(); got {loss!r}")
    prev = None  # (index, outputs) of the last Linear, when its width is known
    for i, m in enumerate(modules):
        if isinstance(m, Linear):
            if prev is not None and m.m != prev[1]:
                raise ValueError(
                    f"modules[{i}] is {m!r}, expecting {m.m} inputs, but modules[{prev[0]}] "
                    f"outputs {prev[1]}"
                )
            prev = (i, m.n)
        elif not _builtin(m, *ACTIVATIONS):
            prev = None


def _common_dtype(modules, dtype):
    if dtype is not None:
        return v.check_dtype(dtype)
    dtypes = {m.W.dtype for m in modules if isinstance(m, Linear)}
    if len(dtypes) > 1:
        raise ValueError(
            f"the Linear layers have different dtypes {sorted(d.name for d in dtypes)}; "
            "pass dtype= to choose one"
        )
    return dtypes.pop() if dtypes else np.dtype(np.float64)


def _io_sizes(modules):
    """Return (inputs, outputs) of the network where built-in layers fix them, else None."""
    n_in = n_out = None
    for m in modules:
        if isinstance(m, Linear):
            n_in = m.m
            break
        if not _builtin(m, *ACTIVATIONS):
            break
    for m in reversed(modules):
        if isinstance(m, Linear):
            n_out = m.n
            break
        if not _builtin(m, *ACTIVATIONS):
            break
    return n_in, n_out
