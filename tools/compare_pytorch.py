#!/usr/bin/python3
"""Times ResNet20's float32 forward pass in PyTorch and in tacit on this machine.

PyTorch: the CIFAR ResNet20 of tools/make_fixtures.py (random weights, eval
mode; option A shortcuts, and a variant with option B shortcuts: 1x1
convolution + batch norm), traced, frozen and optimised for inference (batch
norm folded, as in tacit's models), 2 intra-op threads; best of repeated runs.
tacit, 2 threads, at every instruction-set level the CPU supports:
  - bench: bench/bench_resnet (the built-in resnet20, warm solves), read from
    its JSON output;
  - solve: `tacit solve --repeat 5` (best solve, and the first, cold one) on
    the built-in model (`tacit export-resnet20`, shortcuts a and b) and on the
    option-B network exported by PyTorch to ONNX and imported
    (`tacit import-onnx`).

PyTorch and tacit run alternately in the same session and each keeps its best
time, so the ratios compare the two under the same machine conditions. Needs
python3-torch (Debian).

Usage: tools/compare_pytorch.py [BUILD_DIR]   (default: build)
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import BasicBlock, ResNet20  # noqa: E402

BATCHES = (1, 32, 128)
LEVELS = {0: "generic", 1: "avx2", 2: "avx512"}


class BlockB(BasicBlock):
    """Basic block with an option-B shortcut (1x1 strided convolution + BN)."""

    def __init__(self, in_planes, planes, stride):
        super().__init__(in_planes, planes, stride)
        self.project = None
        if stride != 1 or in_planes != planes:
            self.project = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))

    def shortcut(self, x):
        return x if self.project is None else self.project(x)


class ResNet20B(ResNet20):
    def __init__(self):
        super().__init__()
        blocks, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(BlockB(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)


def time_pytorch(cls, batch, seconds=3.0):
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.rand(batch, 3, 32, 32)
    with torch.no_grad():
        traced = torch.jit.optimize_for_inference(torch.jit.trace(model, x))
        for _ in range(5):
            traced(x)
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            traced(x)
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def time_bench(build):
    out = subprocess.run(
        [os.path.join(build, "bench", "bench_resnet"), "--benchmark_filter=threads:2/",
         "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        k = int(b["name"].split("k:")[1].split("/")[0])
        isa = LEVELS[int(b["name"].split("isa:")[1].split("/")[0])]
        result[(isa, k)] = (b["ms_per_batch"], b["outputs_ms"], b["ratio_to_csr_sweep"])
    return result


def tacit(build, *args, env=None):
    return subprocess.run([os.path.join(build, "tacit"), *args], check=True,
                          capture_output=True, text=True, env=env).stdout


def time_solves(build, models, inputs, levels):
    """{(model, isa, k): (first ms, best ms)} of `tacit solve --repeat 5`."""
    result = {}
    for isa in levels:
        env = dict(os.environ, TACIT_ISA=isa)
        for name, path in models.items():
            for k in BATCHES:
                doc = json.loads(tacit(build, "solve", path, "-i", inputs[k], "-o",
                                       os.devnull, "--precision", "float32", "--threads",
                                       "2", "--repeat", "5", "--json", env=env))
                assert doc["isa"] == isa, doc["isa"]
                result[(name, isa, k)] = (doc["solve_seconds"] * 1e3,
                                          doc["best_solve_seconds"] * 1e3)
    return result


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    torch.set_num_threads(2)
    info = tacit(build, "--version")
    levels = [v for v in ("generic", "avx2", "avx512")
              if subprocess.run([os.path.join(build, "tacit"), "--version"],
                                env=dict(os.environ, TACIT_ISA=v), capture_output=True,
                                text=True).stdout.count("kernels: " + v)]
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for shortcut in ("a", "b"):
            path = os.path.join(tmp, f"r20{shortcut}.tacit")
            tacit(build, "export-resnet20", "-o", path, "--shortcut", shortcut,
                  "--precision", "float32", "--inputs", os.path.join(tmp, "U.txt"),
                  "--count", "128")
            models[f"built-in {shortcut}"] = path
        torch.manual_seed(0)
        onnx_path = os.path.join(tmp, "r20b.onnx")
        torch.onnx.export(ResNet20B().eval(), torch.rand(1, 3, 32, 32), onnx_path,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                          opset_version=13)
        models["onnx b"] = os.path.join(tmp, "r20b_onnx.tacit")
        tacit(build, "import-onnx", onnx_path, "-o", models["onnx b"])
        with open(os.path.join(tmp, "U.txt")) as f:
            lines = f.readlines()
        inputs = {}
        for k in BATCHES:
            inputs[k] = os.path.join(tmp, f"U{k}.txt")
            with open(inputs[k], "w") as f:
                f.writelines(lines[:k])

        # Alternate passes and keep each one's best: the machine's speed drifts.
        torch_ms = {}
        for _ in range(2):
            for cls, tag in ((ResNet20, "a"), (ResNet20B, "b")):
                for k in BATCHES:
                    t = time_pytorch(cls, k)
                    torch_ms[(tag, k)] = min(torch_ms.get((tag, k), t), t)
            bench = time_bench(build)
            solves = time_solves(build, models, inputs, levels)
            if _ == 0:
                bench_best, solves_best = bench, solves
            else:
                bench_best = {key: tuple(map(min, bench_best[key], v))
                              for key, v in bench.items()}
                solves_best = {key: (min(solves_best[key][0], v[0]),
                                     min(solves_best[key][1], v[1]))
                               for key, v in solves.items()}

    print(info.strip())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\nbench_resnet (built-in, shortcuts a), warm; 'outputs': predict(U, Y), the states"
          " not kept (as PyTorch's forward); 'states': solve(U, X):")
    print(f"{'isa':>8} {'batch':>5} {'PyTorch ms':>11} {'outputs ms':>11} {'/ PyTorch':>10}"
          f" {'states ms':>10} {'/ PyTorch':>10} {'CSR / structured':>17}")
    for (isa, k), (ms, outputs, csr) in sorted(bench_best.items()):
        ref = torch_ms[('a', k)]
        print(f"{isa:>8} {k:>5} {ref:>11.2f} {outputs:>11.2f} {outputs / ref:>10.2f}"
              f" {ms:>10.2f} {ms / ref:>10.2f} {csr:>17.2f}")
    print("\ntacit solve --repeat 5 (best; first = cold):")
    print(f"{'model':>10} {'isa':>8} {'batch':>5} {'PyTorch ms':>11} {'best ms':>8}"
          f" {'/ PyTorch':>10} {'first ms':>9} {'/ PyTorch':>10}")
    for (name, isa, k), (first, best) in sorted(solves_best.items()):
        ref = torch_ms[(name[-1], k)]
        print(f"{name:>10} {isa:>8} {k:>5} {ref:>11.2f} {best:>8.2f} {best / ref:>10.2f}"
              f" {first:>9.2f} {first / ref:>10.2f}")


if __name__ == "__main__":
    main()
