"""MLPClassifier with scikit-learn's tools, pickling, model files, labels and parameters."""
import os
import json
import pickle
import subprocess
import threading
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import nanomlp

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def small(**kw):
    params = dict(hidden_layer_sizes=(32,), max_iter=60, random_state=0,
                  learning_rate_init=0.01)
    params.update(kw)
    return nanomlp.MLPClassifier(**params)


def test_fits_and_exposes_sklearns_attributes(blobs):
    X, y = blobs
    clf = small(hidden_layer_sizes=(32, 16)).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert [W.shape for W in clf.coefs_] == [(12, 32), (32, 16), (16, 3)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (16,), (3,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    assert clf.n_features_in_ == 12 and clf.n_iter_ == len(clf.loss_curve_) <= 60
    assert clf.t_ == clf.n_iter_ * len(X)
    assert clf.loss_ == clf.loss_curve_[-1] and clf.loss_curve_[-1] < clf.loss_curve_[0]
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])


def test_coefs_are_the_network(blobs):
    # The forward pass of coefs_/intercepts_ in NumPy gives predict_proba.
    X, y = blobs
    clf = small().fit(X, y)
    h = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    z = h @ clf.coefs_[1] + clf.intercepts_[1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), p, atol=1e-4)


def test_string_labels(blobs):
    X, y = blobs
    names = np.array(["cat", "dog", "eel"])
    clf = small().fit(X, names[y])
    np.testing.assert_array_equal(clf.classes_, names)
    assert set(clf.predict(X)) <= set(names)
    assert clf.score(X, names[y]) > 0.9


def test_uint8_and_float_features_agree():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(300, 20)).astype(np.uint8)
    y = (X[:, 0] > 127).astype(int)
    clf = small().fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), clf.predict_proba(X.astype(np.float64)),
                               atol=1e-6)


def test_pipeline_grid_search_and_cross_val(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), small(max_iter=30))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.8
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)]}, cv=3)
    grid.fit(X, y)
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] in [(8,), (32,)]
    assert grid.score(X, y) > 0.8


def test_pickle_round_trip(blobs):
    X, y = blobs
    clf = small().fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.get_params() == clf.get_params()


def test_save_load_round_trip(blobs, tmp_path):
    X, y = blobs
    names = np.array(["a", "b", "c"])
    clf = small().fit(X, names[y])
    path = tmp_path / "model.safetensors"
    clf.save(path)
    back = nanomlp.load(path)
    np.testing.assert_array_equal(back.classes_, names)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.hidden_layer_sizes == (32,) and back.n_features_in_ == 12


@pytest.mark.parametrize("solver,kw", [("sgd", {}), ("sgd", {"learning_rate": "invscaling", "learning_rate_init": 0.5}),
                                       ("sgd", {"learning_rate": "adaptive"}),
                                       ("adam", {"schedule": "cosine"}),
                                       ("adam", {"early_stopping": True}),
                                       ("adam", {"batch_norm": True, "dropout": 0.1}),
                                       ("adam", {"activation": "tanh"}),
                                       ("adam", {"label_smoothing": 0.1}),
                                       ("adam", {"init": "he"})])
def test_solvers_and_options_learn(blobs, solver, kw):
    X, y = blobs
    clf = small(solver=solver, **kw).fit(X, y)
    # Early stopping ends after about 15 epochs on this small set (n_iter_no_change=10).
    assert clf.score(X, y) > (0.8 if kw.get("early_stopping") else 0.85)


def test_early_stopping_records_validation_scores(blobs):
    X, y = blobs
    clf = small(early_stopping=True, max_iter=200).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    plain = small().fit(X, y)
    assert plain.best_loss_ == min(plain.loss_curve_) and plain.validation_scores_ is None


