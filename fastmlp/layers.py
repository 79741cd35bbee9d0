"""Layers: the notebook's classes, with the arithmetic delegated to an engine.

Each layer keeps the attributes the notebook's code reads (``W``, ``W0``,
``dLdW``, ``dLdW0``, ``A``) and the notebook's method signatures. What differs
is where the arithmetic happens: every layer calls the functions of its engine
(:mod:`fastmlp.baseline` or :mod:`fastmlp.kernels.layers`), which
:class:`~fastmlp.Sequential` assigns.

Two deliberate differences from the notebook, both documented in the README:
``sgd_step`` and ``backward`` write ``W``, ``W0``, ``dLdW`` and ``dLdW0`` in
place (the notebook rebinds new arrays), and the base ``Layer.sgd_step``
accepts the learning rate that ``Sequential`` passes to every module.
"""

import numpy as np

from ._validation import as_rng, check_dtype, check_int
from .engines import get_engine
from .kernels import codes

__all__ = ["Layer", "Linear", "ReLU", "Sigmoid", "SoftMax", "Tanh"]

_DEFAULT_ENGINE = []


def _default_engine():
    if not _DEFAULT_ENGINE:
        _DEFAULT_ENGINE.append(get_engine(None))
    return _DEFAULT_ENGINE[0]


class Layer:
    """Base class for network layers, and for layers of your own.

    A layer implements ``forward(A)``, returning its output for a batch laid
    out as (features, batch), and ``backward(dLdA)``, taking the gradient of
    the loss with respect to its output and returning the gradient with
    respect to its input. Layers with parameters also implement
    ``sgd_step(lrate)``.

    A network that contains a subclass of your own trains on the
    layer-by-layer path: :class:`~fastmlp.Sequential` calls your methods
    exactly as the notebook does, while built-in layers keep using the
    compiled kernels.
    """

    #: Engine module doing this layer's arithmetic; None means the default.
    _engine = None

    @property
    def _ops(self):
        return self._engine if self._engine is not None else _default_engine()

    def __getstate__(self):
        # Engines are modules, which do not pickle: keep their name instead.
        state = self.__dict__.copy()
        engine = state.pop("_engine", None)
        state["_engine_name"] = engine.name if engine is not None else None
        return state

    def __setstate__(self, state):
        name = state.pop("_engine_name", None)
        self.__dict__.update(state)
        if name is not None:
            self._engine = get_engine(name)

    def bind_engine(self, engine):
        """Do this layer's arithmetic on ``engine`` (an engine module, see
        :func:`fastmlp.engines.get_engine`). :class:`~fastmlp.Sequential` binds
        every module to its own engine before each use."""
        self._engine = engine

    def parameters(self):
        """The layer's trainable arrays, updated in place by training (none here)."""
        return []

    def gradients(self):
        """The gradients of :meth:`parameters` from the last backward, in the same order."""
        return []

    def forward(self, A):
        """Return the layer's output for a batch ``A`` of shape (features, batch)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(A)")

    def backward(self, dLdA):
        """Return the gradient with respect to the input, given ``dLdA`` for the output."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(dLdA)")

    def sgd_step(self, lrate=None):
        """Take a gradient step; layers without weights do nothing.

        The notebook's base class takes no learning rate while its
        ``Sequential`` passes one to every module, so the rate is optional.
        """

    def __repr__(self):
        return f"{type(self).__name__}()"


def _check_batch(arr, name, rows, dtype):
    """Return ``arr`` as a 2-D array of ``dtype`` with ``rows`` rows."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise ValueError(
            f"{name} must be a 2-D array of shape ({rows}, batch); got shape {arr.shape}"
        )
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def as_float(arr, name, dtype=None):
    """Return ``arr`` as a 2-D float array (of ``dtype`` if given)."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (features, batch); got shape {arr.shape}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    return arr if arr.dtype == dtype else arr.astype(dtype)


