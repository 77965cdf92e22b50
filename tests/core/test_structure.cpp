#include <catch2/catch.hpp>
#include <random>
#include <tacit/core/structure.hpp>
#include <tacit/operators/structured.hpp>

using namespace tacit;

namespace {
// Every edge j -> i (a_ij != 0) must go from an earlier or the same block, and
// from a strictly earlier level unless inside the block.
template <class T> void check_valid(const CsrMatrix<T> &A, const SccDecomposition &s) {
  const index_t n = A.rows();
  REQUIRE(static_cast<index_t>(s.order.size()) == n);
  std::vector<index_t> level_of_block(s.block_count());
  for (index_t l = 0; l < s.level_count(); ++l)
    for (index_t b = s.level_ptr[l]; b < s.level_ptr[l + 1]; ++b)
      level_of_block[b] = l;
  std::vector<char> seen(n, 0);
  for (auto i : s.order) {
    REQUIRE(!seen[i]);
    seen[i] = 1;
  }
  for (index_t i = 0; i < n; ++i)
    for (auto k = A.row_ptr()[i]; k < A.row_ptr()[i + 1]; ++k) {
      if (A.values()[k] == 0)
        continue;
      const index_t bi = s.block_of[i], bj = s.block_of[A.column(k)];
      REQUIRE(bj <= bi);
      if (bj != bi)
        REQUIRE(level_of_block[bj] < level_of_block[bi]);
    }
}
} // namespace

TEST_CASE("SCC of a strictly triangular matrix: all trivial singletons", "[structure]") {
  std::vector<Triplet<double>> t;
  const index_t n = 50;
  for (index_t i = 1; i < n; ++i)
    t.push_back({i, i - 1, 0.5});
  for (index_t i = 2; i < n; i += 3)
    t.push_back({i, i - 2, -0.5});
  auto A = CsrMatrix<double>::from_triplets(n, n, t);
  auto s = strongly_connected_components(A);
  CHECK(s.block_count() == n);
  CHECK(s.nilpotent());
  CHECK(s.largest_block() == 1);
  CHECK(s.level_count() == n); // a chain
  check_valid(A, s);
}

TEST_CASE("SCC finds cycles, self-loops and ignores stored zeros", "[structure]") {
  // 0 -> 1 -> 2 -> 0 cycle, 3 depends on 2 with a self-loop, 4 depends on 3,
  // a stored zero 4 -> 0 must not merge anything.
  std::vector<Triplet<double>> t = {{1, 0, 1},   {2, 1, 1}, {0, 2, 1},  {3, 2, 1},
                                    {3, 3, 0.5}, {4, 3, 1}, {0, 4, 0.0}};
  auto A = CsrMatrix<double>::from_triplets(5, 5, t);
  auto s = strongly_connected_components(A);
  CHECK(s.block_count() == 3);
  CHECK(s.largest_block() == 3);
  CHECK(!s.nilpotent());
  CHECK(s.level_count() == 3);
  CHECK(s.has_cycle[s.block_of[0]] == 1);
  CHECK(s.has_cycle[s.block_of[3]] == 1);
  CHECK(s.has_cycle[s.block_of[4]] == 0);
  check_valid(A, s);
}

TEST_CASE("SCC on random sparse matrices satisfies the ordering invariants",
          "[structure]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    const index_t n = 30 + trial * 7;
    std::uniform_int_distribution<index_t> pick(0, n - 1);
    std::vector<Triplet<float>> t;
    for (index_t e = 0; e < n + trial * 3; ++e)
      t.push_back({pick(rng), pick(rng), 1.0f});
    auto A = CsrMatrix<float>::from_triplets(n, n, t);
    auto s = strongly_connected_components(A);
    check_valid(A, s);
  }
}

