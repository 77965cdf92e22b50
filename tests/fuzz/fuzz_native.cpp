// libFuzzer target: the native model reader must either return a model or
// throw tacit::FileError for any input. Input layout: one control byte, then
// the file. When the control byte is even, the header and section CRCs are
// recomputed before reading, so that mutations reach the content checks behind
// the CRCs; when odd, the bytes are read as they are. Seed corpus:
// corpus/native (valid files with both control bytes).
#include <tacit/io/io.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <zlib.h>

namespace {
std::uint32_t crc(const std::string &s, std::size_t from, std::size_t to) {
  return static_cast<std::uint32_t>(::crc32(
      0, reinterpret_cast<const Bytef *>(s.data() + from), static_cast<uInt>(to - from)));
}

/// Recomputes the header and section CRCs, so that mutations of the content
/// are not all caught by the CRC checks.
void reseal(std::string &bytes) {
  if (bytes.size() < 56)
    return;
  auto put = [&](std::size_t at, std::uint32_t v) {
    std::memcpy(bytes.data() + at, &v, 4);
  };
  put(52, crc(bytes, 0, 52));
  std::size_t at = 56;
  while (at + 16 <= bytes.size()) {
    std::uint64_t len;
    std::memcpy(&len, bytes.data() + at + 8, 8);
    if (len > bytes.size() - at - 16 || bytes.size() - at - 16 - len < 4)
      break;
    put(at + 16 + len, crc(bytes, at, at + 16 + len));
    at += 16 + len + 4;
  }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string bytes(reinterpret_cast<const char *>(data) + 1, size - 1);
  if ((data[0] & 1) == 0)
    reseal(bytes);
  try {
    (void)tacit::parse_model_native<double>(bytes, "fuzz.tacit");
  } catch (const tacit::FileError &) {
  }
  try {
    (void)tacit::parse_model_native<float>(bytes, "fuzz.tacit");
  } catch (const tacit::FileError &) {
  }
  return 0;
}
