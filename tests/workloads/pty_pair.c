/* A pseudo-terminal pair with both ends in the process: termios changed
 * (no ECHO, VINTR ^G), a window size of 42x123, packet mode off; and a
 * second pair left locked (no unlockpt), in packet mode. After SIGUSR1: the same
 * /dev/pts/N names, the termios and window size kept, a line written on
 * the master is read on the slave and bytes written on the slave come out
 * of the master; the second pair is still locked. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "workload.h"

static int read_exactly(int fd, char* buf, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

int main(void) {
  wl_install_handler();
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) return wl_fail("posix_openpt: %s", strerror(errno));
  if (grantpt(master) != 0 || unlockpt(master) != 0) return wl_fail("unlockpt: %s", strerror(errno));
  char name[64];
  if (ptsname_r(master, name, sizeof(name)) != 0) return wl_fail("ptsname: %s", strerror(errno));
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) return wl_fail("open %s: %s", name, strerror(errno));
  struct termios t;
  if (tcgetattr(slave, &t) != 0) return wl_fail("tcgetattr: %s", strerror(errno));
  t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
  t.c_cc[VINTR] = 0x07;
  if (tcsetattr(slave, TCSANOW, &t) != 0) return wl_fail("tcsetattr: %s", strerror(errno));
  struct winsize ws = {.ws_row = 42, .ws_col = 123, .ws_xpixel = 7, .ws_ypixel = 9};
  if (ioctl(master, TIOCSWINSZ, &ws) != 0) return wl_fail("TIOCSWINSZ: %s", strerror(errno));
  int locked_master = posix_openpt(O_RDWR | O_NOCTTY);
  if (locked_master < 0) return wl_fail("second posix_openpt: %s", strerror(errno));
  char locked_name[64];
  if (ptsname_r(locked_master, locked_name, sizeof(locked_name)) != 0) return wl_fail("ptsname");
  int packet = 1;
  if (ioctl(locked_master, TIOCPKT, &packet) != 0) return wl_fail("TIOCPKT: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  char now[64];
  if (ptsname_r(master, now, sizeof(now)) != 0) return wl_fail("ptsname after: %s", strerror(errno));
  if (strcmp(now, name) != 0) return wl_fail("the pair is %s, was %s", now, name);
  struct termios after;
  if (tcgetattr(slave, &after) != 0) return wl_fail("tcgetattr after: %s", strerror(errno));
  if (after.c_lflag & ECHO) return wl_fail("ECHO is back on");
  if (!(after.c_lflag & ICANON)) return wl_fail("ICANON was lost");
  if (after.c_cc[VINTR] != 0x07) return wl_fail("VINTR is %d, was 7", after.c_cc[VINTR]);
  struct winsize ws_after;
  if (ioctl(slave, TIOCGWINSZ, &ws_after) != 0) return wl_fail("TIOCGWINSZ: %s", strerror(errno));
  if (ws_after.ws_row != 42 || ws_after.ws_col != 123 || ws_after.ws_xpixel != 7 ||
      ws_after.ws_ypixel != 9) {
    return wl_fail("window size %dx%d, was 42x123", ws_after.ws_row, ws_after.ws_col);
  }
  const char line[] = "hello pty\n";
  if (wl_write_all(master, line, strlen(line)) != 0) return wl_fail("write on the master: %s", strerror(errno));
  char got[64] = {0};
  ssize_t n = read(slave, got, sizeof(got) - 1);
  if (n != (ssize_t)strlen(line) || memcmp(got, line, strlen(line)) != 0) {
    return wl_fail("the slave read %zd bytes '%s'", n, got);
  }
  if (wl_write_all(slave, "back", 4) != 0) return wl_fail("write on the slave: %s", strerror(errno));
  memset(got, 0, sizeof(got));
  if (read_exactly(master, got, 4) != 0 || memcmp(got, "back", 4) != 0) {
    return wl_fail("the master read '%s'", got);
  }
  int lock = 0;
  if (ioctl(locked_master, TIOCGPTLCK, &lock) != 0) return wl_fail("TIOCGPTLCK: %s", strerror(errno));
  if (!lock) return wl_fail("the second pair is no longer locked");
  packet = 0;
  if (ioctl(locked_master, TIOCGPKT, &packet) != 0 || !packet) return wl_fail("packet mode was lost");
  if (ioctl(master, TIOCGPKT, &packet) != 0 || packet) return wl_fail("packet mode on the first pair");
  if (ptsname_r(locked_master, now, sizeof(now)) != 0 || strcmp(now, locked_name) != 0) {
    return wl_fail("the locked pair is %s, was %s", now, locked_name);
  }
  if (open(locked_name, O_RDWR | O_NOCTTY) >= 0) return wl_fail("the locked slave opens");
  wl_say("OK pty pair %s kept", name);
  return 0;
}
