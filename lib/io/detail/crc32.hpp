#pragma once
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib's crc32()) for
// the checksums of native model files. Own code so that the core library does
// not link zlib: slicing by 8 (eight 256-entry tables, one 8-byte word per
// step) runs at several GB/s, far above the disk.

#include <cstddef>
#include <cstdint>

#include <tacit/core/export.hpp>

namespace tacit::inline v1::detail {

/// The running CRC-32 of `size` more bytes: crc32_update(0, data, n) is the
/// CRC of data[0, n); chaining calls equals one call on the concatenation.
/// Exported (with crc32_combine) for the mpi component, which checks the
/// sections of a file that its ranks read in slices.
TACIT_EXPORT std::uint32_t crc32_update(std::uint32_t crc, const void *data,
                                        std::size_t size) noexcept;

/// The CRC-32 of the concatenation of two byte strings from their CRCs and
/// the second one's length (in O(log second_size)): ranks that each checksum
/// their own share of a section combine the shares in order.
TACIT_EXPORT std::uint32_t crc32_combine(std::uint32_t crc_first, std::uint32_t crc_second,
                                         std::uint64_t second_size) noexcept;

} // namespace tacit::inline v1::detail
