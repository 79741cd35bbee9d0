"""The Sequential model: the notebook's training loop, on either engine."""

import functools
import inspect

import numpy as np

from . import _validation as v
from ._progress import Progress
from .engines import get_engine
from .fused import FlatNetwork, check_block, make_plan
from .layers import ACTIVATIONS, Layer, Linear
from .losses import is_classification
from .training import fit, make_steps

__all__ = ["Sequential"]


#: Sample indices drawn at a time (as whole steps: at least one). The draws
#: are made in chunks of a size fixed by the batch size whatever the
#: reporting, so a Generator seed gives the same trajectory whether or not
#: progress is shown; and a chunk's buffers stay small for any batch size.
INDEX_CHUNK = 1 << 16


def _chunk_steps(batch_size):
    """Steps per chunk of index draws (and at most per kernel call)."""
    return max(1, INDEX_CHUNK // batch_size)


def _builtin(module, *types):
    """True if ``module`` is exactly one of the built-in ``types`` (not a subclass)."""
    return type(module) in types


class _IndexStream:
    """Sample indices for ``total`` SGD steps, drawn from ``rng`` in fixed chunks.

    Exactly ``total * batch_size`` indices are drawn, so the global generator
    ends where the notebook's loop leaves it; chunk boundaries depend only on
    ``total``, never on reporting.
    """

    def __init__(self, rng, n, batch_size, total):
        self.rng, self.n, self.batch_size, self.left = rng, n, batch_size, total
        self.buf = np.empty((0, batch_size), dtype=np.int64)

    def take(self, steps):
        """Return the indices of the next ``steps`` steps, shape (steps, batch_size)."""
        while len(self.buf) < steps:
            k = min(_chunk_steps(self.batch_size), self.left)
            new = v.draw_indices(self.rng, self.n, k * self.batch_size)
            new = new.astype(np.int64, copy=False).reshape(k, self.batch_size)
            self.buf = np.concatenate([self.buf, new]) if len(self.buf) else new
            self.left -= k
        out, self.buf = self.buf[:steps], self.buf[steps:]
        return out


def _report_stops(iters, every, cap=INDEX_CHUNK):
    """Yield the ends of the blocks of steps between two reports.

    The notebook reports at the steps ``it`` with ``it % every == 1``, using the
    weights before that step's update, so a block ends just before each.
    Blocks are also capped at ``cap`` steps to bound their buffers.
    """
    start = 0
    points = range(1, iters, every) if every else ()
    for stop in [*points, iters]:
        while stop - start > cap:
            start += cap
            yield start, False
        if stop > start:
            yield stop, stop < iters
        start = stop


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
    block : "auto", "off" or int, default "auto"
        How the fused path runs per-sample steps (``sgd``, and ``fit`` with
        ``batch_size=1`` and no momentum or weight decay). An int k runs the
        blocked kernel: the first layer's updates are deferred over k steps
        and applied as matrix products (GEMMs for dense inputs; products on
        the nonzeros for inputs at most half nonzero, such as MNIST), with
        the same trajectory up to rounding. "off" always uses the one-pass
        kernel. "auto" measures both
        once per network shape, dtype and input density (in a call of at
        least 4,096 steps) and keeps the faster; see :attr:`block_size`.

    Notes
    -----
    Data are laid out as in the notebook: ``X`` is (features, samples) and
    ``Y`` is (outputs, samples), one-hot for a classifier. Parameters are
    updated in place.
    """

    def __init__(self, modules, loss, *, engine=None, dtype=None, fuse=True, block="auto"):
        _check_modules(modules, loss)
        self.modules = modules
        self.loss = loss
        self.fuse = bool(fuse)
        self.block = check_block(block)
        self._block_size = None
        self._ops = get_engine(engine)
        self.dtype = _common_dtype(modules, dtype)
        for m in modules:
            if isinstance(m, Linear) and m.W.dtype != self.dtype:
                m.W, m.W0 = m.W.astype(self.dtype), m.W0.astype(self.dtype)
        self._bind_engine()

    @property
    def engine(self):
        """Name of the engine doing the arithmetic: "numba" or "numpy"."""
        return self._ops.name

    @property
    def path(self):
        """How :meth:`sgd` trains this network: "fused" or "layer-by-layer".

        "fused" (one compiled call runs many steps) when the engine is Numba,
        the network is made of built-in layers only and ``fuse`` is True;
        otherwise
        "layer-by-layer", the notebook's loop of Python calls, in which
        built-in layers still use the engine's kernels.
        """
        return "fused" if self._plan() is not None else "layer-by-layer"

    def __getstate__(self):
        # The engine is a module (pickled by name); the flat buffers are a
        # cache of the layers' parameters, rebuilt on the next fused run.
        state = self.__dict__.copy()
        state["_ops"] = self._ops.name
        state.pop("_flat", None)
        return state

    def __setstate__(self, state):
        state["_ops"] = get_engine(state["_ops"])
        self.__dict__.update(state)

    def _bind_engine(self):
        """Put every layer (and the loss) on this model's engine: modules may have
        been replaced, or shared with a model on another engine, since. And
        check the Linear layers' parameters, which may have been assigned."""
        for m in [*self.modules, self.loss]:
            if isinstance(m, Layer) and m._engine is not self._ops:
                m._engine = self._ops
            if isinstance(m, Linear):
                m._check_params(self.dtype)

    def _reset_velocity(self):
        """Zero the optimizer's velocities (momentum) of every Linear layer."""
        for m in self.modules:
            if isinstance(m, Linear) and getattr(m, "_VW", None) is not None:
                m._VW[...] = 0
                m._VW0[...] = 0

    @property
    def block_size(self):
        """Block size of the last per-sample run of the fused path (None: one-pass kernel)."""
        return self._block_size

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
            _sgd_step(m, lrate)

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
        """
        X, Y = self._check_data(X, Y)
        iters = v.check_int(iters, "iters", 0)
        lrate = v.check_positive_float(lrate, "lrate")
        batch_size = v.check_int(batch_size, "batch_size", 1)
        every = None if print_every is None else v.check_int(print_every, "print_every", 1)
        rng = v.as_rng(seed)
        if not verbose:
            every = None
        steps = make_steps(self, X, Y, iters * batch_size, per_sample=batch_size == 1)
        stream = _IndexStream(rng, X.shape[1], batch_size, iters)
        progress = Progress(bool(verbose and every), iters, "step")
        it, report = 0, None
        try:
            for stop, report_next in _report_stops(iters, every, _chunk_steps(batch_size)):
                losses, _ = steps.run(stream.take(stop - it).ravel(), batch_size, lrate)
                line = None
                if report is not None:  # accuracy before this block, loss of its first step
                    line = _report_line(it, report[0], losses[0])
                    progress.update(stop - it, line, acc=report[0], loss=float(losses[0]))
                else:
                    progress.update(stop - it)
                it = stop
                report = (self._accuracy(X, Y),) if report_next else None
        finally:
            progress.close()

    def fit(self, X, Y, epochs=10, batch_size=32, lrate=0.01, *, momentum=0.0, nesterov=False,
            weight_decay=0.0, lr_schedule="constant", power_t=0.5, shuffle=True, seed=None,
            validation_data=None, early_stopping=False, patience=5, monitor=None,
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
            Samples per step; the last batch of an epoch may be smaller.
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
        return fit(self, X, Y, epochs=epochs, batch_size=batch_size, lrate=lrate,
                   momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                   lr_schedule=lr_schedule, power_t=power_t, shuffle=shuffle, seed=seed,
                   validation_data=validation_data, early_stopping=early_stopping,
                   patience=patience, monitor=monitor, min_delta=min_delta,
                   restore_best=restore_best, callbacks=callbacks, verbose=verbose)

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
        n_in, _ = _io_sizes(self.modules)
        X = v.as_matrix(X, "X", self.dtype, n_in, "features")
        out = self._forward_chunked(X)
        return self.modules[-1].class_fun(out) if self._classifier else out

    def evaluate(self, X, Y):
        """Return ``(loss, accuracy)`` on X, Y: the mean loss per sample and the
        fraction classified right (None for a network without ``class_fun``).
        """
        X, Y = self._check_data(X, Y)
        out = self._forward_chunked(X)
        loss = self.loss.forward(out, Y) / X.shape[1]
        if not self._classifier:
            return loss, None
        cf = self.modules[-1].class_fun
        return loss, float(np.mean(cf(out) == cf(Y)))

    def save(self, path):
        """Write the model to a single ``.npz`` file (no pickle); return its path.

        The write is atomic: an interrupted save leaves any previous file at
        ``path`` intact. Read it back with :func:`fastmlp.load`.
        """
        from .io import save

        return save(self, path)

    def print_accuracy(self, it, X, Y, cur_loss, every=250):
        """Print accuracy on ``X, Y`` and ``cur_loss`` when ``it % every == 1`` (notebook)."""
        if it % every == 1:
            print(_report_line(it, self._accuracy(X, Y), cur_loss), flush=True)

    # -- checks -----------------------------------------------------------

    def _check_data(self, X, Y):
        """Return X and Y as finite float arrays of this model's dtype, shapes checked."""
        n_in, n_out = _io_sizes(self.modules)
        X = v.as_matrix(X, "X", self.dtype, n_in, "features")
        Y = v.as_matrix(Y, "Y", self.dtype, n_out, "outputs")
        if X.shape[1] != Y.shape[1]:
            raise ValueError(
                f"X and Y must have the same number of samples (columns); "
                f"got X with {X.shape[1]} and Y with {Y.shape[1]}"
            )
        if is_classification(self.loss):
            v.check_one_hot(Y, "Y")
        return X, Y

    # -- internals --------------------------------------------------------

    @property
    def _classifier(self):
        """True if the last module turns outputs into classes (has ``class_fun``)."""
        return callable(getattr(self.modules[-1], "class_fun", None))

    def _forward_chunked(self, X, chunk=8192):
        """The output for every column of X, computed a chunk of columns at a time."""
        if X.shape[1] <= chunk:
            return self.forward(X)
        parts = [self.forward(X[:, i:i + chunk]) for i in range(0, X.shape[1], chunk)]
        return np.concatenate(parts, axis=1)

    def _plan(self):
        """The network as the compiled loops see it, or None if they cannot run it."""
        if self.engine != "numba" or not self.fuse:
            return None
        return make_plan(self.modules, self.loss)

    def _flat_network(self, plan):
        """The flat parameter buffers of ``plan``, bound to its layers."""
        flat = getattr(self, "_flat", None)
        if flat is None or flat.plan.linears != plan.linears or flat.P.dtype != self.dtype:
            flat = self._flat = FlatNetwork(plan, self.dtype)
        else:
            # Same Linear layers, same buffers; the activations or the loss may
            # have been replaced since, so the description is always the fresh one.
            flat.plan = plan
            flat.bind()
        return flat

    def _accuracy(self, X, Y):
        """Fraction of columns of X classified as in Y, or None without a class_fun."""
        if not self._classifier:
            return None
        cf = self.modules[-1].class_fun
        return np.mean(cf(self._forward_chunked(X)) == cf(Y))


def _sgd_step(module, lrate):
    """Call ``module.sgd_step``, with the rate if it takes one (notebook's base takes none)."""
    fn = getattr(module, "sgd_step", None)
    if fn is None:
        return
    if _takes_rate(fn):
        fn(lrate)
    else:
        fn()


def _takes_rate(fn):
    return _signature_takes_rate(getattr(fn, "__func__", fn), hasattr(fn, "__self__"))


@functools.lru_cache(maxsize=256)
def _signature_takes_rate(func, bound):
    """True if ``func`` accepts a positional argument besides ``self``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    return variadic or len(positional) > (1 if bound else 0)


def _report_line(it, acc, loss):
    """The notebook's report line (the loss only, for a network without class_fun)."""
    if acc is None:
        return f"Iteration = {it} \tLoss = {loss}"
    return f"Iteration = {it} \tAcc = {acc} \tLoss = {loss}"


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
