// libFuzzer target: the Matrix Market reader must either return a matrix or
// throw tacit::FileError for any input; anything else (a crash, a sanitizer
// report, another exception, a hang) is a bug.
#include <tacit/io.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char *>(data), size);
  try {
    const auto m = tacit::parse_matrix_market<double>(text, "fuzz.mtx");
    // A matrix that was accepted is well formed: products work on it.
    std::vector<double> x(static_cast<std::size_t>(m.cols()), 1.0),
        y(static_cast<std::size_t>(m.rows()));
    m.apply(tacit::Mode::normal, 1.0, std::span<const double>(x), 0.0,
            std::span<double>(y), tacit::Execution::reference);
  } catch (const tacit::FileError &) {
  }
  try {
    (void)tacit::parse_matrix_market<float>(text, "fuzz.mtx");
  } catch (const tacit::FileError &) {
  }
  return 0;
}
