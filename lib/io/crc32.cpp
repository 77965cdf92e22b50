// CRC-32 by slicing by 8 (see detail/crc32.hpp).

#include "io/detail/crc32.hpp"

#include <array>
#include <cstring>

namespace tacit::inline v1::detail {

namespace {

using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int k = 0; k < 8; ++k)
      c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][b] = c;
  }
  // t[s][b]: the CRC contribution of byte b followed by s zero bytes.
  for (std::size_t s = 1; s < 8; ++s)
    for (std::size_t b = 0; b < 256; ++b)
      t[s][b] = (t[s - 1][b] >> 8) ^ t[0][t[s - 1][b] & 0xFFu];
  return t;
}

constexpr Tables tables = make_tables();

} // namespace

std::uint32_t crc32_update(std::uint32_t crc, const void *data, std::size_t size) noexcept {
  const auto *p = static_cast<const unsigned char *>(data);
  std::uint32_t c = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    // Little-endian word (the native format is little-endian only).
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = tables[7][lo & 0xFFu] ^ tables[6][(lo >> 8) & 0xFFu] ^
        tables[5][(lo >> 16) & 0xFFu] ^ tables[4][lo >> 24] ^ tables[3][hi & 0xFFu] ^
        tables[2][(hi >> 8) & 0xFFu] ^ tables[1][(hi >> 16) & 0xFFu] ^ tables[0][hi >> 24];
  }
  for (; size > 0; ++p, --size)
    c = tables[0][(c ^ *p) & 0xFFu] ^ (c >> 8);
  return ~c;
}

} // namespace tacit::inline v1::detail
