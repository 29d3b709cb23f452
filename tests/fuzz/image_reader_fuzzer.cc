// libFuzzer target for the image reader: `make fuzz`.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/image_reader_fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)crlib::testing::FuzzImageReader(data, size);
  return 0;
}
