// The Trainable capability of the structured operators: dense, diagonal,
// composed and block operators (the convolution's is in conv_gradient.cpp).

#include <tacit/core/csr.hpp>
#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <map>
#include <string>

#include "core/detail/gradient_dot.hpp"
#include "core/detail/trainable_checks.hpp"
#include "operators/detail/gemm_plan.hpp"
#include "operators/detail/operator_kernels.hpp"

namespace tacit::inline v1 {

namespace {

template <class T>
ConstMatrixView<T> row_slice(ConstMatrixView<T> v, index_t begin, index_t n) {
  return {v.data + begin * v.ld, n, v.cols, v.ld};
}

/// The Trainable of an operator the caller owns (a clone's factor).
template <class T> Trainable<T> *owned_trainable(const OperatorPtr<T> &op) {
  return capability<Trainable<T>>(const_cast<LinearOperator<T> &>(*op));
}

} // namespace

// ---------------------------------------------------------------- dense

template <class T>
std::vector<ParameterShape> DenseOperator<T>::parameter_shapes() const {
  return {{"weight", {this->rows(), this->cols()}}};
}
template <class T> std::vector<std::span<T>> DenseOperator<T>::parameter_values() {
  return {std::span<T>(data_)};
}
template <class T> void DenseOperator<T>::parameters_changed() {}

template <class T>
void DenseOperator<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                           std::span<const std::span<T>> grad,
                                           Execution exec) const {
  detail::check_gradient_arguments(*this, v, x, grad, parameter_shapes());
  const index_t m = this->rows(), n = this->cols(), k = v.cols;
  if (k == 0)
    return;
  T *g = grad[0].data();
  if (exec == Execution::reference) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j)
        g[i * n + j] += detail::column_dot(v.row(i), x.row(j), k);
    return;
  }
  // G += V X^T with the level's kernel; each entry is summed by one task in
  // the kernel's fixed order.
  std::vector<const T *> rows(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j)
    rows[j] = x.row(j);
  const auto &kernel = detail::gemm_kernels().of<T>();
  const index_t grain = std::max<index_t>(4, 65536 / std::max<index_t>(1, n * k)) / 4 * 4;
  detail::for_range(exec, m, grain, [&](index_t i0, index_t i1) {
    kernel.nt_accumulate(i0, i1, 0, n, k, v.data, v.ld, rows.data(), g, n);
  });
}

template <class T> std::shared_ptr<LinearOperator<T>> DenseOperator<T>::clone() const {
  return std::make_shared<DenseOperator<T>>(this->rows(), this->cols(), data_);
}

// ---------------------------------------------------------------- diagonal

template <class T>
std::vector<ParameterShape> DiagonalOperator<T>::parameter_shapes() const {
  return {{"diagonal", {this->rows()}}};
}
template <class T> std::vector<std::span<T>> DiagonalOperator<T>::parameter_values() {
  return {std::span<T>(diagonal_)};
}
template <class T> void DiagonalOperator<T>::parameters_changed() {}

template <class T>
void DiagonalOperator<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                              std::span<const std::span<T>> grad,
                                              Execution exec) const {
  detail::check_gradient_arguments(*this, v, x, grad, parameter_shapes());
  const index_t k = v.cols;
  if (k == 0)
    return;
  T *g = grad[0].data();
  detail::for_range(exec, this->rows(), std::max<index_t>(1, 16384 / k),
                    [&](index_t r0, index_t r1) {
                      for (index_t i = r0; i < r1; ++i)
                        g[i] += detail::column_dot(v.row(i), x.row(i), k);
                    });
}

template <class T> std::shared_ptr<LinearOperator<T>> DiagonalOperator<T>::clone() const {
  return std::make_shared<DiagonalOperator<T>>(diagonal_);
}

// ---------------------------------------------------------------- composed

namespace {
template <class T>
std::vector<ParameterShape> prefixed(const LinearOperator<T> &op,
                                     const std::string &prefix) {
  std::vector<ParameterShape> out;
  if (const auto *t = capability<Trainable<T>>(op))
    for (auto s : t->parameter_shapes()) {
      s.name = prefix + s.name;
      out.push_back(std::move(s));
    }
  return out;
}
} // namespace

