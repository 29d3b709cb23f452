/* An open file (argv[1]) whose name is gone: written, positioned at a known
 * offset, then unlinked. Afterwards the descriptor must still be at that
 * offset, open read-write, with the same contents and no name. */
#include <fcntl.h>
#include <sys/stat.h>

#include "workload.h"

enum { kBytes = 20000, kOffset = 7777, kSeed = 0xde1e };

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc != 2) return wl_fail("usage: deleted_file FILE");
  static unsigned char contents[kBytes];
  wl_fill(contents, sizeof(contents), kSeed, 0);
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return wl_fail("open %s: %s", argv[1], strerror(errno));
  if (wl_write_all(fd, contents, sizeof(contents)) != 0) return wl_fail("write %s", argv[1]);
  if (lseek(fd, kOffset, SEEK_SET) != kOffset) return wl_fail("lseek: %s", strerror(errno));
  if (unlink(argv[1]) != 0) return wl_fail("unlink %s: %s", argv[1], strerror(errno));

  wl_ready();
  wl_wait_nap();

  off_t at = lseek(fd, 0, SEEK_CUR);
  if (at != kOffset) return wl_fail("offset is %lld, expected %d", (long long)at, kOffset);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) != O_RDWR) return wl_fail("flags are %#o, not O_RDWR", flags);
  struct stat st;
  if (fstat(fd, &st) != 0) return wl_fail("fstat: %s", strerror(errno));
  if (!S_ISREG(st.st_mode)) return wl_fail("not a regular file any more");
  if (st.st_nlink != 0) return wl_fail("the file has %lu links, expected 0", (unsigned long)st.st_nlink);
  if (st.st_size != kBytes) return wl_fail("size is %lld, expected %d", (long long)st.st_size, kBytes);
  static unsigned char got[kBytes];
  if (wl_pread_all(fd, got, sizeof(got), 0) != 0) return wl_fail("pread: %s", strerror(errno));
  if (memcmp(got, contents, sizeof(got)) != 0) return wl_fail("contents differ");
  /* read(2) goes on from the offset. */
  unsigned char next[16];
  if (read(fd, next, sizeof(next)) != (ssize_t)sizeof(next) ||
      memcmp(next, contents + kOffset, sizeof(next)) != 0) {
    return wl_fail("read at offset %d gives other bytes", kOffset);
  }
  if (access(argv[1], F_OK) == 0) return wl_fail("%s exists again", argv[1]);
  wl_say("OK deleted file at offset %lld", (long long)at);
  return 0;
}
