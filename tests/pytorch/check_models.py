"""PyTorch loads every kind of model nanomlp writes and computes the same probabilities.

For each kind (every activation, batch norm, dropout, two hidden layers, raw pixels, the best
preset): train one epoch with the built nanomlp, rebuild the nn.Sequential from the file's
metadata, read the tensors with json and numpy only (Debian 12 has no safetensors module),
load_state_dict(strict=True), and compare the 10,000 MNIST test images' class probabilities with
`nanomlp eval --probabilities`: the same argmax on every image and at most 1e-5 apart. Then the
README's loading snippet, exactly as printed, on a batch-norm model.

Usage: check_models.py NANOMLP_BINARY DATA_ROOT WORK_DIR README
Exit 77 (skipped) when DATA_ROOT has no MNIST.
"""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch

TOLERANCE = 1e-5
# name, train flags on top of --epochs 1
KINDS = [
    ("relu", ["--hidden", "32", "--activation", "relu"]),
    ("leaky_relu", ["--hidden", "32", "--activation", "leaky_relu"]),
    ("tanh", ["--hidden", "32", "--activation", "tanh"]),
    ("gelu", ["--hidden", "32", "--activation", "gelu"]),
    ("batch_norm", ["--hidden", "32", "--batch-norm"]),
    ("dropout", ["--hidden", "32", "--dropout", "0.3"]),
    ("hidden_64_32", ["--hidden", "64,32"]),
    ("no_normalize", ["--hidden", "32", "--no-normalize"]),
    ("preset_best", ["--preset", "best"]),
]
# The sentence of README.md "## Model file" that the snippet's fenced block follows.
README_MARKER = "So in PyTorch, with only `json` and NumPy to read the file:"

DTYPES = {"F32": np.float32, "I64": np.int64}


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def read_idx_images(path):
    """(N, 784) uint8 from an IDX3 file, gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    count = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, np.uint8, count * 784, 16).reshape(count, 784)


def test_images(data_root):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"):
        path = os.path.join(data_root, "mnist", name)
        if os.path.exists(path):
            return read_idx_images(path)
    return None


def read_model(path):
    """The header's metadata and the tensors of a safetensors file, by json and numpy alone."""
    with open(path, "rb") as f:
        raw = f.read()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    metadata = header.pop("__metadata__")
    state = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        values = np.frombuffer(raw[8 + header_len + begin : 8 + header_len + end],
                               DTYPES[entry["dtype"]])
        state[name] = torch.from_numpy(values.reshape(entry["shape"]).copy())
    return metadata, state


def torch_module(text):
    """torch.nn.Linear(784, 32) for "Linear(784, 32)", as the architecture lists modules."""
    name, args = text.split("(", 1)
    return getattr(torch.nn, name)(*json.loads("[" + args[:-1] + "]"))


def torch_probabilities(model, arch, pixels):
    norm = arch["normalisation"]
    x = (pixels.astype(np.float32) / norm["divide_by"] - norm["mean"]) / norm["std"]
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x.astype(np.float32))), dim=1).numpy()


def run(args):
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        fail(" ".join(args) + " exited " + str(result.returncode) + ":\n" + result.stdout)
    return result.stdout


def train_and_eval(binary, data_root, work, kind, flags):
    model_path = os.path.join(work, kind + ".safetensors")
    probs_path = os.path.join(work, kind + ".npy")
    run([binary, "train", "--data", data_root, "--epochs", "1", "--quiet", "--out", model_path]
        + flags)
    run([binary, "eval", "--model", model_path, "--data", data_root, "--probabilities",
         probs_path])
    return model_path, np.load(probs_path)


