#!/usr/bin/python3
"""Writes the training fixtures of tests/data/train/ (run once; the output is committed).

Needs PyTorch 1.13 and onnx 1.12 (Debian packages python3-torch, python3-onnx).
Everything is float64, so that tacit's gradients can be compared to 1e-10.

Networks (seeded random weights):
  mlp         Linear 12->10 + ReLU, Linear 10->8 + Tanh, Linear 8->6 + LeakyReLU(0.125),
              Linear 6->4
  cnn         1 x 8 x 8 input: conv 3x3 (1->4, pad 1) + BN + ReLU; conv 3x3 (4->4, pad 1)
              + BN, added to the first block's output (residual) + ReLU; conv 3x3
              (4->6, stride 2, pad 1) + BN + ReLU; global average pooling, Linear 6->3.
              Batch norms in eval mode with non-trivial statistics.

For each network NAME:
  NAME.onnx         the network (cnn: BatchNormalization nodes kept)
  NAME_folded.onnx  cnn only: batch norms folded into the convolutions (float64)
  NAME.json         {"inputs": [[...]] (samples x features, flattened NCHW),
                     "labels": [...],
                     "loss": mean softmax cross-entropy,
                     "grads": {parameter: flat values} of the mean loss (autograd,
                              for cnn with respect to the folded network's parameters),
                     "sgd": {"lr", "momentum", "weight_decay",
                             "after": [{parameter: values} after step 1, after step 2]}}
                    (full-batch SGD steps of torch.optim.SGD on the (folded) network)
  optimizers.json   torch.optim on a 6-value parameter with three given gradients:
                    {"params", "grads": [3 lists], "runs": [{"optimizer", options...,
                    "after": [params after each step]}]} for SGD (momentum, Nesterov,
                    weight decay), Adam (weight decay) and AdamW.

With --fashion (Fashion-MNIST from /usr/share/datasets/fashion-mnist, minutes):
  fashion_cnn_init.onnx   the small CNN of the README (conv 1->8 + ReLU, conv 8->16
                          stride 2 + ReLU, conv 16->16 stride 2 + ReLU, Linear 784->10)
                          at its seeded initialisation, float32
  fashion_cnn_train.json  PyTorch's run of the recipe from that initialisation (SGD
                          momentum 0.9, lr 0.05, batch 128, 5 epochs, float32): test
                          accuracy and loss per epoch

With --fashion-resnet (seconds):
  fashion_resnet_init.onnx  the small ResNet of the README (FashionResNet: stem conv
                          3x3 1->8 + BN + ReLU, three stages of one basic block, widths
                          8/16/32, strides 1/2/2, 1x1 projection + BN shortcuts where the
                          shape changes, global average pooling, Linear 32->10) at its
                          seeded initialisation (convolutions as torchvision's ResNet:
                          Kaiming normal, fan_out; batch norms at their initial
                          statistics, folded into the convolutions), float32; the
                          environment variable RESNET_BLOCKS (default 1) sets the basic
                          blocks per stage

Parameter names are PyTorch's state_dict keys of the (folded) module.
Numbers are written with repr() (shortest round-trip decimal of the float64).

Usage: tools/make_train_fixtures.py [--fashion | --fashion-resnet] [OUTPUT_DIR]
"""

import copy
import json
import os
import sys

import onnx
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

SAMPLES = 16
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-3
RESNET_BLOCKS = int(os.environ.get("RESNET_BLOCKS", "1"))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 10)
        self.fc2 = nn.Linear(10, 8)
        self.fc3 = nn.Linear(8, 6)
        self.fc4 = nn.Linear(6, 4)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        x = F.leaky_relu(self.fc3(x), 0.125)  # float32-exact (ONNX stores alpha as float)
        return self.fc4(x)


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.conv3 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)) + x)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def randomise_batch_norm(model, g):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
                m.weight.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
                m.bias.copy_(0.1 * torch.randn(c, generator=g, dtype=torch.float64))


