#!/usr/bin/python3
"""Runs an ONNX graph written by `tacit export-onnx` in PyTorch (float64).

The graph is evaluated node by node with torch.nn.functional (onnxruntime is
not needed): Conv, Gemm, MatMul, BatchNormalization (inference), Relu,
LeakyRelu, Sigmoid, Tanh, Add, Sub, Mul, Div, AveragePool, GlobalAveragePool,
Flatten, Reshape, Identity, Slice, Pad (constant), Constant.

  predict  NET.onnx -i U.txt -o Y.txt
      the outputs, one line per input line.
  compare  NET.onnx -i U.txt -y Y.txt [--tol 1e-12]
      the outputs against Y.txt (e.g. `tacit solve -o Y.txt`): the largest
      relative error over samples, max_i |y_i - ref_i| / max_i |ref_i|, and
      the samples whose predicted class (the index of the largest output)
      differs; exit 1 above the tolerance or when a predicted class differs.
  sgd-step NET.onnx STEPPED.onnx -i U.txt --labels L.txt --lr R [--tol 1e-10]
      one full-batch SGD step (no momentum) of the mean softmax cross-entropy
      from NET.onnx's parameters (the float initializers read as weights and
      biases: Conv, Gemm, BatchNormalization scale and B, Add/Mul constants),
      compared tensor by tensor with the initializers of the same names in
      STEPPED.onnx (e.g. `tacit train ... -o M; tacit export-onnx M -o
      STEPPED.onnx`): relative error ||a - b|| / ||b|| per tensor; exit 1 when
      a tensor is missing or above the tolerance.

Text files hold one vector per line (blanks or commas), as tacit reads them.
Uses Debian's /usr/bin/python3 with python3-onnx and python3-torch.
"""

import argparse
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def read_vectors(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            rows.append([float(t) for t in line.replace(",", " ").split()])
    return np.array(rows, dtype=np.float64)


# Initializers that are parameters: (op type, input index).
PARAMETER_INPUTS = {("Conv", 1), ("Conv", 2), ("Gemm", 1), ("Gemm", 2), ("MatMul", 1),
                    ("BatchNormalization", 1), ("BatchNormalization", 2),
                    ("Add", 0), ("Add", 1), ("Mul", 0), ("Mul", 1)}


class Graph:
    def __init__(self, path):
        self.model = onnx.load(path)
        g = self.model.graph
        self.tensors = {}
        for t in g.initializer:
            a = numpy_helper.to_array(t)
            if a.dtype.kind == "f":
                self.tensors[t.name] = torch.tensor(a, dtype=torch.float64)
            else:
                self.tensors[t.name] = torch.tensor(a.astype(np.int64))
        self.parameters = set()
        for n in g.node:
            for i, name in enumerate(n.input):
                if (n.op_type, i) in PARAMETER_INPUTS and name in self.tensors and \
                        self.tensors[name].dtype == torch.float64:
                    self.parameters.add(name)
        inits = {t.name for t in g.initializer}
        self.input = [v for v in g.input if v.name not in inits][0]
        self.input_dims = [d.dim_value for d in self.input.type.tensor_type.shape.dim][1:]
        self.output = g.output[0].name

    def run(self, u, values=None):
        """Outputs for inputs u (N x p, float64); values: tensors to use."""
        env = dict(self.tensors)
        if values:
            env.update(values)
        env[self.input.name] = u.reshape([u.shape[0]] + self.input_dims)
        for n in self.model.graph.node:
            a = attrs(n)
            x = [env[i] if i else None for i in n.input]
            env[n.output[0]] = self.node(n.op_type, a, x)
        return env[self.output].reshape(u.shape[0], -1)

    @staticmethod
    def node(op, a, x):
        if op == "Conv":
            pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
            inp = F.pad(x[0], (pl, pr, pt, pb))
            return F.conv2d(inp, x[1], x[2] if len(x) > 2 else None,
                            stride=a.get("strides", [1, 1]),
                            dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))
        if op == "Gemm":
            w = x[1].t() if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (x[0] @ w)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
            return y
        if op == "MatMul":
            return x[0] @ x[1]
        if op == "BatchNormalization":
            return F.batch_norm(x[0], x[3], x[4], x[1], x[2], training=False,
                                eps=a.get("epsilon", 1e-5))
        if op == "Relu":
            return F.relu(x[0])
        if op == "LeakyRelu":
            return F.leaky_relu(x[0], a.get("alpha", 0.01))
        if op == "Sigmoid":
            return torch.sigmoid(x[0])
        if op == "Tanh":
            return torch.tanh(x[0])
        if op == "Add":
            return x[0] + x[1]
        if op == "Sub":
            return x[0] - x[1]
        if op == "Mul":
            return x[0] * x[1]
        if op == "Div":
            return x[0] / x[1]
        if op == "GlobalAveragePool":
            return x[0].mean(dim=(2, 3), keepdim=True)
        if op == "AveragePool":
            pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
            kh, kw = a["kernel_shape"]
            sh, sw = a.get("strides", [1, 1])
            if a.get("count_include_pad", 0):
                return F.avg_pool2d(F.pad(x[0], (pl, pr, pt, pb)), (kh, kw), (sh, sw))
            ones = torch.ones_like(x[0][:1, :1])
            s = F.avg_pool2d(F.pad(x[0], (pl, pr, pt, pb)), (kh, kw), (sh, sw),
                             divisor_override=1)
            c = F.avg_pool2d(F.pad(ones, (pl, pr, pt, pb)), (kh, kw), (sh, sw),
                             divisor_override=1)
            return s / c
        if op == "Flatten":
            return x[0].reshape(x[0].shape[0], -1)
        if op == "Reshape":
            shape = [int(v) for v in x[1]]
            shape = [x[0].shape[k] if v == 0 else v for k, v in enumerate(shape)]
            return x[0].reshape(shape)
        if op == "Identity":
            return x[0]
        if op == "Slice":
            starts, ends = x[1].tolist(), x[2].tolist()
            axes = x[3].tolist() if len(x) > 3 else list(range(len(starts)))
            steps = x[4].tolist() if len(x) > 4 else [1] * len(starts)
            index = [slice(None)] * x[0].dim()
            for s, e, ax, st in zip(starts, ends, axes, steps):
                index[ax] = slice(s, min(e, x[0].shape[ax]), st)
            return x[0][tuple(index)]
        if op == "Pad":
            pads = x[1].tolist()
            r = len(pads) // 2
            torch_pads = []
            for ax in reversed(range(r)):
                torch_pads += [pads[ax], pads[ax + r]]
            return F.pad(x[0], torch_pads)
        raise SystemExit(f"onnx_torch.py: operator {op} is not supported")


