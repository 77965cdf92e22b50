"""tacit.solve: against independent references (NumPy fixed point, PyTorch's
outputs in the fixtures) and bit for bit against the command."""

import threading

import numpy as np
import pytest
import scipy.sparse as sp

import tacit
from conftest import read_rows, write_rows


def reference_fixed_point(A, B, C, b, c, U, iterations=400):
    """x = relu(A x + B u + b) by plain iteration in NumPy (A contractive)."""
    X = np.zeros((U.shape[0], A.shape[0]))
    for _ in range(iterations):
        X = np.maximum(X @ A.T + U @ B.T + b, 0)
    return X @ C.T + c, X


def implicit_model():
    n, p, q = 60, 4, 3
    rng = np.random.default_rng(3)
    A = sp.random(n, n, density=0.15, random_state=4).toarray()
    A[A != 0] = rng.uniform(-1, 1, np.count_nonzero(A))
    A *= 0.8 / np.abs(A).sum(axis=1).max()  # ||A||_inf = 0.8: well-posed, cycles
    B, C = rng.uniform(-1, 1, (n, p)), rng.uniform(-1, 1, (q, n))
    b, c = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, q)
    return A, B, C, b, c


def test_implicit_model_against_numpy_fixed_point():
    A, B, C, b, c = implicit_model()
    model = tacit.Model(sp.csr_matrix(A), B, C, b=b, c=c)
    U = np.random.default_rng(5).uniform(-1, 1, (7, 4))
    Yref, Xref = reference_fixed_point(A, B, C, b, c, U)
    for method in ("picard", "sweep", "auto"):
        s = tacit.solve(model, U, states=True, method=method)
        assert s.report.ok and s.report.status == "converged"
        assert s.outputs.shape == (7, 3) and s.states.shape == (7, 60)
        np.testing.assert_allclose(s.outputs, Yref, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(s.states, Xref, rtol=1e-9, atol=1e-10)
    one, batch = tacit.solve(model, U[2], states=True), tacit.solve(model, U, states=True)
    assert one.outputs.shape == (3,) and one.states.shape == (60,)
    # The states of a column do not depend on the rest of the batch (A is
    # CSR); the output product C x is formed by the SpMV kernel for one
    # column and the SpMM kernel for a batch, in different summation orders.
    np.testing.assert_array_equal(one.states, batch.states[2])
    np.testing.assert_allclose(one.outputs, batch.outputs[2], rtol=1e-14)


def test_non_convergence_is_reported_not_raised():
    A = sp.csr_matrix(np.array([[0.0, 1.5], [1.5, 0.0]]))
    model = tacit.Model(A, np.eye(2), np.eye(2), activation="identity")
    s = tacit.solve(model, np.array([1.0, 1.0]), method="picard", max_iterations=50)
    assert not s.report.ok
    assert s.report.status in ("diverged", "max_iterations", "non_finite")
    assert len(s.report.step_history) > 0


def test_onnx_networks_match_pytorch_fixtures(data_dir):
    for name, rtol64, rtol32 in (("tiny_cnn", 1e-10, 1e-4), ("residual_mlp", 1e-10, 1e-4),
                                 ("resnet20", 1e-10, 1e-3)):
        U = read_rows(data_dir / "onnx" / f"{name}_input.txt")
        Yref = read_rows(data_dir / "onnx" / f"{name}_output.txt")
        scale = np.abs(Yref).max()
        for dtype, rtol in (("float64", rtol64), ("float32", rtol32)):
            model = tacit.import_onnx(data_dir / "onnx" / f"{name}.onnx", dtype=dtype)
            Y = tacit.solve(model, U.astype(dtype)).outputs
            assert np.abs(Y - Yref).max() <= rtol * scale, (name, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bit_for_bit_with_the_command(tmp_path, run_cli, data_dir, dtype):
    # A structured network imported from ONNX and a truly implicit model.
    onnx_model = tmp_path / "cnn.tacit"
    run_cli("import-onnx", data_dir / "onnx" / "tiny_cnn.onnx", "-o", onnx_model)
    A, B, C, b, c = implicit_model()
    implicit = tmp_path / "implicit"
    tacit.Model(sp.csr_matrix(A), B, C, b=b, c=c).save(implicit, format="dir")
    for path, U in ((onnx_model, read_rows(data_dir / "onnx" / "tiny_cnn_input.txt")),
                    (implicit, np.random.default_rng(9).uniform(-1, 1, (40, 4)))):
        # Inputs exactly representable in the precision: the command and NumPy
        # parse them to the same bits.
        U = U.astype(dtype).astype(np.float64)
        write_rows(tmp_path / "U.txt", U)
        run_cli("solve", path, "-i", tmp_path / "U.txt", "-o", tmp_path / "Y.txt",
                "--precision", dtype, "-q")
        expected = read_rows(tmp_path / "Y.txt", dtype=dtype)
        got = tacit.solve(tacit.load(path, dtype=dtype), U.astype(dtype)).outputs
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, expected)


def test_same_bits_for_any_thread_count_and_concurrent_solves():
    model = tacit.random_implicit(2000, 20, 5, seed=3)
    U = np.random.default_rng(1).uniform(-1, 1, (70, 20))
    one = tacit.solve(model, U, threads=1).outputs
    np.testing.assert_array_equal(tacit.solve(model, U, threads=2).outputs, one)
    solver = tacit.Solver(model)
    results = [None] * 4

    def work(i):
        results[i] = solver.solve(U).outputs

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, one)


