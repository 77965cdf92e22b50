#include <tacit/core/model.hpp>

#include <algorithm>
#include <cmath>
#include <string>

namespace tacit::inline v1 {

bool Activation::positively_homogeneous() const noexcept {
  return kind == ActivationKind::relu || kind == ActivationKind::leaky_relu ||
         kind == ActivationKind::identity;
}

double Activation::lipschitz() const noexcept {
  switch (kind) {
  case ActivationKind::sigmoid: return 0.25;
  case ActivationKind::leaky_relu: return std::max(1.0, std::abs(slope));
  default: return 1.0;
  }
}

std::string Activation::name() const {
  switch (kind) {
  case ActivationKind::relu: return "relu";
  case ActivationKind::leaky_relu: return "leaky_relu";
  case ActivationKind::tanh: return "tanh";
  case ActivationKind::sigmoid: return "sigmoid";
  case ActivationKind::identity: return "identity";
  }
  return "?";
}

Activation Activation::parse(std::string_view name, double slope) {
  if (name == "relu") return {ActivationKind::relu, slope};
  if (name == "leaky_relu") return {ActivationKind::leaky_relu, slope};
  if (name == "tanh") return {ActivationKind::tanh, slope};
  if (name == "sigmoid") return {ActivationKind::sigmoid, slope};
  if (name == "identity") return {ActivationKind::identity, slope};
  throw InvalidArgument("unknown activation '" + std::string(name) +
                        "' (expected relu, leaky_relu, tanh, sigmoid or identity)");
}

template <class T> T Activation::operator()(T z) const noexcept {
  switch (kind) {
  case ActivationKind::relu: return z > T(0) ? z : T(0);
  case ActivationKind::leaky_relu: return z >= T(0) ? z : static_cast<T>(slope) * z;
  case ActivationKind::tanh: return std::tanh(z);
  case ActivationKind::sigmoid: return T(1) / (T(1) + std::exp(-z));
  case ActivationKind::identity: return z;
  }
  return z;
}
template float Activation::operator()(float) const noexcept;
template double Activation::operator()(double) const noexcept;

namespace {
std::string dims(const char *name, index_t r, index_t c) {
  return std::string(name) + " is " + std::to_string(r) + " x " + std::to_string(c);
}

template <class T> void check_finite(const LinearOperator<T> &op, const char *name) {
  if (auto e = op.find_non_finite())
    throw InvalidArgument(std::string("matrix ") + name + " has a non-finite entry at (" +
                          std::to_string(e->row + 1) + ", " +
                          std::to_string(e->col + 1) + ")");
}

template <class T> void check_finite(const std::vector<T> &v, const char *name) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw InvalidArgument(std::string("bias ") + name + " has a non-finite entry at " +
                            std::to_string(i + 1));
}
} // namespace

