#!/usr/bin/python3
"""Times ResNet20's float32 forward pass in PyTorch and in tacit on this machine,
each limited to the same instruction-set level.

PyTorch: the CIFAR ResNet20 of tools/make_fixtures.py (random weights, eval
mode; option A shortcuts, and a variant with option B shortcuts: 1x1
convolution + batch norm), traced, frozen and optimised for inference (batch
norm folded, as in tacit's models), 2 intra-op threads; best of repeated runs.
It runs in a subprocess whose environment limits it to the level tacit is
forced to (set before torch is imported):
  avx512   ATEN_CPU_CAPABILITY=avx512 (oneDNN unrestricted: AVX-512 on an
           AVX-512 host)
  avx2     ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2
  generic  ONEDNN_MAX_CPU_ISA=SSE41, ATEN_CPU_CAPABILITY=default
and the ISA it used is checked and printed: oneDNN's implementation of every
convolution of one forward pass (its verbose trace, e.g. jit:avx2) and ATen's
CPU capability (torch.__config__.show()).
tacit, 2 threads, with TACIT_ISA set to the level:
  - bench: bench/bench_resnet (the built-in resnet20, warm solves), read from
    its JSON output;
  - solve: `tacit solve --repeat 5` (best solve, and the first, cold one) on
    the built-in model (`tacit export-resnet20`, shortcuts a and b) and on the
    option-B network exported by PyTorch to ONNX and imported
    (`tacit import-onnx`).

PyTorch and tacit run alternately, level by level, in two passes and each
keeps its best time, so the ratios compare the two under the same machine
conditions. Needs python3-torch (Debian).

Usage: tools/compare_pytorch.py [BUILD_DIR] [--isa LEVEL[,LEVEL...]]
  BUILD_DIR  default: build
  --isa      avx512, avx2 and/or generic (default: every level the CPU runs)
"""

import argparse
import ctypes
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
LEVEL_NUMBER = {v: k for k, v in LEVELS.items()}
# PyTorch's environment at each of tacit's levels.
TORCH_ENV = {
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "generic": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
}
# oneDNN implementations expected at each level (a convolution's name ends
# in its ISA: jit:avx512_core, jit_1x1:avx2, ...; not gemm or ref).
TORCH_EXPECT = {"avx512": "avx512", "avx2": "avx2", "generic": "sse41"}


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


def onednn_trace(f):
    """The implementations oneDNN names in its verbose trace while f() runs
    (the trace goes to the C library's stdout: fd 1, redirected to a file)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as trace:
        os.dup2(trace.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                f()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        trace.seek(0)
        lines = trace.read().splitlines()
    convs = sorted({line.split(",")[4] for line in lines
                    if line.startswith("onednn_verbose,exec,cpu,convolution,")})
    isa = [line.split("isa:", 1)[1] for line in lines
           if line.startswith("onednn_verbose,info,cpu,isa:")]
    return convs, isa[0] if isa else None


def time_pytorch(cls, batch, seconds=3.0):
    """(best ms, first call ms, oneDNN convolution implementations)."""
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.rand(batch, 3, 32, 32)
    with torch.no_grad():
        traced = torch.jit.optimize_for_inference(torch.jit.trace(model, x))
        t0 = time.perf_counter()
        traced(x)
        first = time.perf_counter() - t0
        for _ in range(4):
            traced(x)
        convs, isa = onednn_trace(lambda: traced(x))
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            traced(x)
            best = min(best, time.perf_counter() - t0)
    return best * 1e3, first * 1e3, convs, isa


def torch_worker(out):
    """Subprocess: PyTorch's times under the environment it was started with."""
    torch.set_num_threads(2)
    config = torch.__config__.show()
    aten = config.split("CPU capability usage:", 1)[1].split("\n", 1)[0].strip()
    result = {"aten": aten, "threads": torch.get_num_threads(), "times": {},
              "convs": [], "onednn_isa": None}
    convs = set()
    for cls, tag in ((ResNet20, "a"), (ResNet20B, "b")):
        for k in BATCHES:
            best, first, c, isa = time_pytorch(cls, k)
            result["times"][f"{tag}{k}"] = (best, first)
            convs.update(c)
            result["onednn_isa"] = result["onednn_isa"] or isa
    result["convs"] = sorted(convs)
    with open(out, "w") as f:
        json.dump(result, f)


def time_pytorch_at(level):
    """Runs torch_worker in a subprocess limited to `level`; checks the ISA."""
    env = dict(os.environ, **TORCH_ENV[level])
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_VERBOSE", "DNNL_VERBOSE",
                "ATEN_CPU_CAPABILITY"):
        if var not in TORCH_ENV[level]:
            env.pop(var, None)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker",
                        out.name], check=True, env=env)
        result = json.load(open(out.name))
    want = TORCH_EXPECT[level]
    bad = [c for c in result["convs"] if not c.split(":")[-1].startswith(want)]
    if not result["convs"] or bad:
        sys.exit(f"PyTorch at level {level}: oneDNN ran the convolutions with "
                 f"{result['convs']}, expected jit implementations for {want}*")
    aten_want = {"avx512": "AVX512", "avx2": "AVX2", "generic": "DEFAULT"}[level]
    if result["aten"].upper() != aten_want:
        sys.exit(f"PyTorch at level {level}: ATen's CPU capability is {result['aten']}, "
                 f"expected {aten_want}")
    return result


