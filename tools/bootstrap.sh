#!/usr/bin/env bash
# Installs the Debian 12 packages tacit needs (only those missing), then
# configures and builds tacit (library, command, tests, benchmarks) in build/.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(g++ cmake ninja-build pkg-config libsuitesparse-dev libtbb-dev libeigen3-dev
          catch2 libbenchmark-dev nlohmann-json3-dev zlib1g-dev
          libpng-dev coinor-libclp-dev libonnx-dev libprotobuf-dev dataset-fashion-mnist
          pybind11-dev python3-dev python3-numpy python3-scipy python3-pytest python3-torch python3-onnx
          petsc-dev slepc-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTACIT_REQUIRE_COMPONENTS=all "$@"
cmake --build build -j"$jobs"

# The Python module is importable from the build tree: a .pth file on the
# path of Debian's /usr/bin/python3 names build/python (`import tacit` then
# works anywhere; `cmake --install` installs the package for good).
site=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_path("purelib", "posix_local"))')
if [ -w "$(dirname "$site")" ] || [ "$(id -u)" = 0 ]; then
  mkdir -p "$site" && echo "$(pwd)/build/python" > "$site/tacit-build.pth"
fi
