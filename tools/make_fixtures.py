#!/usr/bin/python3
"""Writes the ONNX test fixtures of tests/data/onnx/ (run once; the output is committed).

Needs PyTorch 1.13 and onnx 1.12 (Debian packages python3-torch, python3-onnx).

Networks (random weights, float32, non-trivial batch-norm statistics, eval mode):
  tiny_cnn       conv/BN/ReLU, strided conv with asymmetric padding + LeakyReLU,
                 dilated grouped conv + Tanh, average pools (count_include_pad
                 both ways), 1x1 conv + Sigmoid, Flatten, Gemm; static batch 4
  residual_mlp   Gemm + ReLU, Gemm + BatchNormalization + ReLU with an additive
                 skip, MatMul + Add (bias) + ReLU with a skip, Gemm; dynamic batch
  resnet20       CIFAR ResNet20 (option A shortcuts: strided Slice + channel Pad),
                 GlobalAveragePool, Reshape through Shape/Gather/Concat; dynamic batch

For each network NAME:
  NAME.onnx               batch normalisation kept (BatchNormalization nodes)
  NAME_folded.onnx        batch normalisation folded into the preceding conv/linear
                          (folded in float64, rounded to float32)
  NAME_input.txt          4 inputs, one sample per line (flattened NCHW order)
  NAME_output.txt         PyTorch float64 outputs of NAME.onnx's float32 weights
  NAME_folded_output.txt  the same for NAME_folded.onnx
Numbers are written with repr() (shortest round-trip decimal of the float64).

Malformed models (rejected by the importer):
  unsupported_op.onnx     a Softmax node
  bad_auto_pad.onnx       Conv with auto_pad = SAME_UPPER
  bad_transa.onnx         Gemm with transA = 1
  weight_input.onnx       Conv whose weight is a graph input, not a constant
A hand-written float64 model with typed (non-raw) initializers:
  typed_double.onnx, typed_double_input.txt, typed_double_output.txt

Usage: tools/make_fixtures.py [OUTPUT_DIR]
"""

import copy
import io
import os
import sys

import numpy as np
import onnx
import onnx.helper as oh
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

SAMPLES = 4


# ---------------------------------------------------------------- networks


class TinyCnn(nn.Module):
    """3 x 10 x 10 -> 5."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, stride=1, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=(1, 0), bias=False)  # 8x5x4
        self.bn2 = nn.BatchNorm2d(8, eps=2.0 ** -10)  # float32-exact, as alpha below
        self.act2 = nn.LeakyReLU(0.125)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)  # 8x5x4
        self.bn3 = nn.BatchNorm2d(8)
        self.pool1 = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)  # 8x3x2
        self.conv4 = nn.Conv2d(8, 4, 1)
        self.pool2 = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=True)  # 4x4x3
        self.fc1 = nn.Linear(48, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = torch.tanh(self.bn3(self.conv3(x)))
        x = self.pool1(x)
        x = torch.sigmoid(self.conv4(x))
        x = self.pool2(x)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class ResidualMlp(nn.Module):
    """20 -> 6 with additive skip connections."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 32)
        self.bn2 = nn.BatchNorm1d(32)
        self.w3 = nn.Parameter(torch.randn(32, 32) / 32 ** 0.5)  # [in][out]: MatMul
        self.b3 = nn.Parameter(0.1 * torch.randn(32))
        self.fc4 = nn.Linear(32, 6)

    def forward(self, u):
        h1 = F.relu(self.fc1(u))
        h2 = F.relu(self.bn2(self.fc2(h1))) + h1
        h3 = F.relu(torch.matmul(h2, self.w3) + self.b3) + h2
        return self.fc4(h3)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else 0

    def shortcut(self, x):
        if self.pad == 0:
            return x
        # Option A: subsample and zero-pad the channels.
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet20 (He et al. 2016), 3 x 32 x 32 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1)
        out = out.view(out.size(0), -1)
        return self.linear(out)


# ---------------------------------------------------------------- helpers