class Linear(Layer):
    """A fully connected layer: ``Z = W.T @ A + W0``.

    Parameters
    ----------
    m : int
        Number of inputs.
    n : int
        Number of outputs.
    dtype : float32 or float64, default float64
        Floating-point type of the parameters. The weights are always drawn
        in float64 (so the random stream is the notebook's) and then cast.
    seed : None, int, numpy RandomState or Generator, default None
        Source of the initial weights. None draws from NumPy's global
        generator, like the notebook.

    Attributes
    ----------
    W : ndarray of shape (m, n)
        Weights, drawn from N(0, 1/m).
    W0 : ndarray of shape (n, 1)
        Biases, zero at first.
    dLdW, dLdW0 : ndarray
        Gradients from the last ``backward``, summed over its batch.
    A : ndarray of shape (m, batch)
        Input of the last ``forward``.
    """

    def __init__(self, m, n, *, dtype=np.float64, seed=None):
        self.m = check_int(m, "m", 1)
        self.n = check_int(n, "n", 1)
        dtype = check_dtype(dtype)
        rng = as_rng(seed)
        self.W0 = np.zeros((self.n, 1), dtype=dtype)
        self.W = rng.normal(0, np.sqrt(1 / self.m), (self.m, self.n)).astype(dtype, copy=False)

    @classmethod
    def from_arrays(cls, W, W0):
        """A Linear layer holding copies of ``W`` and ``W0``, drawing nothing at random."""
        self = cls.__new__(cls)
        self.m, self.n = W.shape
        self.W, self.W0 = np.array(W), np.array(W0)
        return self

    @property
    def dtype(self):
        """The floating-point type of the parameters."""
        return self.W.dtype

    def parameters(self):
        """``[W, W0]``: the arrays training updates in place."""
        return [self.W, self.W0]

    def gradients(self):
        """``[dLdW, dLdW0]`` from the last backward (summed over its batch)."""
        self.ensure_gradient_buffers()
        return [self.dLdW, self.dLdW0]

    def forward(self, A):
        """Return ``W.T @ A + W0`` for ``A`` of shape (m, batch), remembering ``A``."""
        self.check_parameters()
        return self.step_forward(_check_batch(A, "A", self.m, self.W.dtype))

    def check_parameters(self, dtype=None):
        """Check ``W`` and ``W0``, which users may assign, before any kernel reads
        them: shapes (m, n) and (n, 1), finite real numbers, writable (training
        updates them in place). They are converted to ``dtype`` (a model's), or
        else ``W0`` to ``W``'s floating type; a converted array is a new,
        writable one. Raises TypeError or ValueError naming the attribute."""
        for name, shape in (("W", (self.m, self.n)), ("W0", (self.n, 1))):
            value = getattr(self, name, None)
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} of {self!r} must hold real numbers; "
                                f"got {type(value).__name__} of dtype {arr.dtype}")
            if arr.shape != shape:
                raise ValueError(f"{name} of {self!r} must have shape {shape}; got {arr.shape}")
            if dtype is None:
                dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
            if arr is not value or arr.dtype != dtype:
                arr = arr.astype(dtype)
                setattr(self, name, arr)
            elif not arr.flags.writeable:
                raise ValueError(f"{name} of {self!r} is a read-only array; training updates it "
                                 f"in place: assign a writable copy ({name}.copy())")
            if not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
                raise ValueError(f"{name} of {self!r} holds non-finite values (NaN or inf): "
                                 "training diverged, or they were assigned so; assign finite "
                                 "weights before training or predicting")

    def backward(self, dLdZ):
        """Store ``dLdW`` and ``dLdW0`` (summed over the batch) and return ``W @ dLdZ``."""
        A = getattr(self, "A", None)
        if A is None:
            raise RuntimeError("Linear.backward called before forward")
        self.check_parameters()
        dLdZ = _check_batch(dLdZ, "dLdZ", self.n, self.W.dtype)
        if dLdZ.shape[1] != A.shape[1]:
            raise ValueError(
                f"dLdZ must have {A.shape[1]} columns, the batch of the last forward; "
                f"got shape {dLdZ.shape}"
            )
        self.ensure_gradient_buffers()
        return self.step_backward(dLdZ)

    # The unchecked steps, for training loops that checked their data once.

    def step_forward(self, A):
        """:meth:`forward` without checks, for loops that checked their data once."""
        self.A = A
        return self._ops.linear_forward(self.W, self.W0, A)

    def step_backward(self, dLdZ, input_grad=True):
        """:meth:`backward` without checks; ``input_grad=False`` skips the input
        gradient (the first layer's input is data) and returns None."""
        return self._ops.linear_backward(self.W, self.A, dLdZ, self.dLdW, self.dLdW0, input_grad)

    def ensure_gradient_buffers(self):
        """Make ``dLdW`` and ``dLdW0`` writable arrays of the parameters' shape and dtype."""
        for name, shape in (("dLdW", self.W.shape), ("dLdW0", self.W0.shape)):
            buf = getattr(self, name, None)
            ok = (
                isinstance(buf, np.ndarray)
                and buf.shape == shape
                and buf.dtype == self.W.dtype
                and buf.flags.writeable
            )
            if not ok:
                setattr(self, name, np.zeros(shape, dtype=self.W.dtype))

    def sgd_step(self, lrate):
        """Update in place: ``W -= lrate * dLdW`` and ``W0 -= lrate * dLdW0``."""
        if getattr(self, "dLdW", None) is None:
            raise RuntimeError("Linear.sgd_step called before backward")
        self.check_parameters()
        self.ensure_gradient_buffers()  # (zeros if W was replaced since backward)
        self._ops.linear_update(self.W, self.W0, self.dLdW, self.dLdW0, lrate)

    def __repr__(self):
        return f"Linear({self.m}, {self.n})"


