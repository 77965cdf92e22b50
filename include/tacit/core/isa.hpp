#pragma once
/// \file isa.hpp
/// The instruction-set level of tacit's kernels. One build runs on any x86-64
/// CPU: the kernels (CSR products, convolutions, sweep and Picard passes,
/// activations and copies) are compiled once per level, and the level used is
/// chosen once, at the first kernel call, as the best one the CPU and the
/// operating system support (CPUID, and XGETBV for the registers the OS
/// saves). The environment variable TACIT_ISA=generic|avx2|avx512 asks for a
/// level (a level the machine lacks falls back to the best one below it, see
/// isa_note()); set_isa() changes it for the whole process, e.g. to test or
/// benchmark each level in one run.
///
/// Results: at the avx2 and avx512 levels every kernel rounds each
/// multiply-add once (FMA) and sums in an order that does not depend on the
/// vector width, so the two give the same bits. The generic level rounds
/// products and sums separately (no FMA on the baseline x86-64): its results
/// differ from the others within the rounding error of the sums.
///
/// Thread safety: the queries may be called from any thread. set_isa() is a
/// process-wide switch: a product that runs while another thread calls it
/// uses either level, so call it only when no tacit call is running.

#include <string>
#include <string_view>
#include <vector>

#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Kernel instruction-set levels, in increasing order.
enum class Isa {
  generic = 0, ///< baseline x86-64 (SSE2), or any other architecture
  avx2 = 1,    ///< AVX2 with FMA (16 ymm registers)
  avx512 = 2   ///< AVX-512 F, VL, BW and DQ (32 zmm registers)
};

/// "generic", "avx2" or "avx512".
TACIT_EXPORT std::string to_string(Isa isa);

/// Parses "generic", "avx2" or "avx512". \throws InvalidArgument otherwise.
TACIT_EXPORT Isa parse_isa(std::string_view name);

/// Whether this CPU and operating system can run the kernels of `isa`.
TACIT_EXPORT bool isa_supported(Isa isa) noexcept;

/// The best level this machine supports.
TACIT_EXPORT Isa best_isa() noexcept;

/// Every level this machine supports, in increasing order (generic first).
TACIT_EXPORT std::vector<Isa> supported_isas();

/// The level the kernels use now.
TACIT_EXPORT Isa active_isa() noexcept;

/// Makes the kernels use `isa` from the next call on (for the whole process;
/// do not call it while products run on other threads).
/// \throws InvalidArgument if the machine does not support it.
TACIT_EXPORT void set_isa(Isa isa);

/// Why the active level is what it is, e.g. "best supported by the CPU" or
/// "TACIT_ISA=avx512 asked for a level this CPU lacks (no AVX-512F); using
/// avx2". Empty when TACIT_ISA was not set and set_isa() was not called.
TACIT_EXPORT std::string isa_note();

/// What the CPU offers, e.g. "AVX2 FMA, no AVX-512F" (for `tacit info`).
TACIT_EXPORT std::string cpu_features();

} // namespace tacit::inline v1
