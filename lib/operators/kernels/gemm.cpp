// The dense kernel table for one instruction-set level (compiled once per
// level, see core/detail/isa_begin.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <tacit/core/dense.hpp>

#include "operators/detail/gemm_plan.hpp"

#include "core/detail/isa_begin.hpp"

#include "operators/detail/gemm_kernels.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

template <class T> constexpr GemmKernelsOf<T> gemm_table() {
  return {&gemm_product<T>, &gemm_nt_accumulate<T>};
}

extern const GemmKernels gemm;
const GemmKernels gemm{gemm_table<float>(), gemm_table<double>()};

} // namespace tacit::inline v1::detail::TACIT_ISA_NS

#include "core/detail/isa_end.hpp"