def time_bench(build, isa):
    """{k: (states ms, outputs ms, CSR sweep / structured)} at one level."""
    out = subprocess.run(
        [os.path.join(build, "bench", "bench_resnet"),
         f"--benchmark_filter=threads:2/k:[0-9]+/isa:{LEVEL_NUMBER[isa]}/",
         "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        k = int(b["name"].split("k:")[1].split("/")[0])
        assert LEVELS[int(b["name"].split("isa:")[1].split("/")[0])] == isa, b["name"]
        result[k] = (b["ms_per_batch"], b["outputs_ms"], b["ratio_to_csr_sweep"])
    assert sorted(result) == list(BATCHES), sorted(result)
    return result


def tacit(build, *args, env=None):
    return subprocess.run([os.path.join(build, "tacit"), *args], check=True,
                          capture_output=True, text=True, env=env).stdout


def time_solves(build, models, inputs, isa):
    """{(model, k): (first ms, best ms)} of `tacit solve --repeat 5` at one level."""
    result = {}
    env = dict(os.environ, TACIT_ISA=isa)
    for name, path in models.items():
        for k in BATCHES:
            doc = json.loads(tacit(build, "solve", path, "-i", inputs[k], "-o",
                                   os.devnull, "--precision", "float32", "--threads",
                                   "2", "--repeat", "5", "--json", env=env))
            assert doc["isa"] == isa, doc["isa"]
            result[(name, k)] = (doc["solve_seconds"] * 1e3,
                                 doc["best_solve_seconds"] * 1e3)
    return result


def keep_min(best, new):
    if best is None:
        return new
    return {key: tuple(map(min, best[key], v)) for key, v in new.items()}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        return torch_worker(sys.argv[2])
    parser = argparse.ArgumentParser(
        description="ResNet20 float32: tacit against PyTorch at the same ISA level")
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--isa", help="comma-separated levels (avx512, avx2, generic); "
                        "default: every level this CPU runs")
    opts = parser.parse_args()
    build = opts.build
    info = tacit(build, "--version")
    supported = [v for v in ("avx512", "avx2", "generic")
                 if subprocess.run([os.path.join(build, "tacit"), "--version"],
                                   env=dict(os.environ, TACIT_ISA=v), capture_output=True,
                                   text=True).stdout.count("kernels: " + v)]
    levels = supported
    if opts.isa:
        levels = [v.strip() for v in opts.isa.split(",")]
        for v in levels:
            if v not in TORCH_ENV:
                parser.error(f"--isa: unknown level '{v}' (avx512, avx2 or generic)")
            if v not in supported:
                parser.error(f"--isa: this CPU cannot run level '{v}' "
                             f"(it runs {', '.join(supported)})")
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
        torch_best, torch_info, bench_best, solves_best = {}, {}, {}, {}
        for _ in range(2):
            for isa in levels:
                t = time_pytorch_at(isa)
                torch_info[isa] = t
                torch_best[isa] = keep_min(torch_best.get(isa),
                                           {key: tuple(v) for key, v in t["times"].items()})
                bench_best[isa] = keep_min(bench_best.get(isa), time_bench(build, isa))
                solves_best[isa] = keep_min(solves_best.get(isa),
                                            time_solves(build, models, inputs, isa))

    print(info.strip())
    print(f"torch {torch.__version__}, 2 threads, in a subprocess per level:")
    for isa in levels:
        t = torch_info[isa]
        env = " ".join(f"{k}={v}" for k, v in TORCH_ENV[isa].items())
        print(f"  tacit {isa}: PyTorch with {env}: oneDNN isa '{t['onednn_isa']}', "
              f"convolutions {', '.join(t['convs'])}; ATen CPU capability {t['aten']}")
    print("\nbench_resnet (built-in, shortcuts a), warm; 'outputs': predict(U, Y), the states"
          " not kept (as PyTorch's forward); 'states': solve(U, X):")
    print(f"{'isa':>8} {'batch':>5} {'PyTorch ms':>11} {'outputs ms':>11} {'/ PyTorch':>10}"
          f" {'states ms':>10} {'/ PyTorch':>10} {'CSR / structured':>17}")
    for isa in levels:
        for k, (ms, outputs, csr) in sorted(bench_best[isa].items()):
            ref = torch_best[isa][f"a{k}"][0]
            print(f"{isa:>8} {k:>5} {ref:>11.2f} {outputs:>11.2f} {outputs / ref:>10.2f}"
                  f" {ms:>10.2f} {ms / ref:>10.2f} {csr:>17.2f}")
    print("\ntacit solve --repeat 5 (best; first = cold; both / PyTorch's best, warm;"
          " PyTorch's own first call after optimize_for_inference beside it):")
    print(f"{'model':>10} {'isa':>8} {'batch':>5} {'PyTorch ms':>11} {'best ms':>8}"
          f" {'/ PyTorch':>10} {'first ms':>9} {'/ PyTorch':>10} {'PyTorch first ms':>17}")
    for isa in levels:
        for (name, k), (first, best) in sorted(solves_best[isa].items()):
            ref, ref_first = torch_best[isa][f"{name[-1]}{k}"]
            print(f"{name:>10} {isa:>8} {k:>5} {ref:>11.2f} {best:>8.2f} {best / ref:>10.2f}"
                  f" {first:>9.2f} {first / ref:>10.2f} {ref_first:>17.2f}")


if __name__ == "__main__":
    main()
