// Where images are written to and read from: any fd (file, pipe, socket),
// memory, or a file that appears under its final name only when complete.
#ifndef CRLIB_CORE_BYTE_STREAM_H_
#define CRLIB_CORE_BYTE_STREAM_H_

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace crlib {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Writes all bytes of `iov`, in order, or fails.
  virtual absl::Status Write(absl::Span<const iovec> iov) = 0;
};

// Writes to a borrowed fd (not closed), with writev; handles short writes.
class FdSink final : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  absl::Status Write(absl::Span<const iovec> iov) override;

 private:
  int fd_;
};

// Appends to a caller-owned vector. For tests, fuzzing and benchmarks.
class MemorySink final : public ByteSink {
 public:
  explicit MemorySink(std::vector<uint8_t>* out) : out_(out) {}
  absl::Status Write(absl::Span<const iovec> iov) override;

 private:
  std::vector<uint8_t>* out_;
};

// A file written under a temporary name in the target's directory and
// renamed over `path` by Commit() after fsync. Destroying it uncommitted
// removes the temporary, so a failed or interrupted write never leaves a
// file under the final name. Not thread-safe.
class AtomicFileSink final : public ByteSink {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileSink>> Create(const std::string& path);
  ~AtomicFileSink() override;
  absl::Status Write(absl::Span<const iovec> iov) override;
  absl::Status Commit();
  const std::string& temp_path() const { return temp_path_; }

 private:
  AtomicFileSink(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd), sink_(fd) {}
  std::string path_;
  std::string temp_path_;
  int fd_;
  FdSink sink_;
  bool committed_ = false;
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `size` bytes; fewer only at the end of the stream.
  virtual absl::StatusOr<size_t> Read(void* buffer, size_t size) = 0;
  // Skips `size` bytes without looking at them; false at the end of stream.
  virtual absl::StatusOr<bool> Skip(uint64_t size);
  // Bytes left, when the source knows (a regular file, memory).
  virtual std::optional<uint64_t> Remaining() const { return std::nullopt; }
  // A file descriptor whose offset 0 is the stream's start, for mmap; -1 if none.
  virtual int MappableFd() const { return -1; }
};

// Reads from a borrowed fd. A regular file read from offset 0 is mappable.
// Small reads (record headers and payloads) come from a 64 KiB buffer, so
// reading an image costs a few system calls per 64 KiB of records; large
// reads (page data) go straight to the caller's memory. The fd's offset is
// therefore ahead of what was consumed.
class FdSource final : public ByteSource {
 public:
  explicit FdSource(int fd);
  absl::StatusOr<size_t> Read(void* buffer, size_t size) override;
  absl::StatusOr<bool> Skip(uint64_t size) override;
  std::optional<uint64_t> Remaining() const override;
  int MappableFd() const override { return mappable_ ? fd_ : -1; }

 private:
  // read(2) into `to` (room for `max`) until at least `min` bytes or the
  // end of the stream; returns the count.
  absl::StatusOr<size_t> ReadFd(char* to, size_t min, size_t max);

  static constexpr size_t kBufferSize = 64 << 10;
  int fd_;
  bool regular_ = false;
  bool mappable_ = false;
  uint64_t size_ = 0;
  uint64_t position_ = 0;  // bytes consumed by the caller
  std::unique_ptr<char[]> buffer_;
  size_t buffer_pos_ = 0, buffer_end_ = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(absl::Span<const uint8_t> data) : data_(data) {}
  absl::StatusOr<size_t> Read(void* buffer, size_t size) override;
  absl::StatusOr<bool> Skip(uint64_t size) override;
  std::optional<uint64_t> Remaining() const override { return data_.size() - pos_; }

 private:
  absl::Span<const uint8_t> data_;
  size_t pos_ = 0;
};

}  // namespace crlib

#endif  // CRLIB_CORE_BYTE_STREAM_H_
