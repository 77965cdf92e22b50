// Composition of implicit models: cascade, parallel and feedback (see
// include/tacit/nn/compose.hpp).
//
// Each part is seen as block rows and columns: its A's square partition when
// A, B and C are block operators that conform to it, else one block of all
// its states. The composed A, B, C, D are block operators over the
// concatenated partitions whose entries are the parts' entries and the
// products of entries (as ComposedOperator, never formed).

#include <tacit/nn/compose.hpp>

#include <tacit/core/capabilities.hpp>
#include <tacit/core/error.hpp>
#include <tacit/operators/structured.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace tacit::inline v1 {

namespace {

/// A part: its partition of the states and the entries of A, B (column 0),
/// C (row 0) and D (0, 0) over it.
template <class T> struct Part {
  const Model<T> *model = nullptr;
  std::vector<index_t> sizes;
  std::vector<BlockEntry<T>> A, B, C, D;
};

/// The entries of op over the given partition when it is a block operator
/// with exactly these row and column block sizes; op itself as the single
/// entry when both partitions have one block; else nothing (false).
template <class T>
bool entries_of(const OperatorPtr<T> &op, const std::vector<index_t> &rows,
                const std::vector<index_t> &cols, std::vector<BlockEntry<T>> &out) {
  out.clear();
  if (!op)
    return true;
  if (const auto *blocks = capability<BlockStructured<T>>(*op)) {
    const auto &s = blocks->block_structure();
    bool same = s.row_blocks() == static_cast<index_t>(rows.size()) &&
                s.col_blocks() == static_cast<index_t>(cols.size());
    for (index_t i = 0; same && i < s.row_blocks(); ++i)
      same = s.row_block_size(i) == rows[i];
    for (index_t j = 0; same && j < s.col_blocks(); ++j)
      same = s.col_block_size(j) == cols[j];
    if (same) {
      out.assign(s.entries().begin(), s.entries().end());
      return true;
    }
  }
  if (rows.size() == 1 && cols.size() == 1) {
    out.push_back({0, 0, op});
    return true;
  }
  return false;
}

template <class T> Part<T> part_of(const Model<T> &m) {
  Part<T> part;
  part.model = &m;
  const std::vector<index_t> p = {m.inputs()}, q = {m.outputs()};
  if (const auto *blocks = capability<BlockStructured<T>>(m.A());
      blocks && blocks->block_structure().square_partition()) {
    const auto &s = blocks->block_structure();
    for (index_t i = 0; i < s.row_blocks(); ++i)
      part.sizes.push_back(s.row_block_size(i));
    if (entries_of(m.A_ptr(), part.sizes, part.sizes, part.A) &&
        entries_of(m.B_ptr(), part.sizes, p, part.B) &&
        entries_of(m.C_ptr(), q, part.sizes, part.C) &&
        entries_of(m.D_ptr(), q, p, part.D))
      return part;
  }
  part.sizes = {m.states()};
  entries_of(m.A_ptr(), part.sizes, part.sizes, part.A);
  entries_of(m.B_ptr(), part.sizes, p, part.B);
  entries_of(m.C_ptr(), q, part.sizes, part.C);
  entries_of(m.D_ptr(), q, p, part.D);
  return part;
}

/// L R, without the identity factors.
template <class T>
OperatorPtr<T> product(const OperatorPtr<T> &L, const OperatorPtr<T> &R) {
  auto is_identity = [](const OperatorPtr<T> &op) {
    const auto *d = capability<DiagonalForm<T>>(*op);
    const auto s = d ? d->identity_scale() : std::nullopt;
    return s && *s == T(1);
  };
  if (is_identity(L))
    return R;
  if (is_identity(R))
    return L;
  return std::make_shared<ComposedOperator<T>>(L, R);
}

/// Entries of the product X Y (X's block columns meet Y's block rows; both
/// have one block there): every pair, at (X's row, Y's column), shifted.
template <class T>
void add_products(std::vector<BlockEntry<T>> &out, const std::vector<BlockEntry<T>> &X,
                  const std::vector<BlockEntry<T>> &Y, index_t row_shift,
                  index_t col_shift) {
  for (const auto &x : X)
    for (const auto &y : Y)
      out.push_back(
          {x.block_row + row_shift, y.block_col + col_shift, product(x.op, y.op)});
}

/// Entries of X Y Z (Y with one block row and column).
template <class T>
void add_products(std::vector<BlockEntry<T>> &out, const std::vector<BlockEntry<T>> &X,
                  const std::vector<BlockEntry<T>> &Y,
                  const std::vector<BlockEntry<T>> &Z, index_t row_shift,
                  index_t col_shift) {
  for (const auto &x : X)
    for (const auto &y : Y)
      for (const auto &z : Z)
        out.push_back({x.block_row + row_shift, z.block_col + col_shift,
                       product(x.op, product(y.op, z.op))});
}

template <class T>
void add_shifted(std::vector<BlockEntry<T>> &out, const std::vector<BlockEntry<T>> &X,
                 index_t row_shift, index_t col_shift) {
  for (const auto &x : X)
    out.push_back({x.block_row + row_shift, x.block_col + col_shift, x.op});
}

template <class T>
std::vector<T> apply(const LinearOperator<T> *op, std::span<const T> v) {
  std::vector<T> y(static_cast<std::size_t>(op ? op->rows() : 0), T(0));
  if (op)
    op->apply(Mode::normal, T(1), v, T(0), std::span<T>(y));
  return y;
}

template <class T> void add_to(std::vector<T> &a, const std::vector<T> &b) {
  for (std::size_t i = 0; i < b.size(); ++i)
    a[i] += b[i];
}

template <class T> std::vector<T> copy(std::span<const T> v) {
  return {v.begin(), v.end()};
}

std::vector<index_t> concat(const std::vector<index_t> &a,
                            const std::vector<index_t> &b) {
  std::vector<index_t> r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

template <class T>
std::vector<StateBlock> blocks_of(const Model<T> &a, const Model<T> &b,
                                  const ComposeOptions &o) {
  std::vector<StateBlock> r;
  for (auto blk : a.blocks()) {
    blk.name = o.first_prefix + blk.name;
    r.push_back(blk);
  }
  for (auto blk : b.blocks()) {
    blk.name = o.second_prefix + blk.name;
    blk.offset += a.states();
    r.push_back(blk);
  }
  return r;
}

template <class T>
OperatorPtr<T> block(std::vector<index_t> rows, std::vector<index_t> cols,
                     std::vector<BlockEntry<T>> entries) {
  return std::make_shared<BlockOperator<T>>(std::move(rows), std::move(cols),
                                            std::move(entries));
}

} // namespace

template <class T>
Model<T> cascade(const Model<T> &first, const Model<T> &second,
                 const ComposeOptions &options) {
  if (first.outputs() != second.inputs())
    throw InvalidArgument(
        "cascade: the first model has " + std::to_string(first.outputs()) +
        " outputs but the second reads " + std::to_string(second.inputs()) + " inputs");
  const Part<T> m1 = part_of(first), m2 = part_of(second);
  const auto k1 = static_cast<index_t>(m1.sizes.size());
  const std::vector<index_t> rows = concat(m1.sizes, m2.sizes);
  std::vector<BlockEntry<T>> A, B, C, D;
  add_shifted(A, m1.A, 0, 0);
  add_products(A, m2.B, m1.C, k1, 0); // B_2 C_1
  add_shifted(A, m2.A, k1, k1);
  add_shifted(B, m1.B, 0, 0);
  add_products(B, m2.B, m1.D, k1, 0); // B_2 D_1
  add_products(C, m2.D, m1.C, 0, 0);  // D_2 C_1
  add_shifted(C, m2.C, 0, k1);
  add_products(D, m2.D, m1.D, 0, 0); // D_2 D_1

  std::vector<T> bx = copy(first.bias_x());
  std::vector<T> b2 = copy(second.bias_x());
  add_to(b2, apply(&second.B(), first.bias_y()));
  bx.insert(bx.end(), b2.begin(), b2.end());
  std::vector<T> by = copy(second.bias_y());
  add_to(by, apply(second.D(), first.bias_y()));

  const std::vector<index_t> p = {first.inputs()}, q = {second.outputs()};
  return Model<T>(block(rows, rows, std::move(A)), block(rows, p, std::move(B)),
                  block(q, rows, std::move(C)),
                  D.empty() ? nullptr : block(q, p, std::move(D)), std::move(bx),
                  std::move(by), blocks_of(first, second, options));
}

template <class T>
Model<T> parallel(const Model<T> &a, const Model<T> &b, const ComposeOptions &options) {
  if (a.inputs() != b.inputs())
    throw InvalidArgument("parallel: the models read " + std::to_string(a.inputs()) +
                          " and " + std::to_string(b.inputs()) +
                          " inputs; they must share one input");
  const Part<T> m1 = part_of(a), m2 = part_of(b);
  const auto k1 = static_cast<index_t>(m1.sizes.size());
  const std::vector<index_t> rows = concat(m1.sizes, m2.sizes);
  std::vector<BlockEntry<T>> A, B, C, D;
  add_shifted(A, m1.A, 0, 0);
  add_shifted(A, m2.A, k1, k1);
  add_shifted(B, m1.B, 0, 0);
  add_shifted(B, m2.B, k1, 0);
  add_shifted(C, m1.C, 0, 0);
  add_shifted(C, m2.C, 1, k1);
  add_shifted(D, m1.D, 0, 0);
  add_shifted(D, m2.D, 1, 0);
  std::vector<T> bx = copy(a.bias_x()), by = copy(a.bias_y());
  bx.insert(bx.end(), b.bias_x().begin(), b.bias_x().end());
  by.insert(by.end(), b.bias_y().begin(), b.bias_y().end());
  const std::vector<index_t> p = {a.inputs()}, q = {a.outputs(), b.outputs()};
  return Model<T>(block(rows, rows, std::move(A)), block(rows, p, std::move(B)),
                  block(q, rows, std::move(C)),
                  D.empty() ? nullptr : block(q, p, std::move(D)), std::move(bx),
                  std::move(by), blocks_of(a, b, options));
}

template <class T>
Model<T> feedback(const Model<T> &forward, const Model<T> &loop,
                  const ComposeOptions &options) {
  if (loop.inputs() != forward.outputs() || loop.outputs() != forward.inputs())
    throw InvalidArgument(
        "feedback: the loop model maps " + std::to_string(loop.inputs()) + " inputs to " +
        std::to_string(loop.outputs()) + " outputs; it must read the forward model's " +
        std::to_string(forward.outputs()) + " outputs and give its " +
        std::to_string(forward.inputs()) + " inputs");
  if (forward.D() && loop.D())
    throw InvalidArgument("feedback: both models have a direct term D (an algebraic loop "
                          "u_1 = u + D_2 D_1 u_1 + ...); one D must be zero");
  const Part<T> m1 = part_of(forward), m2 = part_of(loop);
  const auto k1 = static_cast<index_t>(m1.sizes.size());
  const std::vector<index_t> rows = concat(m1.sizes, m2.sizes);
  std::vector<BlockEntry<T>> A, B, C, D;
  add_shifted(A, m1.A, 0, 0);
  add_products(A, m1.B, m2.D, m1.C, 0, 0); // B_1 D_2 C_1
  add_products(A, m1.B, m2.C, 0, k1);      // B_1 C_2
  add_products(A, m2.B, m1.C, k1, 0);      // B_2 C_1
  add_shifted(A, m2.A, k1, k1);
  add_products(A, m2.B, m1.D, m2.C, k1, k1); // B_2 D_1 C_2
  add_shifted(B, m1.B, 0, 0);
  add_products(B, m2.B, m1.D, k1, 0); // B_2 D_1
  add_shifted(C, m1.C, 0, 0);
  add_products(C, m1.D, m2.C, 0, k1); // D_1 C_2
  add_shifted(D, m1.D, 0, 0);

  // b_1 + B_1 (c_2 + D_2 c_1), b_2 + B_2 (c_1 + D_1 c_2), c_1 + D_1 c_2.
  std::vector<T> u1 = copy(loop.bias_y());
  add_to(u1, apply(loop.D(), forward.bias_y()));
  std::vector<T> y1 = copy(forward.bias_y());
  add_to(y1, apply(forward.D(), loop.bias_y()));
  std::vector<T> bx = copy(forward.bias_x());
  add_to(bx, apply(&forward.B(), std::span<const T>(u1)));
  std::vector<T> b2 = copy(loop.bias_x());
  add_to(b2, apply(&loop.B(), std::span<const T>(y1)));
  bx.insert(bx.end(), b2.begin(), b2.end());

  const std::vector<index_t> p = {forward.inputs()}, q = {forward.outputs()};
  return Model<T>(block(rows, rows, std::move(A)), block(rows, p, std::move(B)),
                  block(q, rows, std::move(C)),
                  D.empty() ? nullptr : block(q, p, std::move(D)), std::move(bx),
                  std::move(y1), blocks_of(forward, loop, options));
}

PerronBound cascade_perron_bound(const PerronBound &first, const PerronBound &second) {
  PerronBound r;
  r.lower = std::max(first.lower, second.lower);
  r.upper = std::max(first.upper, second.upper);
  r.status = std::max(first.status, second.status);
  r.iterations = first.iterations + second.iterations;
  r.shift_invert_steps = first.shift_invert_steps + second.shift_invert_steps;
  r.blocks = first.blocks + second.blocks;
  r.largest_block = std::max(first.largest_block, second.largest_block);
  r.cyclic_blocks = first.cyclic_blocks + second.cyclic_blocks;
  r.underflow = first.underflow || second.underflow;
  r.message = "the maximum over the two parts (A is block lower triangular with the "
              "parts' A on its diagonal)";
  return r;
}

template Model<float> cascade(const Model<float> &, const Model<float> &,
                              const ComposeOptions &);
template Model<double> cascade(const Model<double> &, const Model<double> &,
                               const ComposeOptions &);
template Model<float> parallel(const Model<float> &, const Model<float> &,
                               const ComposeOptions &);
template Model<double> parallel(const Model<double> &, const Model<double> &,
                                const ComposeOptions &);
template Model<float> feedback(const Model<float> &, const Model<float> &,
                               const ComposeOptions &);
template Model<double> feedback(const Model<double> &, const Model<double> &,
                                const ComposeOptions &);

} // namespace tacit::inline v1
