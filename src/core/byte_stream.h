// Where images are written to and read from: any fd (file, pipe, socket),
// memory, or a file that appears under its final name only when complete.
#ifndef CRLIB_CORE_BYTE_STREAM_H_
#define CRLIB_CORE_BYTE_STREAM_H_

#include <sys/types.h>
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
  // Sinks that can seek (image files): leave `bytes` of zeros (a hole)
  // and go on after them; write `iov` at `offset`, before the current
  // end, without moving it. Others: Unimplemented.
  virtual absl::Status SkipAhead(uint64_t bytes);
  virtual absl::Status WriteAt(uint64_t offset, absl::Span<const iovec> iov);
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

// Where an image is written: a ByteSink that becomes the image only when
// Commit() says it is complete. Destroyed uncommitted, it leaves nothing
// under the image's name. Not thread-safe.
class ImageSink : public ByteSink {
 public:
  virtual absl::Status Commit() = 0;
};

// An image file that has no name until Commit(): an unnamed file
// (O_TMPFILE) in the target's directory, linked in place after fsync. A
// dump that is killed, by any signal, leaves nothing behind. On a
// filesystem without O_TMPFILE it falls back to a temporary name that the
// destructor removes. Created mode 0600 (`mode`): an image holds the
// process's whole memory.
class AtomicFileSink final : public ImageSink {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileSink>> Create(const std::string& path,
                                                                mode_t mode = 0600);
  ~AtomicFileSink() override;
  absl::Status Write(absl::Span<const iovec> iov) override;
  absl::Status SkipAhead(uint64_t bytes) override;
  absl::Status WriteAt(uint64_t offset, absl::Span<const iovec> iov) override;
  absl::Status Commit() override;
  // Empties the file to write the image again from its start.
  absl::Status Restart();
  // The temporary name, or "" when the file has none (O_TMPFILE).
  const std::string& temp_path() const { return temp_path_; }

 private:
  AtomicFileSink(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd), sink_(fd) {}
  absl::Status LinkInPlace();
  std::string path_;
  std::string temp_path_;
  int fd_;
  FdSink sink_;
  bool committed_ = false;
};

// An image written to a stream: a pipe, FIFO, socket or device, or any fd
// the caller lends. There is nothing to commit: a reader knows the image
// is complete from its end record.
class StreamImageSink final : public ImageSink {
 public:
  // Writes to `fd`; closes it at destruction when `owned`. A pipe is
  // widened to 1 MiB where the system allows.
  StreamImageSink(int fd, bool owned, std::string name);
  ~StreamImageSink() override;
  absl::Status Write(absl::Span<const iovec> iov) override;
  absl::Status Commit() override { return absl::OkStatus(); }

 private:
  int fd_;
  bool owned_;
  std::string name_;
  FdSink sink_;
};

// The sink for an image: `fd` when it is not -1 (borrowed; `path` only
// names it in messages), else an existing FIFO, character device or other
// non-regular file at `path` opened for writing, else an AtomicFileSink
// created with `mode`.
absl::StatusOr<std::unique_ptr<ImageSink>> OpenImageSink(const std::string& path, int fd = -1,
                                                         mode_t mode = 0600);

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
  // Moves to stream offset `offset`, when the source can (a regular file,
  // memory); Unimplemented for a pipe or socket.
  virtual absl::Status Seek(uint64_t offset);
  virtual bool CanSeek() const { return false; }
};

// Reads from a borrowed fd. A regular file read from offset 0 is mappable.
// (A pipe keeps its size: widening it on this side made restores from a
// pipe slower, the data no longer hot in the cache.)
// Small reads (record headers and payloads) come from a 64 KiB buffer, so
// reading an image costs a few system calls per 64 KiB of records; large
// reads (page data) go straight to the caller's memory. A pipe or socket
// is read with read(2), so the fd's offset is ahead of what was consumed;
// a regular file with pread(2) at the stream's position (skips and seeks
// cost no system call), leaving the fd's offset where it was.
class FdSource final : public ByteSource {
 public:
  explicit FdSource(int fd);
  absl::StatusOr<size_t> Read(void* buffer, size_t size) override;
  absl::StatusOr<bool> Skip(uint64_t size) override;
  std::optional<uint64_t> Remaining() const override;
  int MappableFd() const override { return mappable_ ? fd_ : -1; }
  absl::Status Seek(uint64_t offset) override;
  bool CanSeek() const override { return regular_; }

 private:
  // read(2), or for a regular file pread(2) at file offset `at`, into `to`
  // (room for `max`) until at least `min` bytes or the end of the stream;
  // returns the count.
  absl::StatusOr<size_t> ReadFd(char* to, size_t min, size_t max, uint64_t at);

  static constexpr size_t kBufferSize = 64 << 10;
  int fd_;
  bool regular_ = false;
  bool mappable_ = false;
  uint64_t size_ = 0;
  uint64_t base_ = 0;      // the fd's offset at the stream's start
  uint64_t position_ = 0;  // fd offset of the next byte the caller gets
  std::unique_ptr<char[]> buffer_;
  size_t buffer_pos_ = 0, buffer_end_ = 0;
  bool skipped_ = false;  // the last call skipped past the buffer
};

// Reads from memory. As a stream (`as_stream`), it answers like a pipe:
// no seeking and no known length, so a reader stops where the bytes end
// instead of checking that they reach the end record (a dump checks the
// records before the page data this way, from its copy of them).
class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(absl::Span<const uint8_t> data, bool as_stream = false)
      : data_(data), stream_(as_stream) {}
  absl::StatusOr<size_t> Read(void* buffer, size_t size) override;
  absl::StatusOr<bool> Skip(uint64_t size) override;
  std::optional<uint64_t> Remaining() const override {
    if (stream_) return std::nullopt;
    return data_.size() - pos_;
  }
  absl::Status Seek(uint64_t offset) override;
  bool CanSeek() const override { return !stream_; }

 private:
  absl::Span<const uint8_t> data_;
  bool stream_;
  size_t pos_ = 0;
};

}  // namespace crlib

#endif  // CRLIB_CORE_BYTE_STREAM_H_
