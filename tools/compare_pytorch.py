#!/usr/bin/python3
"""Times ResNet20's float32 forward pass in PyTorch and in tacit on this machine.

PyTorch: the CIFAR ResNet20 of tools/make_fixtures.py (random weights, eval
mode), traced, frozen and optimised for inference (batch norm folded, as in
tacit's built-in model), 2 intra-op threads; best of repeated runs.
tacit: bench/bench_resnet (the structured block sweep of the built-in
resnet20, 2 threads), read from its JSON output.

Both are run twice in the same session, alternately, and each keeps its best
time, so the ratios compare the two under the same machine conditions. Needs python3-torch (Debian).

Usage: tools/compare_pytorch.py [BUILD_DIR]   (default: build)
"""

import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ResNet20  # noqa: E402

BATCHES = (1, 32, 128)


def time_pytorch(batch, seconds=3.0):
    torch.manual_seed(0)
    model = ResNet20().eval()
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


def time_tacit(build):
    out = subprocess.run(
        [os.path.join(build, "bench", "bench_resnet"), "--benchmark_filter=threads:2/",
         "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        k = int(b["name"].split("k:")[1].split("/")[0])
        result[k] = b["ms_per_batch"]
    return result


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    torch.set_num_threads(2)
    # Alternate passes (PyTorch, tacit, PyTorch, tacit) and keep each one's
    # best: the machine's speed drifts, and both get the same chances.
    torch_ms = {k: time_pytorch(k) for k in BATCHES}
    tacit_ms = time_tacit(build)
    for k in BATCHES:
        torch_ms[k] = min(torch_ms[k], time_pytorch(k))
    second = time_tacit(build)
    tacit_ms = {k: min(tacit_ms[k], second[k]) for k in BATCHES}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'batch':>5} {'PyTorch ms':>11} {'tacit ms':>9} {'tacit / PyTorch':>16}")
    for k in BATCHES:
        print(f"{k:>5} {torch_ms[k]:>11.2f} {tacit_ms[k]:>9.2f} "
              f"{tacit_ms[k] / torch_ms[k]:>16.2f}")


if __name__ == "__main__":
    main()
