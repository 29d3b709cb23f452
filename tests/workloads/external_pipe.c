/* A pipe to the outside: fd 3 is the write end of a pipe whose read end
 * the test holds. Kernel state: a descriptor whose other end is outside
 * the dumped tree; the image records it as external (key pipe:[INODE])
 * and the restore takes it from its caller (`--inherit-fd KEY=N`). It
 * writes "HELLO <pid>" into fd 3 before READY and "AFTER <pid>" after
 * SIGUSR1, once fd 3 is checked to still be a pipe open for writing, then
 * OK on stdout. */
#include <fcntl.h>
#include <sys/stat.h>

#include "workload.h"

static int say_on_3(const char* word) {
  char line[64];
  int n = snprintf(line, sizeof(line), "%s %d\n", word, (int)getpid());
  return wl_write_all(3, line, (size_t)n);
}

static int check_fd3(void) {
  struct stat st;
  if (fstat(3, &st) != 0) return wl_fail("fd 3: %s (start me with a pipe at fd 3)", strerror(errno));
  if (!S_ISFIFO(st.st_mode)) return wl_fail("fd 3 is not a pipe (mode %#o)", st.st_mode);
  int fl = fcntl(3, F_GETFL);
  if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY) return wl_fail("fd 3 is not open for writing (flags %#x)", fl);
  return 0;
}

int main(void) {
  wl_install_handler();
  if (check_fd3() != 0) return 1;
  if (say_on_3("HELLO") != 0) return wl_fail("write HELLO to fd 3: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  if (check_fd3() != 0) return 1;
  if (say_on_3("AFTER") != 0) return wl_fail("write AFTER to fd 3: %s", strerror(errno));
  wl_say("OK wrote to the pipe at fd 3");
  return 0;
}
