/* Holds at fd 3 a UNIX stream socket whose peer is the test's, outside the
 * process: external, given back at restore with --inherit-fd
 * socket:[INODE]=FD. After SIGUSR1 it writes "after from PID" through
 * fd 3, for the test to read at its end. */
#include <sys/socket.h>
#include <sys/stat.h>

#include "workload.h"

int main(void) {
  wl_install_handler();
  struct stat st;
  if (fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode)) return wl_fail("fd 3 is not a socket");
  wl_ready();
  wl_wait_nap();
  if (fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode)) return wl_fail("fd 3 is no longer a socket");
  char line[64];
  int n = snprintf(line, sizeof(line), "after from %d\n", (int)getpid());
  if (wl_write_all(3, line, (size_t)n) != 0) return wl_fail("write to fd 3: %s", strerror(errno));
  wl_say("OK wrote through the external socket");
  return 0;
}
