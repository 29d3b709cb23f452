// A file descriptor closed when it goes out of scope.
#ifndef CRLIB_SYS_UNIQUE_FD_H_
#define CRLIB_SYS_UNIQUE_FD_H_

#include <unistd.h>

namespace crlib::sys {

// Owns `fd` (-1: none). Movable, not copyable; release() gives the descriptor up.
struct UniqueFd {
  int fd = -1;
  UniqueFd() = default;
  explicit UniqueFd(int f) : fd(f) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      if (fd >= 0) close(fd);
      fd = other.release();
    }
    return *this;
  }
  ~UniqueFd() {
    if (fd >= 0) close(fd);
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

}  // namespace crlib::sys

#endif  // CRLIB_SYS_UNIQUE_FD_H_
