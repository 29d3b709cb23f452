#ifndef CRLIB_TESTS_FUZZ_IMAGE_READER_FUZZ_ENTRY_H_
#define CRLIB_TESTS_FUZZ_IMAGE_READER_FUZZ_ENTRY_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace crlib::testing {

// Reads `data` as an image the way inspect and restore do: every record
// decoded, every page record's pages read into scratch memory. Returns the
// reader's verdict; must never crash, whatever the bytes.
absl::Status FuzzImageReader(const uint8_t* data, size_t size);

}  // namespace crlib::testing

#endif  // CRLIB_TESTS_FUZZ_IMAGE_READER_FUZZ_ENTRY_H_
