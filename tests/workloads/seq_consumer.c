/* The reading half of `sh -c "trap '' USR1; seq_producer | seq_consumer"`
 * (tests/task/tree_test.cc): reads 8-byte counters from stdin, a pipe,
 * and checks each is the previous one plus 1, so a byte lost or read twice
 * across a checkpoint shows. Prints "READY <pid of sh>" after 100000
 * values. On SIGUSR1 (sent to the whole process group, the producer
 * stops) it reads on to end of file, which must come after SIGUSR1 and on
 * a value boundary, and prints OK with the count. */
#include "workload.h"

enum { kReadyAfter = 100000, kBufferBytes = 1 << 16 };

int main(void) {
  wl_install_handler(); /* sh ignores SIGUSR1; replace that */
  static unsigned char buf[kBufferBytes + 8];
  size_t have = 0; /* bytes of an incomplete value carried over */
  uint64_t expect = 1;
  int ready = 0;
  for (;;) {
    ssize_t n = read(0, buf + have, kBufferBytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return wl_fail("read: %s", strerror(errno));
    if (n == 0) break;
    have += (size_t)n;
    const size_t whole = have / 8 * 8;
    for (size_t off = 0; off < whole; off += 8) {
      uint64_t v;
      memcpy(&v, buf + off, 8);
      if (v != expect) {
        return wl_fail("value %llu where %llu was due", (unsigned long long)v, (unsigned long long)expect);
      }
      ++expect;
    }
    memmove(buf, buf + whole, have - whole);
    have -= whole;
    if (!ready && expect > kReadyAfter) {
      wl_say("READY %d", (int)getppid());
      ready = 1;
    }
  }
  if (!wl_go) return wl_fail("end of the stream before SIGUSR1, after %llu values", (unsigned long long)(expect - 1));
  if (have != 0) return wl_fail("the stream ended inside a value (%zu stray bytes)", have);
  wl_say("OK %llu values in sequence", (unsigned long long)(expect - 1));
  return 0;
}
