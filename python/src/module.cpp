// The extension module tacit._tacit: errors, version, instruction-set level,
// and the conversions shared by the other binding files.
#include "common.hpp"

#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <map>
#include <mutex>

#include <tacit/config.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/isa.hpp>
#include <tacit/core/version.hpp>

namespace tacit::python {

bool parse_is_float32(const py::object &dtype) {
  const std::string name = py::str(py::module_::import("numpy").attr("dtype")(dtype));
  if (name == "float32")
    return true;
  if (name == "float64")
    return false;
  throw InvalidArgument("dtype must be float32 or float64, not " + name);
}

namespace {
/// Copies of at most this many values run serially in the calling thread
/// (a sample of ResNet20 has 3,072): handing them to TBB costs more than the
/// copy.
constexpr index_t serial_copy_limit = index_t(1) << 14;
} // namespace

py::object as_numpy(const py::handle &obj) {
  if (py::isinstance<py::array>(obj) || !py::hasattr(obj, "__dlpack__"))
    return py::reinterpret_borrow<py::object>(obj);
  return py::module_::import("tacit._convert").attr("from_dlpack")(obj);
}

template <class T>
Batch<T> batch_from_samples(const py::handle &samples, index_t p, const char *what) {
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(
      as_numpy(samples));
  if (!a)
    throw InvalidArgument(std::string(what) + ": not convertible to a " +
                          dtype_name<T>() + " array");
  if (a.ndim() != 1 && a.ndim() != 2)
    throw InvalidArgument(std::string(what) + ": expected a vector of length " +
                          std::to_string(p) + " or an array of shape (k, " +
                          std::to_string(p) + "), got " + std::to_string(a.ndim()) +
                          " dimensions");
  const index_t k = a.ndim() == 1 ? 1 : a.shape(0);
  const index_t cols = a.ndim() == 1 ? a.shape(0) : a.shape(1);
  if (cols != p)
    throw InvalidArgument(std::string(what) + ": samples have " + std::to_string(cols) +
                          " values, the model expects " + std::to_string(p));
  Batch<T> batch(p, k);
  const T *src = a.data();
  if (k * p <= serial_copy_limit) {
    // A few samples: a loop, without waking TBB's workers for it.
    for (index_t j = 0; j < k; ++j)
      for (index_t i = 0; i < p; ++i)
        batch(i, j) = src[j * p + i];
    return batch;
  }
  {
    py::gil_scoped_release release;
    // Blocks of 64 samples x 256 features: both sides stay in cache while the
    // block is transposed.
    tbb::parallel_for(tbb::blocked_range2d<index_t>(0, k, 64, 0, p, 256),
                      [&](const tbb::blocked_range2d<index_t> &r) {
                        for (index_t j = r.rows().begin(); j < r.rows().end(); ++j)
                          for (index_t i = r.cols().begin(); i < r.cols().end(); ++i)
                            batch(i, j) = src[j * p + i];
                      });
  }
  return batch;
}

template <class T> void copy_samples(const Batch<T> &batch, T *dst) {
  const index_t q = batch.rows(), k = batch.cols();
  if (k * q <= serial_copy_limit) {
    for (index_t j = 0; j < k; ++j)
      for (index_t i = 0; i < q; ++i)
        dst[j * q + i] = batch(i, j);
    return;
  }
  py::gil_scoped_release release;
  tbb::parallel_for(tbb::blocked_range2d<index_t>(0, k, 64, 0, q, 256),
                    [&](const tbb::blocked_range2d<index_t> &r) {
                      for (index_t j = r.rows().begin(); j < r.rows().end(); ++j)
                        for (index_t i = r.cols().begin(); i < r.cols().end(); ++i)
                          dst[j * q + i] = batch(i, j);
                    });
}

template <class T> py::array_t<T> samples_from_batch(const Batch<T> &batch, bool vector) {
  const index_t q = batch.rows(), k = batch.cols();
  py::array_t<T> out = vector ? py::array_t<T>(q) : py::array_t<T>({k, q});
  copy_samples(batch, out.mutable_data());
  return out;
}

template Batch<float> batch_from_samples<float>(const py::handle &, index_t,
                                                const char *);
template Batch<double> batch_from_samples<double>(const py::handle &, index_t,
                                                  const char *);
template void copy_samples<float>(const Batch<float> &, float *);
template void copy_samples<double>(const Batch<double> &, double *);
template py::array_t<float> samples_from_batch<float>(const Batch<float> &, bool);
template py::array_t<double> samples_from_batch<double>(const Batch<double> &, bool);

py::array as_array(const py::handle &obj, const char *what) {
  py::array a = py::array::ensure(as_numpy(obj));
  if (!a) {
    PyErr_Clear();
    throw InvalidArgument(std::string(what) + ": not an array");
  }
  return a;
}

namespace {

/// One arena per thread count, made on first use and kept: a fresh arena per
/// call would make TBB's workers leave one arena and join another on every
/// call (a fixed cost that dominates small solves). Never destroyed (the
/// process's exit tears the workers down).
tbb::task_arena &arena_of(int threads) {
  static std::mutex mutex;
  static auto *arenas = new std::map<int, std::unique_ptr<tbb::task_arena>>();
  std::lock_guard lock(mutex);
  auto &a = (*arenas)[threads];
  if (!a) {
    a = std::make_unique<tbb::task_arena>(threads);
    a->initialize();
  }
  return *a;
}

} // namespace

void run_released(int threads, const std::function<void()> &f) {
  if (threads < 0)
    throw InvalidArgument("threads must be >= 0 (0: every core), got " +
                          std::to_string(threads));
  py::gil_scoped_release release;
  if (threads == 0) {
    f();
    return;
  }
  arena_of(threads).execute(f);
}

} // namespace tacit::python

PYBIND11_MODULE(_tacit, m) {
  namespace py = pybind11;
  using namespace tacit::python;
  m.doc() = "tacit: implicit deep-learning models (compiled core)";

  // Misuse is a ValueError, a file problem an OSError (with the file name),
  // a feature this build or this model does not have NotImplementedError,
  // and a numerical outcome that cannot be returned as a status a
  // tacit.NumericalError; each with tacit's message.
  static py::exception<tacit::Error> numerical_error(m, "NumericalError",
                                                     PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p)
        std::rethrow_exception(p);
    } catch (const tacit::InvalidArgument &e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const tacit::FileError &e) {
      // tacit.FileError: an OSError whose str() is the library's message
      // (OSError's own would show only "[Errno None] None: 'path'").
      py::object type = py::module_::import("tacit._convert").attr("FileError");
      py::object error = type(e.what());
      error.attr("filename") = e.path();
      PyErr_SetObject(type.ptr(), error.ptr());
    } catch (const tacit::Unsupported &e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    } catch (const tacit::Error &e) {
      numerical_error(e.what());
    }
  });

  m.attr("__version__") = tacit::runtime_version();
  m.attr("has_onnx") = bool(TACIT_HAVE_ONNX);
  m.def(
      "isa", [] { return std::string(tacit::to_string(tacit::active_isa())); },
      "The instruction-set level of the kernels in use (generic, avx2, avx512).");
  m.def(
      "set_isa",
      [](const std::string &level) { tacit::set_isa(tacit::parse_isa(level)); },
      py::arg("level"),
      "Selects the kernels' instruction-set level; ValueError when the CPU cannot run "
      "it.");

  bind_operators(m);
  bind_models(m);
  bind_solves(m);
  bind_training(m);
  bind_analysis(m);
  bind_bounds(m);
}