template <class T>
std::vector<ParameterShape> ComposedOperator<T>::parameter_shapes() const {
  auto out = prefixed(*left_, "left.");
  for (auto &s : prefixed(*right_, "right."))
    out.push_back(std::move(s));
  return out;
}

template <class T> std::vector<std::span<T>> ComposedOperator<T>::parameter_values() {
  if (!owns_factors_)
    throw InvalidArgument("ComposedOperator::parameter_values: the factors are shared; "
                          "change the parameters of a clone()");
  std::vector<std::span<T>> out;
  for (const auto *f : {&left_, &right_})
    if (auto *t = owned_trainable(*f))
      for (auto s : t->parameter_values())
        out.push_back(s);
  return out;
}

template <class T>
void ComposedOperator<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                              std::span<const std::span<T>> grad,
                                              Execution exec) const {
  detail::check_gradient_arguments(*this, v, x, grad, parameter_shapes());
  const auto *tl = capability<Trainable<T>>(*left_);
  const auto *tr = capability<Trainable<T>>(*right_);
  const std::size_t nl = tl ? tl->parameter_shapes().size() : 0;
  const std::size_t nr = tr ? tr->parameter_shapes().size() : 0;
  const index_t mid = left_->cols(), k = v.cols;
  if (k == 0 || nl + nr == 0)
    return;
  typename detail::ScratchPool<T>::Lease z(*scratch_, static_cast<std::size_t>(mid * k));
  MatrixView<T> zv{z.data(), mid, k, k};
  if (nl > 0) { // d/dL of v^T L (R x): (v, R x)
    right_->apply(Mode::normal, T(1), x, T(0), zv, exec);
    tl->accumulate_gradient(v, zv, grad.subspan(0, nl), exec);
  }
  if (nr > 0) { // d/dR of (L^T v)^T R x: (L^T v, x)
    left_->apply(Mode::transpose, T(1), v, T(0), zv, exec);
    tr->accumulate_gradient(zv, x, grad.subspan(nl, nr), exec);
  }
}

template <class T> std::shared_ptr<LinearOperator<T>> ComposedOperator<T>::clone() const {
  auto copy_of = [](const OperatorPtr<T> &f) -> OperatorPtr<T> {
    if (const auto *t = capability<Trainable<T>>(*f))
      return t->clone();
    return f;
  };
  auto c = std::make_shared<ComposedOperator<T>>(copy_of(left_), copy_of(right_));
  c->owns_factors_ = true;
  return c;
}

// ---------------------------------------------------------------- block

namespace {
/// Entries of a block structure whose operators are trainable, each distinct
/// operator once (an operator at several blocks shares its tensors), with
/// the index of its first tensor.
template <class T> struct TrainableEntries {
  struct Item {
    index_t entry = 0;     // first entry holding the operator
    std::size_t first = 0; // its first tensor
    std::size_t count = 0;
  };
  std::vector<Item> items;
  std::vector<std::ptrdiff_t> item_of_entry; // -1: not trainable
  std::vector<ParameterShape> shapes;

  explicit TrainableEntries(const BlockStructure<T> &b) {
    const auto entries = b.entries();
    item_of_entry.assign(entries.size(), -1);
    std::map<const LinearOperator<T> *, std::ptrdiff_t> seen;
    std::map<std::pair<index_t, index_t>, int> at_block;
    for (std::size_t e = 0; e < entries.size(); ++e) {
      const auto &en = entries[e];
      const int nth = ++at_block[{en.block_row, en.block_col}];
      const auto *t = capability<Trainable<T>>(*en.op);
      if (!t)
        continue;
      if (const auto it = seen.find(en.op.get()); it != seen.end()) {
        item_of_entry[e] = it->second;
        continue;
      }
      const std::string prefix = "(" + std::to_string(en.block_row) + "," +
                                 std::to_string(en.block_col) + ")" +
                                 (nth > 1 ? "#" + std::to_string(nth) : "") + ".";
      Item item{static_cast<index_t>(e), shapes.size(), 0};
      for (auto s : t->parameter_shapes()) {
        s.name = prefix + s.name;
        shapes.push_back(std::move(s));
        ++item.count;
      }
      seen[en.op.get()] = static_cast<std::ptrdiff_t>(items.size());
      item_of_entry[e] = static_cast<std::ptrdiff_t>(items.size());
      items.push_back(item);
    }
  }
};
} // namespace

