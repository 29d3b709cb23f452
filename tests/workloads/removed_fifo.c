/* A FIFO whose name was removed (made in argv[1]), open three times: for
 * reading, for writing and for both, with 3000 unread bytes. After restore
 * the read end gives exactly those bytes, the FIFO has no name, and a new
 * write comes out of the read end (all three ends are still one FIFO). */
#include <fcntl.h>
#include <sys/stat.h>

#include "workload.h"

enum { kBytes = 3000, kSeed = 0xf1f0 };

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: removed_fifo DIR");
  char path[512];
  snprintf(path, sizeof(path), "%s/gone-fifo", argv[1]);
  if (mkfifo(path, 0640) != 0) return wl_fail("mkfifo %s: %s", path, strerror(errno));
  int rd = open(path, O_RDONLY | O_NONBLOCK);
  int wr = open(path, O_WRONLY);
  int both = open(path, O_RDWR);
  if (rd < 0 || wr < 0 || both < 0) return wl_fail("open %s: %s", path, strerror(errno));
  if (unlink(path) != 0) return wl_fail("unlink: %s", strerror(errno));
  static unsigned char data[kBytes];
  wl_fill(data, sizeof(data), kSeed, 0);
  if (wl_write_all(wr, data, sizeof(data)) != 0) return wl_fail("write: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  struct stat st;
  if (fstat(rd, &st) != 0 || !S_ISFIFO(st.st_mode) || st.st_nlink != 0) return wl_fail("the read end is not a removed FIFO");
  if ((st.st_mode & 07777) != 0640) return wl_fail("FIFO mode %o, was 0640", st.st_mode & 07777);
  static unsigned char got[2 * kBytes];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(rd, got + total, sizeof(got) - total);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return wl_fail("read: %s", n < 0 ? strerror(errno) : "end of file");
    total += (size_t)n;
  }
  if (total != kBytes) return wl_fail("the FIFO held %zu bytes, expected %d", total, kBytes);
  if (wl_mismatch(got, total, kSeed, 0) >= 0) return wl_fail("FIFO bytes differ");
  char c = 0;
  if (write(both, "x", 1) != 1 || read(rd, &c, 1) != 1 || c != 'x') return wl_fail("the ends are not one FIFO");
  if (write(wr, "y", 1) != 1 || read(both, &c, 1) != 1 || c != 'y') return wl_fail("the write end is not in the FIFO");
  wl_say("OK removed FIFO held %zu bytes", total);
  return 0;
}
