#include "tests/fuzz/image_reader_fuzz_entry.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "cr/inspect.h"
#include "core/status.h"
#include "mm/page_array.h"

namespace crlib::testing {
namespace {

// Memory that does not tell its size, like a pipe (`crlib inspect -`): the
// reader cannot check lengths against the bytes left.
class StreamSource final : public ByteSource {
 public:
  explicit StreamSource(absl::Span<const uint8_t> data) : memory_(data) {}
  absl::StatusOr<size_t> Read(void* buffer, size_t size) override {
    return memory_.Read(buffer, size);
  }

 private:
  MemorySource memory_;
};

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "fuzz: %s\n", what);
  abort();
}

// The restore path (LoadPages): every page record into memory.
absl::Status ReadAllPages(absl::Span<const uint8_t> bytes) {
  MemorySource source(bytes);
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<ImageReader> reader, ImageReader::Open(&source));
  const uint64_t page_size = reader->info().page_size;
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* record, reader->Next());
    if (record == nullptr) return absl::OkStatus();
    if (record->type() != RecordType::kPages) continue;
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader->Decode<PagesRecord>(*record));
    // Scratch memory is allocated only once ReadPages has validated the
    // record and asks for it. A zstd record may legitimately expand a small
    // input a lot, so cap it at 64 MiB to keep the fuzzer's memory bounded.
    std::vector<uint8_t> scratch;
    uint64_t used = 0;
    CRLIB_RETURN_IF_ERROR(ReadPages(
        reader.get(), *record, pages,
        [&](uint64_t, uint64_t count) -> absl::StatusOr<uint8_t*> {
          if (scratch.empty()) {
            if (pages.page_count > (uint64_t{64} << 20) / page_size) {
              return absl::ResourceExhaustedError("fuzz: page record too large for scratch");
            }
            scratch.resize(pages.page_count * page_size);
          }
          // ReadPages promises runs that add up to page_count.
          if (count > (scratch.size() - used) / page_size) {
            Die("ReadPages asked for more than page_count pages");
          }
          uint8_t* dest = scratch.data() + used;
          used += count * page_size;
          return dest;
        }));
  }
}

}  // namespace

absl::Status FuzzImageReader(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> bytes(data, size);
  // `crlib inspect --json` of a file.
  std::string json;
  MemorySource json_source(bytes);
  absl::Status json_status = InspectImage(&json_source, {.json = true}, &json);
  // `crlib inspect` (the text tree, which also places page runs inside their
  // VMAs) of a file and of a pipe: the verdict and the text must not depend
  // on whether the reader knows how many bytes are left.
  std::string text, streamed;
  MemorySource text_source(bytes);
  absl::Status text_status = InspectImage(&text_source, {}, &text);
  StreamSource stream_source(bytes);
  absl::Status stream_status = InspectImage(&stream_source, {}, &streamed);
  if (json_status.ok() != text_status.ok() || text_status.ok() != stream_status.ok()) {
    Die("inspect's verdict depends on the output format or the source");
  }
  if (text_status.ok() && text != streamed) Die("inspect of a file and of a pipe differ");
  absl::Status pages_status = ReadAllPages(bytes);
  return json_status.ok() ? pages_status : json_status;
}

}  // namespace crlib::testing
