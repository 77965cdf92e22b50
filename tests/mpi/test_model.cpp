// Distributed models (lib/mpi/model.cpp): the nonzero-balanced partition, the
// parallel native-file reader against the whole model, and its errors (the
// same on every rank, never a hang).
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <iterator>

#include <tacit/mpi/mpi.hpp>

#include "mpi_test_util.hpp"

using namespace tacit;
using namespace tacit::test_mpi;

namespace {

/// Rows [a, b) of M (all columns), as the reference for a rank's share.
CsrMatrix<double> rows_of(const CsrMatrix<double> &M, index_t a, index_t b) {
  std::vector<Triplet<double>> t;
  const auto rp = M.row_ptr();
  for (index_t i = a; i < b; ++i)
    for (auto e = rp[i]; e < rp[i + 1]; ++e)
      t.push_back({i - a, M.column(e), M.values()[e]});
  return CsrMatrix<double>::from_triplets(b - a, M.cols(), t);
}

void require_same(const CsrMatrix<double> &a, const CsrMatrix<double> &b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  REQUIRE(a.nnz() == b.nnz());
  for (index_t i = 0; i <= a.rows(); ++i)
    REQUIRE(a.row_ptr()[i] == b.row_ptr()[i]);
  for (std::int64_t e = 0; e < a.nnz(); ++e) {
    REQUIRE(a.column(e) == b.column(e));
    REQUIRE(a.values()[e] == b.values()[e]);
  }
}

/// Expects `f` to throw E on every rank, marked as such, with `text` in the
/// message.
template <class E, class F>
void require_error_everywhere(F &&f, const std::string &text) {
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

/// CRC-32 bit by bit (an independent reference to the library's).
std::uint32_t bitwise_crc(const char *data, std::size_t size) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < size; ++i) {
    c ^= static_cast<unsigned char>(data[i]);
    for (int b = 0; b < 8; ++b)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

/// Rewrites the stored CRC of the section at byte offset `off` of a native
/// file held in `b`, so that a deliberate change passes the checksum.
void reseal_section(std::string &b, std::size_t off) {
  std::uint64_t len;
  std::memcpy(&len, b.data() + off + 8, 8);
  const std::uint32_t crc = bitwise_crc(b.data() + off, 16 + len);
  std::memcpy(b.data() + off + 16 + len, &crc, 4);
}

} // namespace

TEST_CASE("balanced_partition splits nonzeros plus rows as tacit's thread partition does",
          "[mpi][model]") {
  // Rows with 0, 10, 0, 10, ... nonzeros: cost 1 and 11 alternately, 600 in
  // all. Boundary k is the first row whose cost before it reaches 150 k:
  // before row 26 (13 rows of 11, 13 of 1) the cost is 156, before row 25
  // it is 145; before row 50 it is 300; before row 76 456, before 75 445.
  std::vector<std::int64_t> rp(101, 0);
  for (index_t i = 0; i < 100; ++i)
    rp[i + 1] = rp[i] + (i % 2 ? 10 : 0);
  const auto p = mpi::balanced_partition(100, 4, [&](index_t i) { return rp[i]; });
  REQUIRE(p.starts == std::vector<index_t>{0, 26, 50, 76, 100});
  const auto q = mpi::balanced_partition(3, 5, [&](index_t i) { return rp[i]; });
  REQUIRE(q.starts.front() == 0);
  REQUIRE(q.starts.back() == 3);
  REQUIRE(mpi::even_partition(10, 3).starts == std::vector<index_t>{0, 3, 6, 10});
  REQUIRE_THROWS_AS(mpi::even_partition(10, 0), InvalidArgument);
}

TEST_CASE("each rank reads its own rows of a native file, equal to the whole model's",
          "[mpi][model]") {
  SharedDir dir;
  const auto model = test_model(300, 7, 4, 11);
  const auto path = dir / "model.tacit";
  save_on_rank0(model, path);
  for (const bool from_file : {true, false}) {
    INFO((from_file ? "load_distributed_model" : "distribute_model"));
    const auto dm =
        from_file ? mpi::load_distributed_model(path) : mpi::distribute_model(model);
    REQUIRE(dm.ranks == ranks());
    REQUIRE(dm.n == 300);
    REQUIRE(dm.p == 7);
    REQUIRE(dm.q == 4);
    REQUIRE(dm.states.ranks() == ranks());
    const auto A = csr_view(model.A());
    // The partition: contiguous, covering, balanced within one row's cost.
    const double total = double(A->nnz() + 300);
    std::int64_t row_cost = 0;
    for (index_t i = 0; i < 300; ++i)
      row_cost = std::max(row_cost, A->row_ptr()[i + 1] - A->row_ptr()[i] + 1);
    for (int r = 0; r < ranks(); ++r) {
      REQUIRE(dm.states.size(r) > 0);
      const double cost = double(A->row_ptr()[dm.states.end(r)] -
                                 A->row_ptr()[dm.states.begin(r)] + dm.states.size(r));
      CHECK(std::abs(cost - total / ranks()) <= 2.0 * double(row_cost));
    }
    const index_t r0 = dm.own_begin(), r1 = dm.own_end();
    require_same(dm.A.local, rows_of(*A, r0, r1));
    require_same(dm.B.local, rows_of(*csr_view(model.B()), r0, r1));
    require_same(dm.C.local, rows_of(*csr_view(model.C()), dm.outputs.begin(dm.rank),
                                     dm.outputs.end(dm.rank)));
    REQUIRE(dm.A.global_nnz == A->nnz());
    if (ranks() > 1)
      REQUIRE(dm.A.local.nnz() < A->nnz()); // no rank holds the whole matrix
    for (index_t i = r0; i < r1; ++i) {
      REQUIRE(dm.bias_x[i - r0] == model.bias_x()[i]);
      REQUIRE(dm.activations[i - r0] == model.activations()[i]);
    }
    if (dm.rank == 0) {
      REQUIRE(dm.D);
      require_same(*dm.D, *csr_view(*model.D()));
      REQUIRE(dm.bias_y ==
              std::vector<double>(model.bias_y().begin(), model.bias_y().end()));
    } else {
      REQUIRE(!dm.D);
      REQUIRE(dm.bias_y.empty());
    }
    REQUIRE(dm.blocks == model.blocks());
    REQUIRE(dm.local_bytes() > 0);
  }
}

TEST_CASE("a float32 file is read widened to float64", "[mpi][model]") {
  SharedDir dir;
  const auto model32 = convert_model<float>(test_model(120, 3, 2, 5));
  save_on_rank0(model32, dir / "f32.tacit");
  const auto dm = mpi::load_distributed_model(dir / "f32.tacit");
  const auto wide = convert_model<double>(model32);
  require_same(dm.A.local, rows_of(*csr_view(wide.A()), dm.own_begin(), dm.own_end()));
}

TEST_CASE("bad files fail on every rank with the problem named", "[mpi][model]") {
  SharedDir dir;
  const auto model = test_model(90, 3, 2, 7);
  const auto good = dir / "good.tacit";
  save_on_rank0(model, good);
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string &name, const std::string &content) {
    if (rank() == 0) {
      std::ofstream out(dir / name, std::ios::binary);
      out << content;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return dir / name;
  };

  SECTION("missing file") {
    require_error_everywhere<FileError>(
        [&] { mpi::load_distributed_model(dir / "absent.tacit"); }, "cannot open");
  }
  SECTION("not a native file") {
    const auto p = write("text.tacit", "%%MatrixMarket matrix coordinate real general\n");
    require_error_everywhere<FileError>([&] { mpi::load_distributed_model(p); },
                                        "tacit convert");
  }
  SECTION("truncated file") {
    const auto p = write("cut.tacit", bytes.substr(0, bytes.size() - 100));
    require_error_everywhere<FileError>([&] { mpi::load_distributed_model(p); },
                                        "truncated");
  }
  SECTION("a section whose dimensions do not match the header") {
    // Section B's row count (first u64 of its payload) made n + 1.
    std::string b = bytes;
    std::size_t off = 56;
    for (;;) {
      std::uint32_t role;
      std::uint64_t len;
      std::memcpy(&role, b.data() + off, 4);
      std::memcpy(&len, b.data() + off + 8, 8);
      if (role == 3) {
        const std::uint64_t rows = 91;
        std::memcpy(b.data() + off + 16, &rows, 8);
        break;
      }
      off += 16 + len + 4;
    }
    const auto p = write("dims.tacit", b);
    require_error_everywhere<FileError>([&] { mpi::load_distributed_model(p); },
                                        "section B is 91 x 3");
  }
  SECTION("a rank that cannot read its part: a bad column index in the last rows") {
    // The last stored column index of A (in the last rank's rows) made n.
    std::string b = bytes;
    std::uint64_t len;
    std::memcpy(&len, b.data() + 56 + 8, 8); // first section: blocks
    std::size_t off = 56 + 16 + len + 4;     // A
    std::uint64_t rows, nnz;
    std::memcpy(&rows, b.data() + off + 16, 8);
    std::memcpy(&nnz, b.data() + off + 32, 8);
    const std::size_t cols = off + 16 + 32 + (rows + 1) * 8;
    const std::uint32_t bad = 90;
    std::memcpy(b.data() + cols + (nnz - 1) * 4, &bad, 4);
    reseal_section(b, off); // a consistent file whose content is wrong
    const auto p = write("col.tacit", b);
    require_error_everywhere<FileError>([&] { mpi::load_distributed_model(p); },
                                        "rank " + std::to_string(ranks() - 1) + " of " +
                                            std::to_string(ranks()));
  }
  SECTION("a damaged section: a CRC mismatch named on every rank, whoever reads it") {
    // One bit of the last value of A flipped: it lies in the last rank's share
    // of the section, and in its rows. Every rank names the section.
    std::string b = bytes;
    std::uint64_t len;
    std::memcpy(&len, b.data() + 56 + 8, 8);
    const std::size_t off = 56 + 16 + len + 4; // A
    std::memcpy(&len, b.data() + off + 8, 8);
    b[off + 16 + len - 1] ^= 0x10;
    const auto p = write("flip.tacit", b);
    require_error_everywhere<FileError>([&] { mpi::load_distributed_model(p); },
                                        "CRC mismatch in section A");
    // The same damage with the CRC rewritten to match is read (the check is
    // the CRC, not some other property of the bytes).
    reseal_section(b, off);
    const auto q = write("resealed.tacit", b);
    const auto dm = mpi::load_distributed_model(q);
    CHECK(dm.n == 90);
  }
  SECTION("a partition that leaves a rank without states") {
    if (ranks() > 1) {
      const auto tiny = test_model(ranks() - 1 > 1 ? ranks() - 1 : 1, 2, 1, 3, 0.5, 1);
      const auto p = dir / "tiny.tacit";
      save_on_rank0(tiny, p);
      require_error_everywhere<InvalidArgument>([&] { mpi::load_distributed_model(p); },
                                                "without states");
      require_error_everywhere<InvalidArgument>([&] { mpi::distribute_model(tiny); },
                                                "without states");
    } else {
      const auto tiny = test_model(2, 2, 1, 3, 0.5, 1);
      REQUIRE(mpi::distribute_model(tiny).states.size(0) == 2);
    }
  }
}
