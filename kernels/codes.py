"""The integer codes the kernels take for activations, losses and optimizers.

Plain constants, no Numba import: the Python side (``fastmlp.layers``,
``fastmlp.losses``, ``fastmlp.optimizers``) reads them to describe a network
and its optimizer to the kernels.
"""

#: Activation after a Linear layer.
IDENTITY, RELU, TANH, SIGMOID, SOFTMAX = 0, 1, 2, 3, 4

#: Loss at the head: NLL after a SoftMax (combined gradient ``Ypred - Y``),
#: the summed squared error after any activation, scikit-learn's binary
#: log-loss after a Sigmoid (probabilities clipped to [eps, 1 - eps] in the
#: loss, gradient ``Ypred - Y``), and scikit-learn's half Poisson deviance
#: with an exp output (the network's last activation is the identity; the
#: head exponentiates, gradient ``exp(z) - Y``).
NLL, MSE, LOGISTIC, POISSON = 0, 1, 2, 3

#: Update rule of the fused mini-batch kernel (see ``kernels.update``).
SGD, MOMENTUM, NESTEROV, ADAM = 0, 1, 2, 3

#: Layout of the optimizer's hyper-parameter vector ``hyper`` (float64): the
#: learning rate, the momentum, the weight decay added to the mean gradient,
#: scikit-learn's ``alpha`` (added to the summed gradient, so divided by the
#: batch), and a factor on the loss's gradient; then Adam's two decay rates,
#: its epsilon and its step counter ``t`` (the steps taken, this one
#: included: a kernel adds 1 before each step's updates, so the vector is
#: the counter's home between calls).
H_LR, H_MOMENTUM, H_DECAY, H_ALPHA, H_GRAD_SCALE = 0, 1, 2, 3, 4
H_BETA1, H_BETA2, H_EPSILON, H_T = 5, 6, 7, 8
N_HYPER = 9
