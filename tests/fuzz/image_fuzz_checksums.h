#ifndef CRLIB_TESTS_FUZZ_IMAGE_FUZZ_CHECKSUMS_H_
#define CRLIB_TESTS_FUZZ_IMAGE_FUZZ_CHECKSUMS_H_

#include <cstddef>
#include <cstdint>

namespace crlib::testing {

// Walks `data` as an image (docs/FORMAT.md) as far as its lengths allow and
// rewrites, in place, the file header CRC, every record's payload, bulk and
// header CRCs, and the end record's totals, so that whatever else is wrong
// with the bytes, the checksums are not. Never reads or writes outside
// [data, data + size).
void RepairImageChecksums(uint8_t* data, size_t size);

}  // namespace crlib::testing

#endif  // CRLIB_TESTS_FUZZ_IMAGE_FUZZ_CHECKSUMS_H_
