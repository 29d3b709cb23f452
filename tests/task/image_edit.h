// How tests edit image bytes in place (to make an image claim something it
// should not) and keep its checksums valid, so that only the edit matters.
#ifndef CRLIB_TESTS_TASK_IMAGE_EDIT_H_
#define CRLIB_TESTS_TASK_IMAGE_EDIT_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "core/codec.h"
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

// Rewrites every record of type R in `image` with `edit`; each payload
// must keep its size (fixed-width fields, not lists that grow). Returns
// how many records were edited.
template <typename R>
int EditRecordsOfType(std::string* image, const std::function<void(R*)>& edit) {
  int edited = 0;
  EditRecords(image, [&](const RecordHeader& h, uint8_t* payload) {
    if (h.type != static_cast<uint32_t>(R::kType)) return;
    R rec;
    ASSERT_TRUE(DecodeFields(absl::MakeConstSpan(payload, h.length), &rec).ok());
    edit(&rec);
    Bytes bytes = EncodeFields(rec);
    ASSERT_EQ(bytes.size(), h.length);
    memcpy(payload, bytes.data(), bytes.size());
    ++edited;
  });
  return edited;
}

}  // namespace crlib::test

#endif  // CRLIB_TESTS_TASK_IMAGE_EDIT_H_