class _Activation(Layer):
    """An elementwise activation: ``A = f(Z)``, and ``dLdZ = f'(Z) * dLdA``."""

    _forward_fn = _backward_fn = None  # names of the engine functions
    code = None  # the kernels' activation code (fastmlp.kernels.codes)

    def forward(self, Z):
        """Return the activation of ``Z`` (features, batch), remembering it as ``A``."""
        return self.step_forward(as_float(Z, "Z"))

    def backward(self, dLdA):
        """Return the gradient with respect to the input, given ``dLdA``."""
        A = getattr(self, "A", None)
        if A is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        dLdA = as_float(dLdA, "dLdA", A.dtype)
        if dLdA.shape != A.shape:
            raise ValueError(f"dLdA must have shape {A.shape}, like A; got {dLdA.shape}")
        return self.step_backward(dLdA)

    def step_forward(self, Z):
        """:meth:`forward` without checks, for loops that checked their data once."""
        self.A = getattr(self._ops, self._forward_fn)(Z)
        return self.A

    def step_backward(self, dLdA):
        """:meth:`backward` without checks."""
        return getattr(self._ops, self._backward_fn)(self.A, dLdA)


class ReLU(_Activation):
    """Rectified linear unit: ``A = max(Z, 0)``."""

    _forward_fn, _backward_fn = "relu_forward", "relu_backward"
    code = codes.RELU


class Tanh(_Activation):
    """Hyperbolic tangent: ``A = tanh(Z)``."""

    _forward_fn, _backward_fn = "tanh_forward", "tanh_backward"
    code = codes.TANH


class Sigmoid(_Activation):
    """Logistic function: ``A = 1 / (1 + exp(-Z))``, computed without overflow."""

    _forward_fn, _backward_fn = "sigmoid_forward", "sigmoid_backward"
    code = codes.SIGMOID


class SoftMax(_Activation):
    """Softmax over each column (max-shifted, so large inputs do not overflow).

    ``backward`` applies the softmax Jacobian to ``dLdA`` without forming it.
    When a SoftMax output feeds an :class:`~fastmlp.NLL` loss,
    :meth:`Sequential.sgd <fastmlp.Sequential.sgd>` skips both and uses the
    combined gradient ``Ypred - Y``.
    """

    _forward_fn, _backward_fn = "softmax_forward", "softmax_backward"
    code = codes.SOFTMAX

    def class_fun(self, Ypred):
        """Return the index of the largest entry of each column of ``Ypred``."""
        return np.argmax(Ypred, axis=0)


#: The built-in activations, and all built-in layers. Exact instances of these
#: (not subclasses, which may override methods) run on the fast paths.
ACTIVATIONS = (ReLU, Tanh, Sigmoid, SoftMax)
BUILTIN = (Linear, *ACTIVATIONS)

#: The one table of activations by name: the command line's names and
#: scikit-learn's ("logistic"); None is no activation.
ACTIVATION_NAMES = {"identity": None, "relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid,
                    "logistic": Sigmoid}
