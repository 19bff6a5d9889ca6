#!/usr/bin/env python3
"""The default nanomlp training, written as a plain vectorised NumPy program.

784-128-10 MLP, ReLU, softmax cross-entropy, mini-batch SGD (batch 64, lr 0.1), He-normal
weights and zero biases, pixels / 255, a fresh shuffle every epoch: the same network and
settings as `nanomlp train` with its defaults, and the same algorithm as the original NumPy
program nanomlp grew from (forward X @ W1 + b1, relu, @ W2 + b2, softmax, backward, update).
Everything is float32, as in nanomlp. BLAS threads come from the environment
(OPENBLAS_NUM_THREADS), which bench/run.sh sets before starting Python.

Prints tab-separated records for bench/run.sh:
    kv  <prefix>.epoch_seconds  <median seconds of the training passes>
    kv  <prefix>.epochs         <epochs measured>
    kv  <prefix>.test_accuracy  <accuracy on the 10,000 test images afterwards>
    kv  <prefix>.version        <numpy version>
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np


from mnist_idx import load_split as load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("NANOMLP_DATA", "data"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="numpy")
    args = parser.parse_args()

    folder = os.path.join(args.data, "mnist")
    x_train, y_train = load(folder, "train")
    x_test, y_test = load(folder, "t10k")
    n, d = x_train.shape
    h, k, b = args.hidden, 10, args.batch_size
    lr = np.float32(args.lr)

    rng = np.random.default_rng(args.seed)
    w1 = (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32)
    b1 = np.zeros(h, dtype=np.float32)
    w2 = (rng.standard_normal((h, k)) * np.sqrt(2.0 / h)).astype(np.float32)
    b2 = np.zeros(k, dtype=np.float32)

    seconds = []
    for epoch in range(args.epochs):
        perm = rng.permutation(n)
        t0 = time.perf_counter()
        loss_sum = 0.0
        for start in range(0, n, b):
            idx = perm[start : start + b]
            xb, yb = x_train[idx], y_train[idx]
            nb = len(idx)
            rows = np.arange(nb)
            # Forward.
            z1 = xb @ w1 + b1
            a1 = np.maximum(z1, 0)
            z2 = a1 @ w2 + b2
            z2 -= z2.max(axis=1, keepdims=True)
            p = np.exp(z2)
            p /= p.sum(axis=1, keepdims=True)
            loss_sum += float(-np.log(p[rows, yb] + 1e-12).mean())
            # Backward: softmax cross-entropy, then the two layers.
            dz2 = p
            dz2[rows, yb] -= 1
            dz2 /= nb
            dw2 = a1.T @ dz2
            db2 = dz2.sum(axis=0)
            da1 = dz2 @ w2.T
            da1[z1 <= 0] = 0
            dw1 = xb.T @ da1
            db1 = da1.sum(axis=0)
            # SGD.
            w1 -= lr * dw1
            b1 -= lr * db1
            w2 -= lr * dw2
            b2 -= lr * db2
        seconds.append(time.perf_counter() - t0)
        steps = (n + b - 1) // b
        print(f"numpy epoch {epoch + 1}: loss {loss_sum / steps:.4f}, {seconds[-1]:.2f} s",
              file=sys.stderr)

    logits = np.maximum(x_test @ w1 + b1, 0) @ w2 + b2
    accuracy = float((logits.argmax(axis=1) == y_test).mean())
    print(f"kv\t{args.prefix}.epoch_seconds\t{statistics.median(seconds):.4f}")
    print(f"kv\t{args.prefix}.epochs\t{len(seconds)}")
    print(f"kv\t{args.prefix}.test_accuracy\t{accuracy:.4f}")
    print(f"kv\t{args.prefix}.version\tNumPy {np.__version__}")


if __name__ == "__main__":
    main()
