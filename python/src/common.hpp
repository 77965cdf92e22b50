#pragma once
// Shared pieces of the Python bindings: the precision-erased model and
// operator handles, NumPy views of tacit's storage, and the conversions
// between NumPy's sample-major arrays and tacit's slab-major batches.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>

#include <tacit/core/csr.hpp>
#include <tacit/core/dense.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>

namespace tacit::python {

namespace py = pybind11;

/// A model in either precision. Models are immutable: the handle shares it.
template <class T> using ModelPtr = std::shared_ptr<const Model<T>>;
struct PyModel {
  std::variant<ModelPtr<float>, ModelPtr<double>> model;
  /// The solver of the last tacit.solve on this model (tacit.Solver, kept for
  /// the next call with the same settings; see solves.cpp). Only the handle
  /// Python holds fills it; the cached solver's own handle has none.
  mutable std::shared_ptr<void> solver_cache;

  PyModel() = default;
  PyModel(std::variant<ModelPtr<float>, ModelPtr<double>> m) : model(std::move(m)) {}
  template <class T> PyModel(ModelPtr<T> m) : model(std::move(m)) {}

  template <class F> decltype(auto) visit(F &&f) const {
    return std::visit([&](const auto &m) -> decltype(auto) { return f(*m, m); }, model);
  }
};

/// An operator in either precision, with the product it stands for: M, M^T,
/// |M| or |M|^T (so that `A.T` and `abs(A)` are views, not copies).
template <class T> struct TypedOperator {
  OperatorPtr<T> op;
  Mode mode = Mode::normal;
};
struct PyOperator {
  std::variant<TypedOperator<float>, TypedOperator<double>> held;
  template <class F> decltype(auto) visit(F &&f) const {
    return std::visit([&](const auto &t) -> decltype(auto) { return f(t); }, held);
  }
};

template <class M> struct model_value;
template <class T> struct model_value<Model<T>> { using type = T; };
/// T of a Model<T>.
template <class M> using model_value_t = typename model_value<M>::type;

/// The model in float64: itself when it is double, else converted (the
/// analyses that the command runs in float64 do the same).
inline std::shared_ptr<const Model<double>> float64_model(const PyModel &model) {
  return model.visit(
      [](const auto &mm, const auto &ptr) -> std::shared_ptr<const Model<double>> {
        using T = model_value_t<std::decay_t<decltype(mm)>>;
        if constexpr (std::is_same_v<T, double>)
          return ptr;
        else
          return std::make_shared<const Model<double>>(convert_model<double>(mm));
      });
}

template <class T> constexpr const char *dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

/// "float32" / "float64" (also numpy dtypes and their names) -> true for float32.
bool parse_is_float32(const py::object &dtype);

/// A read-only (or writable) NumPy array over `data` that keeps `owner` alive
/// as its base: no copy.
template <class T, class Owner>
py::array_t<T> view_array(const T *data, std::vector<py::ssize_t> shape,
                          std::vector<py::ssize_t> strides, std::shared_ptr<Owner> owner,
                          bool writable = false) {
  auto *keep = new std::shared_ptr<Owner>(std::move(owner));
  py::capsule base(keep,
                   [](void *p) { delete static_cast<std::shared_ptr<Owner> *>(p); });
  py::array_t<T> a(std::move(shape), std::move(strides), data, base);
  if (!writable)
    py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

/// A NumPy copy of a vector.
template <class T> py::array_t<T> to_array(const std::vector<T> &v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

/// Samples in rows (k x p, or one sample of length p) -> a p x k batch.
/// Accepts any array NumPy can convert to T (a copy only when it must
/// convert); the batch is filled in parallel.
template <class T>
Batch<T> batch_from_samples(const py::handle &samples, index_t p, const char *what);

/// A q x k batch -> a k x q NumPy array (samples in rows), or a vector of
/// length q when `vector` (the input was one sample).
template <class T> py::array_t<T> samples_from_batch(const Batch<T> &batch, bool vector);

/// Any object NumPy reads as an array (lists included), as an array; a
/// tensor with __dlpack__ (a CPU PyTorch tensor) as a NumPy view of its
/// memory (no copy). \throws InvalidArgument naming `what` otherwise.
py::array as_array(const py::handle &obj, const char *what);

/// obj itself, or for an object with __dlpack__ that is not a NumPy array
/// (a PyTorch tensor, detached when it requires grad) a NumPy view of its
/// memory: tacit._convert.from_dlpack. \throws InvalidArgument for a tensor
/// that is not in CPU memory.
py::object as_numpy(const py::handle &obj);

/// Writes the q x k batch into dst as k rows of q values (in parallel, the
/// GIL released).
template <class T> void copy_samples(const Batch<T> &batch, T *dst);

/// Runs f with the GIL released, in a task arena of `threads` threads
/// (0: all of the machine's).
void run_released(int threads, const std::function<void()> &f);

/// The tacit CSR matrix whose own arrays a SciPy CSR matrix holds (one made by
/// Operator.to_scipy, of precision T, shape and arrays unchanged), else null.
template <class T>
std::shared_ptr<const CsrMatrix<T>> tacit_csr_of(const py::handle &obj);

void bind_operators(py::module_ &m);
void bind_models(py::module_ &m);
void bind_solves(py::module_ &m);
void bind_training(py::module_ &m);
void bind_analysis(py::module_ &m);
void bind_bounds(py::module_ &m);

} // namespace tacit::python
