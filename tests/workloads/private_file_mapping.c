/* A private, writable mapping of a 16-page file (argv[1], created here).
 * Pages 3 and 9 are written (copied on write, so they now differ from the
 * file); the others are only read. Afterwards: pages 3 and 9 hold the new
 * bytes, every other page still shows the file, and the file itself is
 * unchanged on disk. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "workload.h"

enum { kPages = 16, kFileSeed = 0xf11e, kDirtySeed = 0xd127 };

static int IsDirty(int page) { return page == 3 || page == 9; }

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc != 2) return wl_fail("usage: private_file_mapping FILE");
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t size = kPages * page;

  unsigned char* contents = malloc(size);
  if (!contents) return wl_fail("malloc");
  wl_fill(contents, size, kFileSeed, 0);
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return wl_fail("open %s: %s", argv[1], strerror(errno));
  if (wl_write_all(fd, contents, size) != 0) return wl_fail("write %s", argv[1]);
  fsync(fd);
  unsigned char* map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return wl_fail("mmap %s: %s", argv[1], strerror(errno));
  close(fd);  /* the mapping alone keeps the file */

  unsigned sum = 0;
  for (int i = 0; i < kPages; ++i) {
    if (IsDirty(i)) {
      wl_fill(map + i * page, page, kDirtySeed, i * page);
    } else {
      sum += map[i * page + 7];  /* fault the clean pages in, read-only */
    }
  }

  wl_ready();
  wl_wait_nap();

  for (int i = 0; i < kPages; ++i) {
    long bad = IsDirty(i) ? wl_mismatch(map + i * page, page, kDirtySeed, i * page)
                          : wl_mismatch(map + i * page, page, kFileSeed, i * page);
    if (bad >= 0) {
      return wl_fail("%s page %d byte %ld differs", IsDirty(i) ? "written" : "untouched", i, bad);
    }
  }
  fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) return wl_fail("reopen %s: %s", argv[1], strerror(errno));
  unsigned char* disk = malloc(size + 1);
  if (!disk) return wl_fail("malloc");
  ssize_t n = pread(fd, disk, size + 1, 0);
  if (n != (ssize_t)size) return wl_fail("%s now has %zd bytes, expected %zu", argv[1], n, size);
  if (memcmp(disk, contents, size) != 0) return wl_fail("%s changed on disk", argv[1]);
  /* A write now must still stay private. */
  map[5 * page] ^= 0xff;
  if (pread(fd, disk, 1, 5 * page) != 1 || disk[0] != contents[5 * page]) {
    return wl_fail("the mapping is no longer private");
  }
  close(fd);
  /* Freed so that an ASan build (make test-sanitize) reports no leak. */
  free(disk);
  free(contents);
  wl_say("OK 16 pages, 2 written (%u)", sum);
  return 0;
}
