// tacit.Model: construction from SciPy/NumPy matrices or tacit operators,
// files (native, directories, ONNX), the built-in ResNet20, and NumPy views of
// the biases.
#include "common.hpp"

#include <tacit/config.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/error.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/compose.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/nn/network.hpp>
#if TACIT_HAVE_ONNX
#include <tacit/nn/onnx.hpp>
#include <tacit/train/init.hpp>
#endif

namespace tacit::python {
namespace {

// A tacit operator as given, or a SciPy sparse matrix / NumPy array converted
// to CSR (tacit._convert.csr_arrays: canonical CSR arrays, duplicates summed).
template <class T> OperatorPtr<T> as_operator(const py::object &obj, const char *name) {
  if (py::isinstance<PyOperator>(obj)) {
    const auto &o = obj.cast<const PyOperator &>();
    const auto *t = std::get_if<TypedOperator<T>>(&o.held);
    if (!t)
      throw InvalidArgument(std::string("Model: ") + name + " is a tacit operator in " +
                            (sizeof(T) == 4 ? "float64" : "float32") +
                            " but the model is " + dtype_name<T>());
    if (t->mode != Mode::normal)
      throw InvalidArgument(std::string("Model: ") + name +
                            " is a transposed or absolute view; pass the matrix itself");
    return t->op;
  }
  // A SciPy matrix made by Operator.to_scipy (tacit's arrays): that matrix
  // itself, no copy.
  if (auto csr = tacit_csr_of<T>(obj))
    return csr;
  auto arrays = py::module_::import("tacit._convert").attr("csr_arrays")(obj, name);
  auto tuple = arrays.cast<py::tuple>();
  const auto rows = tuple[0].cast<index_t>(), cols = tuple[1].cast<index_t>();
  auto indptr =
      py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(
          tuple[2]);
  auto indices =
      py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(
          tuple[3]);
  auto data = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(tuple[4]);
  // The copy into tacit's CSR (and its checks) without the GIL; the arrays
  // stay referenced here.
  std::shared_ptr<const CsrMatrix<T>> csr;
  std::string error;
  {
    py::gil_scoped_release release;
    try {
      std::vector<std::int64_t> row_ptr(indptr.data(), indptr.data() + indptr.shape(0));
      std::vector<T> values(data.data(), data.data() + data.shape(0));
      csr = std::make_shared<const CsrMatrix<T>>(
          rows, cols, std::move(row_ptr),
          std::span<const std::int64_t>(indices.data(), indices.shape(0)),
          std::move(values));
    } catch (const InvalidArgument &e) {
      error = e.what();
    }
  }
  if (!csr)
    throw InvalidArgument(std::string("Model: ") + name + ": " + error);
  return csr;
}

template <class T> std::vector<T> as_vector(const py::object &obj, const char *name) {
  if (obj.is_none())
    return {};
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a || a.ndim() != 1)
    throw InvalidArgument(std::string("Model: ") + name + " must be a vector");
  return std::vector<T>(a.data(), a.data() + a.shape(0));
}

// blocks: None (one block with `activation`) or a list of (name, size,
// activation[, slope]) in state order.
std::vector<StateBlock> as_blocks(const py::object &blocks, const std::string &activation,
                                  double slope, index_t n) {
  std::vector<StateBlock> out;
  if (blocks.is_none()) {
    out.push_back({"states", 0, n, Activation::parse(activation, slope)});
    return out;
  }
  index_t offset = 0;
  for (const auto &item : blocks) {
    auto t = py::reinterpret_borrow<py::tuple>(item);
    if (t.size() < 3 || t.size() > 4)
      throw InvalidArgument("Model: a block is (name, size, activation[, slope])");
    StateBlock b;
    b.name = t[0].cast<std::string>();
    b.offset = offset;
    b.size = t[1].cast<index_t>();
    b.activation = Activation::parse(t[2].cast<std::string>(),
                                     t.size() == 4 ? t[3].cast<double>() : slope);
    offset += b.size;
    out.push_back(std::move(b));
  }
  return out;
}

template <class T>
PyModel build_model(const py::object &A, const py::object &B, const py::object &C,
                    const py::object &D, const py::object &b, const py::object &c,
                    const std::string &activation, double slope,
                    const py::object &blocks) {
  auto a = as_operator<T>(A, "A");
  auto bb = as_operator<T>(B, "B");
  auto cc = as_operator<T>(C, "C");
  OperatorPtr<T> d = D.is_none() ? nullptr : as_operator<T>(D, "D");
  auto model = std::make_shared<const Model<T>>(
      a, bb, cc, d, as_vector<T>(b, "b"), as_vector<T>(c, "c"),
      as_blocks(blocks, activation, slope, a->rows()));
  return PyModel{model};
}

bool object_is_float32(const py::object &obj) {
  if (py::isinstance<PyOperator>(obj))
    return std::holds_alternative<TypedOperator<float>>(
        obj.cast<const PyOperator &>().held);
  if (py::hasattr(obj, "dtype"))
    return py::str(obj.attr("dtype")).cast<std::string>() == "float32";
  return false;
}

template <class T> PyModel wrap(Model<T> &&m) {
  return PyModel{std::make_shared<const Model<T>>(std::move(m))};
}

bool has_native_suffix(const std::filesystem::path &path) {
  return path.extension() == ".tacit";
}

} // namespace

