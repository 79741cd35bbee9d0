"""fastmlp.sklearn.MLPClassifier against scikit-learn's MLPClassifier(solver="sgd"):
the same hyper-parameters and epochs on the bundled digits (80/20 split), timed
side by side; test accuracy goes to ``extra_info``."""

import warnings

import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

from fastmlp.sklearn import MLPClassifier

PARAMS = dict(solver="sgd", hidden_layer_sizes=(100,), learning_rate_init=0.01, batch_size=32,
              max_iter=100, momentum=0.9, random_state=0)


@pytest.mark.parametrize("library", ["scikit-learn", "fastmlp"])
def test_digits_fit(benchmark, library, scale):
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.2, random_state=0,
                                          stratify=y)
    params = {**PARAMS, "max_iter": max(1, int(PARAMS["max_iter"] * scale))}

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if library == "fastmlp":
                return MLPClassifier(**params).fit(Xtr, ytr)
            return SkMLPClassifier(**params).fit(Xtr, ytr)

    fit()  # warm-up (compiles fastmlp's kernels)
    benchmark.group = "scikit-learn API: digits, MLPClassifier (100,), 100 epochs"
    clf = benchmark.pedantic(fit, rounds=3, iterations=1)
    benchmark.extra_info.update(library=library, accuracy=clf.score(Xte, yte),
                                epochs=clf.n_iter_)
