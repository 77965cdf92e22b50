"""Conversions of SciPy and NumPy matrices for tacit.Model (used by the
compiled module)."""

import numpy as np
import scipy.sparse


def csr_arrays(obj, name):
    """(rows, cols, indptr, indices, data) of a canonical CSR form of obj: a
    SciPy sparse matrix or array, or anything NumPy reads as a 2-D array.
    Duplicates are summed and column indices sorted; explicit zeros are kept
    (they are part of the pattern)."""
    if scipy.sparse.issparse(obj):
        m = obj.tocsr()
    else:
        a = np.asarray(obj)
        if a.ndim != 2:
            raise ValueError(f"Model: {name} must be a matrix (2-D), got {a.ndim} dimensions")
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"Model: {name} must be numeric, got dtype {a.dtype}")
        m = scipy.sparse.csr_matrix(a)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    rows, cols = m.shape
    return rows, cols, m.indptr, m.indices, m.data


def from_dlpack(obj):
    """A NumPy view of a tensor with __dlpack__ (a PyTorch tensor; one that
    requires grad is detached first), sharing its memory. CPU tensors only."""
    if getattr(obj, "requires_grad", False):
        obj = obj.detach()
    device_type, _ = obj.__dlpack_device__()
    if device_type != 1:  # kDLCPU
        raise ValueError(f"tacit works on CPU memory; this tensor is on DLPack device "
                         f"type {device_type} (move it with .cpu())")
    return np.from_dlpack(obj)


class FileError(OSError):
    """A file that cannot be read or written, or is malformed: an OSError whose
    message is the library's (the file, the line where it applies, the
    problem) and whose ``filename`` is the file."""

    def __str__(self):
        return str(self.args[0]) if self.args else super().__str__()
