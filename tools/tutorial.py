#!/usr/bin/python3
"""tacit from Python in four steps: import an ONNX network, certify it, prune
it, export it.

    PYTHONPATH=build/python /usr/bin/python3 tools/tutorial.py [--out DIR]

The network is the Fashion-MNIST MLP of the test data
(tests/data/fashion/fashion_mlp.onnx); the images are
the Fashion-MNIST test set of the Debian package dataset-fashion-mnist. Run
by the Python tests (test_tutorial.py)."""

import argparse
import gzip
import pathlib
import sys
import tempfile

import numpy as np

import tacit

ROOT = pathlib.Path(__file__).resolve().parent.parent


def fashion_test_set(directory, count):
    """The first `count` test images (rows of 784 values in [0, 1]) and labels."""
    directory = pathlib.Path(directory)
    with gzip.open(directory / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(16 + 784 * count)[16:], dtype=np.uint8)
    with gzip.open(directory / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(8 + count)[8:], dtype=np.uint8)
    return images.reshape(count, 784) / 255.0, labels.astype(np.int32)


def accuracy(model, U, labels):
    return float(np.mean(tacit.solve(model, U).outputs.argmax(axis=1) == labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=ROOT / "tests/data/fashion/fashion_mlp.onnx")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--count", type=int, default=200, help="test images used")
    parser.add_argument("--threshold", type=float, default=0.05,
                        help="weights with |w| <= threshold are pruned")
    parser.add_argument("--out", help="where pruned.onnx goes (default: a temporary directory)")
    args = parser.parse_args()
    U, labels = fashion_test_set(args.data, args.count)

    # 1. Import: a feed-forward network is the implicit model whose A is
    #    strictly block lower triangular; solving it is the forward pass.
    net = tacit.import_onnx(args.model)
    model = pathlib.Path(args.model).resolve()
    shown = model.relative_to(ROOT) if ROOT in model.parents else model
    print(f"1. imported {shown}: {net}")
    print(f"   accuracy on {args.count} test images: {100 * accuracy(net, U, labels):.2f}%")

    # 2. Certify: the inputs whose prediction provably stays correct for every
    #    perturbation |u - u0|_inf <= eps (images stay in [0, 1]).
    eps = [0.002, 0.01]
    cert = tacit.certify(net, U, labels, eps, bound="best", domain=(0.0, 1.0))
    for e, c in zip(cert.eps, cert.certified):
        print(f"2. certified at eps {e:g}: {c} of {cert.count} ({cert.correct} correct)")

    # 3. Prune: weights with |w| <= threshold count as absent; states and
    #    inputs nothing reads any more are removed. The pruned model's outputs
    #    equal the masked model's (the small weights taken out) bit for bit.
    pruned, info = tacit.prune(net, threshold=args.threshold)
    before, after = info["before"], info["after"]
    print(f"3. pruned at threshold {args.threshold:g}: inputs {before['inputs']} -> "
          f"{after['inputs']}, states {before['states']} -> {after['states']}, "
          f"nonzeros {before['nonzeros']} -> {after['nonzeros']}")
    U_kept = U[:, info["kept_inputs"]]
    np.testing.assert_array_equal(tacit.solve(pruned, U_kept).outputs,
                                  tacit.solve(info["masked"], U).outputs)
    print(f"   accuracy of the pruned model: {100 * accuracy(pruned, U_kept, labels):.2f}%")

    # 4. Export: the pruned network as ONNX (for PyTorch, onnxruntime, ...);
    #    importing the file gives the same model, bit for bit.
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "pruned.onnx"
        tacit.export_onnx(pruned, path)
        back = tacit.import_onnx(path)
        np.testing.assert_array_equal(tacit.solve(back, U_kept).outputs,
                                      tacit.solve(pruned, U_kept).outputs)
        print(f"4. exported {path} ({path.stat().st_size} bytes); re-imported, same outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
