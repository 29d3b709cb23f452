/* Terminals crlib refuses to dump, by argv[1]:
 *   queued   a pty pair with a line written on the master that the slave
 *            has not read (it cannot be read without consuming it);
 *   outside  a pty slave on fd > 2 whose master is gone (leads outside;
 *            hung up, so only its fd is checked);
 *   devtty   its stdin, a pty slave whose master the test holds, made its
 *            controlling terminal, and /dev/tty open on fd > 2.
 * After SIGUSR1 the process checks that the state is as it left it. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "workload.h"

int main(int argc, char** argv) {
  wl_install_handler();
  const int queued = argc > 1 && strcmp(argv[1], "queued") == 0;
  if (argc > 1 && strcmp(argv[1], "devtty") == 0) {
    if (ioctl(0, TIOCSCTTY, 0) != 0) return wl_fail("TIOCSCTTY on stdin: %s", strerror(errno));
    int tty = open("/dev/tty", O_RDWR);
    if (tty < 0) return wl_fail("open /dev/tty: %s", strerror(errno));
    wl_ready();
    wl_wait_nap();
    if (!isatty(tty)) return wl_fail("/dev/tty fd is no longer a terminal");
    wl_say("OK /dev/tty kept");
    return 0;
  }
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) return wl_fail("posix_openpt: %s", strerror(errno));
  if (grantpt(master) != 0 || unlockpt(master) != 0) return wl_fail("unlockpt: %s", strerror(errno));
  char name[64];
  if (ptsname_r(master, name, sizeof(name)) != 0) return wl_fail("ptsname: %s", strerror(errno));
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) return wl_fail("open %s: %s", name, strerror(errno));
  const char line[] = "queued line\n";
  if (queued) {
    if (wl_write_all(master, line, strlen(line)) != 0) return wl_fail("write: %s", strerror(errno));
  } else {
    close(master);
  }

  wl_ready();
  wl_wait_nap();

  if (queued) {
    /* Echo is on: the master has the echo, the slave the line. */
    char got[64] = {0};
    ssize_t n = read(slave, got, sizeof(got) - 1);
    if (n != (ssize_t)strlen(line) || memcmp(got, line, strlen(line)) != 0) {
      return wl_fail("the slave read %zd bytes '%s'", n, got);
    }
  } else if (fcntl(slave, F_GETFD) < 0) {
    return wl_fail("the slave fd is gone");
  }
  wl_say("OK %s", queued ? "queued line intact" : "slave kept");
  return 0;
}
