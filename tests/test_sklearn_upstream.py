"""scikit-learn's own test module for its MLPs, run against fastmlp's estimators.

``sklearn/neural_network/tests/test_mlp.py`` is loaded from the installed
scikit-learn when the tests run (never copied here) as a fresh module whose
``MLPClassifier`` and ``MLPRegressor`` are fastmlp's, and every test that uses
only public API is collected from it. The tests below in ``PRIVATE`` read or
set scikit-learn's private attributes or methods and cannot apply.
"""

import importlib.util
import os

import pytest
import sklearn

from fastmlp.sklearn import MLPClassifier, MLPRegressor

#: Tests of test_mlp.py that use scikit-learn's private API, and why each cannot apply.
PRIVATE = {
    "test_gradient": "calls the private MLPClassifier._loss_grad_lbfgs with scikit-learn's "
                     "lists of activations, deltas and gradients (fastmlp's gradient is "
                     "checked against finite differences in tests/test_sklearn_solvers.py)",
}

_PATH = os.path.join(os.path.dirname(sklearn.__file__), "neural_network", "tests",
                     "test_mlp.py")


def _load():
    spec = importlib.util.spec_from_file_location("_sklearn_test_mlp_on_fastmlp", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.MLPClassifier, module.MLPRegressor = MLPClassifier, MLPRegressor
    return module


_upstream = _load()


@pytest.fixture
def global_random_seed():
    """scikit-learn's fixture, at its default seed."""
    return int(os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "42").split("-")[0])


#: Upstream tests of many fits (3,000 epochs; 200 partial_fit calls): marked slow.
SLOW = ("test_n_iter_no_change_inf", "test_partial_fit_classification")

for _name in dir(_upstream):
    if _name.startswith("test_") and _name not in PRIVATE:
        _test = getattr(_upstream, _name)  # (a function of this fresh copy: marks stay here)
        globals()[_name] = pytest.mark.slow(_test) if _name in SLOW else _test


def test_every_upstream_test_is_run_or_listed():
    names = {n for n in dir(_upstream) if n.startswith("test_")}
    assert set(PRIVATE) <= names
    assert len(names) >= 40
