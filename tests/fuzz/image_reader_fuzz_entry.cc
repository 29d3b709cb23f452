#include "tests/fuzz/image_reader_fuzz_entry.h"

#include <vector>

#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "core/inspect.h"
#include "core/status.h"
#include "mm/page_array.h"

namespace crlib::testing {

absl::Status FuzzImageReader(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> bytes(data, size);
  {
    MemorySource source(bytes);
    std::string out;
    CRLIB_RETURN_IF_ERROR(InspectImage(&source, {.json = true}, &out));
  }
  // The restore path: page records into memory. Scratch is bounded by the
  // input's size, which bounds any valid page count.
  MemorySource source(bytes);
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<ImageReader> reader, ImageReader::Open(&source));
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* record, reader->Next());
    if (record == nullptr) return absl::OkStatus();
    if (record->type() != RecordType::kPages) continue;
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader->Decode<PagesRecord>(*record));
    // One scratch buffer per record, sized before any run asks for memory;
    // capped so a forged page count cannot exhaust the fuzzer's memory.
    uint64_t want = pages.page_count * reader->info().page_size;
    if (pages.page_count > (uint64_t{64} << 20) / reader->info().page_size) {
      return absl::ResourceExhaustedError("fuzz: page record too large for scratch");
    }
    std::vector<uint8_t> scratch(want);
    uint64_t used = 0;
    CRLIB_RETURN_IF_ERROR(ReadPages(
        reader.get(), *record, pages,
        [&](uint64_t, uint64_t count) -> absl::StatusOr<uint8_t*> {
          uint8_t* dest = scratch.data() + used;
          used += count * reader->info().page_size;  // ReadPages checked the runs sum
          return dest;
        }));
  }
}

}  // namespace crlib::testing