TEST_CASE("SCC of a block structure: one node per block, the block DAG's levels",
          "[structure]") {
  // Blocks 0 -> 1 -> 2 -> 1 (a cycle between 1 and 2), 3 reads 0 and 2 and
  // itself: SCCs {0}, {1, 2}, {3} on 3 levels.
  auto op = [](index_t r, index_t c) -> OperatorPtr<double> {
    return std::make_shared<CsrMatrix<double>>(r, c);
  };
  const std::vector<index_t> sizes{2, 3, 1, 4};
  const BlockStructure<double> s(sizes, sizes,
                                 {{1, 0, op(3, 2)},
                                  {2, 1, op(1, 3)},
                                  {1, 2, op(3, 1)},
                                  {3, 0, op(4, 2)},
                                  {3, 2, op(4, 1)},
                                  {3, 3, op(4, 4)}});
  CHECK(s.rows() == 10);
  CHECK(!s.block_lower_triangular());
  CHECK(s.entries_in_row(3).size() == 3);
  CHECK(s.entries_in_col(2).size() == 2);
  const auto scc = strongly_connected_components(s);
  CHECK(scc.block_count() == 3);
  CHECK(scc.level_count() == 3);
  CHECK(scc.block_of[1] == scc.block_of[2]);
  CHECK(scc.has_cycle[scc.block_of[3]] == 1);
  CHECK(scc.has_cycle[scc.block_of[0]] == 0);
  // The same graph as a CSR pattern of the blocks.
  std::vector<Triplet<double>> t;
  for (const auto &e : s.entries())
    t.push_back({e.block_row, e.block_col, 1.0});
  const auto pattern = CsrMatrix<double>::from_triplets(4, 4, t);
  check_valid(pattern, scc);

  CHECK_THROWS_AS(strongly_connected_components(
                      BlockStructure<double>({2, 3}, {5}, {{0, 0, op(2, 5)}})),
                  InvalidArgument);
  CHECK_THROWS_WITH(BlockStructure<double>({2}, {2}, {{0, 1, op(2, 2)}}, "Mine"),
                    Catch::Contains("Mine: entry 0") && Catch::Contains("outside"));
}

TEST_CASE("analyse_structure reads a network's blocks and any other operator's states",
          "[structure]") {
  using Op = OperatorPtr<double>;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  auto dense_block = [&](index_t r, index_t c) -> Op {
    std::vector<Triplet<double>> t;
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < c; ++j)
        t.push_back({i, j, value(rng)});
    return std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(r, c, t));
  };
  const std::vector<index_t> sizes{3, 2, 4, 1};
  // 0 -> 1 -> 2, 0 -> 2, 2 -> 3: three block levels below the input block.
  const BlockOperator<double> network(sizes, sizes,
                                      {{1, 0, dense_block(2, 3)},
                                       {2, 0, dense_block(4, 3)},
                                       {2, 1, dense_block(4, 2)},
                                       {3, 2, dense_block(1, 4)}});
  const StructureSummary s = analyse_structure<double>(network);
  CHECK(s.source == StructureSource::blocks);
  CHECK(!s.scc);
  CHECK(s.states == 10);
  CHECK(s.state_blocks == 4);
  CHECK(s.block_entries == 4);
  CHECK(s.levels == 4);
  // The same answers as the state-level analysis of its CSR form, except the
  // levels, which are those of the block DAG.
  const auto states =
      summarise(strongly_connected_components(*csr_view<double>(network)));
  CHECK(states.source == StructureSource::states);
  CHECK(s.components == states.components);
  CHECK(s.largest == states.largest);
  CHECK(s.cyclic == states.cyclic);
  CHECK(s.singletons == states.singletons);
  CHECK(s.nilpotent == states.nilpotent);
  CHECK(s.nilpotent);

  // A block on the diagonal: not strictly block lower triangular, so the
  // states are analysed, with the cycle it makes.
  const BlockOperator<double> cyclic(
      sizes, sizes,
      {{1, 0, dense_block(2, 3)}, {2, 1, dense_block(4, 2)}, {2, 2, dense_block(4, 4)}});
  const StructureSummary c = analyse_structure<double>(cyclic);
  CHECK(c.source == StructureSource::states);
  REQUIRE(c.scc);
  CHECK(!c.nilpotent);
  CHECK(c.cyclic == 1);
  CHECK(c.largest == 4);
  CHECK(c.components == 3 + 2 + 1 + 1);

  const CsrMatrix<double> wide(2, 3);
  CHECK_THROWS_WITH(analyse_structure<double>(wide),
                    Catch::Contains("2 x 3, not square"));
}