def randomise_batch_norm(model, calibration):
    """Running statistics from calibration inputs, then perturbed; random gamma, beta."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x in calibration:
            model(x)
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean += 0.1 * torch.randn(c) * m.running_var.sqrt()
                m.running_var *= 0.5 + torch.rand(c)
                m.weight.copy_(0.5 + torch.rand(c))
                m.bias.copy_(0.1 * torch.randn(c))


def fold_batch_norm(model):
    """A copy with every BatchNorm that follows a Conv2d/Linear folded into it
    (computed in float64, returned in float32)."""
    model = copy.deepcopy(model).double().eval()
    gm = torch.fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(
                modules[node.target], (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        prev = node.args[0]
        if (prev.op != "call_module" or len(prev.users) != 1
                or not isinstance(modules[prev.target], (nn.Conv2d, nn.Linear))):
            continue
        lin, bn = modules[prev.target], modules[node.target]
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = lin.weight * scale.view(-1, *([1] * (lin.weight.dim() - 1)))
            b = lin.bias if lin.bias is not None else torch.zeros_like(bn.running_mean)
            b = (b - bn.running_mean) * scale + bn.bias
        lin.weight = nn.Parameter(w)
        lin.bias = nn.Parameter(b)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.lint()
    gm.recompile()
    assert folded > 0
    return gm.float().eval()


def reference(model, inputs):
    """float64 outputs of the float32 weights."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m(inputs.double())


def write_rows(path, rows):
    with open(path, "w") as f:
        for row in rows.reshape(rows.shape[0], -1).tolist():
            f.write(" ".join(repr(float(v)) for v in row) + "\n")


def export(model, example, path, keep_bn, dynamic):
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=13)
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    if keep_bn:
        # PRESERVE keeps the eval-mode BatchNormalization nodes (EVAL folds them).
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kwargs.update(training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    torch.onnx.export(model, example, path, **kwargs)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    bn = sum(n.op_type == "BatchNormalization" for n in m.graph.node)
    assert (bn > 0) == keep_bn, (path, bn)
    print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes, {bn} BatchNormalization, "
          f"ops {' '.join(ops)}")


def make_network(out, name, model, input_shape, dynamic, calibration_batches=4):
    g = torch.Generator().manual_seed(7)
    calibration = [torch.randn(16, *input_shape, generator=g) for _ in range(calibration_batches)]
    randomise_batch_norm(model, calibration)
    inputs = torch.randn(SAMPLES, *input_shape, generator=g, dtype=torch.float64)
    folded = fold_batch_norm(model)
    example = inputs.float()
    export(model, example, os.path.join(out, name + ".onnx"), keep_bn=True, dynamic=dynamic)
    export(folded, example, os.path.join(out, name + "_folded.onnx"), keep_bn=False,
           dynamic=dynamic)
    y = reference(model, inputs)
    yf = reference(folded, inputs)
    with torch.no_grad():
        y32 = model(example).double()
    print(f"  float32 vs float64 PyTorch: {((y32 - y).abs().max() / y.abs().max()).item():.2e}; "
          f"folded vs kept: {((yf - y).abs().max() / y.abs().max()).item():.2e}; "
          f"|y| max {y.abs().max().item():.3g}")
    write_rows(os.path.join(out, name + "_input.txt"), inputs.numpy())
    write_rows(os.path.join(out, name + "_output.txt"), y.numpy())
    write_rows(os.path.join(out, name + "_folded_output.txt"), yf.numpy())


def save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes")