template <class T>
Model<T>::Model(OperatorPtr<T> A, OperatorPtr<T> B, OperatorPtr<T> C,
                OperatorPtr<T> D, std::vector<T> bias_x, std::vector<T> bias_y,
                std::vector<StateBlock> blocks)
    : A_(std::move(A)), B_(std::move(B)), C_(std::move(C)), D_(std::move(D)),
      bias_x_(std::move(bias_x)), bias_y_(std::move(bias_y)),
      blocks_(std::move(blocks)) {
  if (!A_ || !B_ || !C_) throw InvalidArgument("model: A, B and C are required");
  const index_t n = A_->rows(), p = B_->cols(), q = C_->rows();
  if (A_->cols() != n)
    throw InvalidArgument("model: A must be square; " + dims("A", n, A_->cols()));
  if (B_->rows() != n)
    throw InvalidArgument("model: B must have n = " + std::to_string(n) +
                          " rows; " + dims("B", B_->rows(), p));
  if (C_->cols() != n)
    throw InvalidArgument("model: C must have n = " + std::to_string(n) +
                          " columns; " + dims("C", q, C_->cols()));
  if (D_ && (D_->rows() != q || D_->cols() != p))
    throw InvalidArgument("model: D must be q x p = " + std::to_string(q) + " x " +
                          std::to_string(p) + "; " + dims("D", D_->rows(), D_->cols()));
  if (bias_x_.empty()) bias_x_.assign(static_cast<std::size_t>(n), T(0));
  if (bias_y_.empty()) bias_y_.assign(static_cast<std::size_t>(q), T(0));
  if (static_cast<index_t>(bias_x_.size()) != n)
    throw InvalidArgument("model: state bias has " + std::to_string(bias_x_.size()) +
                          " entries, expected n = " + std::to_string(n));
  if (static_cast<index_t>(bias_y_.size()) != q)
    throw InvalidArgument("model: output bias has " + std::to_string(bias_y_.size()) +
                          " entries, expected q = " + std::to_string(q));
  if (blocks_.empty()) blocks_.push_back({"states", 0, n, Activation{}});
  index_t next = 0;
  for (const auto &b : blocks_) {
    if (b.offset != next || b.size < 0)
      throw InvalidArgument("model: state block '" + b.name + "' starts at " +
                            std::to_string(b.offset) + " with size " +
                            std::to_string(b.size) + ", expected to start at " +
                            std::to_string(next) + " (blocks must tile 0..n-1 in order)");
    if (b.activation.kind == ActivationKind::leaky_relu &&
        !std::isfinite(b.activation.slope))
      throw InvalidArgument("model: state block '" + b.name + "' has a non-finite slope");
    next += b.size;
  }
  if (next != n)
    throw InvalidArgument("model: state blocks cover " + std::to_string(next) +
                          " states, expected n = " + std::to_string(n));
  check_finite(*A_, "A");
  check_finite(*B_, "B");
  check_finite(*C_, "C");
  if (D_) check_finite(*D_, "D");
  check_finite(bias_x_, "bx");
  check_finite(bias_y_, "by");
}

template <class T> std::vector<Activation> Model<T>::activations() const {
  std::vector<Activation> out(static_cast<std::size_t>(states()));
  for (const auto &b : blocks_)
    std::fill(out.begin() + b.offset, out.begin() + b.offset + b.size, b.activation);
  return out;
}

template <class T> bool Model<T>::positively_homogeneous() const noexcept {
  return std::all_of(blocks_.begin(), blocks_.end(), [](const StateBlock &b) {
    return b.activation.positively_homogeneous();
  });
}

template <class T>
void Model<T>::output(const Batch<T> &X, const Batch<T> &U, Batch<T> &Y,
                      Execution exec) const {
  if (X.rows() != states() || U.rows() != inputs() || X.cols() != U.cols())
    throw InvalidArgument("model output: X is " + std::to_string(X.rows()) + " x " +
                          std::to_string(X.cols()) + ", U is " +
                          std::to_string(U.rows()) + " x " + std::to_string(U.cols()));
  if (Y.rows() != outputs() || Y.cols() != X.cols() ||
      Y.slab_width() != X.slab_width())
    Y = Batch<T>(outputs(), X.cols(), X.slab_width());
  // Y = c (broadcast), then Y += C X, Y += D U.
  for (index_t s = 0; s < Y.slab_count(); ++s) {
    auto y = Y.slab(s);
    for (index_t i = 0; i < y.rows; ++i)
      for (index_t c = 0; c < y.cols; ++c) y(i, c) = bias_y_[i];
  }
  C_->apply(Mode::normal, T(1), X, T(1), Y, exec);
  if (D_) D_->apply(Mode::normal, T(1), U, T(1), Y, exec);
}

template <class U, class T> Model<U> convert_model(const Model<T> &m) {
  auto conv = [](const LinearOperator<T> *op) -> OperatorPtr<U> {
    if (!op) return nullptr;
    return std::make_shared<CsrMatrix<U>>(op->to_csr().template cast<U>());
  };
  std::vector<U> bx(m.bias_x().begin(), m.bias_x().end());
  std::vector<U> by(m.bias_y().begin(), m.bias_y().end());
  return Model<U>(conv(&m.A()), conv(&m.B()), conv(&m.C()), conv(m.D()),
                  std::move(bx), std::move(by), m.blocks());
}

template class Model<float>;
template class Model<double>;
template Model<float> convert_model<float, double>(const Model<double> &);
template Model<double> convert_model<double, float>(const Model<float> &);
template Model<float> convert_model<float, float>(const Model<float> &);
template Model<double> convert_model<double, double>(const Model<double> &);

} // namespace tacit::inline v1
