#include <tacit/core/structure.hpp>

#include <algorithm>
#include <limits>
#include <numeric>

extern "C" {
#include <btf.h>
}

namespace tacit::inline v1 {

index_t SccDecomposition::largest_block() const noexcept {
  index_t best = 0;
  for (index_t k = 0; k < block_count(); ++k)
    best = std::max(best, block_size(k));
  return best;
}

index_t SccDecomposition::singleton_count() const noexcept {
  index_t c = 0;
  for (index_t k = 0; k < block_count(); ++k)
    c += block_size(k) == 1;
  return c;
}

bool SccDecomposition::nilpotent() const noexcept {
  return std::none_of(has_cycle.begin(), has_cycle.end(), [](char c) { return c != 0; });
}

namespace {

// Runs BTF's Tarjan on the pattern given as compressed columns. Our rows of A
// are the columns of A^T, so BTF returns P with P A^T P' block upper
// triangular, i.e. P A P' block lower triangular: block k depends on blocks
// 0..k only, which is the order a sweep needs.
template <class I>
index_t run_btf(index_t n, std::vector<I> &ap, std::vector<I> &ai,
                std::vector<index_t> &order, std::vector<index_t> &block_ptr) {
  std::vector<I> p(n), r(n + 1), work(4 * static_cast<std::size_t>(n));
  I nb;
  if constexpr (sizeof(I) == sizeof(int))
    nb = btf_strongcomp(static_cast<int>(n), ap.data(), ai.data(), nullptr, p.data(),
                        r.data(), work.data());
  else
    nb = btf_l_strongcomp(n, reinterpret_cast<SuiteSparse_long *>(ap.data()),
                          reinterpret_cast<SuiteSparse_long *>(ai.data()), nullptr,
                          reinterpret_cast<SuiteSparse_long *>(p.data()),
                          reinterpret_cast<SuiteSparse_long *>(r.data()),
                          reinterpret_cast<SuiteSparse_long *>(work.data()));
  order.assign(p.begin(), p.end());
  block_ptr.assign(r.begin(), r.begin() + nb + 1);
  return nb;
}

} // namespace

template <class T> SccDecomposition strongly_connected_components(const CsrMatrix<T> &A) {
  if (A.rows() != A.cols())
    throw InvalidArgument("strongly_connected_components: A is " +
                          std::to_string(A.rows()) + " x " + std::to_string(A.cols()) +
                          ", not square");
  const index_t n = A.rows();
  SccDecomposition scc;
  if (n == 0) {
    scc.block_ptr = {0};
    scc.level_ptr = {0};
    return scc;
  }
  const auto rp = A.row_ptr();
  const auto vals = A.values();
  // Pattern of the nonzero values only.
  std::int64_t kept = 0;
  for (T v : vals)
    kept += v != T(0);
  const bool narrow =
      kept < std::numeric_limits<int>::max() && n < std::numeric_limits<int>::max();
  auto build = [&](auto tag) {
    using I = decltype(tag);
    std::vector<I> ap(static_cast<std::size_t>(n) + 1),
        ai(static_cast<std::size_t>(kept));
    I pos = 0;
    for (index_t i = 0; i < n; ++i) {
      ap[i] = pos;
      for (auto k = rp[i]; k < rp[i + 1]; ++k)
        if (vals[k] != T(0))
          ai[pos++] = static_cast<I>(A.column(k));
    }
    ap[n] = pos;
    run_btf<I>(n, ap, ai, scc.order, scc.block_ptr);
  };
  if (narrow)
    build(int{});
  else
    build(static_cast<SuiteSparse_long>(0));

  const index_t nb = scc.block_count();
  scc.block_of.assign(static_cast<std::size_t>(n), 0);
  for (index_t b = 0; b < nb; ++b)
    for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k)
      scc.block_of[scc.order[k]] = b;

