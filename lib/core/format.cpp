#include <tacit/core/format.hpp>

#include <cstdio>

namespace tacit::inline v1 {

std::string format_number(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

} // namespace tacit::inline v1
