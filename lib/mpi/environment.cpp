// PETSc / SLEPc lifetime, collective errors, PETSc matrices from tacit CSR.

#include <tacit/mpi/mpi.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <slepcsys.h>

#include "mpi/detail/collective.hpp"

namespace tacit::inline v1::mpi {

Environment::Environment(int &argc, char **&argv) {
  // PETSc must not print its own error traces or install signal handlers
  // that turn a failure into a hang: tacit reports errors itself.
  const PetscErrorCode code = SlepcInitialize(&argc, &argv, nullptr, nullptr);
  if (code != 0)
    throw Error("tacit::mpi: SlepcInitialize failed (PETSc error " +
                std::to_string(static_cast<int>(code)) + ")");
  PetscPushErrorHandler(PetscReturnErrorHandler, nullptr);
}

Environment::~Environment() {
  PetscPopErrorHandler();
  SlepcFinalize();
}

void collective_check(MPI_Comm comm, std::exception_ptr error) {
  if (!error) {
    detail::agree(comm, nullptr);
    return;
  }
  try {
    std::rethrow_exception(error);
  } catch (const detail::OnEveryRank &) {
    throw;
  } catch (const std::exception &e) {
    detail::agree(comm, &e);
  } catch (...) {
    const Error unknown("unknown exception");
    detail::agree(comm, &unknown);
  }
}

bool error_on_every_rank(const std::exception &e) noexcept {
  return dynamic_cast<const detail::OnEveryRank *>(&e) != nullptr;
}

namespace detail {

namespace {

enum ErrorKind : int { invalid = 1, file = 2, numerical = 3, unsupported = 4, other = 5 };

int kind_of(const std::exception &e) {
  if (dynamic_cast<const FileError *>(&e))
    return file;
  if (dynamic_cast<const InvalidArgument *>(&e))
    return invalid;
  if (dynamic_cast<const NumericalError *>(&e))
    return numerical;
  if (dynamic_cast<const Unsupported *>(&e))
    return unsupported;
  return other;
}

void bcast_string(MPI_Comm comm, std::string &s, int root) {
  long long size = static_cast<long long>(s.size());
  MPI_Bcast(&size, 1, MPI_LONG_LONG, root, comm);
  s.resize(static_cast<std::size_t>(size));
  if (size > 0)
    MPI_Bcast(s.data(), static_cast<int>(size), MPI_CHAR, root, comm);
}

} // namespace

void agree(MPI_Comm comm, const std::exception *error) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  int failing = error ? rank : ranks;
  MPI_Allreduce(MPI_IN_PLACE, &failing, 1, MPI_INT, MPI_MIN, comm);
  if (failing == ranks)
    return;
  // Every rank takes part in the broadcast of the first failing rank's error.
  int kind = error ? kind_of(*error) : 0;
  std::string message = error ? error->what() : std::string();
  std::string path;
  long long line = 0;
  if (error)
    if (const auto *fe = dynamic_cast<const FileError *>(error)) {
      path = fe->path();
      line = fe->line();
    }
  MPI_Bcast(&kind, 1, MPI_INT, failing, comm);
  MPI_Bcast(&line, 1, MPI_LONG_LONG, failing, comm);
  bcast_string(comm, message, failing);
  bcast_string(comm, path, failing);
  const std::string where =
      " (rank " + std::to_string(failing) + " of " + std::to_string(ranks) + ")";
  switch (kind) {
  case file: {
    // FileError formats "path:line: what"; keep that and name the rank.
    std::string what = message;
    const std::string prefix =
        line > 0 ? path + ":" + std::to_string(line) + ": " : path + ": ";
    if (what.rfind(prefix, 0) == 0)
      what = what.substr(prefix.size());
    throw Agreed<FileError>(path, line, what + where);
  }
  case invalid:
    throw Agreed<InvalidArgument>(message + where);
  case numerical:
    throw Agreed<NumericalError>(message + where);
  case unsupported:
    throw Agreed<Unsupported>(message + where);
  default:
    throw Agreed<Error>(message + where);
  }
}

void petsc_check(PetscErrorCode code, const char *call) {
  if (code == 0)
    return;
  const char *text = nullptr;
  PetscErrorMessage(code, &text, nullptr);
  throw Error(std::string("PETSc: ") + call + " failed: " + (text ? text : "error") +
              " (code " + std::to_string(static_cast<int>(code)) + ")");
}

MatHandle petsc_matrix(MPI_Comm comm, const CsrMatrix<double> &local, index_t global_rows,
                       index_t global_cols, index_t local_cols, bool absolute) {
  constexpr auto max_index = static_cast<index_t>(std::numeric_limits<PetscInt>::max());
  // Decided together: MatCreateMPIAIJWithArrays below is collective.
  int too_large = local.nnz() > max_index ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &too_large, 1, MPI_INT, MPI_MAX, comm);
  if (global_rows > max_index || global_cols > max_index || too_large)
    throw InvalidArgument("tacit::mpi: a matrix of " + std::to_string(global_rows) +
                          " x " + std::to_string(global_cols) + " (" +
                          std::to_string(local.nnz()) +
                          " nonzeros on this rank) exceeds PETSc's " +
                          std::to_string(sizeof(PetscInt) * 8) + "-bit indices");
  const index_t m = local.rows();
  std::vector<PetscInt> ptr(static_cast<std::size_t>(m) + 1),
      cols(static_cast<std::size_t>(local.nnz()));
  std::vector<PetscScalar> vals(static_cast<std::size_t>(local.nnz()));
  const auto rp = local.row_ptr();
  for (index_t i = 0; i <= m; ++i)
    ptr[i] = static_cast<PetscInt>(rp[i]);
  local.visit_columns([&](auto c) {
    for (std::size_t e = 0; e < c.size(); ++e)
      cols[e] = static_cast<PetscInt>(c[e]);
  });
  const auto v = local.values();
  for (std::size_t e = 0; e < v.size(); ++e)
    vals[e] = absolute ? std::abs(v[e]) : v[e];
  MatHandle A;
  TACIT_PETSC(MatCreateMPIAIJWithArrays(
      comm, static_cast<PetscInt>(m), static_cast<PetscInt>(local_cols),
      static_cast<PetscInt>(global_rows), static_cast<PetscInt>(global_cols), ptr.data(),
      cols.data(), vals.data(), A.out()));
  return A;
}

} // namespace detail
} // namespace tacit::inline v1::mpi