  // Level of each block in the block DAG, and whether it has a cycle.
  std::vector<index_t> level(static_cast<std::size_t>(nb), 0);
  scc.has_cycle.assign(static_cast<std::size_t>(nb), 0);
  index_t max_level = 0;
  for (index_t b = 0; b < nb; ++b) {
    index_t lv = 0;
    bool cycle = scc.block_size(b) > 1;
    for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k) {
      const index_t i = scc.order[k];
      for (auto e = rp[i]; e < rp[i + 1]; ++e) {
        if (vals[e] == T(0))
          continue;
        const index_t bj = scc.block_of[A.column(e)];
        if (bj == b)
          cycle = true;
        else
          lv = std::max(lv, level[bj] + 1);
      }
    }
    level[b] = lv;
    scc.has_cycle[b] = cycle ? 1 : 0;
    max_level = std::max(max_level, lv);
  }
  // Blocks grouped by level (stable: within a level, in block order). We
  // reorder `order`/`block_ptr` so that blocks are stored level by level;
  // that is still a valid dependency order.
  std::vector<index_t> count(static_cast<std::size_t>(max_level) + 2, 0);
  for (index_t b = 0; b < nb; ++b)
    ++count[level[b] + 1];
  std::partial_sum(count.begin(), count.end(), count.begin());
  std::vector<index_t> new_block(static_cast<std::size_t>(nb));
  {
    std::vector<index_t> next(count.begin(), count.end() - 1);
    for (index_t b = 0; b < nb; ++b)
      new_block[b] = next[level[b]]++;
  }
  std::vector<index_t> old_of_new(static_cast<std::size_t>(nb));
  for (index_t b = 0; b < nb; ++b)
    old_of_new[new_block[b]] = b;
  std::vector<index_t> order, block_ptr{0};
  std::vector<char> cyc(static_cast<std::size_t>(nb));
  order.reserve(static_cast<std::size_t>(n));
  for (index_t nbk = 0; nbk < nb; ++nbk) {
    const index_t b = old_of_new[nbk];
    for (index_t k = scc.block_ptr[b]; k < scc.block_ptr[b + 1]; ++k)
      order.push_back(scc.order[k]);
    block_ptr.push_back(static_cast<index_t>(order.size()));
    cyc[nbk] = scc.has_cycle[b];
  }
  scc.order = std::move(order);
  scc.block_ptr = std::move(block_ptr);
  scc.has_cycle = std::move(cyc);
  for (auto &b : scc.block_of)
    b = new_block[b];
  scc.level_ptr = std::move(count);
  return scc;
}

template <class T>
SccDecomposition strongly_connected_components(const BlockStructure<T> &blocks) {
  if (!blocks.square_partition())
    throw InvalidArgument("strongly_connected_components: the block partition is " +
                          std::to_string(blocks.row_blocks()) + " x " +
                          std::to_string(blocks.col_blocks()) +
                          " blocks of different sizes, not square");
  std::vector<Triplet<double>> edges;
  edges.reserve(blocks.entries().size());
  for (const auto &e : blocks.entries())
    edges.push_back({e.block_row, e.block_col, 1.0});
  const index_t nb = blocks.row_blocks();
  return strongly_connected_components(CsrMatrix<double>::from_triplets(nb, nb, edges));
}

StructureSummary summarise(const SccDecomposition &scc) {
  StructureSummary s;
  s.source = StructureSource::states;
  s.states = static_cast<index_t>(scc.order.size());
  s.components = scc.block_count();
  s.largest = scc.largest_block();
  s.cyclic = static_cast<index_t>(std::count_if(
      scc.has_cycle.begin(), scc.has_cycle.end(), [](char c) { return c != 0; }));
  s.singletons = scc.singleton_count();
  s.levels = scc.level_count();
  s.nilpotent = scc.nilpotent();
  s.scc = scc;
  return s;
}

template <class T> StructureSummary analyse_structure(const LinearOperator<T> &A) {
  if (A.rows() != A.cols())
    throw InvalidArgument("analyse_structure: A is " + std::to_string(A.rows()) + " x " +
                          std::to_string(A.cols()) + ", not square");
  const auto *structured = capability<BlockStructured<T>>(A);
  const BlockStructure<T> *blocks = structured ? &structured->block_structure() : nullptr;
  if (blocks && blocks->square_partition() && blocks->strictly_block_lower_triangular()) {
    // A strictly block lower triangular A is nilpotent: each state is its own
    // acyclic SCC, and the levels of the block DAG order the sweep.
    StructureSummary s;
    s.source = StructureSource::blocks;
    s.states = A.rows();
    s.components = A.rows();
    s.largest = A.rows() > 0 ? 1 : 0;
    s.cyclic = 0;
    s.singletons = A.rows();
    s.levels = strongly_connected_components(*blocks).level_count();
    s.nilpotent = true;
    s.state_blocks = blocks->row_blocks();
    s.block_entries = static_cast<index_t>(blocks->entries().size());
    return s;
  }
  return summarise(strongly_connected_components(*csr_view(A)));
}

template SccDecomposition strongly_connected_components(const CsrMatrix<float> &);
template SccDecomposition strongly_connected_components(const CsrMatrix<double> &);
template SccDecomposition strongly_connected_components(const BlockStructure<float> &);
template SccDecomposition strongly_connected_components(const BlockStructure<double> &);
template StructureSummary analyse_structure(const LinearOperator<float> &);
template StructureSummary analyse_structure(const LinearOperator<double> &);

} // namespace tacit::inline v1
