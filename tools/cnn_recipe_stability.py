#!/usr/bin/python3
"""How often a training recipe collapses on the small Fashion-MNIST CNN, in tacit and in PyTorch.

The recipe (SGD, momentum 0.9, batch 128, float32, from tests/data/train/fashion_cnn_init.onnx,
the seeded initialisation of tools/make_train_fixtures.py --fashion) is run on the first LIMIT
images of each batch order:

  tacit     `tacit train --limit LIMIT --shuffle S` for each seed S (tacit's own order)
  PyTorch   the same network and initialisation, torch.randperm(60000) seeded with S, its
            first LIMIT indices (PyTorch's own order: the two orders differ for the same S)
  both      in the natural order of the file (`--shuffle none`: the same batches on both sides)

and prints one line per run: the mean training loss of the epoch and the test accuracy. A run
that ends at 10% test accuracy predicts one class for every image: its ReLUs died.

Usage: tools/cnn_recipe_stability.py TACIT [--limit 19200] [--lr 0.05] [--seeds 1 2 ...]
                                          [--data /usr/share/datasets/fashion-mnist]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_train_fixtures import FashionCnn, read_idx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
INIT = os.path.join(HERE, "..", "tests", "data", "train", "fashion_cnn_init.onnx")


def run_tacit(tacit, data, limit, lr, shuffle):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [tacit, "train", INIT, "--data", data, "--limit", str(limit), "--shuffle", shuffle,
             "--optimizer", "sgd", "--lr", str(lr), "--momentum", "0.9", "--batch-size", "128",
             "--epochs", "1", "--precision", "float32", "--threads", "2", "--json", "-q",
             "-o", os.path.join(tmp, "m.tacit")],
            check=True, capture_output=True, text=True).stdout
    epoch = json.loads(out.splitlines()[0])
    return epoch["train_loss"], epoch["validation_accuracy"]


def run_torch(sets, limit, lr, shuffle):
    xtr, ytr, xte, yte = sets
    torch.manual_seed(1)  # the initialisation of fashion_cnn_init.onnx
    model = FashionCnn()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if shuffle == "none":
        order = torch.arange(limit)
    else:
        g = torch.Generator().manual_seed(int(shuffle))
        order = torch.randperm(xtr.shape[0], generator=g)[:limit]
    total = 0.0
    for b in range(0, limit, 128):
        idx = order[b:b + 128]
        opt.zero_grad()
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).double().mean().item()
    return total / limit, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tacit")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=19200)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    args = ap.parse_args()
    torch.set_num_threads(2)
    d = args.data
    xtr = torch.tensor(read_idx(f"{d}/train-images-idx3-ubyte.gz"), dtype=torch.float32)
    xte = torch.tensor(read_idx(f"{d}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32)
    sets = (xtr.unsqueeze(1) / 255,
            torch.tensor(read_idx(f"{d}/train-labels-idx1-ubyte.gz"), dtype=torch.long),
            xte.unsqueeze(1) / 255,
            torch.tensor(read_idx(f"{d}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long))
    print(f"lr {args.lr}, momentum 0.9, batch 128, float32, first {args.limit} images of each "
          "order: mean training loss, test accuracy")
    collapsed = {"tacit": 0, "PyTorch": 0}
    for shuffle in ["none"] + [str(s) for s in args.seeds]:
        for name in ("tacit", "PyTorch"):
            t0 = time.perf_counter()
            if name == "tacit":
                loss, acc = run_tacit(args.tacit, d, args.limit, args.lr, shuffle)
            else:
                loss, acc = run_torch(sets, args.limit, args.lr, shuffle)
            if shuffle != "none" and acc <= 0.1001:
                collapsed[name] += 1
            print(f"shuffle {shuffle:>4}  {name:<7}  loss {loss:.4f}  test accuracy "
                  f"{100 * acc:6.2f}%  ({time.perf_counter() - t0:.0f} s)", flush=True)
    n = len(args.seeds)
    print(f"collapsed to 10%: tacit {collapsed['tacit']} of {n} orders, "
          f"PyTorch {collapsed['PyTorch']} of {n}")


if __name__ == "__main__":
    main()
