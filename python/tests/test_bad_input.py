"""Bad input raises scikit-learn's own exceptions and messages."""
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import nanomlp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def fitted(blobs):
    X, y = blobs
    return nanomlp.MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)


def test_nan_and_inf(blobs):
    X, y = blobs
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[3, 2] = bad
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            nanomlp.MLPClassifier().fit(Xb, y)


def test_wrong_feature_count_at_predict(blobs):
    clf = fitted(blobs)
    with pytest.raises(ValueError, match="X has 5 features, but MLPClassifier is expecting 12 "
                                         "features as input"):
        clf.predict(np.zeros((2, 5)))


def test_one_class_only(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="greater than one"):
        nanomlp.MLPClassifier().fit(X, np.zeros(len(X)))


def test_empty_3d_and_mismatched(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="Found array with 0 sample"):
        nanomlp.MLPClassifier().fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="Found array with dim 3"):
        nanomlp.MLPClassifier().fit(X.reshape(len(X), 3, 4), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        nanomlp.MLPClassifier().fit(X, y[:-1])


def test_continuous_target_and_unfitted(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="Unknown label type"):
        nanomlp.MLPClassifier().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(NotFittedError):
        nanomlp.MLPClassifier().predict(X)


@pytest.mark.parametrize("param", [{"activation": "logistic"}, {"activation": "identity"},
                                   {"solver": "lbfgs"}, {"hidden_layer_sizes": (0,)},
                                   {"schedule": "sometimes"}, {"learning_rate": "fast"}])
def test_unsupported_parameters(blobs, param):
    X, y = blobs
    with pytest.raises(ValueError, match="nanomlp|must be|expected"):
        nanomlp.MLPClassifier(**param).fit(X, y)
