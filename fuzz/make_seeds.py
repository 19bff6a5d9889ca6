#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (stdlib only).

    python3 fuzz/make_seeds.py [--mnist DIR] [--fuzz-build build-fuzz]

--mnist: a folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz; two real
digits are taken from it (default ../shared/data/mnist when it exists, else a drawn digit).
--fuzz-build: where the fuzz targets are built; fuzz_checkpoint there writes the checkpoint
seed (a real checkpoint of its tiny run). Without it the committed seed stays.

Also the regression seeds of the hardening issue (1e309 in a header, deep nesting, the 17-byte
JPEG, a huge ASCII PNM). The 90,000-deep model header (180 KB) is not committed: fuzz/run.sh
generates it at run time (deep_header() below writes the same bytes).
"""

import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---- digits ----------------------------------------------------------------------------------

def drawn_digit():
    """A '1'-like stroke, 28x28, white on black."""
    px = bytearray(784)
    for r in range(5, 23):
        for c in range(13, 16):
            px[r * 28 + c] = 255 if c == 14 else 128
    return bytes(px)


def mnist_digits(folder, count=2):
    if folder is None:
        return [drawn_digit()] * count, [1] * count
    with gzip.open(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        f.read(16)
        images = [f.read(784) for _ in range(count)]
    with gzip.open(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        f.read(8)
        labels = list(f.read(count))
    return images, labels


# ---- IDX -------------------------------------------------------------------------------------

def idx_images(images):
    return struct.pack(">IIII", 0x803, len(images), 28, 28) + b"".join(images)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_input(images_file, labels_file):
    """The layout fuzz_idx.cpp reads: 2-byte little-endian length of the image file, the image
    file, the label file."""
    return struct.pack("<H", len(images_file)) + images_file + labels_file


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def idx_seeds(images, labels):
    img1, lab1 = idx_images(images[:1]), idx_labels(labels[:1])
    img2, lab2 = idx_images(images), idx_labels(labels)
    write("fuzz_idx", "raw_1_image", idx_input(img1, lab1))
    write("fuzz_idx", "gzip_2_images", idx_input(gz(img2), gz(lab2)))
    write("fuzz_idx", "gzip_images_raw_labels", idx_input(gz(img1), lab1))
    # Two concatenated gzip members (RFC 1952) make one file.
    write("fuzz_idx", "gzip_two_members", idx_input(gz(img2[:400]) + gz(img2[400:]), gz(lab2)))
    write("fuzz_idx", "empty_pair", idx_input(idx_images([]), idx_labels([])))


# ---- safetensors models ----------------------------------------------------------------------

def architecture(input_dim, hidden, classes, activation="relu", batch_norm=False, dropout=0.0):
    """The JSON text Architecture::to_json writes."""
    modules, width = [], input_dim
    names = {"relu": "ReLU()", "leaky_relu": "LeakyReLU(0.01)", "tanh": "Tanh()", "gelu": "GELU()"}
    for h in hidden:
        modules.append(f"Linear({width}, {h})")
        if batch_norm:
            modules.append(f"BatchNorm1d({h})")
        modules.append(names[activation])
        if dropout > 0:
            modules.append(f"Dropout({dropout:.6f})")
        width = h
    modules.append(f"Linear({width}, {classes})")
    arch = {"input_dim": input_dim, "hidden": hidden, "num_classes": classes,
            "activation": activation, "batch_norm": batch_norm, "dropout": dropout,
            "dataset": "mnist", "normalisation": {"divide_by": 255, "mean": 0.1307, "std": 0.3081},
            "modules": modules}
    return json.dumps(arch, separators=(",", ":"))


def safetensors(tensors, metadata):
    """tensors: [(name, dtype, shape, raw bytes)]; the layout of serialize_safetensors."""
    header, offset, data = {"__metadata__": metadata}, 0, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def model(input_dim, hidden, classes, activation="relu", batch_norm=False, dropout=0.0):
    tensors, index, width = [], 0, input_dim

    def linear(n_in, n_out):
        nonlocal index
        w = [((i * 7919) % 13 - 6) / 60.0 for i in range(n_in * n_out)]
        tensors.append((f"{index}.weight", "F32", [n_out, n_in], f32(w)))
        tensors.append((f"{index}.bias", "F32", [n_out], f32([0.01 * k for k in range(n_out)])))
        index += 1

    for h in hidden:
        linear(width, h)
        if batch_norm:
            tensors.append((f"{index}.weight", "F32", [1, h], f32([1.0] * h)))
            tensors.append((f"{index}.bias", "F32", [h], f32([0.0] * h)))
            tensors.append((f"{index}.running_mean", "F32", [h], f32([0.1] * h)))
            tensors.append((f"{index}.running_var", "F32", [h], f32([0.9] * h)))
            tensors.append((f"{index}.num_batches_tracked", "I64", [], struct.pack("<q", 7)))
            index += 1
        index += 1  # activation
        if dropout > 0:
            index += 1
        width = h
    linear(width, classes)
    meta = {"format": "nanomlp", "format_version": "1",
            "architecture": architecture(input_dim, hidden, classes, activation, batch_norm,
                                         dropout)}
    return safetensors(tensors, meta)


def raw_header(text):
    """A model file made of a header alone (no tensor data)."""
    text = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(text)) + text


def deep_header(depth):
    """The crash of the issue: a shape nested `depth` arrays deep."""
    return raw_header('{"t":{"dtype":"F32","shape":' + "[" * depth + "]" * depth +
                      ',"data_offsets":[0,0]}}')


def model_seeds():
    write("fuzz_model", "relu_784_1_2", model(784, [1], 2))
    write("fuzz_model", "gelu_bn_dropout_784_1_3", model(784, [1], 3, "gelu", True, 0.25))
    write("fuzz_model", "tanh_4_3_2_2", model(4, [3, 2], 2, "tanh"))  # predict refuses it
    write("fuzz_model", "leaky_linear_784_2", model(784, [], 2, "leaky_relu"))
    # Regressions of the hardening issue (fixed): a number out of range, deep nesting (the
    # 90,000-deep original is generated by fuzz/run.sh), bytes that are not UTF-8.
    write("fuzz_model", "regress_1e309_shape",
          raw_header('{"t":{"dtype":"F32","shape":[1e309],"data_offsets":[0,0]}}'))
    arch = architecture(784, [1], 2).replace('"mean":0.1307', '"mean":1e309')
    write("fuzz_model", "regress_1e309_architecture",
          raw_header(json.dumps({"__metadata__": {"format": "nanomlp", "format_version": "1",
                                                  "architecture": arch}})))
    write("fuzz_model", "regress_deep_1000", deep_header(1000))
    write("fuzz_model", "regress_not_utf8", raw_header(b'{"__metadata__":{"format":"\xff\xfe"}}'))


# ---- images ----------------------------------------------------------------------------------

def png(width, height, colour_type, rows):
    """colour_type 0 (grey), 2 (RGB) or 6 (RGBA), 8 bits; rows: list of bytes per row."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bmp24(width, height, rgb_rows):
    """Bottom-up 24-bit BMP; rgb_rows top row first."""
    stride = (width * 3 + 3) & ~3
    pixels = b"".join(r + b"\x00" * (stride - len(r)) for r in reversed(rgb_rows))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    head = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


