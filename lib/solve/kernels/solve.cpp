// The solvers' kernel table for one instruction-set level (compiled once per
// level, see core/detail/isa_begin.hpp): sweep rows, fused Picard passes and
// the rows of Z = B U + b.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <tacit/core/dense.hpp>
#include <tacit/core/model.hpp>

#include "solve/detail/scalar_solvers.hpp"
#include "solve/detail/solve_dispatch.hpp"
#include "solve/detail/sweep.hpp"

#include "core/detail/isa_begin.hpp"

#include "solve/detail/fixed_point_kernels.hpp"
#include "solve/detail/sweep_kernels.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

template <class T> constexpr SolveKernelsOf<T> solve_table() {
  return {&sweep_singles<T>,
          &sweep_block_rows<T>,
          {&fused_rows<write_none, T, std::int32_t>,
           &fused_rows<write_select, T, std::int32_t>,
           &fused_rows<write_always, T, std::int32_t>},
          {&fused_rows<write_none, T, std::int64_t>,
           &fused_rows<write_select, T, std::int64_t>,
           &fused_rows<write_always, T, std::int64_t>},
          &affine_rows<T, std::int32_t>,
          &affine_rows<T, std::int64_t>};
}

extern const SolveKernels solve;
const SolveKernels solve{solve_table<float>(), solve_table<double>()};

} // namespace tacit::inline v1::detail::TACIT_ISA_NS

#include "core/detail/isa_end.hpp"
