/* A session leader whose controlling terminal is a pty it holds both ends
 * of, the foreground group its own, and an fd on /dev/tty. After SIGUSR1:
 * TIOCGSID on the /dev/tty fd names this process, the foreground group is
 * still its own, the fd still reads "/dev/tty", open("/dev/tty") works
 * again, and what is written through /dev/tty comes out of the master. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "workload.h"

int main(void) {
  wl_install_handler();
  if (getsid(0) != getpid()) return wl_fail("not a session leader (the harness starts one)");
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) return wl_fail("posix_openpt: %s", strerror(errno));
  if (grantpt(master) != 0 || unlockpt(master) != 0) return wl_fail("unlockpt: %s", strerror(errno));
  char name[64];
  if (ptsname_r(master, name, sizeof(name)) != 0) return wl_fail("ptsname: %s", strerror(errno));
  int slave = open(name, O_RDWR);
  if (slave < 0) return wl_fail("open %s: %s", name, strerror(errno));
  if (ioctl(slave, TIOCSCTTY, 0) != 0) return wl_fail("TIOCSCTTY: %s", strerror(errno));
  if (tcsetpgrp(slave, getpgrp()) != 0) return wl_fail("tcsetpgrp: %s", strerror(errno));
  /* Output on the master must not hold bytes at the dump: no ONLCR games,
   * nothing written yet. */
  int tty = open("/dev/tty", O_RDWR);
  if (tty < 0) return wl_fail("open /dev/tty: %s", strerror(errno));
  /* The slave fd goes: the session keeps its terminal through /dev/tty. */
  close(slave);

  wl_ready();
  wl_wait_nap();

  pid_t sid = 0;
  if (ioctl(tty, TIOCGSID, &sid) != 0) return wl_fail("TIOCGSID: %s", strerror(errno));
  if (sid != getpid()) return wl_fail("TIOCGSID says %d, expected %d", sid, getpid());
  if (tcgetpgrp(tty) != getpgrp()) return wl_fail("foreground group %d, expected %d", tcgetpgrp(tty), getpgrp());
  char link[64] = {0}, path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", tty);
  if (readlink(path, link, sizeof(link) - 1) < 0 || strcmp(link, "/dev/tty") != 0) {
    return wl_fail("fd %d is '%s', not /dev/tty", tty, link);
  }
  int again = open("/dev/tty", O_RDWR);
  if (again < 0) return wl_fail("open /dev/tty after restore: %s", strerror(errno));
  char now[64];
  if (ptsname_r(master, now, sizeof(now)) != 0 || strcmp(now, name) != 0) {
    return wl_fail("the pair is %s, was %s", now, name);
  }
  if (wl_write_all(again, "ctty", 4) != 0) return wl_fail("write to /dev/tty: %s", strerror(errno));
  char got[8] = {0};
  size_t total = 0;
  while (total < 4) {
    ssize_t n = read(master, got + total, 4 - total);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return wl_fail("read on the master: %s", strerror(errno));
    total += (size_t)n;
  }
  if (memcmp(got, "ctty", 4) != 0) return wl_fail("the master read '%s'", got);
  wl_say("OK controlling terminal %s kept", name);
  return 0;
}