def test_same_seed_same_model(blobs):
    X, y = blobs
    a = small().fit(X, y).predict_proba(X)
    b = small().fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_warm_start_and_partial_fit_continue(blobs):
    X, y = blobs
    clf = small(max_iter=5, warm_start=True).fit(X, y)
    first = clf.loss_curve_[-1]
    clf.fit(X, y)
    assert clf.n_iter_ == 10 and clf.loss_curve_[-1] < first
    inc = small()
    for _ in range(20):
        inc.partial_fit(X, y, classes=[0, 1, 2])
    assert inc.n_iter_ == 20 and inc.score(X, y) > 0.85


def test_partial_fit_needs_classes_first(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="classes must be passed"):
        small().partial_fit(X, y)


def test_threads_do_not_change_the_model(blobs):
    X, y = blobs
    before = nanomlp.num_threads()
    try:
        one = small(n_threads=1).fit(X, y).predict_proba(X)
        two = small(n_threads=2).fit(X, y).predict_proba(X)
    finally:
        nanomlp.set_num_threads(before)
    np.testing.assert_allclose(one, two, atol=1e-5)


def test_cli_evaluates_a_saved_model(tmp_path):
    cli = os.environ.get("NANOMLP_CLI", "")
    data = os.environ.get("NANOMLP_DATA", "")
    if not (os.path.isfile(cli) and os.path.isdir(os.path.join(data, "mnist"))):
        pytest.skip("needs the nanomlp CLI (NANOMLP_CLI) and MNIST (NANOMLP_DATA)")
    X, y, X_test, y_test = nanomlp.datasets.load_mnist(data)
    clf = small(hidden_layer_sizes=(64,), max_iter=1, learning_rate_init=0.001)
    clf.fit(X[:20000], y[:20000])
    path = tmp_path / "m.safetensors"
    clf.save(path)
    out = subprocess.run([cli, "eval", "--model", str(path), "--data", data, "--json"],
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["accuracy"] == pytest.approx(clf.score(X_test, y_test), abs=1e-4), out


def test_partial_fit_keeps_the_optimizer_state(blobs):
    # Adam's step count goes on from one partial_fit to the next, as in scikit-learn.
    X, y = blobs
    clf = small(batch_size=100)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y)
    assert clf._model.optimizer_steps == 12
    back = pickle.loads(pickle.dumps(clf))
    back.partial_fit(X, y)
    assert back.n_iter_ == 3 and back._model.optimizer_steps == 6


def test_loads_a_model_the_cli_trained(tmp_path):
    # The CLI's default standardises the pixels (mean and std in the file): nanomlp.load reads
    # uint8 features through the file's normalisation, so its accuracy is nanomlp eval's.
    cli = os.environ.get("NANOMLP_CLI", "")
    data = os.environ.get("NANOMLP_DATA", "")
    if not (os.path.isfile(cli) and os.path.isdir(os.path.join(data, "mnist"))):
        pytest.skip("needs the nanomlp CLI (NANOMLP_CLI) and MNIST (NANOMLP_DATA)")
    path = tmp_path / "cli.safetensors"
    subprocess.run([cli, "train", "--epochs", "1", "--hidden", "32", "--data", data, "--out",
                    str(path)], capture_output=True, check=True)
    out = subprocess.run([cli, "eval", "--model", str(path), "--data", data, "--json"],
                         capture_output=True, text=True, check=True).stdout
    _, _, X_test, y_test = nanomlp.datasets.load_mnist(data)
    clf = nanomlp.load(path)
    assert clf.hidden_layer_sizes == (32,)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.score(X_test, y_test) == pytest.approx(json.loads(out)["accuracy"], abs=1e-4)


def test_threads_fitting_at_once_get_the_models_of_one_at_a_time(blobs):
    # Training releases the GIL; the library's thread pool then serves the threads in turn.
    X, y = blobs
    alone = [small(random_state=s).fit(X, y).predict_proba(X) for s in range(3)]
    results = [None] * 3

    def fit(s):
        results[s] = small(random_state=s).fit(X, y).predict_proba(X)

    threads = [threading.Thread(target=fit, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, alone):
        np.testing.assert_array_equal(got, want)
