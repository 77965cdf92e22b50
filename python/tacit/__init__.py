"""tacit: implicit deep-learning models from NumPy, SciPy and PyTorch.

An implicit model predicts y(u) = C x + D u + c where the state x solves
x = phi(A x + B u + b). Feed-forward networks are the case where A is strictly
block-triangular (the solve is then the forward pass).

Conventions: solves take samples in rows (U of shape (k, p), as PyTorch
batches) and return outputs of shape (k, q); operators multiply column
vectors (``A @ x`` with x of shape (n,) or (n, k)), as SciPy matrices do.

Errors: misuse raises ValueError, a file problem OSError (naming the file,
line and problem), a missing capability NotImplementedError, and a numerical
failure that cannot be returned as a status tacit.NumericalError. Solves
report non-convergence in their report instead of raising.
"""

from ._tacit import (  # noqa: F401
    Model,
    NumericalError,
    CertifiedAccuracy,
    Operator,
    OutputBounds,
    bounds,
    certify,
    PerronBound,
    RescaleReport,
    Sensitivity,
    WellPosedness,
    rescale,
    sensitivity,
    wellposed,
    Solution,
    SolveReport,
    Solver,
    Trainable,
    __version__,
    has_onnx,
    import_onnx,
    isa,
    load,
    random_implicit,
    resnet20,
    resnet20_inputs,
    resnet_like,
    set_isa,
    solve,
)

__all__ = [
    "Model", "NumericalError", "Operator", "Solution", "SolveReport", "Solver", "Trainable",
    "__version__", "has_onnx", "import_onnx", "isa", "load", "random_implicit", "resnet20",
    "resnet20_inputs", "resnet_like", "PerronBound", "RescaleReport", "Sensitivity",
    "WellPosedness", "CertifiedAccuracy", "OutputBounds", "bounds", "certify", "rescale", "sensitivity", "wellposed", "set_isa", "solve",
]