def jpeg(grey, width, height):
    """A baseline JPEG written by Debian's stb_image_write (compiled on the fly); None if no C
    compiler or header is at hand."""
    header = "/usr/include/stb/stb_image_write.h"
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not os.path.exists(header):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe, out = (os.path.join(tmp, n) for n in ("w.c", "w", "o.jpg"))
        with open(src, "w") as f:
            f.write('#define STB_IMAGE_WRITE_IMPLEMENTATION\n#include <stb_image_write.h>\n'
                    '#include <stdio.h>\nint main(int c, char** v) { static unsigned char p[%d];'
                    ' fread(p, 1, sizeof p, stdin);'
                    ' return !stbi_write_jpg(v[1], %d, %d, 1, p, 80); }\n'
                    % (width * height, width, height))
        subprocess.run([cc, "-O1", "-I/usr/include/stb", src, "-o", exe, "-lm"], check=True)
        subprocess.run([exe, out], input=grey, check=True)
        with open(out, "rb") as f:
            return f.read()


def image_seeds(digit):
    ink_on_paper = bytes(255 - p for p in digit)  # a scan: dark ink on white paper
    rows = [ink_on_paper[r * 28:(r + 1) * 28] for r in range(28)]
    write("fuzz_image", "digit.pgm", b"P5\n28 28\n255\n" + ink_on_paper)
    write("fuzz_image", "digit16.pgm",
          b"P5 28 28 65535\n" + b"".join(struct.pack(">H", p * 257) for p in ink_on_paper))
    small = [ink_on_paper[r * 28 + 8:r * 28 + 20:2] for r in range(6, 22, 2)]  # 6x8
    write("fuzz_image", "digit_ascii.pgm",
          b"P2\n# a comment\n6 8\n255\n" +
          b"\n".join(b" ".join(str(p).encode() for p in r) for r in small) + b"\n")
    write("fuzz_image", "digit_ascii.ppm",
          b"P3 6 8 255\n" + b"\n".join(b" ".join(f"{p} {p} {p}".encode() for p in r)
                                       for r in small) + b"\n")
    write("fuzz_image", "digit.ppm", b"P6\n6 8\n255\n" + b"".join(bytes([p, p, p]) for r in small
                                                                   for p in r))
    write("fuzz_image", "digit_grey.png", png(28, 28, 0, rows))
    write("fuzz_image", "digit_rgba.png",
          png(28, 28, 6, [bytes(v for p in r for v in (p, p, p, 255 if p < 200 else 0))
                          for r in rows]))
    write("fuzz_image", "digit.bmp", bmp24(28, 28, [bytes(v for p in r for v in (p, p, p))
                                                    for r in rows]))
    # A 1x1 GIF (the classic 43 bytes).
    write("fuzz_image", "pixel.gif", bytes.fromhex(
        "4749463839610100010080000000000000ffffff21f90401000000002c00000000010001000002024401003b"))
    jpg = jpeg(ink_on_paper, 28, 28)
    if jpg is not None:
        write("fuzz_image", "digit.jpg", jpg)
    # Regressions of the hardening issue: a JPEG with a 28x28 frame and nothing else, the
    # 9-byte JPEG on which stb_image read out of bounds (JPEG now goes to libjpeg-turbo), and an
    # ASCII PNM declaring 8192x8192 pixels without any.
    write("fuzz_image", "regress_stb_huffman_jpeg_9_bytes.jpg", bytes.fromhex("ffd8ffc4b50000b6b6"))
    write("fuzz_image", "regress_jpeg_17_bytes.jpg",
          bytes.fromhex("ffd8ffc0000b08001c001c01011100ffd9"))
    write("fuzz_image", "regress_p3_8192.ppm", b"P3 8192 8192 255\n")
    # Found by the campaign: a 128-byte BMP of 1081372x28 pixels whose compression code stb_image
    # does not know (it decoded 30 blank megapixels, 19 s under the sanitizers).
    write("fuzz_image", "regress_bmp_unknown_compression.bmp", bytes.fromhex(
        "424d660900000000000036000000280000001c8010001c000000010018000000feffcff60000130b0000130b"
        "00ffffffffffffffffffffffffffffffff8686860101ffffffffff242424d7d7d7ffffffffffffff000000"
        "00000000000000ffffffffff50320a362038ffffffffffffffffffffffffffffffffffffff0a3235ff"))


