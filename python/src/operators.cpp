// tacit.Operator: a model's matrices as operators (products with NumPy
// arrays, transposed and absolute views, SciPy export without copies).
#include "common.hpp"

#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>

namespace tacit::python {
namespace {

constexpr Mode transposed(Mode m) {
  switch (m) {
  case Mode::normal:
    return Mode::transpose;
  case Mode::transpose:
    return Mode::normal;
  case Mode::abs:
    return Mode::abs_transpose;
  case Mode::abs_transpose:
    return Mode::abs;
  }
  return m;
}

constexpr Mode absolute(Mode m) {
  return is_transposed(m) ? Mode::abs_transpose : Mode::abs;
}

template <class T> std::pair<index_t, index_t> shape_of(const TypedOperator<T> &t) {
  return is_transposed(t.mode) ? std::pair{t.op->cols(), t.op->rows()}
                               : std::pair{t.op->rows(), t.op->cols()};
}

std::string mode_prefix(Mode m) {
  switch (m) {
  case Mode::normal:
    return "";
  case Mode::transpose:
    return "transpose of ";
  case Mode::abs:
    return "absolute values of ";
  case Mode::abs_transpose:
    return "transposed absolute values of ";
  }
  return "";
}

// y = op(M) x for x of shape (cols,) or (cols, k): a product on row-major
// views of the NumPy buffers themselves.
template <class T> py::array matmul(const TypedOperator<T> &t, const py::handle &x_in) {
  const auto [rows, cols] = shape_of(t);
  auto x =
      py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(as_numpy(x_in));
  if (!x)
    throw InvalidArgument(std::string("operator @ x: x is not convertible to ") +
                          dtype_name<T>());
  if (x.ndim() != 1 && x.ndim() != 2)
    throw InvalidArgument("operator @ x: x must have 1 or 2 dimensions, not " +
                          std::to_string(x.ndim()));
  if (x.shape(0) != cols)
    throw InvalidArgument("operator @ x: the operator is " + std::to_string(rows) +
                          " x " + std::to_string(cols) + " but x has " +
                          std::to_string(x.shape(0)) + " rows");
  const index_t k = x.ndim() == 1 ? 1 : x.shape(1);
  py::array_t<T> y = x.ndim() == 1 ? py::array_t<T>(rows) : py::array_t<T>({rows, k});
  ConstMatrixView<T> xv(x.data(), cols, k, k);
  MatrixView<T> yv{y.mutable_data(), rows, k, k};
  {
    py::gil_scoped_release release;
    t.op->apply(t.mode, T(1), xv, T(0), yv);
  }
  return y;
}

template <class T> constexpr const char *csr_capsule_name() {
  return sizeof(T) == 4 ? "tacit.CsrMatrix.float32" : "tacit.CsrMatrix.float64";
}

// A read-only 1-D NumPy view of n elements at p whose base is `base`.
template <class E> py::array readonly_view(const E *p, py::ssize_t n, py::handle base) {
  py::array_t<E> a({n}, {static_cast<py::ssize_t>(sizeof(E))}, p, base);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

// SciPy's csr_matrix over tacit's own arrays when the operator stores CSR
// (values, 32-bit column indices; SciPy narrows the n+1 row pointers to
// 32 bits itself), else over a CSR copy made once. The arrays' base is a
// capsule named csr_capsule_name<T>() holding the matrix: it keeps the matrix
// alive and lets tacit.Model take such a matrix back without copying.
template <class T> py::object to_scipy(const TypedOperator<T> &t) {
  std::shared_ptr<const CsrMatrix<T>> csr;
  if (t.mode == Mode::normal) {
    py::gil_scoped_release release; // a structured operator is materialised
    csr = csr_view(t.op).shared();
  } else {
    py::gil_scoped_release release;
    CsrMatrix<T> m = t.op->to_csr();
    if (is_absolute(t.mode))
      m = m.abs();
    if (is_transposed(t.mode))
      m = m.transpose();
    csr = std::make_shared<const CsrMatrix<T>>(std::move(m));
  }
  using Keep = std::shared_ptr<const CsrMatrix<T>>;
  py::capsule base(new Keep(csr), csr_capsule_name<T>(), [](PyObject *o) {
    delete static_cast<Keep *>(PyCapsule_GetPointer(o, csr_capsule_name<T>()));
  });
  const auto nnz = static_cast<py::ssize_t>(csr->values().size());
  py::array data = readonly_view<T>(csr->values().data(), nnz, base);
  py::array indices =
      csr->wide_indices()
          ? readonly_view<std::int64_t>(csr->col_idx64().data(), nnz, base)
          : readonly_view<std::int32_t>(csr->col_idx32().data(), nnz, base);
  py::array indptr = readonly_view<std::int64_t>(
      csr->row_ptr().data(), static_cast<py::ssize_t>(csr->row_ptr().size()), base);
  auto sparse = py::module_::import("scipy.sparse");
  return sparse.attr("csr_matrix")(py::make_tuple(data, indices, indptr),
                                   py::arg("shape") =
                                       py::make_tuple(csr->rows(), csr->cols()),
                                   py::arg("copy") = false);
}

template <class T> py::array_t<T> abs_sums(const TypedOperator<T> &t, bool rows_wanted) {
  // Row sums of M^T are column sums of M.
  const bool rows_of_m = rows_wanted != is_transposed(t.mode);
  std::vector<T> sums;
  {
    py::gil_scoped_release release;
    sums = rows_of_m ? t.op->row_abs_sums() : t.op->col_abs_sums();
  }
  py::array_t<T> out(static_cast<py::ssize_t>(sums.size()));
  std::copy(sums.begin(), sums.end(), out.mutable_data());
  return out;
}

template <class T>
TypedOperator<T> make_csr(index_t rows, index_t cols, const py::array &indptr_in,
                          const py::array &indices_in, const py::array &data_in) {
  auto indptr =
      py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(
          indptr_in);
  auto indices =
      py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(
          indices_in);
  auto data = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(data_in);
  if (!indptr || !indices || !data || indptr.ndim() != 1 || indices.ndim() != 1 ||
      data.ndim() != 1)
    throw InvalidArgument("CSR arrays must be one-dimensional and numeric");
  if (indptr.shape(0) != rows + 1)
    throw InvalidArgument("CSR: indptr has " + std::to_string(indptr.shape(0)) +
                          " entries, expected rows + 1 = " + std::to_string(rows + 1));
  if (indices.shape(0) != data.shape(0))
    throw InvalidArgument("CSR: " + std::to_string(indices.shape(0)) + " indices but " +
                          std::to_string(data.shape(0)) + " values");
  std::vector<std::int64_t> row_ptr(indptr.data(), indptr.data() + indptr.shape(0));
  std::vector<T> values(data.data(), data.data() + data.shape(0));
  auto csr = std::make_shared<const CsrMatrix<T>>(
      rows, cols, std::move(row_ptr),
      std::span<const std::int64_t>(indices.data(), indices.shape(0)), std::move(values));
  return {csr, Mode::normal};
}

} // namespace

template <class T>
std::shared_ptr<const CsrMatrix<T>> tacit_csr_of(const py::handle &obj) {
  if (!py::hasattr(obj, "format") || !py::hasattr(obj, "data") ||
      !py::hasattr(obj, "indices") || !py::hasattr(obj, "indptr") ||
      !py::isinstance<py::str>(obj.attr("format")) ||
      obj.attr("format").cast<std::string>() != "csr")
    return nullptr;
  py::object data = obj.attr("data"), indices = obj.attr("indices"),
             indptr = obj.attr("indptr");
  py::object base = data;
  while (py::isinstance<py::array>(base))
    base = base.attr("base");
  if (!PyCapsule_CheckExact(base.ptr()))
    return nullptr;
  const char *name = PyCapsule_GetName(base.ptr());
  if (!name || std::string_view(name) != csr_capsule_name<T>())
    return nullptr;
  const auto csr =
      *static_cast<std::shared_ptr<const CsrMatrix<T>> *>(PyCapsule_GetPointer(base.ptr(), name));
  // The very arrays of that matrix, whole and unchanged in shape.
  const auto nnz = static_cast<py::ssize_t>(csr->values().size());
  auto shape = obj.attr("shape").cast<std::pair<index_t, index_t>>();
  if (shape.first != csr->rows() || shape.second != csr->cols())
    return nullptr;
  auto is_view = [&](const py::object &a, const void *p, py::ssize_t itemsize) {
    if (!py::isinstance<py::array>(a))
      return false;
    auto arr = py::reinterpret_borrow<py::array>(a);
    return arr.ndim() == 1 && arr.shape(0) == nnz && arr.itemsize() == itemsize &&
           arr.strides(0) == itemsize && arr.data() == p;
  };
  if (!py::isinstance<py::array_t<T>>(data) ||
      !is_view(data, csr->values().data(), sizeof(T)))
    return nullptr;
  const bool indices_same = csr->wide_indices()
                                ? py::isinstance<py::array_t<std::int64_t>>(indices) &&
                                      is_view(indices, csr->col_idx64().data(), 8)
                                : py::isinstance<py::array_t<std::int32_t>>(indices) &&
                                      is_view(indices, csr->col_idx32().data(), 4);
  if (!indices_same)
    return nullptr;
  // SciPy may have narrowed the row pointers (a copy of n + 1 values):
  // compare them.
  auto ptr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(
      indptr);
  if (!ptr || ptr.ndim() != 1 ||
      ptr.shape(0) != static_cast<py::ssize_t>(csr->row_ptr().size()) ||
      !std::equal(csr->row_ptr().begin(), csr->row_ptr().end(), ptr.data()))
    return nullptr;
  return csr;
}

template std::shared_ptr<const CsrMatrix<float>> tacit_csr_of<float>(const py::handle &);
template std::shared_ptr<const CsrMatrix<double>> tacit_csr_of<double>(const py::handle &);

void bind_operators(py::module_ &m) {
  py::class_<PyOperator>(m, "Operator", R"doc(
A matrix of a model (A, B, C or D) known through its products: CSR, or
structured blocks (convolutions, identities, dense, pooling) never
materialised unless asked. ``op @ x`` multiplies a vector (n,) or a block of
column vectors (n, k); ``op.T`` and ``abs(op)`` are views (M^T, |M|).
Operators are immutable and may be used from several threads at once.)doc")
      .def_property_readonly("shape",
                             [](const PyOperator &o) {
                               return o.visit([](const auto &t) {
                                 const auto [r, c] = shape_of(t);
                                 return py::make_tuple(r, c);
                               });
                             })
      .def_property_readonly(
          "dtype",
          [](const PyOperator &o) {
            return o.visit([](const auto &t) {
              using T = typename std::decay_t<decltype(*t.op)>::value_type;
              return py::module_::import("numpy").attr("dtype")(dtype_name<T>());
            });
          })
      .def_property_readonly("nnz",
                             [](const PyOperator &o) {
                               return o.visit([](const auto &t) { return t.op->nnz(); });
                             })
      .def_property_readonly(
          "nbytes",
          [](const PyOperator &o) {
            return o.visit([](const auto &t) { return t.op->bytes(); });
          },
          "Bytes of storage (not counting caches).")
      .def_property_readonly(
          "kind",
          [](const PyOperator &o) {
            return o.visit([](const auto &t) { return t.op->kind(); });
          },
          "The storage: 'csr', 'conv2d', 'block', ...")
      .def_property_readonly("T",
                             [](const PyOperator &o) {
                               return o.visit([](const auto &t) {
                                 auto u = t;
                                 u.mode = transposed(t.mode);
                                 return PyOperator{u};
                               });
                             })
      .def("__abs__",
           [](const PyOperator &o) {
             return o.visit([](const auto &t) {
               auto u = t;
               u.mode = absolute(t.mode);
               return PyOperator{u};
             });
           })
      .def(
          "__matmul__",
          [](const PyOperator &o, const py::object &x) {
            return o.visit([&](const auto &t) { return matmul(t, x); });
          },
          py::is_operator())
      .def(
          "row_abs_sums",
          [](const PyOperator &o) {
            return o.visit([](const auto &t) { return py::array(abs_sums(t, true)); });
          },
          "Sum of |M_ij| over j for every row i.")
      .def(
          "col_abs_sums",
          [](const PyOperator &o) {
            return o.visit([](const auto &t) { return py::array(abs_sums(t, false)); });
          },
          "Sum of |M_ij| over i for every column j.")
      .def(
          "to_scipy",
          [](const PyOperator &o) {
            return o.visit([](const auto &t) { return to_scipy(t); });
          },
          R"doc(The operator as a scipy.sparse.csr_matrix. For a CSR operator the
matrix's data and 32-bit indices are tacit's own arrays (read-only views, no
copy); other operators are materialised once.)doc")
      .def("__repr__", [](const PyOperator &o) {
        return o.visit([](const auto &t) {
          using T = typename std::decay_t<decltype(*t.op)>::value_type;
          const auto [r, c] = shape_of(t);
          return "<tacit.Operator " + mode_prefix(t.mode) + t.op->kind() + " " +
                 std::to_string(r) + " x " + std::to_string(c) + ", " +
                 std::to_string(t.op->nnz()) + " nonzeros, " + dtype_name<T>() + ">";
        });
      });

  m.def(
      "_csr_operator",
      [](index_t rows, index_t cols, const py::array &indptr, const py::array &indices,
         const py::array &data, bool float32) {
        if (rows < 0 || cols < 0)
          throw InvalidArgument("CSR: negative shape");
        return float32 ? PyOperator{make_csr<float>(rows, cols, indptr, indices, data)}
                       : PyOperator{make_csr<double>(rows, cols, indptr, indices, data)};
      },
      py::arg("rows"), py::arg("cols"), py::arg("indptr"), py::arg("indices"),
      py::arg("data"), py::arg("float32"));
}

} // namespace tacit::python
