// How tests edit image bytes in place (to make an image claim something it
// should not) and keep its checksums valid, so that only the edit matters.
#ifndef CRLIB_TESTS_TASK_IMAGE_EDIT_H_
#define CRLIB_TESTS_TASK_IMAGE_EDIT_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "core/codec.h"
#include "core/crc32c.h"
#include "core/image_format.h"
#include "core/records.h"
#include "tests/hardware.h"
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

// A user xstate component this CPU does not enable: AMX, APX, PKRU or
// MPX, whichever is missing first (bit 62 is reserved, never enabled).
inline int XsaveBitThisCpuLacks() {
  const uint64_t xcr0 = Xcr0();
  for (int candidate : {18, 17, 19, 9, 3, 4}) {
    if (!(xcr0 & (uint64_t{1} << candidate))) return candidate;
  }
  return 62;
}

// Adds xsave feature `bit` to the header of image `bytes` and repairs the
// header checksum. docs/FORMAT.md: xsave_features (u64) at 24,
// header_length (u32) at 12, header_crc (u32) at 44 = CRC-32C of the
// header with that field zeroed. Returns false if `bytes` is no image.
inline bool ForgeXsaveFeature(std::string* bytes, int bit) {
  if (bytes->size() < 48 || bytes->substr(0, 8) != "CRLIBIMG") return false;
  uint32_t header_length;
  uint64_t features;
  memcpy(&header_length, &(*bytes)[12], 4);
  memcpy(&features, &(*bytes)[24], 8);
  if (header_length < 48 || header_length > bytes->size()) return false;
  features |= uint64_t{1} << bit;
  memcpy(&(*bytes)[24], &features, 8);
  memset(&(*bytes)[44], 0, 4);
  uint32_t crc = Crc32c(0, bytes->data(), header_length);
  memcpy(&(*bytes)[44], &crc, 4);
  return true;
}

}  // namespace crlib::test

#endif  // CRLIB_TESTS_TASK_IMAGE_EDIT_H_
