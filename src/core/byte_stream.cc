#include "core/byte_stream.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"

namespace crlib {

namespace {

// Writes all of `iov` to `fd`, at its file position (`offset` -1) or at
// `offset` (pwritev, the position unmoved); a short write resumes
// mid-vector.
absl::Status WriteAllTo(int fd, absl::Span<const iovec> iov_in, int64_t offset) {
  std::vector<iovec> iov(iov_in.begin(), iov_in.end());
  size_t first = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = offset < 0 ? writev(fd, &iov[first], count) : pwritev(fd, &iov[first], count, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return offset < 0 ? Errno("writev to fd %d", fd) : Errno("pwritev to fd %d at %d", fd, offset);
    }
    if (offset >= 0) offset += n;
    size_t done = static_cast<size_t>(n);
    while (done > 0) {
      size_t step = std::min(done, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + step;
      iov[first].iov_len -= step;
      done -= step;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FdSink::Write(absl::Span<const iovec> iov) { return WriteAllTo(fd_, iov, -1); }

absl::Status MemorySink::Write(absl::Span<const iovec> iov) {
  for (const iovec& v : iov) {
    const auto* p = static_cast<const uint8_t*>(v.iov_base);
    out_->insert(out_->end(), p, p + v.iov_len);
  }
  return absl::OkStatus();
}

namespace {

// A pipe's default 64 KiB make a dump and its reader take turns every 16
// pages, two context switches each time; 1 MiB, the most an unprivileged
// process may ask for (/proc/sys/fs/pipe-max-size), lets the dump write a
// whole batch of pages at once. Best effort: a pipe over its user's quota
// keeps its size. Anything but a pipe is left alone.
void WidenPipe(int fd) {
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) (void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A name next to `path` that nothing uses yet, for a file created with
// O_EXCL or a link made with linkat (both fail if it exists).
std::string TempNameFor(const std::string& path, std::random_device& rd) {
  return absl::StrFormat("%s.tmp-%d-%08x", path, getpid(), rd());
}

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicFileSink>> AtomicFileSink::Create(
    const std::string& path, mode_t mode) {
  const std::string dir = DirectoryOf(path);
  int fd = open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
  if (fd >= 0) return std::unique_ptr<AtomicFileSink>(new AtomicFileSink(path, "", fd));
  // Filesystems without O_TMPFILE say so in one of these ways.
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return Errno("creating the image %s (an unnamed file in %s)", path, dir);
  }
  // The temporary lives in the target's directory so rename() is atomic.
  std::random_device rd;
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::string temp = TempNameFor(path, rd);
    fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd >= 0) {
      return std::unique_ptr<AtomicFileSink>(new AtomicFileSink(path, temp, fd));
    }
    if (errno != EEXIST) return Errno("creating %s", temp);
  }
  return absl::AlreadyExistsError(
      absl::StrFormat("could not find a free temporary name next to %s", path));
}

absl::Status ByteSink::SkipAhead(uint64_t) {
  return absl::UnimplementedError("this image sink cannot seek");
}

absl::Status ByteSink::WriteAt(uint64_t, absl::Span<const iovec>) {
  return absl::UnimplementedError("this image sink cannot seek");
}

absl::Status AtomicFileSink::SkipAhead(uint64_t bytes) {
  const off_t at = lseek(fd_, 0, SEEK_CUR);
  if (at < 0) return Errno("lseek in the image %s", path_);
  // The file grows over the hole now: a reservation at its very end
  // reads back as zeros even if nothing is ever written after it.
  if (ftruncate(fd_, at + static_cast<off_t>(bytes)) != 0 ||
      lseek(fd_, static_cast<off_t>(bytes), SEEK_CUR) < 0) {
    return Errno("reserving %d bytes in the image %s", bytes, path_);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileSink::WriteAt(uint64_t offset, absl::Span<const iovec> iov) {
  return Annotate(WriteAllTo(fd_, iov, static_cast<int64_t>(offset)),
                  absl::StrCat("writing the image ", path_));
}

absl::Status AtomicFileSink::Restart() {
  if (ftruncate(fd_, 0) != 0 || lseek(fd_, 0, SEEK_SET) != 0) {
    return Errno("emptying the image %s to write it again", path_);
  }
  return absl::OkStatus();
}

AtomicFileSink::~AtomicFileSink() {
  close(fd_);
  if (!committed_ && !temp_path_.empty()) unlink(temp_path_.c_str());
}

absl::Status AtomicFileSink::Write(absl::Span<const iovec> iov) {
  // "writev to fd 3: No space left on device" alone does not say which
  // file; the final name is what the user asked for.
  return Annotate(sink_.Write(iov), absl::StrCat("writing the image ", path_));
}

absl::Status AtomicFileSink::LinkInPlace() {
  // linkat() through /proc/self/fd needs no capability (AT_EMPTY_PATH
  // would need CAP_DAC_READ_SEARCH). It never replaces a file: an image
  // that already exists is replaced by linking a temporary name and
  // renaming it over, the one moment a name other than the final one
  // exists.
  const std::string self = absl::StrCat("/proc/self/fd/", fd_);
  if (linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path_.c_str(), AT_SYMLINK_FOLLOW) == 0) {
    return absl::OkStatus();
  }
  if (errno != EEXIST) return Errno("linking the image %s into place", path_);
  std::random_device rd;
  for (int attempt = 0; attempt < 16; ++attempt) {
    temp_path_ = TempNameFor(path_, rd);
    if (linkat(AT_FDCWD, self.c_str(), AT_FDCWD, temp_path_.c_str(), AT_SYMLINK_FOLLOW) == 0) {
      return absl::OkStatus();
    }
    if (errno != EEXIST) {
      absl::Status st = Errno("linking the image as %s", temp_path_);
      temp_path_.clear();
      return st;
    }
  }
  temp_path_.clear();
  return absl::AlreadyExistsError(
      absl::StrFormat("could not find a free temporary name next to %s", path_));
}

absl::Status AtomicFileSink::Commit() {
  if (fsync(fd_) != 0) return Errno("fsync of the image %s", path_);
  const bool unnamed = temp_path_.empty();
  if (unnamed) {
    CRLIB_RETURN_IF_ERROR(LinkInPlace());
    if (temp_path_.empty()) {
      committed_ = true;  // linked under its final name
    }
  }
  if (!committed_) {
    if (rename(temp_path_.c_str(), path_.c_str()) != 0) {
      return Errno("rename %s to %s", temp_path_, path_);
    }
    committed_ = true;
  }
  // Make the new name itself durable.
  int dfd = open(DirectoryOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

StreamImageSink::StreamImageSink(int fd, bool owned, std::string name)
    : fd_(fd), owned_(owned), name_(std::move(name)), sink_(fd) {
  WidenPipe(fd);
}

StreamImageSink::~StreamImageSink() {
  if (owned_) close(fd_);
}

absl::Status StreamImageSink::Write(absl::Span<const iovec> iov) {
  // A reader that goes away must fail the dump with EPIPE, not kill the
  // caller with SIGPIPE (which a library may not ignore for it): the
  // signal, sent to the writing thread, is blocked here and taken back if
  // the write raised it.
  sigset_t pipe_signal, old_mask, pending;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &old_mask);
  const bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  absl::Status st = sink_.Write(iov);
  if (!st.ok() && !was_pending) {
    const timespec now{0, 0};
    while (sigtimedwait(&pipe_signal, nullptr, &now) == SIGPIPE) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return Annotate(st, absl::StrCat("writing the image to ", name_));
}

absl::StatusOr<std::unique_ptr<ImageSink>> OpenImageSink(const std::string& path, int fd,
                                                         mode_t mode) {
  if (fd >= 0) return std::make_unique<StreamImageSink>(fd, /*owned=*/false, path);
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("the image path ", path, " is a directory"));
    }
    // A FIFO's open waits for its reader: that is the point of a FIFO.
    int out = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (out < 0) return Errno("open %s for writing the image", path);
    return std::make_unique<StreamImageSink>(out, /*owned=*/true, path);
  }
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileSink> file, AtomicFileSink::Create(path, mode));
  return file;
}

absl::StatusOr<bool> ByteSource::Skip(uint64_t size) {
  char scratch[16384];
  while (size > 0) {
    size_t want = std::min<uint64_t>(size, sizeof(scratch));
    CRLIB_ASSIGN_OR_RETURN(size_t got, Read(scratch, want));
    if (got < want) return false;
    size -= got;
  }
  return true;
}

absl::Status ByteSource::Seek(uint64_t) {
  return absl::UnimplementedError("the image is a stream (a pipe or socket): it cannot be read twice");
}

FdSource::FdSource(int fd) : fd_(fd) {
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t pos = lseek(fd, 0, SEEK_CUR);
    if (pos >= 0) {
      regular_ = true;
      size_ = static_cast<uint64_t>(st.st_size);
      base_ = position_ = static_cast<uint64_t>(pos);
      mappable_ = pos == 0;
    }
  }
}

absl::StatusOr<size_t> FdSource::ReadFd(char* to, size_t min, size_t max, uint64_t at) {
  size_t total = 0;
  while (total < min) {
    ssize_t n = regular_ ? pread(fd_, to + total, max - total, static_cast<off_t>(at + total))
                         : read(fd_, to + total, max - total);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read from fd %d", fd_);
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  return total;
}

absl::StatusOr<size_t> FdSource::Read(void* buffer, size_t size) {
  auto* p = static_cast<char*>(buffer);
  size_t total = std::min(size, buffer_end_ - buffer_pos_);
  if (total > 0) memcpy(p, buffer_.get() + buffer_pos_, total);
  buffer_pos_ += total;
  const size_t want = size - total;
  if (want >= kBufferSize) {
    CRLIB_ASSIGN_OR_RETURN(size_t n, ReadFd(p + total, want, want, position_ + total));
    total += n;
  } else if (want > 0) {
    // Refill with whatever the fd gives, at least what is asked (a pipe
    // returns what it has).
    if (!buffer_) buffer_ = std::make_unique<char[]>(kBufferSize);
    // Right after a skip of bulk data (a restore that maps pages skips
    // every record's), the next bytes are most likely one record before
    // the next skip: read to the end of the 4 KiB block only, not 64 KiB
    // of page data that would be thrown away.
    size_t fill = kBufferSize;
    if (skipped_) {
      const uint64_t at = position_ + total;
      fill = std::max<size_t>(want, std::min<size_t>(kBufferSize, 4096 - at % 4096));
      skipped_ = false;
    }
    CRLIB_ASSIGN_OR_RETURN(buffer_end_, ReadFd(buffer_.get(), want, fill, position_ + total));
    buffer_pos_ = std::min(want, buffer_end_);
    memcpy(p + total, buffer_.get(), buffer_pos_);
    total += buffer_pos_;
  }
  position_ += total;
  return total;
}

absl::StatusOr<bool> FdSource::Skip(uint64_t size) {
  const size_t buffered = std::min<uint64_t>(size, buffer_end_ - buffer_pos_);
  buffer_pos_ += buffered;
  position_ += buffered;
  size -= buffered;
  if (size == 0) return true;
  if (!regular_) return ByteSource::Skip(size);
  // Read with pread: the position is all there is to move.
  if (size > size_ - std::min(position_, size_)) {
    position_ = size_;
    return false;
  }
  position_ += size;
  skipped_ = true;
  return true;
}

absl::Status FdSource::Seek(uint64_t offset) {
  if (!regular_) return ByteSource::Seek(offset);
  position_ = base_ + offset;
  buffer_pos_ = buffer_end_ = 0;
  return absl::OkStatus();
}

std::optional<uint64_t> FdSource::Remaining() const {
  if (!regular_) return std::nullopt;
  return size_ - std::min(position_, size_);
}

absl::StatusOr<size_t> MemorySource::Read(void* buffer, size_t size) {
  size_t n = std::min(size, data_.size() - pos_);
  if (n > 0) memcpy(buffer, data_.data() + pos_, n);
  pos_ += n;
  return n;
}

absl::Status MemorySource::Seek(uint64_t offset) {
  if (stream_) return ByteSource::Seek(offset);
  if (offset > data_.size()) return absl::OutOfRangeError("seek past the end of the image");
  pos_ = offset;
  return absl::OkStatus();
}

absl::StatusOr<bool> MemorySource::Skip(uint64_t size) {
  if (size > data_.size() - pos_) {
    pos_ = data_.size();
    return false;
  }
  pos_ += size;
  return true;
}

}  // namespace crlib
