// Products with the distributed A or |A| by tacit's CSR kernel on each rank's
// rows (local columns: ghosts below, own, ghosts above, in global order), the
// ghosts moved by a PETSc VecScatter; and the PETSc shell matrix on them.

#include <tacit/mpi/product.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "mpi/detail/collective.hpp"
#include "mpi/detail/ghosts.hpp"

namespace tacit::inline v1::mpi {

namespace {
/// The context of a shell matrix.
struct ShellContext {
  DistributedProduct *self = nullptr;
  Mode mode = Mode::normal;
  std::size_t own = 0;
  detail::MatHandle mat;
};
} // namespace

struct DistributedProduct::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  index_t n = 0, own = 0, g = 0;
  std::vector<index_t> ghosts; // global indices, increasing
  CsrMatrix<double> M;         // own x (own + ghosts)
  detail::VecHandle global, local;
  detail::ISHandle from, to;
  detail::ScatterHandle scatter;
  std::vector<double> buf; // own + ghosts
  ShellContext shells[2];  // Mode::normal, Mode::abs

  index_t m() const { return own + static_cast<index_t>(ghosts.size()); }

  /// Ghost entries of `local_array` (m entries) from the owners' entries of
  /// `own_array` (own entries, the PETSc layout of the states).
  void forward(const double *own_array, double *local_array) {
    TACIT_PETSC(VecPlaceArray(global, own_array));
    TACIT_PETSC(VecPlaceArray(local, local_array));
    TACIT_PETSC(VecScatterBegin(scatter, global, local, INSERT_VALUES, SCATTER_FORWARD));
    TACIT_PETSC(VecScatterEnd(scatter, global, local, INSERT_VALUES, SCATTER_FORWARD));
    TACIT_PETSC(VecResetArray(global));
    TACIT_PETSC(VecResetArray(local));
  }
  /// Adds the ghost entries of `local_array` into their owners' `own_array`.
  void reverse_add(double *local_array, double *own_array) {
    TACIT_PETSC(VecPlaceArray(global, own_array));
    TACIT_PETSC(VecPlaceArray(local, local_array));
    TACIT_PETSC(VecScatterBegin(scatter, local, global, ADD_VALUES, SCATTER_REVERSE));
    TACIT_PETSC(VecScatterEnd(scatter, local, global, ADD_VALUES, SCATTER_REVERSE));
    TACIT_PETSC(VecResetArray(global));
    TACIT_PETSC(VecResetArray(local));
  }
};

namespace {

template <bool Transposed> PetscErrorCode shell_mult(Mat A, Vec x, Vec y) {
  void *ctx = nullptr;
  PetscErrorCode code = MatShellGetContext(A, &ctx);
  if (code)
    return code;
  auto *shell = static_cast<ShellContext *>(ctx);
  const PetscScalar *xa = nullptr;
  PetscScalar *ya = nullptr;
  if ((code = VecGetArrayRead(x, &xa)))
    return code;
  if ((code = VecGetArrayWrite(y, &ya))) {
    VecRestoreArrayRead(x, &xa);
    return code;
  }
  const std::size_t own = shell->own;
  std::string failure;
  try {
    Mode mode = shell->mode;
    if (Transposed)
      mode = mode == Mode::abs ? Mode::abs_transpose : Mode::transpose;
    shell->self->apply(mode, std::span<const double>(xa, own),
                       std::span<double>(ya, own));
  } catch (const std::exception &e) {
    failure = e.what();
  }
  VecRestoreArrayWrite(y, &ya);
  VecRestoreArrayRead(x, &xa);
  if (!failure.empty())
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_LIB, "tacit::mpi::DistributedProduct: %s",
            failure.c_str());
  return 0;
}

} // namespace

DistributedProduct::DistributedProduct(const DistributedModel &model)
    : impl_(std::make_unique<Impl>()) {
  Impl &s = *impl_;
  s.comm = model.comm;
  s.n = model.n;
  const index_t r0 = model.own_begin(), r1 = model.own_end();
  s.own = r1 - r0;
  detail::collective(model.comm, [&] {
    constexpr auto max_index = static_cast<index_t>(std::numeric_limits<PetscInt>::max());
    if (model.n > max_index)
      throw InvalidArgument("tacit::mpi: " + std::to_string(model.n) +
                            " states exceed PETSc's " +
                            std::to_string(sizeof(PetscInt) * 8) + "-bit indices");
    const auto &L = model.A.local;
    if (L.rows() != s.own)
      throw InvalidArgument("DistributedProduct: rank " + std::to_string(model.rank) +
                            " holds " + std::to_string(L.rows()) + " rows of A, its " +
                            "partition " + std::to_string(s.own));
    if (s.own == model.n) {
      s.M = L; // one rank: the columns are the local indices already
    } else {
      auto gc = detail::ghost_columns(model);
      s.ghosts = std::move(gc.ghosts);
      s.g = gc.below;
      std::vector<std::int64_t> ptr(L.row_ptr().begin(), L.row_ptr().end());
      std::vector<double> vals(L.values().begin(), L.values().end());
      s.M = CsrMatrix<double>(s.own, s.m(), std::move(ptr), gc.local, std::move(vals));
    }
    s.buf.assign(static_cast<std::size_t>(s.m()), 0.0);
  });
  // The plan (collective PETSc calls on every rank, after the checks).
  detail::collective(model.comm, [&] {
    const index_t m = s.m();
    TACIT_PETSC(VecCreateMPIWithArray(s.comm, 1, static_cast<PetscInt>(s.own),
                                      static_cast<PetscInt>(s.n), nullptr,
                                      s.global.out()));
    TACIT_PETSC(VecCreateSeqWithArray(PETSC_COMM_SELF, 1, static_cast<PetscInt>(m),
                                      nullptr, s.local.out()));
    const auto count = s.ghosts.size();
    std::vector<PetscInt> from(count), to(count);
    for (std::size_t k = 0; k < count; ++k) {
      from[k] = static_cast<PetscInt>(s.ghosts[k]);
      const auto kk = static_cast<index_t>(k);
      to[k] = static_cast<PetscInt>(kk < s.g ? kk : kk + s.own);
    }
    TACIT_PETSC(ISCreateGeneral(PETSC_COMM_SELF, static_cast<PetscInt>(count),
                                from.data(), PETSC_COPY_VALUES, s.from.out()));
    TACIT_PETSC(ISCreateGeneral(PETSC_COMM_SELF, static_cast<PetscInt>(count), to.data(),
                                PETSC_COPY_VALUES, s.to.out()));
    TACIT_PETSC(VecScatterCreate(s.global, s.from, s.local, s.to, s.scatter.out()));
  });
}

