#pragma once
/// \file format.hpp
/// How tacit prints numbers in messages and reports: printf's %g with a
/// given number of significant digits (17 reads back to the same double).
///
/// Thread safety: reentrant.

#include <string>

#include <tacit/core/export.hpp>

namespace tacit::inline v1 {

/// v with `digits` significant digits ("%.*g").
TACIT_EXPORT std::string format_number(double v, int digits = 10);

} // namespace tacit::inline v1
