#pragma once
/// \file version.hpp
#define TACIT_VERSION_MAJOR 0
#define TACIT_VERSION_MINOR 1
#define TACIT_VERSION_PATCH 0
namespace tacit {
/// Library version as "major.minor.patch".
inline constexpr const char *version = "0.1.0";
} // namespace tacit
