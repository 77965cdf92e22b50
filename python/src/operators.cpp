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
  auto x = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(x_in);
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

// SciPy's csr_matrix over tacit's own arrays when the operator stores CSR
// (values, 32-bit column indices; SciPy narrows the n+1 row pointers to
// 32 bits itself), else over a CSR copy made once.
template <class T> py::object to_scipy(const TypedOperator<T> &t) {
  std::shared_ptr<const CsrMatrix<T>> csr;
  if (t.mode == Mode::normal) {
    csr = csr_view(t.op).shared();
  } else {
    CsrMatrix<T> m = t.op->to_csr();
    if (is_absolute(t.mode))
      m = m.abs();
    if (is_transposed(t.mode))
      m = m.transpose();
    csr = std::make_shared<const CsrMatrix<T>>(std::move(m));
  }
  const auto nnz = static_cast<py::ssize_t>(csr->values().size());
  py::array data = view_array<T>(csr->values().data(), {nnz}, {sizeof(T)}, csr);
  py::array indices =
      csr->wide_indices()
          ? py::array(view_array<std::int64_t>(csr->col_idx64().data(), {nnz}, {8}, csr))
          : py::array(view_array<std::int32_t>(csr->col_idx32().data(), {nnz}, {4}, csr));
  py::array indptr = view_array<std::int64_t>(
      csr->row_ptr().data(), {static_cast<py::ssize_t>(csr->row_ptr().size())}, {8}, csr);
  auto sparse = py::module_::import("scipy.sparse");
  return sparse.attr("csr_matrix")(py::make_tuple(data, indices, indptr),
                                   py::arg("shape") =
                                       py::make_tuple(csr->rows(), csr->cols()),
                                   py::arg("copy") = false);
}

template <class T> py::array_t<T> abs_sums(const TypedOperator<T> &t, bool rows_wanted) {
  // Row sums of M^T are column sums of M.
  const bool rows_of_m = rows_wanted != is_transposed(t.mode);
  std::vector<T> sums = rows_of_m ? t.op->row_abs_sums() : t.op->col_abs_sums();
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
