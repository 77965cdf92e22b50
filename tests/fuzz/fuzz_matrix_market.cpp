// libFuzzer target: the Matrix Market reader must either return a matrix or
// throw tacit::FileError for any input; anything else (a crash, a sanitizer
// report, another exception, a hang) is a bug.
#include <tacit/io/io.hpp>

#include "io/detail/io_common.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  // Legitimate but slow under the sanitizers: millions of empty rows.
  tacit::detail::matrix_market_base_dimension_limit = 1 << 14;
  const std::string_view text(reinterpret_cast<const char *>(data), size);
  try {
    const auto m = tacit::parse_matrix_market<double>(text, "fuzz.mtx");
    // A matrix that was accepted is well formed: products work on it. (Empty
    // matrices are skipped: LinearOperator::apply's overlap check forms
    // out-of-range pointers for them, which UBSan reports; see lib/core/operator.cpp.)
    if (m.rows() > 0 && m.cols() > 0) {
      std::vector<double> x(static_cast<std::size_t>(m.cols()), 1.0),
          y(static_cast<std::size_t>(m.rows()));
      m.apply(tacit::Mode::normal, 1.0, std::span<const double>(x), 0.0,
              std::span<double>(y), tacit::Execution::reference);
    }
  } catch (const tacit::FileError &) {
  }
  try {
    (void)tacit::parse_matrix_market<float>(text, "fuzz.mtx");
  } catch (const tacit::FileError &) {
  }
  return 0;
}
