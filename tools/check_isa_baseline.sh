#!/usr/bin/env bash
# Checks that the built libraries and programs run on the baseline x86-64:
# only functions of the avx2 and avx512 kernel levels (namespaces
# tacit::v1::detail::avx2 / ::avx512, see lib/core/detail/isa_begin.hpp) may
# hold AVX instructions (VEX/EVEX encoded: mnemonics starting with 'v', ymm or
# zmm registers). A shared inline function compiled for AVX2 in a kernel
# translation unit and kept by the linker for generic callers would show here.
# Usage: tools/check_isa_baseline.sh FILE...
set -euo pipefail
status=0
for file in "$@"; do
  bad=$(objdump -d -C --no-show-raw-insn "$file" | awk '
    /^[0-9a-f]+ <.*>:$/ { name = $0; next }
    /\tv[a-z]/ || /%[yz]mm/ {
      if (name !~ /::(avx2|avx512)::/ && !(name in seen)) { seen[name] = 1; print name }
    }')
  if [[ -n "$bad" ]]; then
    echo "$file: AVX instructions outside the avx2/avx512 kernels in:" >&2
    echo "$bad" | head -20 >&2
    status=1
  else
    echo "$file: AVX instructions only in the avx2/avx512 kernels"
  fi
done
exit $status