def fold_batch_norm(model):
    """A copy with every BatchNorm after a Conv2d folded into it (float64)."""
    model = copy.deepcopy(model).double().eval()
    gm = torch.fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        prev = node.args[0]
        lin, bn = modules[prev.target], modules[node.target]
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = lin.weight * scale.view(-1, 1, 1, 1)
            b = (lin.bias - bn.running_mean) * scale + bn.bias
        lin.weight = nn.Parameter(w)
        lin.bias = nn.Parameter(b)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


def export(model, example, path, keep_bn):
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=13,
                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    if keep_bn:
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kwargs.update(training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    torch.onnx.export(model, example, path, **kwargs)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes, ops {' '.join(ops)}")


def flat(t):
    return [repr(float(v)) for v in t.detach().reshape(-1).tolist()]


def reference(model, inputs, labels):
    """Loss, gradients and two full-batch SGD steps of a float64 module."""
    model = copy.deepcopy(model).double().eval()
    loss = F.cross_entropy(model(inputs), labels)
    model.zero_grad()
    loss.backward()
    grads = {k: flat(p.grad) for k, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    after = []
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        opt.step()
        after.append({k: flat(p) for k, p in model.named_parameters()})
    return {"loss": repr(float(loss)), "grads": grads,
            "sgd": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
                    "after": after}}


def write_json(path, inputs, labels, ref):
    doc = {"inputs": [[repr(float(v)) for v in row]
                      for row in inputs.reshape(inputs.shape[0], -1).tolist()],
           "labels": labels.tolist()}
    doc.update(ref)
    write_text(path, doc)


def optimizer_runs(path):
    g = torch.Generator().manual_seed(3)
    p0 = torch.randn(6, generator=g, dtype=torch.float64)
    grads = [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3)]
    configs = [
        ("sgd", dict(lr=0.1)),
        ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
        ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.001)),
        ("adam", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)),
        ("adamw", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ]
    runs = []
    for name, kw in configs:
        p = nn.Parameter(p0.clone())
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}[name]([p], **kw)
        after = []
        for gr in grads:
            p.grad = gr.clone()
            opt.step()
            after.append(flat(p))
        run = {"optimizer": name, "lr": kw["lr"], "momentum": kw.get("momentum", 0.0),
               "nesterov": kw.get("nesterov", False),
               "weight_decay": kw.get("weight_decay", 0.0), "after": after}
        if "betas" in kw:
            run.update(beta1=kw["betas"][0], beta2=kw["betas"][1], eps=kw["eps"])
        runs.append(run)
    doc = {"params": flat(p0), "grads": [flat(gr) for gr in grads], "runs": runs}
    write_text(path, doc)


def write_text(path, doc):
    import re
    text = json.dumps(doc, indent=1).replace('"', "'")
    text = re.sub(r"'(-?[0-9][0-9.e+-]*)'", r"\1", text).replace("'", '"')
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes")


class FashionCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """conv 3x3 (stride s) + BN + ReLU, conv 3x3 + BN, plus the input (identity) or
    its 1x1 projection (stride s) + BN where the shape changes (option B), ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.proj is None else self.proj(x)))


class FashionResNet(nn.Module):
    """A ResNet for 1 x 28 x 28 images: stem conv 3x3 1->w0 + BN + ReLU, three stages
    of `blocks` basic blocks of widths w0, w1, w2 and strides 1, 2, 2 (28, 14, 7),
    global average pooling, Linear w2->10."""

    def __init__(self, widths=(8, 16, 32), blocks=1):
        super().__init__()
        self.stem = nn.Conv2d(1, widths[0], 3, padding=1)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for k, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if k > 0 and b == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[-1], 10)
        # torchvision's ResNet initialisation of the convolutions (the Linear keeps
        # PyTorch's default); batch norms at weight 1, bias 0, mean 0, variance 1.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def read_idx(path):
    import gzip
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion(out, epochs=5):
    import time
    d = "/usr/share/datasets/fashion-mnist"
    xtr = torch.tensor(read_idx(f"{d}/train-images-idx3-ubyte.gz"), dtype=torch.float32) / 255
    ytr = torch.tensor(read_idx(f"{d}/train-labels-idx1-ubyte.gz"), dtype=torch.long)
    xte = torch.tensor(read_idx(f"{d}/t10k-images-idx3-ubyte.gz"), dtype=torch.float32) / 255
    yte = torch.tensor(read_idx(f"{d}/t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    xtr, xte = xtr.unsqueeze(1), xte.unsqueeze(1)
    torch.manual_seed(1)
    model = FashionCnn()
    export(model, xtr[:4], os.path.join(out, "fashion_cnn_init.onnx"), keep_bn=False)
    torch.set_num_threads(2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=g)
        t0 = time.perf_counter()
        for b in range(0, xtr.shape[0], 128):
            idx = perm[b:b + 128]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        seconds = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            logits = model(xte)
            loss = F.cross_entropy(logits, yte).item()
            acc = (logits.argmax(1) == yte).float().mean().item()
        history.append({"epoch": epoch + 1, "test_loss": loss, "test_accuracy": acc,
                        "seconds": seconds})
        print(f"fashion cnn epoch {epoch + 1}: test accuracy {100 * acc:.2f}%, "
              f"loss {loss:.4f}, {seconds:.1f} s")
    doc = {"recipe": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128,
                      "epochs": epochs, "precision": "float32"},
           "torch": torch.__version__, "history": history}
    with open(os.path.join(out, "fashion_cnn_train.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def fashion_resnet(out, blocks=RESNET_BLOCKS):
    """fashion_resnet_init.onnx: FashionResNet at its seeded initialisation (seed 1),
    batch norms (initial statistics) folded into the convolutions, float32."""
    torch.manual_seed(1)
    model = FashionResNet(blocks=blocks).eval()
    folded = fold_batch_norm(model)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2),
                   dtype=torch.float64)
    with torch.no_grad():
        diff = (model.double()(x) - folded(x)).abs().max().item()
    print(f"fashion resnet: folded vs batch norm kept: {diff:.2e}")
    export(folded.float(), x[:1].float(), os.path.join(out, "fashion_resnet_init.onnx"),
           keep_bn=False)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--fashion")]
    out = args[0] if args else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "train")
    os.makedirs(out, exist_ok=True)
    if "--fashion-resnet" in sys.argv[1:]:
        fashion_resnet(out)
        return
    if "--fashion" in sys.argv[1:]:
        fashion(out)
        return
    torch.manual_seed(15)
    g = torch.Generator().manual_seed(15)

    mlp = Mlp().double().eval()
    x = torch.randn(SAMPLES, 12, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (SAMPLES,), generator=g)
    export(mlp, x, os.path.join(out, "mlp.onnx"), keep_bn=False)
    write_json(os.path.join(out, "mlp.json"), x, y, reference(mlp, x, y))

    cnn = Cnn().double().eval()
    randomise_batch_norm(cnn, g)
    folded = fold_batch_norm(cnn)
    x = torch.randn(SAMPLES, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (SAMPLES,), generator=g)
    with torch.no_grad():
        diff = (cnn(x) - folded(x)).abs().max().item()
    print(f"cnn: folded vs batch norm kept: {diff:.2e}")
    export(cnn, x, os.path.join(out, "cnn.onnx"), keep_bn=True)
    export(folded, x, os.path.join(out, "cnn_folded.onnx"), keep_bn=False)
    write_json(os.path.join(out, "cnn.json"), x, y, reference(folded, x, y))
    optimizer_runs(os.path.join(out, "optimizers.json"))


if __name__ == "__main__":
    main()
