// The CSR products' kernel table for one instruction-set level (compiled once
// per level, see core/detail/isa_begin.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <tacit/core/dense.hpp>

#include "core/detail/csr_dispatch.hpp"

#include "core/detail/isa_begin.hpp"

#include "core/detail/csr_kernels.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

template <class T> constexpr CsrKernelsOf<T> csr_table() {
  return {{&csr_rows<false, T, std::int32_t>, &csr_rows<true, T, std::int32_t>},
          {&csr_rows<false, T, std::int64_t>, &csr_rows<true, T, std::int64_t>}};
}

extern const CsrKernels csr;
const CsrKernels csr{csr_table<float>(), csr_table<double>()};

} // namespace tacit::inline v1::detail::TACIT_ISA_NS

#include "core/detail/isa_end.hpp"
