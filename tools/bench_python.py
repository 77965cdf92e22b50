#!/usr/bin/python3
"""Costs of the Python layer, each against a baseline measured in the same run.

1. Solving a batch from a NumPy array: tacit.Solver(model).solve(U) (best of
   repeated calls; the samples are copied into the solver's slab-major batch
   and the outputs out of it) against the C++ solve of the same model and
   inputs through `tacit solve --repeat` (best solve), with the same number of
   repetitions on each side, alternated twice (C++, Python, C++, Python: best
   of both rounds); the same from a PyTorch tensor (read through DLPack) when
   torch imports, and tacit.solve(model, U) (which keeps the solver of the
   model's last call).
2. to_scipy() of the ResNet-like CSR (36.6 M nonzeros): time (best of 20) and
   the memory NumPy allocates for it (tracemalloc), against the bytes of the
   matrix's values.

Usage: PYTHONPATH=build/python tools/bench_python.py [BUILD_DIR] [--threads N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import tacit

try:
    import torch
except ImportError:
    torch = None


def best_of(f, seconds=3.0, at_least=5):
    best, start, n = float("inf"), time.perf_counter(), 0
    while n < at_least or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cli = os.path.join(args.build, "tacit")
    print(f"tacit {tacit.__version__}, kernels {tacit.isa()}, {args.threads} threads")

    with tempfile.TemporaryDirectory() as tmp:
        for name, dtype, batch in (("resnet20", "float32", 128), ("resnet20", "float32", 1)):
            net = tacit.resnet20(dtype=dtype)
            U = tacit.resnet20_inputs(batch, dtype=dtype)
            path = os.path.join(tmp, "r20.tacit")
            net.save(path)
            upath = os.path.join(tmp, "U.txt")
            np.savetxt(upath, U.astype(np.float64), fmt="%.9g")
            Ufile = np.loadtxt(upath, ndmin=2).astype(dtype)
            model = tacit.load(path, dtype=dtype)
            solver = tacit.Solver(model, threads=args.threads)
            repeat = 10 if batch >= 64 else 200

            def cpp():
                out = subprocess.run([cli, "solve", path, "-i", upath, "-o",
                                      os.path.join(tmp, "Y.txt"), "--precision", dtype,
                                      "--threads", str(args.threads), "--repeat", str(repeat),
                                      "--json"], capture_output=True, text=True, check=True)
                return json.loads(out.stdout)["best_solve_seconds"]

            def python(f):
                f()
                return best_of(f, seconds=0, at_least=repeat)

            cpp_best, py_best = cpp(), python(lambda: solver.solve(Ufile))
            cpp_best = min(cpp_best, cpp())
            py_best = min(py_best, python(lambda: solver.solve(Ufile)))
            print(f"{name} {dtype} batch {batch}: Python solve {py_best * 1e3:.3f} ms, "
                  f"C++ solve {cpp_best * 1e3:.3f} ms, ratio {py_best / cpp_best:.3f}")
            if torch is not None:
                T = torch.from_numpy(Ufile)
                torch_best = python(lambda: solver.solve(T))
                print(f"{name} {dtype} batch {batch}: from a torch tensor "
                      f"{torch_best * 1e3:.3f} ms, ratio to C++ {torch_best / cpp_best:.3f}")
            once = python(lambda: tacit.solve(model, Ufile, threads=args.threads))
            print(f"{name} {dtype} batch {batch}: tacit.solve(model, U) "
                  f"{once * 1e3:.3f} ms, ratio to C++ {once / cpp_best:.3f}")

    model = tacit.resnet_like(dtype="float32")
    model.A.to_scipy()
    t = best_of(lambda: model.A.to_scipy(), seconds=1.0, at_least=20)
    tracemalloc.start()
    S = model.A.to_scipy()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"to_scipy of the ResNet-like CSR ({S.nnz} nonzeros): {t * 1e3:.3f} ms, "
          f"{peak / 1e6:.2f} MB allocated ({peak / S.data.nbytes:.4f} of its values' "
          f"{S.data.nbytes / 1e6:.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
