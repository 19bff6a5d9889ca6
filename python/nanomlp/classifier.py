"""nanomlp.MLPClassifier: the parameters, attributes and methods of
sklearn.neural_network.MLPClassifier (solvers 'sgd' and 'adam'), trained by nanomlp's C++ step.

Differences from scikit-learn, by design of the C++ library:
- activation: 'relu', 'tanh' and nanomlp's 'leaky_relu', 'gelu'; 'logistic' and 'identity' are
  not layers of nanomlp and raise ValueError.
- alpha: scikit-learn adds alpha * W / batch_size to the gradient of each weight matrix; nanomlp
  adds weight_decay * w to every parameter's, biases included, with weight_decay =
  alpha / batch_size.
- Adam follows torch.optim.Adam (eps added to the bias-corrected root), SGD momentum
  torch.optim.SGD; both equal scikit-learn's at a constant learning rate.
- init: 'xavier' (the default) draws weights from N(0, 2 / (fan_in + fan_out)), the variance
  of scikit-learn's Glorot-uniform initialisation; biases start at zero (scikit-learn draws
  them too). 'he' (N(0, 2 / fan_in)) or 'auto' (the CLI's choice: He for ReLU) are nanomlp's.
- at most 256 classes (the C++ step reads uint8 labels).
- uint8 features are read as pixel / 255 (as the CLI reads images); every other dtype as float32.
- n_threads (default: every core) sets nanomlp's thread pool for the whole process; nanomlp
  keeps OpenBLAS single-threaded, which NumPy sees too where it shares that OpenBLAS
  (threadpoolctl.threadpool_limits gives NumPy its threads back).
"""
import json
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from . import _nanomlp

