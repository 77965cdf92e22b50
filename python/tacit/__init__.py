"""tacit: implicit deep-learning models from NumPy, SciPy and PyTorch.

An implicit model predicts y(u) = C x + D u + c where the state x solves
x = phi(A x + B u + b). Feed-forward networks are the case where A is strictly
block-triangular (the solve is then the forward pass).

Conventions: solves take samples in rows (U of shape (k, p), as PyTorch
batches) and return outputs of shape (k, q); operators multiply column
vectors (``A @ x`` with x of shape (n,) or (n, k)), as SciPy matrices do.
Wherever an array is expected a CPU PyTorch tensor (or any object with
``__dlpack__``) is read in place through DLPack; returned arrays are NumPy
arrays, which ``torch.from_dlpack`` wraps without copying.

Errors: misuse raises ValueError, a file problem tacit.FileError (an
OSError naming the file, line and problem), a missing capability NotImplementedError, and a numerical
failure that cannot be returned as a status tacit.NumericalError. Solves
report non-convergence in their report instead of raising.
"""

from ._tacit import (  # noqa: F401
    AdjointReport,
    AttackSummary,
    CertifiedAccuracy,
    LipschitzBounds,
    LocalLipschitzBounds,
    Model,
    NumericalError,
    Operator,
    OutputBounds,
    PerronBound,
    ProjectionReport,
    RescaleReport,
    Sensitivity,
    Solution,
    SolveReport,
    Solver,
    Trainable,
    WellPosedness,
    __version__,
    attack,
    bcd,
    bounds,
    certify,
    compose,
    export_onnx,
    has_onnx,
    import_onnx,
    init_model,
    isa,
    lipschitz,
    load,
    local_lipschitz,
    project,
    prune,
    random_implicit,
    rescale,
    resnet20,
    resnet20_inputs,
    resnet_like,
    sensitivity,
    set_isa,
    solve,
    train,
    wellposed,
)
from ._convert import FileError  # noqa: F401

__all__ = [
    "FileError",
    "AdjointReport", "AttackSummary", "CertifiedAccuracy", "LipschitzBounds",
    "LocalLipschitzBounds", "Model", "NumericalError", "Operator", "OutputBounds",
    "PerronBound", "ProjectionReport", "RescaleReport", "Sensitivity", "Solution",
    "SolveReport", "Solver", "Trainable", "WellPosedness", "__version__", "attack", "bcd",
    "bounds", "certify", "compose", "export_onnx", "has_onnx", "import_onnx", "init_model",
    "isa", "lipschitz", "load", "local_lipschitz", "project", "prune", "random_implicit",
    "rescale", "resnet20", "resnet20_inputs", "resnet_like", "sensitivity", "set_isa",
    "solve", "train", "wellposed",
]
