"""fastmlp.sklearn beyond scikit-learn's generic checks: accuracy against
scikit-learn's own MLP, pipelines, parallel workers, partial_fit, early stopping.
(Loss curves against scikit-learn's: tests/test_sklearn_solvers.py.)"""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmlp.sklearn import MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.2, random_state=0, stratify=y)


def test_digits_accuracy_matches_scikit_learn(digits):
    """Same hyper-parameters and epochs as scikit-learn's SGD solver: the same
    model. (Fit times are compared in bench/, not here.)"""
    Xtr, Xte, ytr, yte = digits
    kw = dict(hidden_layer_sizes=(100,), learning_rate_init=0.01, batch_size=32, max_iter=30,
              momentum=0.9, random_state=0, solver="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPClassifier(**kw).fit(Xtr, ytr)
        theirs = SkMLPClassifier(**kw).fit(Xtr, ytr)
    assert ours.n_iter_ == theirs.n_iter_
    assert abs(ours.score(Xte, yte) - theirs.score(Xte, yte)) <= 0.005
    assert ours.score(Xte, yte) > 0.95
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)


def test_fitted_attributes(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(30, 20), max_iter=5, random_state=0).fit(Xtr, ytr)
    assert [c.shape for c in clf.coefs_] == [(64, 30), (30, 20), (20, 10)]
    assert [b.shape for b in clf.intercepts_] == [(30,), (20,), (10,)]
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5 and clf.best_loss_ > 0
    proba = clf.predict_proba(Xtr[:7])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (clf.predict(Xtr[:7]) == clf.classes_[proba.argmax(axis=1)]).all()


def test_string_labels_and_float32(digits):
    Xtr, Xte, ytr, yte = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    clf = MLPClassifier(max_iter=30, learning_rate_init=0.05, dtype=np.float32, solver="sgd",
                        random_state=0).fit(Xtr, names[ytr])
    assert clf.coefs_[0].dtype == np.float32
    assert clf.predict(Xte).dtype == names.dtype
    assert clf.score(Xte, names[yte]) > 0.9


def test_pipeline_grid_search_and_parallel_workers(digits):
    Xtr, _, ytr, _ = digits
    fast = dict(max_iter=20, learning_rate_init=0.05, batch_size=32, random_state=0,
                solver="sgd")
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**fast))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(20,), (40,)]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(Xtr[:400], ytr[:400])
        scores = cross_val_score(MLPClassifier(**fast), Xtr[:400],
                                 ytr[:400], cv=2, n_jobs=2)  # pickled to worker processes
    assert grid.best_score_ > 0.8 and scores.min() > 0.8


def test_pickle_round_trip_keeps_training(digits):
    Xtr, Xte, ytr, _ = digits
    clf = MLPClassifier(max_iter=3, random_state=0).fit(Xtr, ytr)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(Xte), clf.predict_proba(Xte))
    back.partial_fit(Xtr, ytr)
    assert back.n_iter_ == 1 and len(back.loss_curve_) == 4 and back.t_ == 4 * len(Xtr)
    assert clone(clf).get_params() == clf.get_params()


def test_partial_fit(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(learning_rate_init=0.05, random_state=0, solver="sgd")
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(Xtr, ytr)
    for _ in range(5):
        clf.partial_fit(Xtr[:500], ytr[:500], classes=np.arange(10))
    # as scikit-learn: n_iter_ counts the last call's epochs, t_ all samples seen
    assert clf.n_iter_ == 1 and clf.t_ == 2500 and len(clf.loss_curve_) == 5
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="X has 63 features"):
        clf.partial_fit(Xtr[:, 1:], ytr)
    with pytest.raises(ValueError, match=r"`y` has classes not in `self.classes_`"):
        clf.partial_fit(Xtr[:2], [1, 12])
    with pytest.raises(ValueError, match=r"classes=.* is not the same as on last call"):
        clf.partial_fit(Xtr[:500], ytr[:500], classes=np.arange(11))  # as scikit-learn
    clf.partial_fit(Xtr[ytr < 3], ytr[ytr < 3])  # a batch may hold some of the classes


