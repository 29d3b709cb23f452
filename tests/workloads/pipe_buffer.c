/* A pipe with both ends in the process and 10000 unread bytes in it. The
 * process waits in sigsuspend(2); afterwards the read end, made
 * non-blocking, must give exactly those bytes and then EAGAIN, and the two
 * ends must still be one pipe (a new write comes out of the read end). */
#include <fcntl.h>

#include "workload.h"

enum { kMessageBytes = 10000, kSeed = 0x919e };

int main(void) {
  wl_install_handler();
  int p[2];
  if (pipe(p) != 0) return wl_fail("pipe: %s", strerror(errno));
  static unsigned char message[kMessageBytes];
  wl_fill(message, sizeof(message), kSeed, 0);
  if (wl_write_all(p[1], message, sizeof(message)) != 0) return wl_fail("write to the pipe");

  /* SIGUSR1 is blocked except inside sigsuspend: no lost wake-up. */
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  wl_ready();
  while (!wl_go) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);

  int flags = fcntl(p[0], F_GETFL);
  if (flags < 0 || fcntl(p[0], F_SETFL, flags | O_NONBLOCK) != 0) {
    return wl_fail("fcntl on the read end: %s", strerror(errno));
  }
  static unsigned char got[2 * kMessageBytes];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(p[0], got + total, sizeof(got) - total);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) return wl_fail("read from the pipe: %s", strerror(errno));
    if (n == 0) return wl_fail("end of file on the pipe after %zu bytes", total);
    total += (size_t)n;
    if (total == sizeof(got)) break;
  }
  if (total != kMessageBytes) return wl_fail("pipe held %zu bytes, expected %d", total, kMessageBytes);
  long bad = wl_mismatch(got, total, kSeed, 0);
  if (bad >= 0) return wl_fail("pipe byte %ld differs", bad);

  const char ping[] = "ping";
  if (wl_write_all(p[1], ping, sizeof(ping)) != 0) return wl_fail("write after restore: %s", strerror(errno));
  char pong[sizeof(ping)] = {0};
  if (read(p[0], pong, sizeof(pong)) != (ssize_t)sizeof(ping) || memcmp(pong, ping, sizeof(ping)) != 0) {
    return wl_fail("the two ends are no longer one pipe");
  }
  wl_say("OK pipe held %zu bytes", total);
  return 0;
}