template <class T>
std::vector<ParameterShape> BlockOperator<T>::parameter_shapes() const {
  return TrainableEntries<T>(blocks_).shapes;
}

template <class T> std::vector<std::span<T>> BlockOperator<T>::parameter_values() {
  if (!owns_entries_)
    throw InvalidArgument("BlockOperator::parameter_values: the entries are shared; "
                          "change the parameters of a clone()");
  const TrainableEntries<T> te(blocks_);
  const auto entries = blocks_.entries();
  std::vector<std::span<T>> out;
  for (const auto &item : te.items)
    for (auto s : owned_trainable(entries[item.entry].op)->parameter_values())
      out.push_back(s);
  return out;
}

template <class T>
void BlockOperator<T>::accumulate_gradient(ConstMatrixView<T> v, ConstMatrixView<T> x,
                                           std::span<const std::span<T>> grad,
                                           Execution exec) const {
  const TrainableEntries<T> te(blocks_);
  detail::check_gradient_arguments(*this, v, x, grad, te.shapes);
  if (v.cols == 0)
    return;
  const auto entries = blocks_.entries();
  // Entries in order: an operator at several blocks accumulates its
  // contributions in entry order.
  for (std::size_t e = 0; e < entries.size(); ++e) {
    if (te.item_of_entry[e] < 0)
      continue;
    const auto &item = te.items[static_cast<std::size_t>(te.item_of_entry[e])];
    const auto &en = entries[e];
    capability<Trainable<T>>(*en.op)->accumulate_gradient(
        row_slice(v, row_offset(en.block_row), row_block_size(en.block_row)),
        row_slice(x, col_offset(en.block_col), col_block_size(en.block_col)),
        grad.subspan(item.first, item.count), exec);
  }
}

template <class T> std::shared_ptr<LinearOperator<T>> BlockOperator<T>::clone() const {
  std::map<const LinearOperator<T> *, OperatorPtr<T>> copies;
  std::vector<BlockEntry<T>> entries;
  for (const auto &en : blocks_.entries()) {
    OperatorPtr<T> op = en.op;
    if (const auto *t = capability<Trainable<T>>(*en.op)) {
      auto &c = copies[en.op.get()];
      if (!c)
        c = t->clone();
      op = c;
    }
    entries.push_back({en.block_row, en.block_col, std::move(op)});
  }
  std::vector<index_t> rs, cs;
  for (index_t i = 0; i < row_blocks(); ++i)
    rs.push_back(row_block_size(i));
  for (index_t j = 0; j < col_blocks(); ++j)
    cs.push_back(col_block_size(j));
  auto c = std::make_shared<BlockOperator<T>>(std::move(rs), std::move(cs),
                                              std::move(entries));
  c->owns_entries_ = true;
  return c;
}

#define TACIT_INSTANTIATE(Class, T)                                                      \
  template std::vector<ParameterShape> Class<T>::parameter_shapes() const;               \
  template std::vector<std::span<T>> Class<T>::parameter_values();                       \
  template void Class<T>::accumulate_gradient(ConstMatrixView<T>, ConstMatrixView<T>,    \
                                              std::span<const std::span<T>>, Execution)  \
      const;                                                                             \
  template std::shared_ptr<LinearOperator<T>> Class<T>::clone() const;
TACIT_INSTANTIATE(DenseOperator, float)
TACIT_INSTANTIATE(DenseOperator, double)
TACIT_INSTANTIATE(DiagonalOperator, float)
TACIT_INSTANTIATE(DiagonalOperator, double)
template void DenseOperator<float>::parameters_changed();
template void DenseOperator<double>::parameters_changed();
template void DiagonalOperator<float>::parameters_changed();
template void DiagonalOperator<double>::parameters_changed();
TACIT_INSTANTIATE(ComposedOperator, float)
TACIT_INSTANTIATE(ComposedOperator, double)
TACIT_INSTANTIATE(BlockOperator, float)
TACIT_INSTANTIATE(BlockOperator, double)
#undef TACIT_INSTANTIATE

} // namespace tacit::inline v1