_DTYPES = [np.float32, np.uint8]
_MAX_CLASSES = 256


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier on nanomlp's C++ library (see the module's notes)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, n_threads=None,
                 batch_norm=False, dropout=0.0, schedule=None, label_smoothing=0.0, init="xavier"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.n_threads = n_threads
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.schedule = schedule
        self.label_smoothing = label_smoothing
        self.init = init

    # ---------------------------------------------------------------- checks of the parameters
    def _check_params(self):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        if any(int(h) != h or h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}.")
        if self.activation not in _nanomlp.activation_names():
            raise ValueError(f"activation '{self.activation}' is not supported by nanomlp: "
                             f"expected one of {', '.join(_nanomlp.activation_names())}")
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"solver '{self.solver}' is not supported by nanomlp: expected "
                             "'sgd' or 'adam'")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"learning_rate '{self.learning_rate}': expected 'constant', "
                             "'invscaling' or 'adaptive'")
        if self.schedule is not None and self.schedule not in _nanomlp.schedule_names():
            raise ValueError(f"schedule '{self.schedule}': expected None or one of "
                             f"{', '.join(_nanomlp.schedule_names())}")
        if self.init not in ("auto", "he", "xavier"):
            raise ValueError(f"init '{self.init}': expected 'auto', 'he' or 'xavier'")
        if not self.learning_rate_init > 0:
            raise ValueError(f"learning_rate_init must be > 0, got {self.learning_rate_init}.")
        if self.max_iter <= 0 or self.alpha < 0 or not 0 <= self.momentum <= 1:
            raise ValueError("max_iter must be > 0, alpha >= 0 and momentum in [0, 1]")
        if self.early_stopping and not 0 < self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in (0, 1) with early_stopping")
        return [int(h) for h in hidden]

    def _batch(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                          "to be clipped")
        return int(np.clip(self.batch_size, 1, n))

    # ---------------------------------------------------------------- the network
    def _new_model(self, hidden, n_features, uint8, rng):
        n_classes = len(self.classes_)
        dataset = "mnist" if (n_features, n_classes) == (784, 10) else "custom"
        # Float features reach the network as they are: the file records x = pixel / 255 /
        # (1/255), which the CLI reads the same way.
        norm_std = 1.0 if uint8 else 1.0 / 255.0
        self._model = _nanomlp.Model(n_features, hidden, n_classes, self.activation,
                                     bool(self.batch_norm), float(self.dropout), norm_std,
                                     dataset, int(rng.randint(np.iinfo(np.int32).max)),
                                     self.init)
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        # As scikit-learn: best_loss_ without early stopping, the validation scores with it.
        self.best_loss_ = None if self.early_stopping else np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._lr = float(self.learning_rate_init)

    def _set_optimizer(self, batch):
        sgd = self.solver == "sgd"
        self._model.set_optimizer(
            self.solver, float(self.momentum) if sgd else 0.0,
            bool(self.nesterovs_momentum and sgd and self.momentum > 0), float(self.beta_1),
            float(self.beta_2), float(self.epsilon), float(self.alpha) / batch)

    def _encode(self, y, classes=None):
        check_classification_targets(y)
        if classes is None:
            classes = np.unique(y)
        if len(classes) > _MAX_CLASSES:
            raise ValueError(f"nanomlp supports at most {_MAX_CLASSES} classes, got "
                             f"{len(classes)}")
        return classes, y

    def _labels(self, y):
        codes = np.searchsorted(self.classes_, y)
        codes = np.clip(codes, 0, len(self.classes_) - 1)
        if not np.all(self.classes_[codes] == y):
            raise ValueError(f"y contains classes not in classes_ {self.classes_}")
        return np.ascontiguousarray(codes, dtype=np.uint8)

    # ---------------------------------------------------------------- training
    def fit(self, X, y):
        """Trains for up to max_iter epochs (restarting unless warm_start)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); the first call needs classes unless fit came before."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        first = not hasattr(self, "_model")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if first:
            self.classes_ = np.unique(classes)
        return self._fit(X, y, incremental=True)

    def _fit(self, X, y, incremental):
        hidden = self._check_params()
        X, y = self._validate_data(X, y, dtype=_DTYPES, order="C", multi_output=False,
                                   reset=not incremental or not hasattr(self, "_model"))
        # None: every core, as the CLI's --threads 0.
        _nanomlp.set_num_threads(0 if self.n_threads is None else int(self.n_threads))
        rng = check_random_state(self.random_state)
        fresh = not hasattr(self, "_model") or not (self.warm_start or incremental)
        if fresh:
            classes = self.classes_ if incremental else None
            self.classes_, y = self._encode(y, classes)
            if len(self.classes_) < 2:
                raise ValueError("The number of classes has to be greater than one; got "
                                 f"{len(self.classes_)} class")
            self._new_model(hidden, X.shape[1], X.dtype == np.uint8, rng)
        else:
            check_classification_targets(y)
        codes = self._labels(y)
        # As scikit-learn: fit starts a new optimizer (warm_start too), partial_fit keeps its
        # state; a model from a pickle, a file or early stopping's restore has none.
        if not incremental or not self._model.has_optimizer:
            self._set_optimizer(self._batch(X.shape[0]))
        if incremental:
            self._model.prepare_images(X, codes, self._batch(X.shape[0]))
            self._epoch(X, codes, rng, 0, 1)
        else:
            self._fit_epochs(X, codes, rng)
        self._refresh_attributes()
        return self

    def _fit_epochs(self, X, codes, rng):
        X_val = y_val = None
        if self.early_stopping:
            stratify = codes if len(np.unique(codes)) > 1 else None
            X, X_val, codes, y_val = train_test_split(
                X, codes, random_state=rng, test_size=self.validation_fraction,
                stratify=stratify)
            X, X_val = np.ascontiguousarray(X), np.ascontiguousarray(X_val)
        self._model.prepare_images(X, codes, self._batch(X.shape[0]))
        best = None
        for it in range(self.max_iter):
            self._epoch(X, codes, rng, it, self.max_iter)
            if X_val is not None:
                score = float(np.mean(self._predict_codes(X_val) == y_val))
                self.validation_scores_.append(score)
                if score > self.best_validation_score_:
                    best = self._model.to_bytes()
            if self._converged():
                break
        else:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning)
        if best is not None:
            # As scikit-learn: the network of the best validation score is the one kept.
            self._model = _nanomlp.Model.from_bytes(best, "early stopping")

    def _epoch(self, X, codes, rng, it, total):
        n = X.shape[0]
        batch = self._batch(n)
        order = (rng.permutation(n) if self.shuffle else np.arange(n)).astype(np.uint32)
        steps = -(-n // batch)
        if self.schedule is None:
            # scikit-learn's rates change between epochs only: a constant one per epoch.
            lr = self._lr if self.solver == "sgd" else self.learning_rate_init
            rate = ("constant", float(lr), steps, 0)
        else:
            rate = (self.schedule, float(self.learning_rate_init), total * steps, it * steps)
        loss, _ = self._model.fit_epoch(X, codes, order, batch, *rate,
                                        float(self.label_smoothing))
        if not np.isfinite(loss):
            raise ValueError(f"nanomlp: the loss diverged ({loss}) at epoch {it + 1}; lower "
                             "learning_rate_init")
        self.t_ += n
        self.n_iter_ = getattr(self, "n_iter_", 0) + 1
        l2 = sum(float(np.sum(W.astype(np.float64) ** 2)) for W, _ in self._model.linear_params())
        self.loss_ = loss / n + 0.5 * self.alpha * l2 * steps / n
        self.loss_curve_.append(self.loss_)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

    def _converged(self):
        # scikit-learn's _update_no_improvement_count, then its stopping rule.
        if self.early_stopping:
            last, best = self.validation_scores_[-1], self.best_validation_score_
            worse = last < best + self.tol
            self.best_validation_score_ = max(best, last)
        else:
            last = self.loss_curve_[-1]
            worse = last > self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, last)
        self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.solver == "sgd" and self.learning_rate == "adaptive" and self._lr > 1e-6:
            self._lr /= 5.0
            self._no_improvement_count = 0
            return False
        return True

    def _refresh_attributes(self):
        params = self._model.linear_params()
        self.coefs_ = [W for W, _ in params]
        self.intercepts_ = [b for _, b in params]
        self.n_layers_ = len(params) + 1
        self.n_outputs_ = len(self.classes_)
        self.out_activation_ = "softmax"
        if not hasattr(self, "n_iter_"):
            self.n_iter_ = 0

    # ---------------------------------------------------------------- prediction
    def _check_X(self, X):
        check_is_fitted(self)
        return self._validate_data(X, dtype=_DTYPES, order="C", reset=False)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of classes_."""
        X = self._check_X(X)
        return self._model.predict_proba(X).astype(np.float64)

    def predict_log_proba(self, X):
        """The log of predict_proba."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def _predict_codes(self, X):
        return np.argmax(self._model.predict_proba(X), axis=1)

    def predict(self, X):
        """The most probable class of each row."""
        X = self._check_X(X)
        return self.classes_[self._predict_codes(X)]

    # ---------------------------------------------------------------- files and pickling
    def save(self, path):
        """Writes the CLI's model file (safetensors): `nanomlp eval`, `predict`, PyTorch read it."""
        check_is_fitted(self)
        classes = json.dumps(self.classes_.tolist())
        self._model.save(str(path), {"sklearn_classes": classes})

    def __getstate__(self):
        state = self.__dict__.copy()
        if "_model" in state:
            state["_model"] = self._model.to_bytes()
        return state

    def __setstate__(self, state):
        if "_model" in state:
            state["_model"] = _nanomlp.Model.from_bytes(state["_model"], "pickle")
        self.__dict__.update(state)

    def _more_tags(self):
        return {"preserves_dtype": [np.float64]}


def load(path):
    """An MLPClassifier from a model file of the CLI or of save(): classes 0..K-1 unless the
    file is one of save()'s with its own. Features go through the file's normalisation: for a
    model the CLI trained, pixels (0..255, uint8 or float), as `nanomlp predict` reads them."""
    model, metadata = _nanomlp.Model.load(str(path))
    arch = json.loads(model.architecture_json)
    clf = MLPClassifier(hidden_layer_sizes=tuple(arch["hidden"]), activation=arch["activation"],
                        batch_norm=arch.get("batch_norm", False),
                        dropout=arch.get("dropout", 0.0))
    clf._model = model
    classes = metadata.get("sklearn_classes")
    clf.classes_ = np.array(json.loads(classes)) if classes else np.arange(arch["num_classes"])
    clf.n_features_in_ = arch["input_dim"]
    clf.t_ = 0
    clf.loss_curve_ = []
    clf._refresh_attributes()
    return clf
