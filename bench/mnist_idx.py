"""Reading MNIST-format IDX files for the NumPy and PyTorch comparison scripts."""
import gzip
import os
import sys

import numpy as np


def read_idx(path):
    """An IDX file (gzip or raw) as a uint8 array of its declared shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(folder, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{os.path.basename(sys.argv[0])}: {stem}[.gz] not found in {folder}")


def load_split(folder, split):
    """(x, labels) of a split: x as float32 pixels / 255 of shape (n, 784), labels as int64."""
    images = read_idx(find(folder, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(folder, f"{split}-labels-idx1-ubyte"))
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    return x, labels.astype(np.int64)
