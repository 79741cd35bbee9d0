"""Sweeps on a Dask cluster: a GridSearchCV over fastmlp's classifier run on a
two-worker ``distributed.LocalCluster`` (worker processes) through joblib's
dask backend gives the same ``cv_results_`` as the same search run serially."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from fastmlp.sklearn import MLPClassifier

distributed = pytest.importorskip("distributed")

GRID = {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4, 1e-2], "solver": ["adam", "sgd"]}


def search():
    X, y = load_digits(return_X_y=True)
    est = MLPClassifier(max_iter=5, random_state=0, learning_rate_init=0.01)
    return GridSearchCV(est, GRID, cv=3), X[:600] / 16.0, y[:600]


def test_grid_search_on_a_local_cluster_equals_the_serial_search():
    from joblib import parallel_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial, X, y = search()
        serial.fit(X, y)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster), parallel_config(backend="dask"):
            remote, X, y = search()
            remote.fit(X, y)
    for key in ("mean_test_score", "std_test_score", "rank_test_score",
                *(f"split{i}_test_score" for i in range(3))):
        np.testing.assert_array_equal(remote.cv_results_[key], serial.cv_results_[key])
    assert remote.cv_results_["params"] == serial.cv_results_["params"]
    assert remote.best_params_ == serial.best_params_
