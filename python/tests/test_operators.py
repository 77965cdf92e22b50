"""tacit.Operator: products against SciPy and NumPy references, views,
zero-copy SciPy export."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import tacit


def random_model(n=40, p=5, q=3, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=0.1, random_state=seed, dtype=np.float64)
    A.data = rng.uniform(-1, 1, A.nnz)
    B = sp.random(n, p, density=0.4, random_state=seed + 1)
    C = rng.uniform(-1, 1, (q, n))
    return tacit.Model(A * 0.1, B, C, dtype=dtype), A.tocsr() * 0.1, B.tocsr(), C


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 2e-5)])
def test_products_match_scipy(dtype, rtol):
    model, A, B, C = random_model(dtype=dtype)
    rng = np.random.default_rng(7)
    Aref = A.toarray()
    for x in (rng.standard_normal(40), rng.standard_normal((40, 9))):
        xs = x.astype(dtype)
        scale = np.abs(Aref) @ np.abs(x) + 1e-30
        for op, ref in ((model.A, Aref), (model.A.T, Aref.T), (abs(model.A), np.abs(Aref)),
                        (abs(model.A).T, np.abs(Aref).T), (abs(model.A.T), np.abs(Aref).T)):
            y = op @ xs
            assert y.dtype == np.dtype(dtype)
            assert y.shape == (40,) + x.shape[1:]
            assert np.all(np.abs(y - ref @ x) <= rtol * (np.abs(ref) @ np.abs(x) + scale))


def test_shape_nnz_kind_and_sums():
    model, A, B, C = random_model()
    assert model.A.shape == (40, 40) and model.B.shape == (40, 5) and model.C.shape == (3, 40)
    assert model.B.T.shape == (5, 40)
    assert model.A.nnz == A.nnz and model.A.kind == "csr"
    assert model.A.nbytes > 0 and model.D is None
    np.testing.assert_allclose(model.B.row_abs_sums(), np.abs(B).sum(axis=1).A1, rtol=1e-15)
    np.testing.assert_allclose(model.B.col_abs_sums(), np.abs(B).sum(axis=0).A1, rtol=1e-15)
    np.testing.assert_allclose(model.B.T.row_abs_sums(), np.abs(B).sum(axis=0).A1, rtol=1e-15)
    assert "csr 40 x 40" in repr(model.A)


def test_matmul_rejects_wrong_shapes():
    model, *_ = random_model()
    with pytest.raises(ValueError, match="40 x 5 but x has 4 rows"):
        model.B @ np.ones(4)
    with pytest.raises(ValueError, match="1 or 2 dimensions"):
        model.A @ np.ones((40, 2, 2))


def test_to_scipy_shares_tacit_storage():
    model, A, *_ = random_model()
    S1, S2 = model.A.to_scipy(), model.A.to_scipy()
    assert isinstance(S1, sp.csr_matrix)
    assert (S1 != A).nnz == 0
    # Both views are of tacit's arrays, not copies.
    assert np.shares_memory(S1.data, S2.data)
    assert np.shares_memory(S1.indices, S2.indices)
    assert S1.indices.dtype == np.int32
    assert not S1.data.flags.writeable
    # Views outlive the model object.
    del model
    assert (S1 != A).nnz == 0


def test_to_scipy_of_views_and_structured_operators():
    model, A, *_ = random_model()
    assert abs(model.A.T.to_scipy() - A.T).max() == 0
    assert abs(abs(model.A).to_scipy() - abs(A)).max() == 0
    net = tacit.resnet20(dtype="float32")
    assert net.A.kind != "csr"
    B = net.B.to_scipy()  # materialised once
    x = np.random.default_rng(1).standard_normal(net.inputs).astype(np.float32)
    np.testing.assert_allclose(B @ x, net.B @ x, rtol=1e-5, atol=1e-5)


def test_resnet_like_csr_export_is_zero_copy():
    model = tacit.resnet_like(dtype="float32")
    assert model.A.kind == "csr" and model.A.nnz > 36_000_000
    S = model.A.to_scipy()
    tracemalloc.start()
    try:
        S = model.A.to_scipy()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # No array of the matrix's size (146 MB of values, 146 MB of indices) is
    # allocated: only the narrowed row pointers (n + 1 values) and objects.
    assert peak < 4 * (model.states + 1) + 200_000, peak
    assert S.nnz == model.A.nnz and S.indices.dtype == np.int32
    assert np.shares_memory(S.data, model.A.to_scipy().data)
    assert np.shares_memory(S.indices, model.A.to_scipy().indices)
    x = np.ones(model.states, dtype=np.float32)
    rows = np.arange(0, model.states, 997)
    np.testing.assert_allclose((S @ x)[rows], (model.A @ x)[rows], rtol=1e-4, atol=1e-5)
