#include "tests/fuzz/image_fuzz_checksums.h"

#include <cstddef>
#include <cstring>

#include "core/crc32c.h"
#include "core/image_format.h"
#include "core/records.h"

namespace crlib::testing {

void RepairImageChecksums(uint8_t* data, size_t size) {
  if (size < sizeof(FileHeader)) return;
  FileHeader fh;
  memcpy(&fh, data, sizeof(fh));
  uint64_t pos = fh.header_length;
  if (pos >= sizeof(FileHeader) && pos <= size) {
    fh.header_crc = 0;
    memcpy(data, &fh, sizeof(fh));
    fh.header_crc = Crc32c(0, data, pos);
    memcpy(data + offsetof(FileHeader, header_crc), &fh.header_crc, sizeof(uint32_t));
  } else {
    return;
  }
  uint64_t records = 0, payload_bytes = 0, bulk_bytes = 0;
  while (size - pos >= sizeof(RecordHeader)) {
    RecordHeader h;
    memcpy(&h, data + pos, sizeof(h));
    const uint64_t payload_at = pos + sizeof(RecordHeader);
    if (h.length > size - payload_at) return;
    uint8_t* payload = data + payload_at;
    if (h.type == static_cast<uint32_t>(RecordType::kEnd) && h.length >= sizeof(EndRecord)) {
      const uint64_t totals[3] = {records, payload_bytes, bulk_bytes};
      memcpy(payload, totals, sizeof(totals));
    }
    h.payload_crc = Crc32c(0, payload, h.length);
    uint64_t next = payload_at + AlignUp(h.length, 8);
    if (h.bulk_length != 0 && next <= size) {
      const uint64_t bulk_at = next + h.bulk_pad;
      if (bulk_at <= size && h.bulk_length <= size - bulk_at) {
        h.bulk_crc = Crc32c(0, data + bulk_at, h.bulk_length);
      }
      next = bulk_at + AlignUp(h.bulk_length, 8);
    }
    h.header_crc = Crc32c(0, &h, offsetof(RecordHeader, header_crc));
    memcpy(data + pos, &h, sizeof(h));
    ++records;
    payload_bytes += h.length;
    bulk_bytes += h.bulk_length;
    if (h.type == static_cast<uint32_t>(RecordType::kEnd) || next > size) return;
    pos = next;
  }
}

}  // namespace crlib::testing
