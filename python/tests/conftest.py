"""Shared fixtures: a small, fast classifier and a small three-class problem."""
import numpy as np
import pytest
from sklearn.datasets import make_classification


@pytest.fixture
def blobs():
    X, y = make_classification(n_samples=600, n_features=12, n_informative=8, n_classes=3,
                               random_state=0)
    return X, y
