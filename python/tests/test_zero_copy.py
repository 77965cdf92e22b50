"""Arrays shared, not copied: SciPy matrices made by to_scipy taken back by
tacit.Model, PyTorch tensors read through DLPack, results handed to PyTorch."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import tacit
import tacit._convert


def small_model(dtype="float64"):
    rng = np.random.default_rng(0)
    A = sp.random(30, 30, density=0.1, random_state=1, format="csr") * 0.2
    return tacit.Model(A, rng.uniform(-1, 1, (30, 4)), rng.uniform(-1, 1, (2, 30)),
                       dtype=dtype)


def test_model_takes_a_to_scipy_matrix_back_without_copying():
    m = small_model()
    S = m.A.to_scipy()
    m2 = tacit.Model(A=S, B=m.B, C=m.C)
    S2 = m2.A.to_scipy()
    assert np.shares_memory(S2.data, S.data) and np.shares_memory(S2.indices, S.indices)
    # Any other SciPy matrix is copied into tacit's CSR (its storage owns its
    # arrays), as is a to_scipy matrix of the other precision.
    plain = sp.csr_matrix((S.data.copy(), S.indices.copy(), S.indptr.copy()), shape=S.shape)
    S3 = tacit.Model(A=plain, B=m.B, C=m.C).A.to_scipy()
    assert not np.shares_memory(S3.data, plain.data)
    assert (S3 != S).nnz == 0
    S4 = tacit.Model(A=S, B=m.B.to_scipy(), C=m.C.to_scipy(), dtype="float32").A.to_scipy()
    assert S4.data.dtype == np.float32 and not np.shares_memory(S4.data, S.data)


def test_to_scipy_allocates_no_array_of_the_matrix_size():
    A = sp.random(2000, 2000, density=0.05, random_state=2, format="csr") * 0.01
    m = tacit.Model(A, np.ones((2000, 1)), np.ones((1, 2000)))
    S = m.A.to_scipy()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        S = m.A.to_scipy()
        _, peak = tracemalloc.get_traced_memory()
        # The control: a copy of the values is seen.
        tracemalloc.reset_peak()
        S.data.copy()
        _, copy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert copy_peak >= S.data.nbytes
    assert S.nnz == A.nnz and S.indices.dtype == np.int32
    assert peak < S.data.nbytes / 20


def test_torch_tensors_are_read_in_place():
    t = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)
    view = tacit._convert.from_dlpack(t)
    assert np.shares_memory(view, t.numpy())
    grad = t.clone().requires_grad_()
    assert tacit._convert.from_dlpack(grad).ctypes.data == grad.data_ptr()
    m = small_model()
    np.testing.assert_array_equal(tacit.solve(m, t).outputs, tacit.solve(m, t.numpy()).outputs)
    np.testing.assert_array_equal(tacit.solve(m, grad).outputs,
                                  tacit.solve(m, t.numpy()).outputs)
    x = torch.ones(30, dtype=torch.float64)
    np.testing.assert_array_equal(m.A @ x, m.A @ np.ones(30))
    with pytest.raises(ValueError, match="4 values|expects 4"):
        tacit.solve(m, torch.ones(3, 5, dtype=torch.float64))


def test_results_go_to_torch_without_copying():
    m = small_model()
    sol = tacit.solve(m, np.ones((5, 4)), states=True)
    for a in (sol.outputs, sol.states):
        t = torch.from_dlpack(a)
        assert t.data_ptr() == a.ctypes.data and tuple(t.shape) == a.shape
    y = m.A @ np.ones(30)
    assert torch.from_dlpack(y).data_ptr() == y.ctypes.data


def test_solve_writes_into_the_callers_array():
    m = small_model()
    U = np.random.default_rng(3).uniform(-1, 1, (6, 4))
    out = np.empty((6, 2))
    sol = tacit.solve(m, U, out=out)
    assert sol.outputs is out
    np.testing.assert_array_equal(out, tacit.solve(m, U).outputs)
    solver = tacit.Solver(m)
    t = torch.empty(6, 2, dtype=torch.float64)  # a torch tensor's memory, through NumPy
    solver.solve(U, out=t.numpy())
    np.testing.assert_array_equal(t.numpy(), out)
    for bad in (np.empty((6, 2), dtype=np.float32), np.empty((5, 2)), np.empty((2, 6)).T):
        with pytest.raises(ValueError, match="out must be"):
            tacit.solve(m, U, out=bad)
