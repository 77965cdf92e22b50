// Parameter groups: positions of every parameter against the materialised
// matrices (CSR model with cycles, Fashion MLP), the members of each group
// kind, weights sqrt(size), group files and their errors.
#include <catch2/catch.hpp>

#include <tacit/train/groups.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "fashion_test_util.hpp"
#include "train/train_test_util.hpp"

using namespace tacit;
using namespace tacit_test::train;

namespace {

/// Every parameter with a position holds the value of its matrix entry.
template <class T> void check_positions(const TrainableModel<T> &tm) {
  const auto pos = parameter_positions(tm);
  REQUIRE(static_cast<index_t>(pos.size()) == tm.size());
  std::vector<T> flat(static_cast<std::size_t>(tm.size()));
  tm.read(flat);
  const auto &m = tm.model();
  const CsrMatrix<T> mats[4] = {m.A().to_csr(), m.B().to_csr(), m.C().to_csr(),
                                m.D() ? m.D()->to_csr()
                                      : CsrMatrix<T>(m.outputs(), m.inputs())};
  auto entry = [&](const CsrMatrix<T> &c, index_t i, index_t j) {
    const auto rp = c.row_ptr();
    for (std::int64_t k = rp[i]; k < rp[i + 1]; ++k)
      if (c.column(k) == j)
        return c.values()[k];
    return T(0);
  };
  index_t placed = 0;
  for (std::size_t k = 0; k < pos.size(); ++k) {
    const auto &p = pos[k];
    if (p.matrix < 0)
      continue;
    ++placed;
    const T want = p.matrix < 4    ? entry(mats[p.matrix], p.row, p.col)
                   : p.matrix == 4 ? m.bias_x()[p.row]
                                   : m.bias_y()[p.row];
    REQUIRE(flat[k] == want);
  }
  CHECK(placed == tm.size());
}

} // namespace

TEST_CASE("parameter positions: CSR model with cycles and the Fashion MLP", "[groups]") {
  TrainableModel<double> cyc(cyclic_model<double>());
  check_positions(cyc);
  TrainableModel<float> mlp(tacit::testutil::fashion_model<float>("fashion_mlp"));
  check_positions(mlp);
}

TEST_CASE("group kinds: members and weights", "[groups]") {
  const Model<double> model = cyclic_model<double>();
  TrainableModel<double> tm(model);
  const auto A = model.A().to_csr(), B = model.B().to_csr(), C = model.C().to_csr(),
             D = model.D()->to_csr();
  const auto At = A.transpose(), Bt = B.transpose(), Ct = C.transpose(),
             Dt = D.transpose();
  auto row_len = [](const CsrMatrix<double> &c, index_t i) {
    return static_cast<std::size_t>(c.row_ptr()[i + 1] - c.row_ptr()[i]);
  };
  const auto rows = make_groups(tm, GroupKind::state_row);
  REQUIRE(rows.groups.size() == 15);
  CHECK(rows.disjoint());
  for (const auto &g : rows.groups) {
    CHECK(g.members.size() == row_len(A, g.index) + row_len(B, g.index) + 1);
    CHECK(g.weight == Approx(std::sqrt(double(g.members.size()))));
  }
  CHECK(rows.groups[10].name == "state s:1");
  const auto cols = make_groups(tm, GroupKind::state_column);
  for (const auto &g : cols.groups)
    CHECK(g.members.size() == row_len(At, g.index) + row_len(Ct, g.index));
  const auto both = make_groups(tm, GroupKind::state);
  CHECK_FALSE(both.disjoint());
  const auto inputs = make_groups(tm, GroupKind::input);
  CHECK(inputs.groups.size() == 6);
  for (const auto &g : inputs.groups)
    CHECK(g.members.size() == row_len(Bt, g.index) + row_len(Dt, g.index));
  const auto blocks = make_groups(tm, GroupKind::block);
  REQUIRE(blocks.groups.size() == 5);
  CHECK(blocks.groups[0].members.size() == rows.groups[0].members.size() +
                                               rows.groups[1].members.size() +
                                               rows.groups[2].members.size());
  const auto summary = group_summary(tm);
  CHECK(summary.size() == 5);
  CHECK(parse_group_kind("states") == GroupKind::state_row);
  CHECK(parse_group_kind("channels") == GroupKind::channel);
}

TEST_CASE("group files: groups and clear errors", "[groups]") {
  TrainableModel<double> tm(cyclic_model<double>());
  const auto dir = std::filesystem::temp_directory_path() / "tacit_test_groups";
  std::filesystem::create_directories(dir);
  const auto file = dir / "groups.txt";
  auto write = [&](const std::string &text) { std::ofstream(file) << text; };
  write("# two groups\nfirst row 0-2\n\npix input 1 3  # comment\n");
  const auto s = read_group_file(tm, file);
  REQUIRE(s.groups.size() == 2);
  const auto rows = make_groups(tm, GroupKind::state_row);
  CHECK(s.groups[0].members.size() == rows.groups[0].members.size() +
                                          rows.groups[1].members.size() +
                                          rows.groups[2].members.size());
  CHECK(s.groups[1].name == "pix");
  write("ok state 1\nbad state 3 15\n");
  try {
    read_group_file(tm, file);
    FAIL("no error");
  } catch (const FileError &e) {
    CHECK(e.line() == 2);
    CHECK_THAT(e.what(), Catch::Contains("state 15 does not exist") &&
                             Catch::Contains("15 states") &&
                             Catch::Contains("groups.txt"));
  }
  write("x channel 1\n");
  CHECK_THROWS_WITH(read_group_file(tm, file), Catch::Contains("unknown kind 'channel'"));
  write("x input 2-1\n");
  CHECK_THROWS_WITH(read_group_file(tm, file), Catch::Contains("bad index '2-1'"));
  write("x input 6\n");
  CHECK_THROWS_WITH(read_group_file(tm, file), Catch::Contains("input 6 does not exist"));
  CHECK_THROWS_AS(read_group_file(tm, dir / "missing.txt"), FileError);
  std::filesystem::remove_all(dir);
}
