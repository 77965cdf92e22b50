// Closes the target region opened by isa_begin.hpp (no include guard).
#if TACIT_TARGET_AVX2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
