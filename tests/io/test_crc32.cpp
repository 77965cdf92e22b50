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

TEST_CASE("crc32_combine equals the CRC of the concatenation", "[io][crc32]") {
  using tacit::detail::crc32_combine;
  using tacit::detail::crc32_update;
  std::mt19937_64 gen(11);
  // Lengths that exercise every bit of the squaring loop up to 2^20 bytes,
  // empty parts on either side, and zlib's own crc32_combine as a second
  // reference (independent code, same definition).
  std::string s(std::size_t(1) << 20 | 12345, '\0');
  for (auto &ch : s)
    ch = static_cast<char>(gen());
  const auto whole = crc32_update(0, s.data(), s.size());
  for (std::size_t split : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(8),
                            std::size_t(4096), s.size() / 2, s.size() - 1, s.size()}) {
    const auto first = crc32_update(0, s.data(), split);
    const auto second = crc32_update(0, s.data() + split, s.size() - split);
    CHECK(crc32_combine(first, second, s.size() - split) == whole);
    CHECK(crc32_combine(first, second, s.size() - split) ==
          static_cast<std::uint32_t>(::crc32_combine(first, second,
                                                     static_cast<z_off_t>(s.size() - split))));
  }
  // Many parts combined left to right, as ranks' shares are.
  for (int parts : {2, 3, 5, 64}) {
    std::uint32_t combined = 0;
    std::size_t at = 0;
    for (int r = 0; r < parts; ++r) {
      const std::size_t end = s.size() * static_cast<std::size_t>(r + 1) /
                              static_cast<std::size_t>(parts);
      combined =
          crc32_combine(combined, crc32_update(0, s.data() + at, end - at), end - at);
      at = end;
    }
    CHECK(combined == whole);
  }
  // A length beyond 32 bits (shifting by zeros: the CRC of zeros alone is not
  // needed, zlib's combine with a 64-bit offset is the reference).
  if constexpr (sizeof(z_off_t) >= 8) {
    const std::uint64_t huge = (std::uint64_t(1) << 36) + 3;
    CHECK(crc32_combine(0x12345678u, 0x9abcdef0u, huge) ==
          static_cast<std::uint32_t>(
              ::crc32_combine(0x12345678u, 0x9abcdef0u, static_cast<z_off_t>(huge))));
  }
}
