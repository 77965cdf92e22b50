#!/usr/bin/python3
"""tacit.torch.ImplicitLayer in a PyTorch training loop against `tacit train`,
on the Fashion-MNIST MLP, from the same initial model.

Both train the MLP 784-64-32-16-10 made by `tacit train --init ... --epochs 0`
(PyTorch's default initialisation) with SGD (momentum 0.9, lr 0.05, batch 128,
float32) for the given epochs: the command with its seeded batch order, the
PyTorch loop (torch.optim.SGD, F.cross_entropy on the layer's outputs) with a
batch order from torch.randperm seeded with the same seed. Prints both test
accuracies and their difference (the issue's bar: within 0.5 point).

Usage: PYTHONPATH=build/python /usr/bin/python3 tools/layer_accuracy.py [BUILD_DIR]
           [--epochs E] [--seed S] [--threads N]
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

import tacit
import tacit.torch as tt

FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def split(name):
    x = read_idx(f"{FASHION}/{name}-images-idx3-ubyte.gz").reshape(-1, 784)
    y = read_idx(f"{FASHION}/{name}-labels-idx1-ubyte.gz")
    return (x.astype(np.float32) / 255), y.astype(np.int64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cli = os.path.join(args.build, "tacit")
    torch.set_num_threads(args.threads)
    spec = "mlp:784,64,32,16,10"
    recipe = ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--batch-size", "128",
              "--precision", "float32", "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init.tacit")
        subprocess.run([cli, "train", "--init", spec, "--seed", str(args.seed), "--data",
                        FASHION, "--epochs", "0", "-o", init, "-q", *recipe], check=True)
        start = time.perf_counter()
        out = subprocess.run([cli, "train", init, "--shuffle", str(args.seed), "--data", FASHION,
                              "--epochs", str(args.epochs), "--json", "-o",
                              os.path.join(tmp, "cli.tacit"), *recipe],
                             capture_output=True, text=True, check=True)
        cli_seconds = time.perf_counter() - start
        events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        cli_acc = [e["validation_accuracy"] for e in events if e.get("event") == "epoch"]

        x, y = split("train")
        xt, yt = split("t10k")
        layer = tt.ImplicitLayer(tacit.load(init, dtype="float32"), threads=args.threads)
        opt = torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9)
        X, Y = torch.from_numpy(x), torch.from_numpy(y)
        generator = torch.Generator().manual_seed(args.seed)
        py_acc = []
        start = time.perf_counter()
        for epoch in range(args.epochs):
            order = torch.randperm(len(X), generator=generator)
            for i in range(0, len(X), 128):
                idx = order[i:i + 128]
                opt.zero_grad()
                loss = F.cross_entropy(layer(X[idx]), Y[idx])
                loss.backward()
                opt.step()
            with torch.no_grad():
                pred = layer(torch.from_numpy(xt)).argmax(dim=1).numpy()
            py_acc.append(float(np.mean(pred == yt)))
            print(f"epoch {epoch + 1}: tacit train {100 * cli_acc[epoch]:.2f}%, "
                  f"PyTorch loop with ImplicitLayer {100 * py_acc[-1]:.2f}%", flush=True)
        py_seconds = time.perf_counter() - start
    diff = 100 * (py_acc[-1] - cli_acc[-1])
    print(f"after {args.epochs} epochs: tacit train {100 * cli_acc[-1]:.2f}% ({cli_seconds:.0f} s), "
          f"ImplicitLayer loop {100 * py_acc[-1]:.2f}% ({py_seconds:.0f} s), "
          f"difference {diff:+.2f} points ({'within' if abs(diff) <= 0.5 else 'NOT within'} 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
