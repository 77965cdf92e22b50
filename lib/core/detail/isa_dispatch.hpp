#pragma once
// Run-time choice of the kernels' instruction-set level (see
// include/tacit/core/isa.hpp).
//
// Each kernel family (CSR products, convolutions, sweep and Picard passes,
// activations and copies) has a table of function pointers, defined once per
// level by a translation unit compiled for that level (lib/*/kernels/*.cpp,
// see isa_begin.hpp and cmake/TacitIsa.cmake). A caller picks the table of the
// active level once per product and calls through it.

#include <atomic>

namespace tacit::inline v1::detail {

/// The active level (0 generic, 1 avx2, 2 avx512), initialised from the CPU
/// and TACIT_ISA on first use (core/isa.cpp).
std::atomic<int> &isa_level() noexcept;

template <class Table>
const Table &pick_kernels(const Table &generic, const Table &avx2,
                          const Table &avx512) noexcept {
  switch (isa_level().load(std::memory_order_relaxed)) {
  case 2:
    return avx512;
  case 1:
    return avx2;
  default:
    return generic;
  }
}

} // namespace tacit::inline v1::detail

/// Declares the three tables `name` of type `Table` (one per level, in
/// namespaces detail::generic, detail::avx2, detail::avx512) and the accessor
/// detail::name() returning the active level's. Use at namespace scope inside
/// tacit::v1::detail.
#define TACIT_DECLARE_KERNEL_TABLE(Table, name)                                          \
  namespace generic {                                                                    \
  extern const Table name;                                                               \
  }                                                                                      \
  namespace avx2 {                                                                       \
  extern const Table name;                                                               \
  }                                                                                      \
  namespace avx512 {                                                                     \
  extern const Table name;                                                               \
  }                                                                                      \
  inline const Table &name##_kernels() noexcept {                                        \
    return pick_kernels(generic::name, avx2::name, avx512::name);                        \
  }
