#pragma once
/// \file version.hpp
/// Version of tacit: of the headers a program was compiled with (constants)
/// and of the library it runs with (run-time queries). The public API lives in
/// the inline namespace tacit::v1, so that a program built against one ABI
/// never links silently against another.
///
/// Thread safety: the queries are reentrant.

#include <tacit/config.hpp>
#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// Version of the headers as "major.minor.patch".
inline constexpr const char *version = TACIT_VERSION_STRING;

/// Version of the library linked at run time as "major.minor.patch".
TACIT_EXPORT const char *runtime_version() noexcept;

/// The optional components this library was built with, e.g. "core onnx lp
/// image idx".
TACIT_EXPORT const char *runtime_components() noexcept;

} // namespace tacit::inline v1