void bind_models(py::module_ &m) {
  py::class_<PyModel>(m, "Model", R"doc(
An implicit model  y = C x + D u + c,  x = phi(A x + B u + b).

Model(A, B, C, D=None, b=None, c=None, activation='relu', slope=0.01,
      blocks=None, dtype=None)

A, B, C, D are SciPy sparse matrices, NumPy arrays or tacit operators; b and c
vectors (None: zero). ``blocks`` lists the states' activations as
(name, size, activation[, slope]) in state order (None: one block with
``activation``). dtype is float32 or float64 (None: float32 when A is, else
float64). Models are immutable and may be shared between threads.)doc")
      .def(py::init([](const py::object &A, const py::object &B, const py::object &C,
                       const py::object &D, const py::object &b, const py::object &c,
                       const std::string &activation, double slope,
                       const py::object &blocks, const py::object &dtype) {
             const bool f32 =
                 dtype.is_none() ? object_is_float32(A) : parse_is_float32(dtype);
             return f32 ? build_model<float>(A, B, C, D, b, c, activation, slope, blocks)
                        : build_model<double>(A, B, C, D, b, c, activation, slope,
                                              blocks);
           }),
           py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D") = py::none(),
           py::arg("b") = py::none(), py::arg("c") = py::none(),
           py::arg("activation") = "relu", py::arg("slope") = 0.01,
           py::arg("blocks") = py::none(), py::arg("dtype") = py::none())
      .def_property_readonly("states",
                             [](const PyModel &p) {
                               return p.visit(
                                   [](const auto &m, auto &) { return m.states(); });
                             })
      .def_property_readonly("inputs",
                             [](const PyModel &p) {
                               return p.visit(
                                   [](const auto &m, auto &) { return m.inputs(); });
                             })
      .def_property_readonly("outputs",
                             [](const PyModel &p) {
                               return p.visit(
                                   [](const auto &m, auto &) { return m.outputs(); });
                             })
      .def_property_readonly("dtype",
                             [](const PyModel &p) {
                               return p.visit([](const auto &m, auto &) {
                                 using T = model_value_t<std::decay_t<decltype(m)>>;
                                 return py::module_::import("numpy").attr("dtype")(
                                     dtype_name<T>());
                               });
                             })
      .def_property_readonly(
          "A",
          [](const PyModel &p) {
            return p.visit([](const auto &m, auto &) {
              return PyOperator{TypedOperator{m.A_ptr(), Mode::normal}};
            });
          })
      .def_property_readonly(
          "B",
          [](const PyModel &p) {
            return p.visit([](const auto &m, auto &) {
              return PyOperator{TypedOperator{m.B_ptr(), Mode::normal}};
            });
          })
      .def_property_readonly(
          "C",
          [](const PyModel &p) {
            return p.visit([](const auto &m, auto &) {
              return PyOperator{TypedOperator{m.C_ptr(), Mode::normal}};
            });
          })
      .def_property_readonly(
          "D",
          [](const PyModel &p) -> py::object {
            return p.visit([](const auto &m, auto &) -> py::object {
              if (!m.D_ptr())
                return py::none();
              return py::cast(PyOperator{TypedOperator{m.D_ptr(), Mode::normal}});
            });
          },
          "D, or None when D = 0.")
      .def_property_readonly(
          "b",
          [](const PyModel &p) {
            return p.visit([](const auto &m, const auto &ptr) {
              auto s = m.bias_x();
              using T = std::remove_const_t<typename decltype(s)::element_type>;
              return py::array(view_array<T>(
                  s.data(), {static_cast<py::ssize_t>(s.size())}, {sizeof(T)}, ptr));
            });
          },
          "The state bias b (a read-only view of the model's storage).")
      .def_property_readonly(
          "c",
          [](const PyModel &p) {
            return p.visit([](const auto &m, const auto &ptr) {
              auto s = m.bias_y();
              using T = std::remove_const_t<typename decltype(s)::element_type>;
              return py::array(view_array<T>(
                  s.data(), {static_cast<py::ssize_t>(s.size())}, {sizeof(T)}, ptr));
            });
          },
          "The output bias c (a read-only view of the model's storage).")
      .def_property_readonly(
          "blocks",
          [](const PyModel &p) {
            return p.visit([](const auto &m, auto &) {
              py::list out;
              for (const auto &b : m.blocks())
                out.append(py::make_tuple(b.name, b.offset, b.size, b.activation.name(),
                                          b.activation.slope));
              return out;
            });
          },
          "The state blocks as (name, offset, size, activation, slope).")
      .def(
          "save",
          [](const PyModel &p, const std::filesystem::path &path,
             const py::object &format) {
            const std::string f = format.is_none()
                                      ? (has_native_suffix(path) ? "native" : "dir")
                                      : format.cast<std::string>();
            if (f != "native" && f != "dir")
              throw InvalidArgument("save: format must be 'native' or 'dir', not '" + f +
                                    "'");
            p.visit([&](const auto &m, auto &) {
              py::gil_scoped_release release;
              if (f == "native")
                save_model_native(m, path);
              else
                save_model_directory(m, path);
            });
          },
          py::arg("path"), py::arg("format") = py::none(),
          "Writes the model atomically: a native file (format 'native', the default for "
          "a "
          "path ending in .tacit) or a model directory ('dir').")
      .def(
          "astype",
          [](const PyModel &p, const py::object &dtype) {
            const bool f32 = parse_is_float32(dtype);
            return p.visit([&](const auto &m, const auto &ptr) -> PyModel {
              using T = model_value_t<std::decay_t<decltype(m)>>;
              if ((sizeof(T) == 4) == f32)
                return PyModel{ptr};
              py::gil_scoped_release release;
              if (f32)
                return wrap(convert_model<float>(m));
              return wrap(convert_model<double>(m));
            });
          },
          py::arg("dtype"), "The same model in another precision (operators as CSR).")
      .def("__repr__", [](const PyModel &p) {
        return p.visit([](const auto &m, auto &) {
          using T = model_value_t<std::decay_t<decltype(m)>>;
          return "<tacit.Model n=" + std::to_string(m.states()) +
                 " p=" + std::to_string(m.inputs()) +
                 " q=" + std::to_string(m.outputs()) + ", A: " + m.A().kind() + " with " +
                 std::to_string(m.A().nnz()) + " nonzeros, " + dtype_name<T>() + ">";
        });
      });

  m.def(
      "load",
      [](const std::filesystem::path &path, const py::object &dtype) {
        const bool f32 = parse_is_float32(dtype);
        py::gil_scoped_release release;
        return f32 ? wrap(load_model<float>(path)) : wrap(load_model<double>(path));
      },
      py::arg("path"), py::arg("dtype") = "float64",
      "Loads a model directory or a native .tacit file (converted to dtype).");

  m.def(
      "import_onnx",
      [](const std::filesystem::path &path, const py::object &dtype) -> PyModel {
#if TACIT_HAVE_ONNX
        const bool f32 = parse_is_float32(dtype);
        py::gil_scoped_release release;
        return f32 ? wrap(import_onnx<float>(path)) : wrap(import_onnx<double>(path));
#else
        (void)path;
        (void)dtype;
        throw Unsupported("import_onnx: this tacit was built without the onnx component");
#endif
      },
      py::arg("path"), py::arg("dtype") = "float64",
      "Imports a feed-forward ONNX network (convolutions, dense layers, batch norm "
      "folded, "
      "residual additions) as a structured model.");

  m.def(
      "resnet20",
      [](const std::string &shortcut, std::uint64_t seed, const py::object &dtype) {
        if (shortcut != "a" && shortcut != "b")
          throw InvalidArgument("resnet20: shortcut must be 'a' or 'b', not '" +
                                shortcut + "'");
        const auto s =
            shortcut == "a" ? ResNetShortcut::option_a : ResNetShortcut::option_b;
        const bool f32 = parse_is_float32(dtype);
        py::gil_scoped_release release;
        return f32 ? wrap(resnet20<float>(s, seed)) : wrap(resnet20<double>(s, seed));
      },
      py::arg("shortcut") = "a", py::arg("seed") = 20, py::arg("dtype") = "float64",
      "The CIFAR ResNet20 with deterministic weights, as a structured model "
      "(n = 188,416 states, p = 3072, q = 10).");

  m.def(
      "resnet_like",
      [](bool residual, std::uint64_t seed, const py::object &dtype) {
        ResNetLikeShape shape;
        shape.residual = residual;
        const bool f32 = parse_is_float32(dtype);
        py::gil_scoped_release release;
        return f32 ? wrap(resnet_like_model<float>(shape, seed))
                   : wrap(resnet_like_model<double>(shape, seed));
      },
      py::arg("residual") = true, py::arg("seed") = 1, py::arg("dtype") = "float64",
      "A ResNet-like feed-forward model with A stored as CSR (n = 188,416 states, "
      "36.6 M nonzeros): the command's built-in default.");

  m.def(
      "random_implicit",
      [](index_t states, index_t inputs, index_t outputs, index_t row_nnz,
         double norm_inf, std::uint64_t seed, const py::object &dtype) {
        const bool f32 = parse_is_float32(dtype);
        py::gil_scoped_release release;
        return f32 ? wrap(random_implicit_model<float>(states, inputs, outputs, row_nnz,
                                                       norm_inf, seed))
                   : wrap(random_implicit_model<double>(states, inputs, outputs, row_nnz,
                                                        norm_inf, seed));
      },
      py::arg("states"), py::arg("inputs"), py::arg("outputs"), py::arg("row_nnz") = 16,
      py::arg("norm_inf") = 0.9, py::arg("seed") = 1, py::arg("dtype") = "float64",
      "A truly implicit sparse model (cycles in A) with ||A||_inf = norm_inf, ReLU.");

  m.def(
      "init_model",
      [](const std::string &spec, std::uint64_t seed, const py::object &dtype) {
        const bool f32 = parse_is_float32(dtype);
        py::gil_scoped_release release;
        return f32 ? wrap(init_model<float>(spec, seed)) : wrap(init_model<double>(spec, seed));
      },
      py::arg("spec"), py::arg("seed") = 1, py::arg("dtype") = "float64",
      "A fresh model to train (the command's --init): 'mlp:784,64,32,16,10' (ReLU; "
      "'mlp:20,12,6,5,phi=tanh' for tanh states) or "
      "'implicit:n=N,p=P,q=Q,density=D,kappa=K'. ValueError naming what is wrong in "
      "spec.");

  m.def(
      "resnet20_inputs",
      [](index_t count, std::uint64_t seed, const py::object &dtype) -> py::array {
        if (count < 1)
          throw InvalidArgument("resnet20_inputs: count must be >= 1");
        if (parse_is_float32(dtype))
          return samples_from_batch(resnet20_inputs<float>(count, seed), false);
        return samples_from_batch(resnet20_inputs<double>(count, seed), false);
      },
      py::arg("count"), py::arg("seed") = 1, py::arg("dtype") = "float64",
      "Deterministic CIFAR-like inputs for resnet20, shape (count, 3072).");
  m.def(
      "compose",
      [](const std::string &kind, const PyModel &first, const PyModel &second) {
        if (kind != "cascade" && kind != "parallel" && kind != "feedback")
          throw InvalidArgument("compose: unknown composition '" + kind +
                                "' (expected cascade, parallel or feedback)");
        return first.visit([&](const auto &m1, auto &) -> PyModel {
          using T = model_value_t<std::decay_t<decltype(m1)>>;
          const auto *p2 = std::get_if<ModelPtr<T>>(&second.model);
          if (!p2)
            throw InvalidArgument(std::string("compose: the first model is ") +
                                  dtype_name<T>() +
                                  ", the second is not: convert one with astype");
          const Model<T> &m2 = **p2;
          std::shared_ptr<const Model<T>> out;
          {
            py::gil_scoped_release release;
            out = std::make_shared<const Model<T>>(kind == "cascade"    ? cascade(m1, m2)
                                                   : kind == "parallel" ? parallel(m1, m2)
                                                                        : feedback(m1, m2));
          }
          return PyModel{out};
        });
      },
      py::arg("kind"), py::arg("first"), py::arg("second"),
      R"doc(One implicit model made of two (tacit compose): 'cascade' y = second(first(u)),
'parallel' y = (first(u), second(u)), 'feedback' y = y1 with u1 = u + y2,
u2 = y1. The parts' operators are shared, not copied; state blocks are
named 1.<name> and 2.<name>. Check the result with tacit.wellposed.)doc");

  m.def(
      "export_onnx",
      [](const PyModel &model, const std::filesystem::path &path) {
#if TACIT_HAVE_ONNX
        model.visit([&](const auto &mm, auto &) {
          py::gil_scoped_release release;
          export_onnx(mm, path);
        });
#else
        (void)model;
        (void)path;
        throw Unsupported("export_onnx: this tacit was built without the onnx component");
#endif
      },
      py::arg("model"), py::arg("path"),
      R"doc(Writes a feed-forward structured model (as import_onnx or train make
it) as an ONNX graph (opset 13, the model's precision), atomically: the file
``tacit export-onnx`` writes, byte for byte. NotImplementedError naming the
block for a model with no such form (cycles, CSR blocks, identity
activations); OSError when the file cannot be written.)doc");
}

} // namespace tacit::python