def compare(kind, p_torch, p_nanomlp):
    """The largest difference, after checking shapes and every argmax."""
    if p_torch.shape != p_nanomlp.shape:
        fail(kind + ": PyTorch gives probabilities " + str(p_torch.shape) + ", nanomlp " +
             str(p_nanomlp.shape))
    disagree = int(np.sum(p_torch.argmax(1) != p_nanomlp.argmax(1)))
    diff = float(np.max(np.abs(p_torch.astype(np.float64) - p_nanomlp.astype(np.float64))))
    if disagree != 0:
        fail(kind + ": PyTorch and nanomlp predict differently on " + str(disagree) + " of " +
             str(len(p_torch)) + " images (max |p difference| " + repr(diff) + ")")
    if diff > TOLERANCE:
        fail(kind + ": max |p_torch - p_nanomlp| = " + repr(diff) + " > " + repr(TOLERANCE))
    return diff


def check_kind(binary, data_root, work, pixels, kind, flags):
    model_path, p_nanomlp = train_and_eval(binary, data_root, work, kind, flags)
    metadata, state = read_model(model_path)
    if metadata.get("format_version") != "2":
        fail(kind + ": format_version " + repr(metadata.get("format_version")) + ", expected '2'")
    arch = json.loads(metadata["architecture"])
    model = torch.nn.Sequential(*[torch_module(m) for m in arch["modules"]])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        fail(kind + ": load_state_dict refused " + model_path + ": " + str(e))
    model.eval()
    diff = compare(kind, torch_probabilities(model, arch, pixels), p_nanomlp)
    print("%-13s max |p_torch - p_nanomlp| = %.3g, argmax equal on %d images; %s"
          % (kind, diff, len(pixels), " ".join(arch["modules"])))


def readme_snippet(readme):
    """The fenced python block after README_MARKER, exactly as printed."""
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    at = text.find(README_MARKER)
    if at < 0:
        fail(readme + " lacks the sentence " + repr(README_MARKER))
    start = text.find("```python\n", at)
    end = text.find("\n```\n", start)
    if start < 0 or end < 0:
        fail(readme + ": no ```python block after " + repr(README_MARKER))
    return text[start + len("```python\n") : end + 1]


def check_readme(binary, data_root, work, pixels, readme):
    """The snippet run in a folder holding model.safetensors (batch norm, two hidden layers)."""
    folder = os.path.join(work, "readme")
    os.makedirs(folder, exist_ok=True)
    model_path = os.path.join(folder, "model.safetensors")
    flags = ["--hidden", "48,24", "--batch-norm", "--dropout", "0.2"]
    run([binary, "train", "--data", data_root, "--epochs", "1", "--quiet", "--out", model_path]
        + flags)
    probs_path = os.path.join(folder, "p.npy")
    run([binary, "eval", "--model", model_path, "--data", data_root, "--probabilities",
         probs_path])
    here = os.getcwd()
    os.chdir(folder)
    try:
        scope = {}
        exec(compile(readme_snippet(readme), readme + " (Model file snippet)", "exec"), scope)
    finally:
        os.chdir(here)
    if "predict" not in scope:
        fail("the README snippet defines no predict()")
    diff = compare("README snippet", np.asarray(scope["predict"](pixels)), np.load(probs_path))
    print("README snippet: predicts as nanomlp on %d images, max |p difference| = %.3g"
          % (len(pixels), diff))


def main():
    if len(sys.argv) != 5:
        fail("usage: check_models.py NANOMLP_BINARY DATA_ROOT WORK_DIR README")
    binary, data_root, work, readme = sys.argv[1:]
    pixels = test_images(data_root)
    if pixels is None:
        print("skipped: no MNIST in " + data_root + " (set NANOMLP_DATA)")
        sys.exit(77)
    os.makedirs(work, exist_ok=True)
    print("PyTorch %s, NumPy %s, %d MNIST test images" % (torch.__version__, np.__version__,
                                                          len(pixels)))
    for kind, flags in KINDS:
        check_kind(binary, data_root, work, pixels, kind, flags)
    check_readme(binary, data_root, work, pixels, readme)


if __name__ == "__main__":
    main()
