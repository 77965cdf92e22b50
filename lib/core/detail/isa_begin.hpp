// Opens the target region of a kernel translation unit (no include guard).
//
// A kernel family's source (lib/*/kernels/*.cpp) is compiled once per level
// with TACIT_ISA_LEVEL = 0 (generic), 1 (avx2) or 2 (avx512). Everything it
// defines between this header and isa_end.hpp is compiled for that level
// (#pragma GCC target) and lives in namespace detail::generic, detail::avx2 or
// detail::avx512 (TACIT_ISA_NS), so that the three copies of each inline
// kernel never meet at link time. Headers with code outside those namespaces
// (the standard library, TBB, Eigen, tacit's public headers and the plain
// detail headers) must be included BEFORE this one: a function defined inside
// the region is compiled for the level, and a copy of a shared inline function
// compiled for AVX2 could be the one the linker keeps for generic callers.
// (The isa_baseline test checks the built libraries for that.)
//
// GCC's #pragma GCC target does not update __AVX2__ and the like in C++ (the
// file is preprocessed before it is parsed), hence the TACIT_TARGET_* macros.

#ifndef TACIT_ISA_LEVEL
#error "isa_begin.hpp: TACIT_ISA_LEVEL is not defined (a kernel TU sets it)"
#endif
#ifdef TACIT_ISA_NS
#error "isa_begin.hpp: a kernel header was included before the target region"
#endif

#if TACIT_ISA_LEVEL == 2
#define TACIT_ISA_NS avx512
#elif TACIT_ISA_LEVEL == 1
#define TACIT_ISA_NS avx2
#else
#define TACIT_ISA_NS generic
#endif

// clang-format off
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#if TACIT_ISA_LEVEL == 2
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512cd,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c")
#define TACIT_TARGET_AVX512 1
#define TACIT_TARGET_AVX2 1
#define TACIT_TARGET_FMA 1
#elif TACIT_ISA_LEVEL == 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c")
#define TACIT_TARGET_AVX512 0
#define TACIT_TARGET_AVX2 1
#define TACIT_TARGET_FMA 1
#endif
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__clang__)
#if TACIT_ISA_LEVEL == 2
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512cd,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c"))), apply_to = function)
#define TACIT_TARGET_AVX512 1
#define TACIT_TARGET_AVX2 1
#define TACIT_TARGET_FMA 1
#elif TACIT_ISA_LEVEL == 1
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c"))), apply_to = function)
#define TACIT_TARGET_AVX512 0
#define TACIT_TARGET_AVX2 1
#define TACIT_TARGET_FMA 1
#endif
#endif
// clang-format on

#ifndef TACIT_TARGET_AVX2 // generic level, or not x86: portable code only
#define TACIT_TARGET_AVX512 0
#define TACIT_TARGET_AVX2 0
#define TACIT_TARGET_FMA 0
#endif
