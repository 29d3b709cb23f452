/* Descriptors on an existing regular file (argv[1], at least 4096 bytes,
 * created by the test):
 *   rw:     O_RDWR | O_CLOEXEC, 1234 bytes read, so its offset is 1234;
 *   dup_rw: dup(rw), the same open file description (shared offset);
 *   app:    O_WRONLY | O_APPEND.
 * Afterwards each keeps its offset, access mode, O_APPEND and FD_CLOEXEC;
 * reading goes on at 1234; moving one of rw/dup_rw moves the other; an
 * append lands at the end of the file. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "workload.h"

enum { kOffset = 1234 };

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc != 2) return wl_fail("usage: file_offset FILE");
  int rw = open(argv[1], O_RDWR | O_CLOEXEC);
  if (rw < 0) return wl_fail("open %s: %s", argv[1], strerror(errno));
  struct stat st;
  if (fstat(rw, &st) != 0 || st.st_size < 4096) return wl_fail("%s is too small", argv[1]);
  const size_t size = (size_t)st.st_size;
  unsigned char* contents = malloc(size);
  if (!contents || wl_pread_all(rw, contents, size, 0) != 0) return wl_fail("pread %s", argv[1]);
  unsigned char head[kOffset];
  if (read(rw, head, sizeof(head)) != (ssize_t)sizeof(head)) return wl_fail("read %s", argv[1]);
  int dup_rw = dup(rw);
  int app = open(argv[1], O_WRONLY | O_APPEND);
  if (dup_rw < 0 || app < 0) return wl_fail("dup/open: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  off_t at = lseek(rw, 0, SEEK_CUR);
  if (at != kOffset) return wl_fail("rw offset is %lld, expected %d", (long long)at, kOffset);
  int fl = fcntl(rw, F_GETFL);
  if ((fl & O_ACCMODE) != O_RDWR || (fl & O_APPEND)) return wl_fail("rw flags are %#o", fl);
  if (!(fcntl(rw, F_GETFD) & FD_CLOEXEC)) return wl_fail("rw lost FD_CLOEXEC");
  if (fcntl(dup_rw, F_GETFD) & FD_CLOEXEC) return wl_fail("dup_rw gained FD_CLOEXEC");
  fl = fcntl(app, F_GETFL);
  if ((fl & O_ACCMODE) != O_WRONLY || !(fl & O_APPEND)) return wl_fail("app flags are %#o", fl);

  unsigned char next[100];
  if (read(rw, next, sizeof(next)) != (ssize_t)sizeof(next) ||
      memcmp(next, contents + kOffset, sizeof(next)) != 0) {
    return wl_fail("read at %d gives other bytes", kOffset);
  }
  at = lseek(dup_rw, 0, SEEK_CUR);
  if (at != kOffset + (off_t)sizeof(next)) {
    return wl_fail("dup_rw is at %lld after a read on rw: no longer one open file", (long long)at);
  }
  const char tail[] = "appended after restore\n";
  if (wl_write_all(app, tail, sizeof(tail) - 1) != 0) return wl_fail("append: %s", strerror(errno));
  if (fstat(app, &st) != 0 || (size_t)st.st_size != size + sizeof(tail) - 1) {
    return wl_fail("size after append is %lld, expected %zu", (long long)st.st_size,
                   size + sizeof(tail) - 1);
  }
  char back[sizeof(tail) - 1];
  if (wl_pread_all(rw, back, sizeof(back), (off_t)size) != 0 || memcmp(back, tail, sizeof(back)) != 0) {
    return wl_fail("the append is not at the end of the file");
  }
  free(contents); /* so that an ASan build reports no leak */
  wl_say("OK offsets %d and end of file", kOffset);
  return 0;
}
