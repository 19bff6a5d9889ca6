"""Data sets in the IDX format, read by nanomlp's own reader (gzip or plain files)."""
import os

from . import _nanomlp


def _load(name, data_dir):
    root = data_dir if data_dir is not None else os.environ.get("NANOMLP_DATA", "data")
    (X_train, y_train), (X_test, y_test) = _nanomlp.load_dataset(str(root), name)
    return X_train, y_train, X_test, y_test


def load_mnist(data_dir=None):
    """MNIST as (X_train (60000, 784) uint8, y_train (60000,) uint8, X_test, y_test).

    data_dir is the folder that holds mnist/ (the CLI's --data; default $NANOMLP_DATA).
    """
    return _load("mnist", data_dir)


def load_fashion_mnist(data_dir=None):
    """Fashion-MNIST, as load_mnist."""
    return _load("fashion-mnist", data_dir)
