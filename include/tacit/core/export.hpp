#pragma once
/// \file export.hpp
/// Symbol visibility. tacit's libraries are built with hidden symbols
/// (-fvisibility=hidden): what a public header marks TACIT_EXPORT is the
/// binary interface, and everything else (the kernels and helpers in
/// lib/*/detail) stays internal to the library.

#if defined(__GNUC__) || defined(__clang__)
#define TACIT_EXPORT __attribute__((visibility("default")))
#else
#define TACIT_EXPORT
#endif
