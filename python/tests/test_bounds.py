"""Certified bounds from Python: sound against sampled solves, and the same
certification counts and radii as the command."""

import gzip
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp

import tacit
from conftest import write_rows

FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def cyclic_model():
    n, p, q = 25, 4, 3
    rng = np.random.default_rng(8)
    A = sp.random(n, n, density=0.2, random_state=9).toarray()
    A[A != 0] = rng.uniform(-1, 1, np.count_nonzero(A))
    A *= 0.6 / np.abs(A).sum(axis=1).max()
    return tacit.Model(sp.csr_matrix(A), rng.uniform(-1, 1, (n, p)), rng.uniform(-1, 1, (q, n)),
                       b=rng.uniform(-0.2, 0.2, n))


@pytest.mark.parametrize("bound", ["global", "interval", "linear"])
def test_bounds_contain_sampled_outputs(bound):
    model = cyclic_model()
    rng = np.random.default_rng(4)
    u0, eps = rng.uniform(-1, 1, 4), 0.05
    b = tacit.bounds(model, u0, eps, bound=bound)
    assert b.status == "ok" and b.y_lower.shape == (3,)
    corners = np.array([[(1 if (i >> j) & 1 else -1) for j in range(4)] for i in range(16)])
    U = np.vstack([u0 + eps * rng.uniform(-1, 1, (300, 4)), u0 + eps * corners])
    Y = tacit.solve(model, U).outputs
    assert np.all(Y >= b.y_lower) and np.all(Y <= b.y_upper)
    label = b.label
    margins = Y[:, [label]] - Y
    assert np.all(margins >= b.margin_lower - 1e-15)
    assert b.certified == bool(np.all(np.delete(b.margin_lower, label) > 0))


def test_bound_errors():
    model = cyclic_model()
    with pytest.raises(ValueError, match="4 inputs"):
        tacit.bounds(model, np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="label 7"):
        tacit.bounds(model, np.zeros(4), 0.1, label=7)
    with pytest.raises(ValueError, match="global|interval|linear|best"):
        tacit.bounds(model, np.zeros(4), 0.1, bound="exact")
    with pytest.raises(ValueError, match="labels for"):
        tacit.certify(model, np.zeros((3, 4)), [0, 1], [0.1])


def read_idx_images(path, count):
    with gzip.open(path) as f:
        data = f.read(16 + 784 * count)
    # The command's scaling: pixel * (1 / 255), the same bits as its inputs.
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(count, 784) * (1.0 / 255.0)


def read_idx_labels(path, count):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(8 + count)[8:], dtype=np.uint8).astype(np.int32)


def test_certify_matches_the_command(tmp_path, run_cli, data_dir):
    if not FASHION.is_dir():
        pytest.fail(f"{FASHION} is missing: install the Debian package dataset-fashion-mnist",
                    pytrace=False)
    count, eps = 40, [0.005, 0.01]
    U = read_idx_images(FASHION / "t10k-images-idx3-ubyte.gz", count)
    labels = read_idx_labels(FASHION / "t10k-labels-idx1-ubyte.gz", count)
    model_path = tmp_path / "mlp.tacit"
    run_cli("import-onnx", data_dir / "fashion" / "fashion_mlp.onnx", "-o", model_path)
    result = tacit.certify(tacit.load(model_path), U, labels, eps, bound="best", radius=True,
                           domain=(0.0, 1.0))
    cli = run_cli("certify", model_path, "--data", FASHION, "--limit", count, "--eps",
                  ",".join(map(str, eps)), "--bound", "best", "--json", "-q",
                  "--radius-output", tmp_path / "radius.txt")
    import json
    report = json.loads(cli.stdout)
    assert result.count == report["inputs"] == count
    assert result.correct == report["correct"]
    assert list(result.certified) == [c["certified"] for c in report["certified"]]
    radii = np.loadtxt(tmp_path / "radius.txt")
    np.testing.assert_array_equal(result.radius, radii)
    assert result.certified_inputs.shape == (count, 2)
    assert result.certified_inputs[:, 0].sum() == result.certified[0]
    assert result.correct > count // 2 and result.certified[0] > 0


@pytest.mark.parametrize("refine,slope_steps", [(False, 20), (True, 0), (True, 5)])
def test_certify_refine_and_slope_steps_match_the_command(tmp_path, run_cli, data_dir, refine,
                                                          slope_steps):
    if not FASHION.is_dir():
        pytest.fail(f"{FASHION} is missing: install the Debian package dataset-fashion-mnist",
                    pytrace=False)
    count, eps = 30, [0.01, 0.02]
    U = read_idx_images(FASHION / "t10k-images-idx3-ubyte.gz", count)
    labels = read_idx_labels(FASHION / "t10k-labels-idx1-ubyte.gz", count)
    model_path = tmp_path / "mlp.tacit"
    run_cli("import-onnx", data_dir / "fashion" / "fashion_mlp.onnx", "-o", model_path, "-q")
    args = ["--slope-steps", slope_steps] + ([] if refine else ["--no-refine"])
    cli = run_cli("certify", model_path, "--data", FASHION, "--limit", count, "--eps",
                  ",".join(map(str, eps)), "--bound", "linear", "--json", "-q",
                  "--radius-output", tmp_path / "radius.txt", *args)
    import json
    report = json.loads(cli.stdout)
    assert report["refine"] == refine
    result = tacit.certify(tacit.load(model_path), U, labels, eps, bound="linear",
                           radius=True, domain=(0.0, 1.0), refine=refine,
                           slope_steps=slope_steps)
    assert list(result.certified) == [c["certified"] for c in report["certified"]]
    np.testing.assert_array_equal(result.radius, np.loadtxt(tmp_path / "radius.txt"))


def test_certify_option_errors():
    model = cyclic_model()
    with pytest.raises(ValueError, match="slope_steps"):
        tacit.certify(model, np.zeros((1, 4)), [0], [0.1], slope_steps=-1)
