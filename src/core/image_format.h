// The fixed parts of the image: file header and record header. The layout
// is specified in docs/FORMAT.md; these structs are that layout.
#ifndef CRLIB_CORE_IMAGE_FORMAT_H_
#define CRLIB_CORE_IMAGE_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace crlib {

inline constexpr char kImageMagic[8] = {'C', 'R', 'L', 'I', 'B', 'I', 'M', 'G'};
inline constexpr uint32_t kFormatVersion = 1;

// Limits a reader enforces before it allocates anything.
inline constexpr uint32_t kMaxHeaderLength = 4096;
inline constexpr uint32_t kMaxPayloadLength = 16u << 20;
inline constexpr uint64_t kMaxBulkLength = uint64_t{1} << 40;

enum class CpuFamily : uint32_t { kUnknown = 0, kX86_64 = 1 };

// Image flags (FileHeader::flags).
inline constexpr uint32_t kImageCompressed = 1u << 0;  // pages are zstd frames
inline constexpr uint32_t kImageMappable = 1u << 1;    // raw pages, page-aligned
inline constexpr uint32_t kImageKnownFlags = kImageCompressed | kImageMappable;

// Record flags (RecordHeader::flags).
inline constexpr uint32_t kRecordSkippable = 1u << 0;  // unknown types may be skipped
inline constexpr uint32_t kRecordKnownFlags = kRecordSkippable;
// Never in an image: marks a record whose bulk was left out of a dump's
// in-memory copy of its records (ImageWriter::CopyPrefix). Readers refuse
// it unless ReaderOptions::accept_elided_bulk.
inline constexpr uint32_t kRecordBulkElided = 1u << 31;

// File header, at offset 0. Followed by the kernel release string
// (kernel_release_length bytes) and zero padding up to header_length.
struct FileHeader {
  char magic[8];
  uint32_t format_version;
  uint32_t header_length;  // this struct + string + padding; multiple of 8
  uint32_t cpu_family;     // CpuFamily
  uint32_t page_size;
  uint64_t xsave_features;  // XCR0 of the dumping machine
  uint32_t xsave_size;      // kernel xstate size in bytes
  uint32_t flags;           // kImage*
  uint32_t kernel_release_length;
  uint32_t header_crc;  // CRC-32C of all header_length bytes, this field as 0
};
static_assert(sizeof(FileHeader) == 48);

// Before every record. Followed by `length` payload bytes, zero padding to a
// multiple of 8, `bulk_pad` zero bytes, `bulk_length` bulk bytes and zero
// padding to a multiple of 8.
struct RecordHeader {
  uint32_t type;  // RecordType
  uint32_t flags;  // kRecord*
  uint32_t length;  // payload bytes
  uint32_t payload_crc;  // CRC-32C of the payload
  uint64_t self;    // ObjectRef this record defines, or 0
  uint64_t parent;  // ObjectRef of the owner, or 0
  uint64_t bulk_length;
  uint32_t bulk_pad;  // aligns bulk data (to the page size in mappable images)
  uint32_t bulk_crc;  // CRC-32C of the bulk bytes
  uint32_t reserved;  // 0
  uint32_t header_crc;  // CRC-32C of the 52 bytes before it
};
static_assert(sizeof(RecordHeader) == 56);

inline constexpr uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// What the header says, in a form code can use.
struct ImageInfo {
  uint32_t format_version = kFormatVersion;
  CpuFamily cpu_family = CpuFamily::kUnknown;
  uint32_t page_size = 4096;
  uint64_t xsave_features = 0;
  uint32_t xsave_size = 0;
  uint32_t flags = 0;
  std::string kernel_release;
};

const char* CpuFamilyName(CpuFamily family);

}  // namespace crlib

#endif  // CRLIB_CORE_IMAGE_FORMAT_H_
