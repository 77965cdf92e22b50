// Matrix Market files and model directories read in parallel
// (lib/mpi/matrix_market.cpp) against the single-process reader, and their
// errors (the same on every rank, naming the line).
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include <tacit/mpi/matrix_market.hpp>
#include <tacit/mpi/mpi.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

/// Rows [a, b) of M as a dense row-major array.
std::vector<double> dense_rows(const CsrMatrix<double> &M, index_t a, index_t b) {
  std::vector<double> d(static_cast<std::size_t>((b - a) * M.cols()), 0.0);
  for (index_t i = a; i < b; ++i)
    for (auto e = M.row_ptr()[i]; e < M.row_ptr()[i + 1]; ++e)
      d[(i - a) * M.cols() + M.column(e)] = M.values()[e];
  return d;
}

std::filesystem::path write(const SharedDir &dir, const std::string &name,
                            const std::string &content) {
  if (rank() == 0) {
    std::ofstream out(dir / name, std::ios::binary);
    out << content;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return dir / name;
}

/// The parallel reader's rows against read_matrix_market's.
void check_file(const std::filesystem::path &path) {
  const auto whole = read_matrix_market<double>(path);
  mpi::RowPartition p;
  const auto d = mpi::read_distributed_matrix_market(path, p);
  REQUIRE(p.total() == whole.rows());
  REQUIRE(d.rows == whole.rows());
  REQUIRE(d.cols == whole.cols());
  REQUIRE(d.global_nnz == whole.nnz());
  REQUIRE(d.row_begin == p.begin(rank()));
  REQUIRE(d.local.to_dense() == dense_rows(whole, p.begin(rank()), p.end(rank())));
  // Columns increasing in every row.
  for (index_t i = 0; i < d.local.rows(); ++i)
    for (auto e = d.local.row_ptr()[i] + 1; e < d.local.row_ptr()[i + 1]; ++e)
      REQUIRE(d.local.column(e - 1) < d.local.column(e));
}

template <class E, class F> void require_error(F &&f, const std::string &text) {
  bool thrown = false;
  try {
    f();
  } catch (const E &e) {
    thrown = true;
    INFO(e.what());
    CHECK(mpi::error_on_every_rank(e));
    CHECK(std::string(e.what()).find(text) != std::string::npos);
  }
  REQUIRE(thrown);
}

} // namespace

TEST_CASE("a Matrix Market file read in parallel equals the single-process reader's rows",
          "[mpi][matrix_market]") {
  SharedDir dir;
  SECTION("general, entries in column order, comments and blank lines between them") {
    std::ostringstream s;
    s << "%%MatrixMarket matrix coordinate real general\n% a comment\n\n7 5 12\n";
    const int e[12][2] = {{1, 1}, {3, 1}, {7, 1}, {2, 2}, {5, 2}, {1, 3},
                          {4, 3}, {6, 4}, {7, 4}, {2, 5}, {3, 5}, {7, 5}};
    for (int k = 0; k < 12; ++k) {
      s << e[k][0] << " " << e[k][1] << " " << 0.5 * (k + 1) - 3 << "\n";
      if (k == 5)
        s << "% halfway\n\n";
    }
    check_file(write(dir, "g.mtx", s.str()));
  }
  SECTION("symmetric and skew-symmetric: the mirrors expanded") {
    const std::string body = "6 6 8\n1 1 2\n2 1 -1\n3 2 4\n4 1 1.5\n4 4 3\n5 3 -2\n6 5 "
                             "7\n6 6 1\n";
    check_file(
        write(dir, "s.mtx", "%%MatrixMarket matrix coordinate real symmetric\n" + body));
    const std::string skew = "6 6 4\n2 1 -1\n3 2 4\n5 3 -2\n6 5 7\n";
    check_file(write(dir, "k.mtx",
                     "%%MatrixMarket matrix coordinate real skew-symmetric\n" + skew));
  }
  SECTION("pattern and integer fields, no final newline") {
    check_file(
        write(dir, "p.mtx",
              "%%MatrixMarket matrix coordinate pattern general\n4 4 5\n1 2\n2 3\n3 "
              "4\n4 1\n4 4"));
    check_file(
        write(dir, "i.mtx",
              "%%MatrixMarket matrix coordinate integer general\n3 3 3\n1 3 -7\n2 2 "
              "5\n3 1 2"));
  }
  SECTION("a larger file written by tacit") {
    const auto model = test_model(400, 6, 4, 5);
    if (rank() == 0)
      write_matrix_market(dir / "A.mtx", *csr_view(model.A()));
    MPI_Barrier(MPI_COMM_WORLD);
    check_file(dir / "A.mtx");
  }
}

