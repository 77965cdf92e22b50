// CRC-32 by slicing against zlib's crc32() and a bit-by-bit reference.

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>

#include <zlib.h>

#include "io/detail/crc32.hpp"

namespace {

std::uint32_t bitwise_crc(const std::string &s) {
  std::uint32_t c = 0xffffffffu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int b = 0; b < 8; ++b)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

} // namespace

TEST_CASE("crc32_update matches zlib and a bitwise reference, chained at any split",
          "[io][crc32]") {
  using tacit::detail::crc32_update;
  CHECK(crc32_update(0, "", 0) == 0u);
  // The check value of CRC-32/ISO-HDLC.
  CHECK(crc32_update(0, "123456789", 9) == 0xCBF43926u);
  std::mt19937_64 gen(7);
  for (std::size_t length : {1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099}) {
    std::string s(length, '\0');
    for (auto &ch : s)
      ch = static_cast<char>(gen());
    const auto whole = crc32_update(0, s.data(), s.size());
    CHECK(whole == bitwise_crc(s));
    CHECK(whole == static_cast<std::uint32_t>(
                       ::crc32(0, reinterpret_cast<const Bytef *>(s.data()),
                               static_cast<uInt>(s.size()))));
    const std::size_t split = gen() % (length + 1);
    const auto first = crc32_update(0, s.data(), split);
    CHECK(crc32_update(first, s.data() + split, length - split) == whole);
  }
}
