#pragma once
// Helpers of the mpi component's tests: ranks, a scratch directory shared by
// the ranks, the test models (the same on every rank: generated from seeds).

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <mpi.h>

#include <tacit/core/model.hpp>
#include <tacit/io/io.hpp>
#include <tacit/nn/generate.hpp>

namespace tacit::test_mpi {

inline int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int ranks() {
  int r = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &r);
  return r;
}

/// A directory made by rank 0 and known to every rank; removed at exit.
class SharedDir {
public:
  SharedDir() {
    std::string path;
    if (rank() == 0) {
      const char *base = std::getenv("TMPDIR");
      std::string tmpl = std::string(base && *base ? base : "/tmp") + "/tacit-mpi-XXXXXX";
      std::vector<char> buf(tmpl.begin(), tmpl.end());
      buf.push_back('\0');
      if (!mkdtemp(buf.data()))
        std::abort();
      path = buf.data();
    }
    int size = static_cast<int>(path.size());
    MPI_Bcast(&size, 1, MPI_INT, 0, MPI_COMM_WORLD);
    path.resize(static_cast<std::size_t>(size));
    MPI_Bcast(path.data(), size, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = path;
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank() == 0) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  std::filesystem::path operator/(const std::string &name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

/// A truly implicit model with cycles, D, and two state blocks (ReLU, leaky
/// ReLU 0.1).
inline Model<double> test_model(index_t n, index_t p, index_t q, std::uint64_t seed,
                                double norm = 0.9, index_t row_nnz = 6) {
  const auto base = random_implicit_model<double>(n, p, q, row_nnz, norm, seed);
  std::vector<Triplet<double>> d;
  for (index_t i = 0; i < q; ++i)
    d.push_back({i, i % p, 0.25 + 0.125 * static_cast<double>(i)});
  auto D = std::make_shared<CsrMatrix<double>>(CsrMatrix<double>::from_triplets(q, p, d));
  std::vector<double> by(static_cast<std::size_t>(q));
  for (index_t i = 0; i < q; ++i)
    by[i] = 0.5 - 0.25 * static_cast<double>(i);
  const index_t half = n / 2;
  std::vector<StateBlock> blocks;
  if (half > 0)
    blocks = {{"first", 0, half, Activation::parse("relu")},
              {"second", half, n - half, Activation::parse("leaky_relu", 0.1)}};
  return Model<double>(base.A_ptr(), base.B_ptr(), base.C_ptr(), D,
                       std::vector<double>(base.bias_x().begin(), base.bias_x().end()),
                       by, blocks);
}

/// Saves `model` on rank 0 and waits for it on every rank.
template <class T>
void save_on_rank0(const Model<T> &model, const std::filesystem::path &path) {
  if (rank() == 0)
    save_model_native(model, path);
  MPI_Barrier(MPI_COMM_WORLD);
}

} // namespace tacit::test_mpi
