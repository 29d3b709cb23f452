// A file descriptor closed when it goes out of scope.
#ifndef CRLIB_SYS_UNIQUE_FD_H_
#define CRLIB_SYS_UNIQUE_FD_H_

#include <unistd.h>

namespace crlib::sys {

// Owns `fd` (-1: none). Not copyable; release() gives the descriptor up.
struct UniqueFd {
  int fd = -1;
  UniqueFd() = default;
  explicit UniqueFd(int f) : fd(f) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
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
