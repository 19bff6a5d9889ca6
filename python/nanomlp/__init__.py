"""nanomlp for Python: a scikit-learn MLPClassifier trained by nanomlp's C++ library.

    import nanomlp
    clf = nanomlp.MLPClassifier(hidden_layer_sizes=(128,), max_iter=2).fit(X, y)
    clf.save("model.safetensors")          # the CLI's model file: `nanomlp eval` reads it
    clf = nanomlp.load("model.safetensors")
"""
from . import datasets
from ._nanomlp import activation_names, num_threads, schedule_names, set_num_threads
from .classifier import MLPClassifier, load

__all__ = ["MLPClassifier", "load", "datasets", "set_num_threads", "num_threads",
           "activation_names", "schedule_names"]
__version__ = "0.1.0"
