// The convolution kernel table for one instruction-set level (compiled once
// per level, see core/detail/isa_begin.hpp).

// GCC 12 reports -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen
// instantiates them; not a defect of this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <Eigen/Core>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include <tacit/core/dense.hpp>
#include <tacit/core/model.hpp>
#include <tacit/operators/structured.hpp>

#include "operators/detail/conv_plan.hpp"
#include "operators/detail/operator_kernels.hpp"

#include "core/detail/isa_begin.hpp"

#include "operators/detail/conv_kernels.hpp"

namespace tacit::inline v1::detail::TACIT_ISA_NS {

template <class T> constexpr ConvKernelsOf<T> conv_table() {
  return {&conv_forward_epilogue<T>, &conv_adjoint<T>, &fill_padded_input<T>};
}

extern const ConvKernels conv;
const ConvKernels conv{conv_table<float>(), conv_table<double>()};

} // namespace tacit::inline v1::detail::TACIT_ISA_NS

#include "core/detail/isa_end.hpp"
