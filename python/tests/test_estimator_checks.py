"""scikit-learn's own estimator checks (sklearn.utils.estimator_checks, version 1.2), one test
each."""
import warnings

import pytest
from sklearn.utils.estimator_checks import check_estimator

import nanomlp


def _small():
    return nanomlp.MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, random_state=0,
                                 learning_rate_init=0.01)


def _checks():
    for estimator, check in check_estimator(_small(), generate_only=True):
        name = getattr(check, "func", check).__name__
        yield pytest.param(estimator, check, id=name)


@pytest.mark.parametrize("estimator, check", _checks())
def test_sklearn_check(estimator, check):
    # check_classifier_data_not_an_array raises SkipTest without pandas (not installed here);
    # pytest reports that as a skip with scikit-learn's reason.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)
