"""tacit models inside PyTorch: ImplicitLayer, whose forward is tacit's
equilibrium solve and whose backward is tacit's adjoint solve.

    layer = tacit.torch.ImplicitLayer(tacit.load("model.tacit"))
    y = layer(u)          # u: (k, p) tensor; y: (k, q)
    y.sum().backward()    # gradients of layer.theta (every parameter) and u

The layer's parameters are one flat nn.Parameter ``theta`` in the layout of
``layer.tensors`` (name, shape, offset, size). CPU tensors of the model's
dtype are shared with tacit, not copied, where their layout allows.
"""

import numpy as np
import torch

from ._tacit import Trainable


class _Equilibrium(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, theta, trainable):
        trainable.set_parameters(theta.detach().numpy())
        y, tape, report = trainable.forward(u.detach().numpy())
        if not report.ok:
            raise RuntimeError(f"tacit forward solve: {report.status} "
                               f"(residual {report.residual:g}): {report.message}")
        ctx.trainable, ctx.tape = trainable, tape
        return torch.from_numpy(y)

    @staticmethod
    def backward(ctx, grad_y):
        grad_theta, grad_u, report = ctx.trainable.backward(
            ctx.tape, np.ascontiguousarray(grad_y.detach().numpy()))
        if not report.ok:
            raise RuntimeError(f"tacit adjoint solve: {report.status} "
                               f"(residual {report.residual:g}): {report.message}")
        return torch.from_numpy(grad_u), torch.from_numpy(grad_theta), None


class ImplicitLayer(torch.nn.Module):
    """y = C x + D u + c with x = phi(A x + B u + b), differentiable in u and
    in every parameter of the model (``theta``)."""

    def __init__(self, model, threads=0):
        super().__init__()
        self._trainable = Trainable(model, threads=threads)
        self.theta = torch.nn.Parameter(torch.from_numpy(self._trainable.parameters()))
        self.tensors = self._trainable.tensors

    def forward(self, u):
        return _Equilibrium.apply(u, self.theta, self._trainable)

    def save(self, path):
        """Writes the model with the current parameters (native format)."""
        self._trainable.set_parameters(self.theta.detach().numpy())
        self._trainable.save(path)
