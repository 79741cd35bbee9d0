"""The integer codes the kernels take for activations, losses and optimizers.

Plain constants, no Numba import: the Python side (``fastmlp.layers``,
``fastmlp.losses``, ``fastmlp.optimizers``) reads them to describe a network
and its optimizer to the kernels.
"""

#: Activation after a Linear layer.
IDENTITY, RELU, TANH, SIGMOID, SOFTMAX = 0, 1, 2, 3, 4

#: Loss at the head: NLL after a SoftMax (combined gradient ``Ypred - Y``), or
#: the summed squared error after any activation.
NLL, MSE = 0, 1

#: Update rule of the fused mini-batch kernel (see ``kernels.update``).
SGD, MOMENTUM, NESTEROV = 0, 1, 2

#: Layout of the optimizer's hyper-parameter vector ``hyper`` (float64): the
#: learning rate, the momentum, the weight decay added to the mean gradient,
#: scikit-learn's ``alpha`` (added to the summed gradient, so divided by the
#: batch), and a factor on the loss's gradient.
H_LR, H_MOMENTUM, H_DECAY, H_ALPHA, H_GRAD_SCALE = 0, 1, 2, 3, 4
N_HYPER = 5
