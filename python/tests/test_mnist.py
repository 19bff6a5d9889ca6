"""784-128-10 on MNIST through the Python package, read by nanomlp's IDX reader."""
import os

import numpy as np
import pytest

import nanomlp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DATA = os.environ.get("NANOMLP_DATA", "data")


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "mnist")),
                    reason="no MNIST under NANOMLP_DATA")
def test_two_epochs_reach_95_percent():
    X, y, X_test, y_test = nanomlp.datasets.load_mnist(DATA)
    assert X.shape == (60000, 784) and X.dtype == np.uint8 and X_test.shape == (10000, 784)
    assert y.shape == (60000,) and set(np.unique(y)) == set(range(10))
    clf = nanomlp.MLPClassifier(hidden_layer_sizes=(128,), max_iter=2, random_state=0)
    clf.fit(X, y)
    assert clf.score(X_test, y_test) >= 0.95


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "mnist")),
                    reason="no MNIST under NANOMLP_DATA")
def test_fast_paths_train_the_same_network_as_the_plain_step():
    # uint8 (N, 784) with ten classes trains through fast/plan.hpp's paths (sparse first layer,
    # split step); the same pixels as float32 / 255 through the plain step in the binding.
    X, y, X_test, y_test = nanomlp.datasets.load_mnist(DATA)
    X, y = X[:6000], y[:6000]
    settings = dict(hidden_layer_sizes=(64,), max_iter=1, random_state=0, shuffle=False)
    fast = nanomlp.MLPClassifier(**settings).fit(X, y)
    plain = nanomlp.MLPClassifier(**settings).fit((X / np.float32(255)).astype(np.float32), y)
    np.testing.assert_allclose(fast.predict_proba(X_test[:500]),
                               plain.predict_proba(X_test[:500] / np.float32(255)), atol=1e-3)
    np.testing.assert_allclose(fast.loss_, plain.loss_, rtol=1e-4)
