"""tacit.torch.ImplicitLayer: gradients against finite differences
(torch.autograd.gradcheck, float64) and a PyTorch training loop."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import tacit
import tacit.torch as tt


def cyclic_model(activation):
    n, p, q = 12, 3, 2
    rng = np.random.default_rng(11)
    A = sp.random(n, n, density=0.3, random_state=12).toarray()
    A[A != 0] = rng.uniform(-1, 1, np.count_nonzero(A))
    A *= 0.7 / np.abs(A).sum(axis=1).max()
    assert np.count_nonzero(np.diag(A)) < n  # some states feed back through cycles
    return tacit.Model(sp.csr_matrix(A), rng.uniform(-1, 1, (n, p)), rng.uniform(-1, 1, (q, n)),
                       b=rng.uniform(-0.3, 0.3, n), c=rng.uniform(-0.3, 0.3, q),
                       activation=activation)


def check_gradients(layer, u):
    def f(u, theta):
        return tt._Equilibrium.apply(u, theta, layer._trainable)
    assert torch.autograd.gradcheck(f, (u, layer.theta), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradcheck_on_a_model_with_cycles(activation):
    layer = tt.ImplicitLayer(cyclic_model(activation))
    assert layer.theta.dtype == torch.float64
    names = [t[0] for t in layer.tensors]
    assert any(name.startswith("A.") for name in names) and "by" in names
    u = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (4, 3))).requires_grad_()
    check_gradients(layer, u)


def test_gradcheck_on_a_small_cnn(data_dir):
    model = tacit.import_onnx(data_dir / "onnx" / "tiny_cnn.onnx", dtype="float64")
    layer = tt.ImplicitLayer(model)
    U = np.loadtxt(data_dir / "onnx" / "tiny_cnn_input.txt", ndmin=2)[:2]
    u = torch.from_numpy(U).requires_grad_()
    # The forward is the network's: the same outputs as tacit.solve.
    np.testing.assert_array_equal(layer(u).detach().numpy(), tacit.solve(model, U).outputs)
    check_gradients(layer, u)


def test_layer_trains_in_a_pytorch_loop(tmp_path):
    torch.manual_seed(0)
    layer = tt.ImplicitLayer(cyclic_model("relu"))
    rng = np.random.default_rng(5)
    u = torch.from_numpy(rng.uniform(-1, 1, (64, 3)))
    target = torch.from_numpy(np.stack([np.sin(u[:, 0]), u[:, 1] * u[:, 2]], axis=1))
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(u), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    layer.save(tmp_path / "trained.tacit")
    trained = tacit.load(tmp_path / "trained.tacit")
    np.testing.assert_allclose(tacit.solve(trained, u.numpy()).outputs,
                               layer(u).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_backward_differentiates_at_the_parameters_of_its_forward():
    tr = tacit.Trainable(cyclic_model("relu"))
    theta = tr.parameters()
    U, G = np.random.default_rng(3).uniform(-1, 1, (5, 3)), np.ones((5, 2))
    y, tape, report = tr.forward(U)
    assert report.ok and y.shape == (5, 2)
    g_theta, g_u, adjoint = tr.backward(tape, G)
    assert adjoint.ok
    tr.set_parameters(theta * 0.5)
    y_half, tape_half, _ = tr.forward(U)
    assert not np.array_equal(y_half, y)
    g_theta2, g_u2, _ = tr.backward(tape, G)  # the first forward's parameters again
    np.testing.assert_array_equal(g_theta2, g_theta)
    np.testing.assert_array_equal(g_u2, g_u)
    with pytest.raises(ValueError, match="values"):
        tr.set_parameters(np.ones(3))
    with pytest.raises(ValueError, match="samples"):
        tr.backward(tape, np.ones((4, 2)))