def test_concurrent_calls_share_the_arena_of_their_thread_count():
    """Calls with the same threads=N run in one kept arena: concurrent calls
    from several Python threads (solves and analyses) finish with the bits of
    a serial call."""
    model = tacit.random_implicit(1500, 12, 4, seed=5)
    U = np.random.default_rng(2).uniform(-1, 1, (40, 12))
    one = tacit.solve(model, U, threads=1).outputs
    upper = tacit.lipschitz(model, samples=2).upper
    results = [None] * 6

    def work(i):
        if i % 3 == 2:
            results[i] = tacit.lipschitz(model, samples=2, threads=2).upper
        else:
            solver = tacit.Solver(model, threads=2)
            results[i] = [solver.solve(U).outputs for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        if i % 3 == 2:
            np.testing.assert_array_equal(r, upper)
        else:
            for y in r:
                np.testing.assert_array_equal(y, one)


def test_solve_keeps_the_models_last_solver_with_the_same_bits():
    """tacit.solve reuses the solver of the model's last call with the same
    settings; other settings, states, concurrent callers and other models
    give what a fresh solver gives."""
    model = tacit.random_implicit(800, 10, 4, seed=6)
    other = tacit.random_implicit(800, 10, 4, seed=7)
    rng = np.random.default_rng(3)
    U, V = rng.uniform(-1, 1, (20, 10)), rng.uniform(-1, 1, (3, 10))
    fresh = tacit.Solver(model).solve(U, states=True)
    first = tacit.solve(model, U)
    np.testing.assert_array_equal(first.outputs, fresh.outputs)
    np.testing.assert_array_equal(tacit.solve(model, V).outputs,
                                  tacit.Solver(model).solve(V).outputs)
    again = tacit.solve(model, U, states=True)
    np.testing.assert_array_equal(again.outputs, fresh.outputs)
    np.testing.assert_array_equal(again.states, fresh.states)
    np.testing.assert_array_equal(tacit.solve(other, U).outputs,
                                  tacit.Solver(other).solve(U).outputs)
    loose = tacit.solve(model, U, rel_tol=1e-3, abs_tol=1e-3)
    assert loose.report.iterations < first.report.iterations
    np.testing.assert_array_equal(loose.outputs,
                                  tacit.Solver(model, rel_tol=1e-3, abs_tol=1e-3).solve(U).outputs)
    np.testing.assert_array_equal(tacit.solve(model, U).outputs, fresh.outputs)
    results = [None] * 4

    def work(i):
        results[i] = [tacit.solve(model, U).outputs for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        for y in r:
            np.testing.assert_array_equal(y, fresh.outputs)


def test_solve_errors():
    model = tacit.random_implicit(100, 6, 2)
    with pytest.raises(ValueError, match="6"):
        tacit.solve(model, np.ones((3, 5)))
    with pytest.raises(ValueError, match="method|auto"):
        tacit.solve(model, np.ones(6), method="newton")
    with pytest.raises(ValueError, match="threads"):
        tacit.solve(model, np.ones(6), threads=-1)
    with pytest.raises(ValueError, match="anderson"):
        tacit.Solver(model, anderson=100)


def test_resnet20_solve_and_solver_reuse():
    net = tacit.resnet20(dtype="float32")
    U = tacit.resnet20_inputs(33, dtype="float32")
    solver = tacit.Solver(net)
    assert solver.method == "sweep"
    Y = solver.solve(U).outputs
    np.testing.assert_array_equal(solver.solve(U).outputs, Y)
    np.testing.assert_array_equal(tacit.solve(net, U[5:6]).outputs[0], Y[5])
    assert np.isfinite(Y).all() and Y.shape == (33, 10)
