// format_number against the standard stream's default notation with the same
// precision (an independent implementation of "%.*g") and a round trip.

#include <catch2/catch.hpp>

#include <tacit/core/format.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <sstream>
#include <string>

using namespace tacit;

namespace {

std::string stream_format(double v, int digits) {
  std::ostringstream s;
  s.precision(digits);
  s << v;
  return s.str();
}

} // namespace

TEST_CASE("format_number prints %g with the given significant digits", "[format]") {
  using limits = std::numeric_limits<double>;
  const double values[] = {0.0,          -0.0,         1.0,          0.1,
                           1.0 / 3,      -2.5e-300,    6.02214076e23, 123456789.0,
                           1e-5,         1e-4,         99999.95,     limits::denorm_min(),
                           limits::max(), limits::infinity(), -limits::infinity()};
  for (const double v : values)
    for (const int digits : {1, 3, 6, 9, 10, 17}) {
      INFO(v << " with " << digits << " digits");
      CHECK(format_number(v, digits) == stream_format(v, digits));
    }
  CHECK(format_number(1.0 / 3) == "0.3333333333"); // 10 digits by default
  CHECK(format_number(1.0 / 3, 3) == "0.333");
  CHECK(format_number(1e-5, 6) == "1e-05");
  CHECK(format_number(1.5e6, 6) == "1.5e+06");
  CHECK(format_number(limits::quiet_NaN()).find("nan") != std::string::npos);
}

TEST_CASE("format_number with 17 digits reads back to the same double", "[format]") {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-1070, 1020);
  for (int i = 0; i < 2000; ++i) {
    const double v = std::ldexp(mantissa(rng), exponent(rng));
    const std::string text = format_number(v, 17);
    INFO(text);
    CHECK(std::strtod(text.c_str(), nullptr) == v);
  }
}
