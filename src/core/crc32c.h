// CRC-32C (Castagnoli), the checksum of every image record. Uses the SSE4.2
// instruction when the CPU has it and a table otherwise; both give the same
// value, so an image written on one machine verifies on any other.
#ifndef CRLIB_CORE_CRC32C_H_
#define CRLIB_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace crlib {

// Extends `crc` (0 to start) over `size` bytes at `data`.
uint32_t Crc32c(uint32_t crc, const void* data, size_t size);

}  // namespace crlib

#endif  // CRLIB_CORE_CRC32C_H_
