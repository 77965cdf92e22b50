// Catch2's main for the mpi component's tests, an MPI program: every rank runs
// every test (the distributed calls are collective), and the run fails when a
// test fails on any rank (mpirun's exit code).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstring>

#include <tacit/mpi/mpi.hpp>

#include "mpi_test_util.hpp"

int main(int argc, char **argv) {
  tacit::mpi::Environment env(argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc == 3 && std::strcmp(argv[1], "--make-fixture") == 0) {
    // The command test's files (tests/mpi/cli_test.sh), written by rank 0.
    if (rank == 0) {
      const std::filesystem::path dir = argv[2];
      tacit::save_model_native(tacit::test_mpi::test_model(500, 6, 4, 41),
                               dir / "model.tacit");
      tacit::save_model_native(tacit::test_mpi::test_model(2, 2, 1, 3, 0.5, 1),
                               dir / "tiny.tacit");
      tacit::save_model_native(tacit::test_mpi::test_model(300, 4, 3, 44, 3.0),
                               dir / "wild.tacit");
      tacit::write_vectors(dir / "U.txt", tacit::random_batch<double>(6, 40, 42));
      tacit::write_vectors(dir / "U7.txt", tacit::random_batch<double>(7, 3, 43));
    }
    return 0;
  }
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0)
    return rc;
  const int failed = session.run();
  int any = failed != 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any && rank == 0 && failed == 0)
    std::printf("a test failed on another rank\n");
  return any;
}
