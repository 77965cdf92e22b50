#pragma once
// The namespace and target macros of kernel headers (core/detail/simd.hpp and
// the *_kernels.hpp headers). A kernel translation unit defines them in
// isa_begin.hpp for its level; anywhere else (tests, benchmarks) the kernels
// are the generic ones.
#ifndef TACIT_ISA_NS
#define TACIT_ISA_NS generic
#define TACIT_TARGET_AVX2 0
#define TACIT_TARGET_AVX512 0
#define TACIT_TARGET_FMA 0
#endif
