#!/usr/bin/env bash
# The whole test suite: release build + tests, AddressSanitizer and
# UndefinedBehaviorSanitizer build + tests, and a project outside the tree
# built against the installed tacit package.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
start=$SECONDS

echo "== release build and tests"
bash tools/bootstrap.sh
ctest --test-dir build --output-on-failure -j"$jobs"
echo "== release stage done in $((SECONDS - start)) s"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
# -O1 with line tables: sanitizer reports keep their stacks, and the build stays quick.
# The stage keeps to what the sanitizers add, in about a third of the release
# stage's test time:
# - every test once, at the CPU's best level (the reruns at the other levels
#   run in the release stage; every level's kernels are compiled here and the
#   "ISA levels" tests run them all);
# - not the [slow] tests (network scale, 10-20x slower under the sanitizers:
#   their code paths run here at smaller sizes), and tests that sample heavily
#   scale themselves down (__SANITIZE_ADDRESS__);
# - not the mpi component (TACIT_WITH_MPI=OFF): under the sanitizers its
#   programs run for minutes inside OpenMPI and PETSc; it is tested in the
#   release stage;
# - not isa_baseline (the release stage checks the shipped binaries);
# - not UBSan's pointer checks (vptr, alignment, null, object-size,
#   pointer-overflow): they double the compile time of the template-heavy
#   library, and AddressSanitizer catches the bad accesses they would
#   (the SIMD kernels load unaligned on purpose). UBSan keeps its arithmetic,
#   bounds, enum, bool, return and unreachable checks.
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DTACIT_SANITIZE=address,undefined -DTACIT_NO_SANITIZE=vptr,alignment,null,object-size,pointer-overflow \
  -DTACIT_BUILD_BENCH=OFF -DTACIT_REQUIRE_COMPONENTS=all \
  -DTACIT_WITH_MPI=OFF -DTACIT_TEST_SPEC="~[slow]"
cmake --build build-sanitize -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize --output-on-failure -j"$jobs" -E "^(every test at the |isa_baseline$)"
echo "== sanitizer stage done in $((SECONDS - start)) s"

echo "== installed package used from other projects"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix/install" > /dev/null
# tacit::core alone: its link line and its loaded libraries have no optional
# dependency (libpng, CLP, libonnx, protobuf, zlib through tacit, MPI, PETSc, SLEPc).
cmake -S tests/consumer -B "$prefix/core" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install"
cmake --build "$prefix/core"
"$prefix/core/consumer"
if grep -E 'png|Clp|Coin|onnx|protobuf|petsc|slepc|libmpi|MPI::|tacit_(image|idx|lp|onnx|mpi)' "$prefix/core/build.ninja" \
   || ldd "$prefix/core/consumer" | grep -E 'png|Clp|Coin|onnx|protobuf|petsc|slepc|libmpi'; then
  echo "the tacit::core consumer links an optional dependency" >&2
  exit 1
fi
# tacit::tacit: every component.
cmake -S tests/consumer -B "$prefix/umbrella" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install" \
  -DCONSUMER_UMBRELLA=ON
cmake --build "$prefix/umbrella"
"$prefix/umbrella/consumer"
"$prefix/install/bin/tacit" --help > /dev/null
# tacit::mpi: a distributed solve of the same model on 2 ranks.
cmake -S tests/consumer -B "$prefix/mpi" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install" \
  -DCONSUMER_MPI=ON
cmake --build "$prefix/mpi"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  OMPI_MCA_btl_vader_single_copy_mechanism=none timeout 60 \
  mpirun --oversubscribe -np 2 "$prefix/mpi/consumer"
"$prefix/install/bin/tacit-mpi" --help > /dev/null
# The Python package from the prefix alone (not the build tree).
pydir=$(cd "$prefix/install" && ls -d lib/python3*/dist-packages)
(cd "$prefix" && PYTHONPATH="$prefix/install/$pydir" /usr/bin/python3 -S -c '
import sys; sys.path.extend(["/usr/lib/python3/dist-packages"])
import numpy, tacit
assert tacit.__file__.startswith(sys.argv[1]), tacit.__file__
m = tacit.random_implicit(50, 3, 2)
s = tacit.solve(m, numpy.ones((4, 3)))
assert s.report.ok, s.report
print("installed Python package:", tacit.__file__, tacit.__version__)' "$prefix/install")

echo "== all tests passed in $((SECONDS - start)) s"
