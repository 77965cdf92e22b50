"""tacit.Model: construction from SciPy and NumPy, files, views, errors."""

import os

import numpy as np
import pytest
import scipy.sparse as sp

import tacit


def small_model(dtype="float64"):
    A = sp.csr_matrix(np.array([[0.0, 0.2, 0.0], [0.0, 0.0, -0.3], [0.1, 0.0, 0.0]]))
    B = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    C = sp.csr_matrix(np.array([[1.0, -1.0, 0.5]]))
    return tacit.Model(A, B, C, b=[0.1, -0.2, 0.3], c=[1.5], dtype=dtype)


def test_construction_and_properties():
    m = small_model()
    assert (m.states, m.inputs, m.outputs) == (3, 2, 1)
    assert m.dtype == np.float64
    np.testing.assert_array_equal(m.b, [0.1, -0.2, 0.3])
    np.testing.assert_array_equal(m.c, [1.5])
    assert not m.b.flags.writeable
    assert np.shares_memory(m.b, m.b)  # a view of the model's own storage
    assert m.blocks == [("states", 0, 3, "relu", 0.01)]
    assert m.astype("float32").dtype == np.float32


def test_blocks_and_activations():
    A = sp.csr_matrix((4, 4))
    m = tacit.Model(A, np.eye(4), np.eye(4),
                    blocks=[("a", 1, "identity"), ("b", 3, "leaky_relu", 0.2)])
    assert m.blocks == [("a", 0, 1, "identity", 0.01), ("b", 1, 3, "leaky_relu", 0.2)]
    y = tacit.solve(m, np.array([-1.0, -1.0, 2.0, -3.0])).outputs
    np.testing.assert_array_equal(y, [-1.0, -0.2, 2.0, -0.6000000000000001])


def test_bad_models_raise_value_errors():
    A = sp.identity(3, format="csr") * 0.5
    with pytest.raises(ValueError, match="B"):
        tacit.Model(A, np.ones((4, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN|non-finite|finite"):
        tacit.Model(A * np.nan, np.ones((3, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="matrix"):
        tacit.Model(np.ones(3), np.ones((3, 2)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="activation|unknown"):
        tacit.Model(A, np.ones((3, 2)), np.ones((1, 3)), activation="swish")
    with pytest.raises(ValueError, match="float32 or float64"):
        tacit.Model(A, np.ones((3, 2)), np.ones((1, 3)), dtype="int8")
    with pytest.raises(ValueError, match="transposed"):
        m = small_model()
        tacit.Model(m.A.T, np.ones((3, 2)), np.ones((1, 3)))


@pytest.mark.parametrize("suffix, fmt", [(".tacit", None), ("", "dir")])
def test_save_and_load_round_trip(tmp_path, suffix, fmt):
    m = small_model()
    path = tmp_path / ("model" + suffix)
    m.save(path, format=fmt)
    back = tacit.load(path)
    assert (back.A.to_scipy() != m.A.to_scipy()).nnz == 0
    np.testing.assert_array_equal(back.b, m.b)
    U = np.array([[1.0, 2.0], [-1.0, 0.5]])
    np.testing.assert_array_equal(tacit.solve(back, U).outputs, tacit.solve(m, U).outputs)
    assert tacit.load(path, dtype="float32").dtype == np.float32


def test_file_errors_are_os_errors(tmp_path):
    with pytest.raises(OSError) as info:
        tacit.load(tmp_path / "missing.tacit")
    assert "missing.tacit" in str(info.value)
    bad = tmp_path / "bad.tacit"
    bad.write_bytes(b"TACITMDL" + b"\0" * 10)
    with pytest.raises(OSError, match="bad.tacit") as info:
        tacit.load(bad)
    # The library's message (file, problem), and the file as `filename`.
    assert str(info.value).startswith(str(bad)) and len(str(info.value)) > len(str(bad)) + 5
    assert "Errno" not in str(info.value) and info.value.filename == str(bad)
    with pytest.raises(OSError, match="nothing.onnx"):
        tacit.import_onnx(tmp_path / "nothing.onnx")
    # A failed save leaves nothing behind.
    target = tmp_path / "no_such_dir" / "m.tacit"
    with pytest.raises(OSError):
        small_model().save(target)
    assert not target.exists()


def test_resnet20_model():
    net = tacit.resnet20(dtype="float32")
    assert (net.states, net.inputs, net.outputs) == (188416, 3072, 10)
    assert net.A.kind == "block"
    with pytest.raises(ValueError, match="shortcut"):
        tacit.resnet20(shortcut="c")
    U = tacit.resnet20_inputs(3, dtype="float32")
    assert U.shape == (3, 3072) and U.dtype == np.float32
