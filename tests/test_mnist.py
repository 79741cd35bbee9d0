"""Accuracy on the real MNIST (skipped where the files are absent)."""

import numpy as np
from conftest import MNIST_DIR, needs_mnist

from fastmlp import NLL, Linear, ReLU, Sequential, SoftMax
from fastmlp.datasets import load_mnist


@needs_mnist
def test_relu_network_reaches_97_percent_in_10_epochs():
    X, Y = load_mnist(MNIST_DIR, "train")
    Xt, Yt = load_mnist(MNIST_DIR, "test")
    np.random.seed(0)
    nn = Sequential([Linear(784, 100), ReLU(), Linear(100, 10), SoftMax()], NLL(),
                    dtype=np.float32)
    # The run stops at the first epoch at 97% (the callback only ends training:
    # up to there the trajectory is the 10-epoch run's); if no epoch gets there,
    # all 10 run and the test fails.
    h = nn.fit(X, Y, epochs=10, batch_size=32, lrate=0.01, momentum=0.9,
               validation_data=(Xt, Yt), early_stopping=True, monitor="val_accuracy",
               patience=10, seed=0, verbose=0,
               callbacks=[lambda model, history: history.val_accuracy[-1] >= 0.97])
    _, acc = nn.evaluate(Xt, Yt)
    assert h.epochs <= 10
    assert max(h.val_accuracy) >= 0.97
    assert acc >= 0.97