DistributedProduct::~DistributedProduct() = default;

void DistributedProduct::apply(Mode mode, std::span<const double> x,
                               std::span<double> y) {
  Impl &s = *impl_;
  const auto own = static_cast<std::size_t>(s.own);
  if (x.size() != own || y.size() != own)
    throw InvalidArgument("DistributedProduct::apply: x has " + std::to_string(x.size()) +
                          " and y " + std::to_string(y.size()) +
                          " entries, this rank owns " + std::to_string(own) + " states");
  if (x.data() == y.data())
    throw InvalidArgument("DistributedProduct::apply: x and y alias");
  const bool transposed = is_transposed(mode);
  // Every rank takes part in the scatter, also one without ghosts (its
  // states may be another rank's ghosts).
  if (!transposed) {
    if (s.ghosts.empty()) { // the local columns are the own states: x in place
      s.forward(x.data(), s.buf.data());
      s.M.apply(mode, 1.0, x, 0.0, y);
      return;
    }
    std::copy(x.begin(), x.end(), s.buf.begin() + s.g);
    s.forward(x.data(), s.buf.data());
    s.M.apply(mode, 1.0, std::span<const double>(s.buf), 0.0, y);
    return;
  }
  s.M.apply(mode, 1.0, x, 0.0, std::span<double>(s.buf));
  std::copy(s.buf.begin() + s.g, s.buf.begin() + s.g + s.own, y.begin());
  s.reverse_add(s.buf.data(), y.data());
}

Mat DistributedProduct::petsc(Mode mode) {
  if (mode != Mode::normal && mode != Mode::abs)
    throw InvalidArgument("DistributedProduct::petsc: the mode must be normal or abs "
                          "(the shell's MatMultTranspose is the transpose)");
  Impl &s = *impl_;
  auto &shell = s.shells[mode == Mode::abs ? 1 : 0];
  if (!shell.mat.get()) {
    shell.own = static_cast<std::size_t>(s.own);
    shell.self = this;
    shell.mode = mode;
    detail::collective(s.comm, [&] {
      TACIT_PETSC(MatCreateShell(s.comm, static_cast<PetscInt>(s.own),
                                 static_cast<PetscInt>(s.own), static_cast<PetscInt>(s.n),
                                 static_cast<PetscInt>(s.n), &shell, shell.mat.out()));
      TACIT_PETSC(MatShellSetOperation(
          shell.mat, MATOP_MULT, reinterpret_cast<void (*)(void)>(shell_mult<false>)));
      TACIT_PETSC(
          MatShellSetOperation(shell.mat, MATOP_MULT_TRANSPOSE,
                               reinterpret_cast<void (*)(void)>(shell_mult<true>)));
    });
  }
  return shell.mat.get();
}

index_t DistributedProduct::ghosts() const noexcept {
  return static_cast<index_t>(impl_->ghosts.size());
}

const CsrMatrix<double> &DistributedProduct::local_matrix() const noexcept {
  return impl_->M;
}

index_t DistributedProduct::ghosts_below() const noexcept {
  return impl_->g;
}

void DistributedProduct::exchange(std::span<double> local) {
  Impl &s = *impl_;
  if (local.size() != static_cast<std::size_t>(s.m()))
    throw InvalidArgument("DistributedProduct::exchange: the local vector has " +
                          std::to_string(local.size()) + " entries, expected " +
                          std::to_string(s.m()) + " (own states and ghosts)");
  s.forward(local.data() + s.g, local.data());
}

void DistributedProduct::add_to_owners(std::span<double> local, std::span<double> own) {
  Impl &s = *impl_;
  if (local.size() != static_cast<std::size_t>(s.m()) ||
      own.size() != static_cast<std::size_t>(s.own))
    throw InvalidArgument(
        "DistributedProduct::add_to_owners: " + std::to_string(local.size()) +
        " local and " + std::to_string(own.size()) + " own entries, expected " +
        std::to_string(s.m()) + " and " + std::to_string(s.own));
  s.reverse_add(local.data(), own.data());
}

} // namespace tacit::inline v1::mpi