# ---- /api/predict bodies ---------------------------------------------------------------------

def json_seeds(digit):
    write("fuzz_predict_json", "digit.json", json.dumps({"pixels": list(digit)}).encode())
    write("fuzz_predict_json", "floats.json",
          json.dumps({"pixels": [float(p) for p in digit]}, separators=(",", ":")).encode())
    write("fuzz_predict_json", "short.json", b'{"pixels": [0, 1, 255, -1, 256, 1.5, "x"]}')
    write("fuzz_predict_json", "regress_1e309.json", b'{"pixels": [1e309]}')
    write("fuzz_predict_json", "regress_not_utf8.json", b'{"pixels": "\xff\xfe", "x": [[{}]]}')
    write("fuzz_predict_json", "not_object.json", b'[{"pixels": null}, true, 18446744073709551616]')


def checkpoint_seed(build):
    exe = os.path.join(build, "fuzz", "fuzz_checkpoint")
    if not os.access(exe, os.X_OK):
        print(f"make_seeds: no {exe}: keeping the committed checkpoint seed", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([exe], env=dict(os.environ, NANOMLP_FUZZ_WRITE_SEED=tmp), check=True,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, "checkpoint-epoch-0001.safetensors"), "rb") as f:
            write("fuzz_checkpoint", "checkpoint_784_1_10_epoch_1", f.read())


def main():
    default_mnist = os.path.join(HERE, "..", "..", "shared", "data", "mnist")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=default_mnist if os.path.isdir(default_mnist) else None)
    parser.add_argument("--fuzz-build", default=os.path.join(HERE, "..", "build-fuzz"))
    args = parser.parse_args()
    images, labels = mnist_digits(args.mnist)
    idx_seeds(images, labels)
    model_seeds()
    image_seeds(images[0])
    json_seeds(images[0])
    checkpoint_seed(args.fuzz_build)
    # The checkpoint target resumes from model-like files too.
    write("fuzz_checkpoint", "model_relu_784_1_10", model(784, [1], 10))
    total = 0
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, n)) for n in files)
        total += size
        print(f"{target}: {len(files)} files, {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
