#!/usr/bin/python3
"""Trains two small Fashion-MNIST classifiers with PyTorch and exports them to ONNX.

Run once (CPU, a few minutes); the outputs are committed in tests/data/fashion/:
  fashion_mlp.onnx       MLP 784-64-32-16-10 (ReLU)
  fashion_cnn.onnx       conv 1->8 4x4/2 + ReLU, conv 8->16 4x4/2 + ReLU, dense 400->10
  <name>_predictions.txt the predicted class of every test image, one digit per
                         image, computed in float64 from the float32 weights
                         (input = byte / 255), in test-set order
  accuracy.txt           clean test accuracy of each model (float32 and float64)

Natural training: plain cross-entropy, Adam, fixed seeds; 4 epochs for the MLP,
10 for the CNN.
Reads the IDX files of the Debian package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist, or $TACIT_FASHION_MNIST_DIR).

Usage: tools/train_fashion_mnist.py [OUTPUT_DIR]
"""

import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert data[0] == 0 and data[1] == 0 and data[2] == 0x08, path
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 16)
        self.fc4 = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.relu(self.fc3(x))
        return self.fc4(x)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 4, stride=2)   # 28 -> 13
        self.conv2 = nn.Conv2d(8, 16, 4, stride=2)  # 13 -> 5
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


def predict(model, x, batch=1000):
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out.append(model(x[i:i + batch]).argmax(dim=1))
    return torch.cat(out)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "fashion")
    data_dir = os.environ.get("TACIT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    torch.set_num_threads(2)
    train_x = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    train_y = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    test_x = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    # byte / 255, as tacit's IDX reader and torchvision's ToTensor.
    xtr = torch.from_numpy(train_x.astype(np.float32)).unsqueeze(1) / 255.0
    ytr = torch.from_numpy(train_y.astype(np.int64))
    xte32 = torch.from_numpy(test_x.astype(np.float32)).unsqueeze(1) / 255.0
    xte64 = torch.from_numpy(test_x.astype(np.float64)).unsqueeze(1) / 255.0
    yte = torch.from_numpy(test_y.astype(np.int64))

    lines = []
    for name, make, epochs in (("fashion_mlp", Mlp, 4), ("fashion_cnn", Cnn, 10)):
        torch.manual_seed(0)
        model = make()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(1)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(xtr.shape[0], generator=gen)
            total = 0.0
            for i in range(0, xtr.shape[0], 128):
                idx = perm[i:i + 128]
                opt.zero_grad()
                loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()
                total += loss.item() * idx.shape[0]
            print(f"{name} epoch {epoch + 1}: loss {total / xtr.shape[0]:.4f}", flush=True)
        model.eval()
        acc32 = (predict(model, xte32) == yte).double().mean().item()
        torch.onnx.export(model, xte32[:1], os.path.join(out_dir, name + ".onnx"),
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=13, do_constant_folding=True)
        model64 = model.double()
        pred64 = predict(model64, xte64)
        acc64 = (pred64 == yte).double().mean().item()
        with open(os.path.join(out_dir, name + "_predictions.txt"), "w") as f:
            f.write("".join(str(int(p)) for p in pred64) + "\n")
        lines.append(f"{name} float32 {acc32:.4f} float64 {acc64:.4f} "
                     f"correct64 {int((pred64 == yte).sum())}")
        print(lines[-1], flush=True)
    with open(os.path.join(out_dir, "accuracy.txt"), "w") as f:
        f.write("# clean Fashion-MNIST test accuracy (10,000 images) measured by PyTorch "
                "1.13:\n# model, float32 accuracy, float64 accuracy (float64 from the "
                "float32 weights), correct count in float64\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
