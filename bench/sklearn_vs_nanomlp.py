#!/usr/bin/python3
"""scikit-learn's MLPClassifier against nanomlp.MLPClassifier: same network, solver, batch size,
learning rate and number of epochs; time per epoch and test accuracy, on MNIST and on
make_classification(100000, 50).

Usage: PYTHONPATH=build/python bench/sklearn_vs_nanomlp.py [--data DIR] [--epochs 5]
       [--solver adam|sgd] [--batch-size 200] [--lr 0.001] [--momentum 0.9] [--skip-mnist]
       [--skip-synthetic]
Both get every core: nanomlp keeps OpenBLAS single-threaded in the process, so scikit-learn's
fit runs inside threadpoolctl.threadpool_limits(cores), which gives OpenBLAS its threads back.
"""
import argparse
import os
import time
import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP
from threadpoolctl import threadpool_limits

import nanomlp


def settings(args):
    # tol=0 and n_iter_no_change=max_iter: every epoch runs, none is cut short.
    return dict(hidden_layer_sizes=(args.hidden,), activation="relu", solver=args.solver,
                batch_size=args.batch_size, learning_rate_init=args.lr, max_iter=args.epochs,
                tol=0.0, n_iter_no_change=args.epochs, random_state=0, shuffle=True,
                momentum=args.momentum)


def run(name, make, X, y, X_test, y_test, blas_threads):
    with warnings.catch_warnings(), threadpool_limits(limits=blas_threads, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = make()
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
        accuracy = clf.score(X_test, y_test)
    per_epoch = seconds / clf.n_iter_
    print(f"  {name:<22} {per_epoch:8.3f} s/epoch   test accuracy {100 * accuracy:6.2f}%",
          flush=True)
    return per_epoch, accuracy


def compare(title, X, y, X_test, y_test, args, nanomlp_X=None):
    """nanomlp_X: (X, X_test) as nanomlp reads the same values, when not X itself."""
    cores = os.cpu_count()
    print(f"{title}: {X.shape[0]} x {X.shape[1]}, {len(np.unique(y))} classes, "
          f"{X.shape[1]}-{args.hidden}-{len(np.unique(y))} ReLU, {args.solver}, batch "
          f"{args.batch_size}, lr {args.lr}, momentum {args.momentum}, {args.epochs} epochs, {cores} cores", flush=True)
    sk = run("scikit-learn 1.2", lambda: SkMLP(**settings(args)), X, y, X_test, y_test, cores)
    Xn, Xn_test = nanomlp_X if nanomlp_X is not None else (X, X_test)
    nm = run("nanomlp", lambda: nanomlp.MLPClassifier(**settings(args)), Xn, y, Xn_test, y_test,
             1)
    print(f"  speed-up {sk[0] / nm[0]:.1f}x, accuracy {100 * (nm[1] - sk[1]):+.2f} points",
          flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("NANOMLP_DATA", "data"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--solver", default="adam", choices=["adam", "sgd"])
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--momentum", type=float, default=0.9, help="sgd's (scikit-learn's default)")
    p.add_argument("--skip-mnist", action="store_true")
    p.add_argument("--skip-synthetic", action="store_true")
    args = p.parse_args()
    if not args.skip_mnist:
        pixels, y, pixels_test, y_test = nanomlp.datasets.load_mnist(args.data)
        # scikit-learn gets pixel / 255 as float32; nanomlp the uint8 pixels, which it reads as
        # pixel / 255 (its fast paths: the sparse first layer, the split step).
        X = (pixels / np.float32(255)).astype(np.float32)
        X_test = (pixels_test / np.float32(255)).astype(np.float32)
        compare("MNIST", X, y, X_test, y_test, args, (pixels, pixels_test))
    if not args.skip_synthetic:
        X, y = make_classification(n_samples=100000, n_features=50, n_informative=20,
                                   n_classes=5, random_state=0)
        X = X.astype(np.float32)
        X, X_test, y, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
        compare("make_classification(100000, 50)", X, y, X_test, y_test, args)


if __name__ == "__main__":
    main()
