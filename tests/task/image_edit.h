// How tests edit image bytes in place (to make an image claim something it
// should not) and keep its checksums valid, so that only the edit matters.
#ifndef CRLIB_TESTS_TASK_IMAGE_EDIT_H_
#define CRLIB_TESTS_TASK_IMAGE_EDIT_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "core/image_format.h"
#include "core/records.h"
#include "tests/fuzz/image_fuzz_checksums.h"

namespace crlib::test {

// Calls `edit` with the header and payload of every record of `image`
// (docs/FORMAT.md), which may rewrite payload bytes but not their number,
// then repairs every checksum.
inline void EditRecords(std::string* image,
                        const std::function<void(const RecordHeader&, uint8_t* payload)>& edit) {
  auto* data = reinterpret_cast<uint8_t*>(image->data());
  FileHeader fh;
  if (image->size() < sizeof(fh)) return;
  memcpy(&fh, data, sizeof(fh));
  for (uint64_t pos = fh.header_length; pos + sizeof(RecordHeader) <= image->size();) {
    RecordHeader h;
    memcpy(&h, data + pos, sizeof(h));
    if (pos + sizeof(h) + h.length > image->size()) break;
    edit(h, data + pos + sizeof(h));
    pos += sizeof(h) + AlignUp(h.length, 8);
    if (h.bulk_length) pos += h.bulk_pad + AlignUp(h.bulk_length, 8);
  }
  testing::RepairImageChecksums(data, image->size());
}

}  // namespace crlib::test

#endif  // CRLIB_TESTS_TASK_IMAGE_EDIT_H_
