#!/usr/bin/python3
"""Times training in PyTorch and in tacit on the same work, in the same run.

PyTorch (float32, 2 intra-op threads, data in memory):
  mlp_epoch      one epoch of the Fashion-MNIST MLP 784-64-32-16-10 (60,000 images,
                 batch 128, SGD momentum 0.9, lr 0.05), the layers as 1x1
                 convolutions (oneDNN; nn.Linear runs on Debian's reference BLAS)
  cnn_epoch      one epoch of the small CNN of tools/make_train_fixtures.py, same recipe
  resnet20_step  one training step of ResNet20 (batch norm folded, as tacit's model;
                 batch 128: forward, cross-entropy, backward, SGD step), best of 5
tacit: bench/bench_train (the same three, 2 threads), read from its JSON output.

Both are run twice, alternately, each keeping its best time, so that the
ratios compare the two under the same machine conditions.

With --mlp-accuracy SEED... it instead trains the MLP with PyTorch's recipe (nn.Linear
layers, default initialisation from torch.manual_seed(SEED), batch order from a generator
seeded with SEED, SGD momentum 0.9, lr 0.05, batch 128, 10 epochs, float32) and prints the
test accuracy after every epoch: the baseline of `tacit train --init mlp:784,64,32,16,10`.

Usage: tools/bench_train_pytorch.py [BUILD_DIR]   (default: build)
       tools/bench_train_pytorch.py --mlp-accuracy SEED [SEED...]
"""

import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ResNet20, fold_batch_norm  # noqa: E402
from make_train_fixtures import FashionCnn  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion():
    x = torch.tensor(read_idx(f"{FASHION}/train-images-idx3-ubyte.gz"),
                     dtype=torch.float32) / 255
    y = torch.tensor(read_idx(f"{FASHION}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    return x.unsqueeze(1), y


class MlpConv(nn.Module):
    """784-64-32-16-10 with the layers as 1x1 convolutions."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Conv2d(784, 64, 1)
        self.l2 = nn.Conv2d(64, 32, 1)
        self.l3 = nn.Conv2d(32, 16, 1)
        self.l4 = nn.Conv2d(16, 10, 1)

    def forward(self, x):
        x = x.reshape(x.shape[0], 784, 1, 1)
        x = F.relu(self.l1(x))
        x = F.relu(self.l2(x))
        x = F.relu(self.l3(x))
        return self.l4(x).flatten(1)


def epoch_seconds(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    for b in range(0, x.shape[0], 128):
        idx = perm[b:b + 128]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - t0


def resnet_step_seconds(repeats=5):
    torch.manual_seed(0)
    model = fold_batch_norm(ResNet20()).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.rand(128, 3, 32, 32)
    y = torch.arange(128) % 10
    best = float("inf")
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if r > 0:
            best = min(best, time.perf_counter() - t0)
    return best


def time_pytorch(x, y):
    torch.manual_seed(1)
    return {"mlp_epoch": epoch_seconds(MlpConv(), x, y),
            "cnn_epoch": epoch_seconds(FashionCnn(), x, y),
            "resnet20_step": resnet_step_seconds()}


def time_tacit(build):
    out = subprocess.run(
        [os.path.join(build, "bench", "bench_train"),
         "--benchmark_filter=(mlp_epoch|cnn_epoch|resnet20_step)/threads:2",
         "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        name = b["name"].split("/")[0]
        if name in ("mlp_epoch", "cnn_epoch"):
            result[name] = b["seconds_per_epoch"]
        elif name == "resnet20_step":
            result[name] = b["ms_per_step"] / 1e3
    return result


def mlp_accuracy(seeds):
    """Test accuracy of the MLP recipe after each epoch, per seed."""
    def load(kind):
        x = torch.tensor(read_idx(f"{FASHION}/{kind}-images-idx3-ubyte.gz"),
                         dtype=torch.float32).reshape(-1, 784) / 255
        y = torch.tensor(read_idx(f"{FASHION}/{kind}-labels-idx1-ubyte.gz"),
                         dtype=torch.long)
        return x, y
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    for seed in seeds:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                              nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        for epoch in range(10):
            perm = torch.randperm(xtr.shape[0], generator=g)
            for b in range(0, xtr.shape[0], 128):
                idx = perm[b:b + 128]
                opt.zero_grad()
                F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
            with torch.no_grad():
                acc = (model(xte).argmax(1) == yte).float().mean().item()
            print(f"seed {seed} epoch {epoch + 1}: test accuracy {100 * acc:.2f}%",
                  flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--mlp-accuracy":
        torch.set_num_threads(2)
        mlp_accuracy([int(s) for s in sys.argv[2:]] or [1])
        return
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    torch.set_num_threads(2)
    x, y = fashion()
    torch_s = time_pytorch(x, y)
    tacit_s = time_tacit(build)
    second = time_pytorch(x, y)
    torch_s = {k: min(v, second[k]) for k, v in torch_s.items()}
    second = time_tacit(build)
    tacit_s = {k: min(v, second[k]) for k, v in tacit_s.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    print(f"{'':>14} {'PyTorch s':>10} {'tacit s':>9} {'tacit / PyTorch':>16}")
    for k in ("mlp_epoch", "cnn_epoch", "resnet20_step"):
        print(f"{k:>14} {torch_s[k]:>10.3f} {tacit_s[k]:>9.3f} "
              f"{tacit_s[k] / torch_s[k]:>16.2f}")


if __name__ == "__main__":
    main()