def make_malformed(out):
    rng = np.random.default_rng(3)
    f32 = onnx.TensorProto.FLOAT

    def gemm_graph(extra_nodes, extra_inits, output, name):
        w = oh.make_tensor("w", f32, [4, 3], rng.standard_normal(12).astype(np.float32))
        b = oh.make_tensor("b", f32, [4], rng.standard_normal(4).astype(np.float32))
        nodes = [oh.make_node("Gemm", ["input", "w", "b"], ["h"], name="fc", transB=1)]
        g = oh.make_graph(nodes + extra_nodes, name,
                          [oh.make_tensor_value_info("input", f32, ["batch", 3])],
                          [oh.make_tensor_value_info(output, f32, ["batch", 4])],
                          [w, b] + extra_inits)
        return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])

    save(gemm_graph([oh.make_node("Softmax", ["h"], ["output"], name="probabilities",
                                  axis=1)], [], "output", "unsupported_op"),
         os.path.join(out, "unsupported_op.onnx"))

    w = oh.make_tensor("w", f32, [2, 1, 3, 3], rng.standard_normal(18).astype(np.float32))
    g = oh.make_graph([oh.make_node("Conv", ["input", "w"], ["output"], name="conv_same",
                                    kernel_shape=[3, 3], auto_pad="SAME_UPPER")],
                      "bad_auto_pad",
                      [oh.make_tensor_value_info("input", f32, [1, 1, 5, 5])],
                      [oh.make_tensor_value_info("output", f32, [1, 2, 5, 5])], [w])
    save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)]),
         os.path.join(out, "bad_auto_pad.onnx"))

    w = oh.make_tensor("w", f32, [3, 4], rng.standard_normal(12).astype(np.float32))
    g = oh.make_graph([oh.make_node("Gemm", ["input", "w"], ["output"], name="fc_transposed",
                                    transA=1)],
                      "bad_transa",
                      [oh.make_tensor_value_info("input", f32, [3, 1])],
                      [oh.make_tensor_value_info("output", f32, [1, 4])], [w])
    save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)]),
         os.path.join(out, "bad_transa.onnx"))

    g = oh.make_graph([oh.make_node("Conv", ["input", "weight"], ["output"], name="conv_free",
                                    kernel_shape=[3, 3])],
                      "weight_input",
                      [oh.make_tensor_value_info("input", f32, [1, 1, 5, 5]),
                       oh.make_tensor_value_info("weight", f32, [2, 1, 3, 3])],
                      [oh.make_tensor_value_info("output", f32, [1, 2, 3, 3])])
    save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)]),
         os.path.join(out, "weight_input.onnx"))

    # float64 model, typed (non-raw) initializers, Constant-node bias, Reshape [-1, k].
    f64 = onnx.TensorProto.DOUBLE
    w1 = rng.standard_normal((5, 6))
    b1 = rng.standard_normal(5)
    w2 = rng.standard_normal((5, 3))  # MatMul [in][out]
    b2 = rng.standard_normal(3)
    nodes = [
        oh.make_node("Constant", [], ["shape"], name="shape_const",
                     value=oh.make_tensor("shape_value", onnx.TensorProto.INT64, [2], [-1, 6])),
        oh.make_node("Reshape", ["input", "shape"], ["flat"], name="reshape"),
        oh.make_node("Gemm", ["flat", "w1", "b1"], ["h"], name="fc1", transB=1, alpha=0.5,
                     beta=2.0),
        oh.make_node("Tanh", ["h"], ["t"], name="tanh"),
        oh.make_node("Identity", ["t"], ["t2"], name="identity"),
        oh.make_node("MatMul", ["t2", "w2"], ["m"], name="fc2"),
        oh.make_node("Constant", [], ["b2"], name="bias_const",
                     value=oh.make_tensor("b2_value", f64, [3], b2.tolist())),
        oh.make_node("Add", ["b2", "m"], ["output"], name="bias"),
    ]
    g = oh.make_graph(nodes, "typed_double",
                      [oh.make_tensor_value_info("input", f64, ["batch", 2, 3])],
                      [oh.make_tensor_value_info("output", f64, ["batch", 3])],
                      [oh.make_tensor("w1", f64, [5, 6], w1.flatten().tolist()),
                       oh.make_tensor("b1", f64, [5], b1.tolist()),
                       oh.make_tensor("w2", f64, [5, 3], w2.flatten().tolist())])
    save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)]),
         os.path.join(out, "typed_double.onnx"))
    u = rng.standard_normal((SAMPLES, 6))
    y = np.tanh(0.5 * u @ w1.T + 2.0 * b1) @ w2 + b2
    write_rows(os.path.join(out, "typed_double_input.txt"), u)
    write_rows(os.path.join(out, "typed_double_output.txt"), y)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "onnx")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    make_network(out, "tiny_cnn", TinyCnn(), (3, 10, 10), dynamic=False)
    torch.manual_seed(1)
    make_network(out, "residual_mlp", ResidualMlp(), (20,), dynamic=True)
    torch.manual_seed(2)
    net = ResNet20()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
    make_network(out, "resnet20", net, (3, 32, 32), dynamic=True, calibration_batches=2)
    make_malformed(out)


if __name__ == "__main__":
    main()
