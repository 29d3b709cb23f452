/* Holds the write end of a pipe whose read end is outside the process (the
 * test's): `external_pipe_holder FD [prefill|stdin]`. With "prefill" it
 * leaves a line in the pipe before READY, for the test to read while the
 * process is dumped; with "stdin" its fd 0 is a dup of FD too. After
 * SIGUSR1 it checks FD (and fd 0) is still a write end of that pipe and
 * writes "after from PID through fd FD" into it with one write(2). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "workload.h"

int main(int argc, char** argv) {
  wl_install_handler();
  const int fd = argc > 1 ? atoi(argv[1]) : 3;
  const int prefill = argc > 2 && strcmp(argv[2], "prefill") == 0;
  const int on_stdin = argc > 2 && strcmp(argv[2], "stdin") == 0;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return wl_fail("fd %d is not a pipe", fd);
  if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) return wl_fail("fd %d is not a write end", fd);
  if (prefill) {
    const char before[] = "before the dump\n";
    if (wl_write_all(fd, before, sizeof(before) - 1) != 0) return wl_fail("write to fd %d", fd);
  }

  if (on_stdin && dup2(fd, 0) != 0) return wl_fail("dup2 to fd 0: %s", strerror(errno));
  wl_ready();
  wl_wait_nap();

  if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return wl_fail("fd %d is no longer a pipe", fd);
  if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) {
    return wl_fail("fd %d is no longer a write end", fd);
  }
  struct stat in;
  if (on_stdin && (fstat(0, &in) != 0 || in.st_ino != st.st_ino ||
                   (fcntl(0, F_GETFL) & O_ACCMODE) != O_WRONLY)) {
    return wl_fail("fd 0 is no longer the write end fd %d is", fd);
  }
  char line[128];
  int n = snprintf(line, sizeof(line), "after from %d through fd %d\n", (int)getpid(), fd);
  if (wl_write_all(fd, line, (size_t)n) != 0) return wl_fail("write to fd %d: %s", fd, strerror(errno));
  wl_say("OK wrote into the external pipe at fd %d", fd);
  return 0;
}
