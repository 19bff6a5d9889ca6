#!/usr/bin/env python3
"""The default nanomlp training in PyTorch, on the CPU.

nn.Sequential(Linear(784, 128), ReLU(), Linear(128, 10)), CrossEntropyLoss, torch.optim.SGD
(lr 0.1, no momentum), batch 64, He-normal weights (kaiming_normal_, fan_in, relu) and zero
biases, pixels / 255, a fresh shuffle every epoch: the same network and settings as
`nanomlp train` with its defaults. The data are preloaded as float tensors, so an epoch times
only the training steps. Runs with torch.set_num_threads(N) for each N of --threads and
reports the fastest.

Prints tab-separated records for bench/run.sh:
    kv  torch.t<N>.epoch_seconds  <median seconds of the training passes with N threads>
    kv  torch.epoch_seconds       <the best of those>
    kv  torch.threads             <the N it was obtained with>
    kv  torch.epochs              <epochs measured per thread count>
    kv  torch.test_accuracy       <accuracy on the 10,000 test images after the fastest run>
    kv  torch.version             <torch version>
"""
import argparse
import os
import statistics
import sys
import time

import torch
from torch import nn


from mnist_idx import load_split


def load(folder, split):
    x, labels = load_split(folder, split)
    return torch.from_numpy(x), torch.from_numpy(labels)


def make_model(hidden, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("NANOMLP_DATA", "data"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = os.path.join(args.data, "mnist")
    x_train, y_train = load(folder, "train")
    x_test, y_test = load(folder, "t10k")
    n, b = len(x_train), args.batch_size
    loss_fn = nn.CrossEntropyLoss()

    best = None
    accuracy, epochs_run = 0.0, 0
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        model = make_model(args.hidden, args.seed)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)
        gen = torch.Generator().manual_seed(args.seed)
        seconds = []
        for epoch in range(args.epochs):
            perm = torch.randperm(n, generator=gen)
            t0 = time.perf_counter()
            loss_sum = 0.0
            steps = 0
            for start in range(0, n, b):
                idx = perm[start : start + b]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_train[idx]), y_train[idx])
                loss.backward()
                opt.step()
                loss_sum += loss.item()
                steps += 1
            seconds.append(time.perf_counter() - t0)
            print(f"torch {threads} thread(s) epoch {epoch + 1}: loss {loss_sum / steps:.4f}, "
                  f"{seconds[-1]:.2f} s", file=sys.stderr)
            if best is not None and seconds[-1] > 3 * best[0]:
                # Far slower than a thread count already measured (an oversubscribed machine
                # makes OpenMP threads spin): one epoch is enough to say so.
                print(f"torch {threads} thread(s): stopping after {epoch + 1} epoch(s), "
                      f"over 3x slower than {best[1]} thread(s)", file=sys.stderr)
                break
        median = statistics.median(seconds)
        print(f"kv\ttorch.t{threads}.epoch_seconds\t{median:.4f}")
        if best is None or median < best[0]:
            best = (median, threads)
            with torch.no_grad():
                accuracy = float((model(x_test).argmax(dim=1) == y_test).float().mean())
            epochs_run = len(seconds)

    print(f"kv\ttorch.epoch_seconds\t{best[0]:.4f}")
    print(f"kv\ttorch.threads\t{best[1]}")
    print(f"kv\ttorch.epochs\t{epochs_run}")
    print(f"kv\ttorch.test_accuracy\t{accuracy:.4f}")
    print(f"kv\ttorch.version\tPyTorch {torch.__version__}")


if __name__ == "__main__":
    main()
