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

namespace {

// Polynomials over GF(2) modulo the CRC polynomial, in the reflected order
// the tables use: bit 31 holds the coefficient of x^0, bit 0 that of x^31.
constexpr std::uint32_t x_to_the_0 = 0x80000000u;

/// a(x) b(x) mod P(x): b is multiplied by x once per coefficient of a, from
/// x^0 upward (a right shift, reduced by P when x^31's coefficient falls out).
std::uint32_t multiply_mod_p(std::uint32_t a, std::uint32_t b) noexcept {
  std::uint32_t product = 0;
  for (std::uint32_t bit = x_to_the_0; bit != 0 && a != 0; bit >>= 1) {
    if (a & bit) {
      product ^= b;
      a ^= bit;
    }
    b = (b & 1u) ? (b >> 1) ^ 0xEDB88320u : b >> 1;
  }
  return product;
}

/// x^(8 bytes) mod P(x) by squaring: the operator that appends `bytes` zero
/// bytes to a message whose CRC register holds r (r x^(8 bytes) mod P).
std::uint32_t x_to_the_8n_mod_p(std::uint64_t bytes) noexcept {
  std::uint32_t result = x_to_the_0;
  std::uint32_t power = x_to_the_0 >> 8; // x^8
  for (; bytes != 0; bytes >>= 1) {
    if (bytes & 1u)
      result = multiply_mod_p(result, power);
    power = multiply_mod_p(power, power);
  }
  return result;
}

} // namespace

std::uint32_t crc32_combine(std::uint32_t crc_first, std::uint32_t crc_second,
                            std::uint64_t second_size) noexcept {
  // The pre- and post-inversions of the two CRCs cancel in this form: the
  // CRC is affine in the message, and shifting the first part's CRC by the
  // second part's length, then adding the second's, gives the whole's.
  return multiply_mod_p(x_to_the_8n_mod_p(second_size), crc_first) ^ crc_second;
}

} // namespace tacit::inline v1::detail
