"""Well-posedness, rescaling and sensitivity from Python, against dense NumPy
references."""

import numpy as np
import pytest
import scipy.sparse as sp

import tacit
from conftest import read_rows


def cyclic(n=30, p=4, q=3, norm=0.9, seed=0, activation="relu"):
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=0.2, random_state=seed).toarray()
    A[A != 0] = rng.uniform(-1, 1, np.count_nonzero(A))
    A *= norm / np.abs(A).sum(axis=1).max()
    B, C, D = rng.uniform(-1, 1, (n, p)), rng.uniform(-1, 1, (q, n)), rng.uniform(-1, 1, (q, p))
    return tacit.Model(sp.csr_matrix(A), B, C, D=D, activation=activation), A, B, C, D


def test_wellposed_brackets_the_perron_root():
    for norm in (0.9, 1.6):
        model, A, *_ = cyclic(norm=norm)
        rho = np.abs(np.linalg.eigvals(np.abs(A))).max()
        r = tacit.wellposed(model)
        assert r.pf.lower <= rho <= r.pf.upper
        assert r.pf.upper - r.pf.lower <= 1e-6 * rho
        assert r.certified == (rho < 1) and r.pf.certified == r.certified
        assert r.norm_inf == pytest.approx(np.abs(A).sum(axis=1).max(), rel=1e-14)
        assert r.norm_1 == pytest.approx(np.abs(A).sum(axis=0).max(), rel=1e-14)
        assert tacit.wellposed(model.A).pf.upper == r.pf.upper
    net = tacit.resnet20(dtype="float32")
    r = tacit.wellposed(net)
    assert r.nilpotent and r.certified and r.pf.upper == 0


def test_rescale_gives_an_equivalent_contractive_model():
    model, A, *_ = cyclic(norm=1.3, seed=4)
    rho = np.abs(np.linalg.eigvals(np.abs(A))).max()
    assert rho < 1  # ||A||_inf > 1 but lambda_PF(|A|) < 1
    scaled, report = tacit.rescale(model)
    assert report.norm_before == pytest.approx(np.abs(A).sum(axis=1).max())
    d = report.scaling
    DAD = (d[:, None] * A) / d[None, :]
    assert np.abs(DAD).sum(axis=1).max() == pytest.approx(report.norm_after, rel=1e-12)
    assert report.norm_after < 1
    U = np.random.default_rng(1).uniform(-1, 1, (9, 4))
    np.testing.assert_allclose(tacit.solve(scaled, U).outputs, tacit.solve(model, U).outputs,
                               rtol=1e-9, atol=1e-10)


def test_sensitivity_against_the_dense_inverse():
    model, A, B, C, D = cyclic(seed=2)
    n = A.shape[0]
    S_ref = np.abs(C) @ np.linalg.solve(np.eye(n) - np.abs(A), np.abs(B)) + np.abs(D)
    for method in ("auto", "klu", "iterative"):
        S = tacit.sensitivity(model, method=method)
        assert isinstance(S, tacit.Operator) and S.shape == (3, 4)
        np.testing.assert_allclose(S.rows(), S_ref, rtol=1e-10)
        np.testing.assert_allclose(S.row(1), S_ref[1], rtol=1e-10)
        np.testing.assert_allclose(S.rows([2, 0]), S_ref[[2, 0]], rtol=1e-10)
        x = np.arange(1.0, 5.0)
        np.testing.assert_allclose(S @ x, S_ref @ x, rtol=1e-10)
        np.testing.assert_allclose(S.T @ np.ones(3), S_ref.T @ np.ones(3), rtol=1e-10)
        idx, val = S.top(0, 2)
        np.testing.assert_array_equal(idx, np.argsort(-S_ref[0], kind="stable")[:2])
        np.testing.assert_allclose(val, np.sort(S_ref[0])[::-1][:2], rtol=1e-10)
    with pytest.raises(ValueError, match="row 3 of S"):
        S.row(3)


def test_sensitivity_errors():
    model, *_ = cyclic(seed=3)
    with pytest.raises(ValueError, match="method|auto"):
        tacit.sensitivity(model, method="magic")
    for tol in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tol"):
            tacit.sensitivity(model, tol=tol)


def test_sensitivity_tolerance_of_the_iterative_back_end(tmp_path, run_cli):
    model, A, B, C, D = cyclic(seed=4)
    n = A.shape[0]
    S_ref = np.abs(C) @ np.linalg.solve(np.eye(n) - np.abs(A), np.abs(B)) + np.abs(D)
    loose = tacit.sensitivity(model, method="iterative", tol=1e-3).rows()
    tight = tacit.sensitivity(model, method="iterative", tol=1e-14).rows()
    # Within the tolerance, and closer with a smaller one.
    assert np.all(np.abs(loose - S_ref) <= 1e-3 * np.abs(S_ref).sum())
    assert np.abs(tight - S_ref).max() < np.abs(loose - S_ref).max()
    # The command's rows with the same tolerance, bit for bit.
    model.save(tmp_path / "m", format="dir")
    run_cli("sensitivity", tmp_path / "m", "--method", "iterative", "--tol", "1e-3",
            "--rows", "0,1,2", "-o", tmp_path / "S.txt", "-q")
    np.testing.assert_array_equal(loose, read_rows(tmp_path / "S.txt"))
def test_sensitivity_of_an_uncertified_model_is_a_numerical_error():
    model, A, *_ = cyclic(norm=2.5, seed=3)
    assert np.abs(np.linalg.eigvals(np.abs(A))).max() > 1
    with pytest.raises(tacit.NumericalError, match="lambda|certif"):
        tacit.sensitivity(model)
    with pytest.raises(ValueError, match="method|auto"):
        tacit.sensitivity(model, method="magic")