def test_early_stopping_keeps_the_best_validation_score(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(early_stopping=True, n_iter_no_change=3, max_iter=200, solver="sgd",
                        learning_rate_init=0.1, random_state=0).fit(Xtr, ytr)
    assert clf.best_loss_ is None and clf.n_iter_ < 200
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_training_loss_stopping_and_convergence_warning(digits):
    Xtr, _, ytr, _ = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        MLPClassifier(max_iter=2, random_state=0).fit(Xtr, ytr)
    kw = dict(tol=10.0, n_iter_no_change=2, max_iter=100, random_state=0, solver="sgd")
    clf = MLPClassifier(**kw).fit(Xtr, ytr)
    # only the first epoch improves by tol; stop when n_iter_no_change are exceeded
    assert clf.n_iter_ == 4 == SkMLPClassifier(**kw).fit(Xtr, ytr).n_iter_


def test_adaptive_learning_rate(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(learning_rate="adaptive", tol=10.0, n_iter_no_change=1, max_iter=40,
                        random_state=0, solver="sgd").fit(Xtr[:200], ytr[:200])
    assert clf._optimizer.learning_rate < clf.learning_rate_init


def test_warm_start_continues(digits):
    Xtr, _, ytr, _ = digits
    clf = MLPClassifier(max_iter=3, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(Xtr, ytr)
        first = clf.coefs_[0].copy()
        clf.fit(Xtr, ytr)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 6
    assert not np.array_equal(first, clf.coefs_[0])
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same"):
        clf.fit(Xtr[ytr < 9], ytr[ytr < 9])  # as scikit-learn: a subset of the classes too
    clf.set_params(dtype=np.float32)
    with pytest.raises(ValueError, match="warm_start and partial_fit continue the fitted model"):
        clf.fit(Xtr, ytr)
    clf.set_params(dtype=np.float64, hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(7,\) differs"):
        clf.fit(Xtr, ytr)


def test_errors_as_scikit_learn_raises_them(digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPClassifier(early_stopping=True).partial_fit(Xtr, ytr, classes=np.arange(10))
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.1).fit(Xtr[:10], ytr[:10])
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        MLPRegressor(learning_rate_init=10.0, max_iter=50, n_iter_no_change=100,
                     random_state=0, solver="sgd").fit(Xtr * 1e3, ytr * 1e6)
    with pytest.warns(UserWarning, match="larger than sample size. It is going to be clipped"):
        MLPClassifier(batch_size=1000, max_iter=1).fit(Xtr[:50], ytr[:50])


def test_regressor_multi_output():
    X, y = make_regression(n_samples=300, n_features=8, n_targets=3, noise=0.1, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = StandardScaler().fit_transform(y)
    reg = MLPRegressor(hidden_layer_sizes=(50,), learning_rate_init=0.01, max_iter=300,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    assert reg.predict(X).shape == (300, 3) and reg.score(X, y) > 0.95
    one = MLPRegressor(max_iter=50, learning_rate_init=0.01, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one.fit(X, y[:, 0])
    assert one.predict(X).shape == (300,) and one.score(X, y[:, 0]) > 0.9


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_layer_sizes": (10, 0)}, r"hidden_layer_sizes must be > 0, got \[10, 0\]"),
        ({"activation": "softplus"}, "The 'activation' parameter of MLPClassifier must be"),
        ({"learning_rate": "cosine"}, "The 'learning_rate' parameter"),
        ({"solver": "newton"}, "The 'solver' parameter"),
        ({"momentum": 1.5}, "The 'momentum' parameter"),
        ({"alpha": -1.0}, "The 'alpha' parameter"),
        ({"learning_rate_init": 0.0}, "The 'learning_rate_init' parameter"),
        ({"batch_size": 0}, "The 'batch_size' parameter"),
        ({"max_iter": 0}, "The 'max_iter' parameter"),
        ({"validation_fraction": 1.0}, "The 'validation_fraction' parameter"),
        ({"engine": "jax"}, "The 'engine' parameter"),
        ({"dtype": np.int32}, "dtype must be None, float32 or float64"),
        ({"dtype": "not-a-dtype"}, "dtype must be None, float32 or float64"),
    ],
)
def test_bad_parameters(params, match, digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(Xtr, ytr)