def relative_error(y, ref):
    err = (y - ref).abs().max(dim=1).values
    scale = ref.abs().max(dim=1).values
    return float((err / scale).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["predict", "compare", "sgd-step"])
    ap.add_argument("net")
    ap.add_argument("stepped", nargs="?")
    ap.add_argument("-i", "--input", required=True)
    ap.add_argument("-o", "--output")
    ap.add_argument("-y", "--outputs")
    ap.add_argument("--labels")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--tol", type=float)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    g = Graph(args.net)
    u = torch.tensor(read_vectors(args.input))
    if args.command == "predict":
        y = g.run(u).detach().numpy()
        with open(args.output, "w") as f:
            for row in y:
                f.write(" ".join(repr(float(v)) for v in row) + "\n")
        return 0
    if args.command == "compare":
        ref = torch.tensor(read_vectors(args.outputs))
        y = g.run(u).detach()
        err = relative_error(y, ref)
        tol = 1e-12 if args.tol is None else args.tol
        classes = int((y.argmax(dim=1) != ref.argmax(dim=1)).sum())
        print(f"max relative error {err:.3e} over {u.shape[0]} samples (tolerance {tol:g}); "
              f"predicted class differs on {classes}")
        return 0 if err <= tol and classes == 0 else 1
    # sgd-step
    if not args.stepped or args.labels is None or args.lr is None:
        raise SystemExit("sgd-step needs STEPPED.onnx, --labels and --lr")
    labels = torch.tensor(read_vectors(args.labels)[:, 0].astype(np.int64))
    params = {k: g.tensors[k].clone().requires_grad_(True) for k in sorted(g.parameters)}
    loss = F.cross_entropy(g.run(u, params), labels)
    loss.backward()
    stepped = Graph(args.stepped)
    tol = 1e-10 if args.tol is None else args.tol
    worst, bad = 0.0, 0
    for k, p in params.items():
        new = (p - args.lr * p.grad).detach()
        if k not in stepped.tensors:
            print(f"{k}: missing in {args.stepped}")
            bad += 1
            continue
        ref = stepped.tensors[k]
        if ref.shape != new.shape:
            print(f"{k}: shape {list(ref.shape)}, PyTorch {list(new.shape)}")
            bad += 1
            continue
        err = float((new - ref).norm() / max(float(ref.norm()), 1e-300))
        worst = max(worst, err)
        if err > tol:
            print(f"{k}: relative error {err:.3e}")
            bad += 1
    print(f"loss {float(loss):.17g}; {len(params)} parameter tensors; largest relative "
          f"error {worst:.3e} (tolerance {tol:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