TEST_CASE("a model directory read in parallel equals the distributed whole model",
          "[mpi][matrix_market]") {
  SharedDir dir;
  const auto model = test_model(500, 6, 4, 41);
  if (rank() == 0)
    save_model_directory(model, dir / "model");
  MPI_Barrier(MPI_COMM_WORLD);
  const auto got = mpi::load_distributed_model(dir / "model");
  const auto ref = mpi::distribute_model(model);
  REQUIRE(got.n == ref.n);
  REQUIRE(got.p == ref.p);
  REQUIRE(got.q == ref.q);
  REQUIRE(got.states.starts == ref.states.starts);
  REQUIRE(got.outputs.starts == ref.outputs.starts);
  REQUIRE(got.A.global_nnz == ref.A.global_nnz);
  REQUIRE(got.A.local.to_dense() == ref.A.local.to_dense());
  REQUIRE(got.B.local.to_dense() == ref.B.local.to_dense());
  REQUIRE(got.C.local.to_dense() == ref.C.local.to_dense());
  REQUIRE(got.bias_x == ref.bias_x);
  REQUIRE(got.blocks == ref.blocks);
  REQUIRE(got.activations == ref.activations);
  if (rank() == 0) {
    REQUIRE(got.bias_y == ref.bias_y);
    REQUIRE(got.D->to_dense() == ref.D->to_dense());
  }
  // The solve: the same bits as from the native file's model.
  const auto U = random_batch<double>(6, 12, 3);
  Batch<double> Y1, Y2, X1, X2;
  mpi::distributed_predict(got, U, Y1, {}, nullptr, &X1);
  mpi::distributed_predict(ref, U, Y2, {}, nullptr, &X2);
  for (index_t i = 0; i < X1.rows(); ++i)
    for (index_t j = 0; j < X1.cols(); ++j)
      REQUIRE(X1(i, j) == X2(i, j));

  SECTION("a memory budget one rank cannot meet") {
    require_error<InvalidArgument>(
        [&] { mpi::load_distributed_model(dir / "model", MPI_COMM_WORLD, 2000); },
        "more than the memory budget");
  }
  SECTION("dimensions that do not match across files") {
    if (rank() == 0) {
      std::filesystem::copy_file(dir / "model" / "C.mtx", dir / "model" / "B.mtx",
                                 std::filesystem::copy_options::overwrite_existing);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    require_error<FileError>([&] { mpi::load_distributed_model(dir / "model"); },
                             "B must have n = 500 rows");
  }
}

TEST_CASE("bad Matrix Market files fail on every rank, naming the line",
          "[mpi][matrix_market]") {
  SharedDir dir;
  const std::string head = "%%MatrixMarket matrix coordinate real general\n6 6 ";
  std::ostringstream lines; // 12 entries on lines 3-14, (i, i % 6 + 1) and (i, i)
  for (int i = 1; i <= 6; ++i)
    lines << i << " " << i % 6 + 1 << " 1.5\n" << i << " " << i << " 2\n";
  auto read = [&](const std::filesystem::path &f) {
    mpi::RowPartition q;
    mpi::read_distributed_matrix_market(f, q);
  };
  SECTION("a duplicate far from its first line") {
    const auto f = write(dir, "dup.mtx", head + "13\n" + lines.str() + "1 2 4\n");
    require_error<FileError>([&] { read(f); },
                             "dup.mtx:15: duplicate entry (1, 2) on lines 3 and 15");
  }
  SECTION("an index out of range in the last lines") {
    const auto f = write(dir, "range.mtx", head + "13\n" + lines.str() + "6 7 1\n");
    require_error<FileError>([&] { read(f); }, "range.mtx:15: entry (6, 7): column 7");
  }
  SECTION("too many and too few entries") {
    const auto f = write(dir, "many.mtx", head + "11\n" + lines.str());
    require_error<FileError>(
        [&] { read(f); },
        "many.mtx:14: too many entries: the size line (line 2) declares 11");
    const auto g = write(dir, "few.mtx", head + "13\n" + lines.str());
    require_error<FileError>([&] { read(g); }, "too few entries");
  }
  SECTION("a value that is not finite, an above-diagonal symmetric entry") {
    const auto f = write(dir, "nan.mtx", head + "2\n1 1 nan\n2 2 1\n");
    require_error<FileError>([&] { read(f); },
                             "nan.mtx:3: entry (1, 1): value 'nan' is not finite");
    const auto g =
        write(dir, "upper.mtx",
              "%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n1 1 1\n1 "
              "3 2\n");
    require_error<FileError>([&] { read(g); },
                             "upper.mtx:4: entry (1, 3) is above the diagonal");
  }
  SECTION("an array file, a missing file") {
    const auto f =
        write(dir, "arr.mtx", "%%MatrixMarket matrix array real general\n1 1\n2\n");
    require_error<FileError>([&] { read(f); }, "tacit convert");
    require_error<FileError>([&] { read(dir / "absent.mtx"); }, "cannot open");
  }
}
