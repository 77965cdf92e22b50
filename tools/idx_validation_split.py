#!/usr/bin/env python3
"""Writes a validation split of an IDX data set (Fashion-MNIST/MNIST layout).

OUT/train-* holds the first N training images and labels, OUT/t10k-* the rest
of the training set, so that `tacit train --data OUT` validates on images the
test set does not contain (hyper-parameters chosen there, the test set kept
for the final figures). Each file is written to a temporary name and renamed.

usage: idx_validation_split.py SRC_DIR OUT_DIR [N (default 50000)]
"""
import gzip
import os
import sys


def read(path):
    with gzip.open(path, "rb") as f:
        return f.read()


def write(path, data):
    tmp = path + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=1) as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[-1])
    src, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) == 4 else 50000
    images = read(os.path.join(src, "train-images-idx3-ubyte.gz"))
    labels = read(os.path.join(src, "train-labels-idx1-ubyte.gz"))
    count = int.from_bytes(images[4:8], "big")
    if int.from_bytes(labels[4:8], "big") != count:
        sys.exit(f"{src}: {count} training images but "
                 f"{int.from_bytes(labels[4:8], 'big')} labels")
    if not 0 < n < count:
        sys.exit(f"N = {n} must be in 1..{count - 1} (the training images of {src})")
    size = int.from_bytes(images[8:12], "big") * int.from_bytes(images[12:16], "big")
    os.makedirs(out, exist_ok=True)

    def part(data, header, item, a, b):
        return data[:4] + (b - a).to_bytes(4, "big") + data[8:header] + \
            data[header + a * item:header + b * item]

    write(os.path.join(out, "train-images-idx3-ubyte.gz"), part(images, 16, size, 0, n))
    write(os.path.join(out, "train-labels-idx1-ubyte.gz"), part(labels, 8, 1, 0, n))
    write(os.path.join(out, "t10k-images-idx3-ubyte.gz"), part(images, 16, size, n, count))
    write(os.path.join(out, "t10k-labels-idx1-ubyte.gz"), part(labels, 8, 1, n, count))


if __name__ == "__main__":
    main()
