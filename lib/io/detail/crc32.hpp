#pragma once
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib's crc32()) for
// the checksums of native model files. Own code so that the core library does
// not link zlib: slicing by 8 (eight 256-entry tables, one 8-byte word per
// step) runs at several GB/s, far above the disk.

#include <cstddef>
#include <cstdint>

namespace tacit::inline v1::detail {

/// The running CRC-32 of `size` more bytes: crc32_update(0, data, n) is the
/// CRC of data[0, n); chaining calls equals one call on the concatenation.
std::uint32_t crc32_update(std::uint32_t crc, const void *data, std::size_t size) noexcept;

} // namespace tacit::inline v1::detail
