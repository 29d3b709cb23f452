/* A sealed memfd held by two descriptors (two open file descriptions,
 * one read-write at an offset, one read-only) and a shared mapping, with
 * a hole. After restore: one inode for all three, the name, size, mode,
 * seals, offsets and contents as they were, and a write through a
 * descriptor visible in the mapping. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "workload.h"

enum { kSeed = 0x3e3f, kOffset = 1234 };
#define kName "crlib-test-memfd"
#define kSize (1 << 20)

int main(int argc, char** argv) {
  wl_install_handler();
  /* "future-write": also F_SEAL_FUTURE_WRITE while the writable shared
   * mapping exists, which crlib refuses to dump. */
  const int future = argc > 1 && strcmp(argv[1], "future-write") == 0;
  const int want_seals = F_SEAL_SHRINK | F_SEAL_GROW | (future ? F_SEAL_FUTURE_WRITE : 0);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  int fd = memfd_create(kName, MFD_ALLOW_SEALING);
  if (fd < 0) return wl_fail("memfd_create: %s", strerror(errno));
  if (ftruncate(fd, kSize) != 0) return wl_fail("ftruncate: %s", strerror(errno));
  static unsigned char data[3 * 4096];
  wl_fill(data, sizeof(data), kSeed, 0);
  if (pwrite(fd, data, sizeof(data), 0) != (ssize_t)sizeof(data)) return wl_fail("pwrite");
  if (fchmod(fd, 0750) != 0) return wl_fail("fchmod: %s", strerror(errno));
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  int ro = open(path, O_RDONLY);
  if (ro < 0) return wl_fail("reopen: %s", strerror(errno));
  unsigned char* map = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return wl_fail("mmap: %s", strerror(errno));
  if (fcntl(fd, F_ADD_SEALS, want_seals) != 0) return wl_fail("F_ADD_SEALS: %s", strerror(errno));
  if (lseek(fd, kOffset, SEEK_SET) != kOffset) return wl_fail("lseek");
  const struct timespec times[2] = {{UTIME_OMIT, 0}, {1200000000, 42}};
  if (futimens(fd, times) != 0) return wl_fail("futimens: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  struct stat a, b;
  if (fstat(fd, &a) != 0 || fstat(ro, &b) != 0) return wl_fail("fstat: %s", strerror(errno));
  if (a.st_ino != b.st_ino || a.st_dev != b.st_dev) return wl_fail("the two fds are two inodes now");
  if (a.st_size != kSize) return wl_fail("size %lld", (long long)a.st_size);
  if ((a.st_mode & 07777) != 0750) return wl_fail("mode %o", a.st_mode & 07777);
  if (a.st_mtim.tv_sec != 1200000000 || a.st_mtim.tv_nsec != 42) return wl_fail("mtime %lld", (long long)a.st_mtim.tv_sec);
  char link[256] = {0};
  if (readlink(path, link, sizeof(link) - 1) < 0) return wl_fail("readlink: %s", strerror(errno));
  if (strcmp(link, "/memfd:" kName " (deleted)") != 0) return wl_fail("fd links to '%s'", link);
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals != want_seals) return wl_fail("seals are %#x", seals);
  if (ftruncate(fd, 100) == 0 || errno != EPERM) return wl_fail("shrinking is allowed again");
  if (lseek(fd, 0, SEEK_CUR) != kOffset) return wl_fail("rw offset moved");
  if (lseek(ro, 0, SEEK_CUR) != 0) return wl_fail("ro offset moved");
  if ((fcntl(ro, F_GETFL) & O_ACCMODE) != O_RDONLY) return wl_fail("second fd is not read-only");
  long bad = wl_mismatch(map, sizeof(data), kSeed, 0);
  if (bad >= 0) return wl_fail("mapping differs at %ld", bad);
  for (size_t i = sizeof(data); i < 4 * page; ++i) {
    if (map[i]) return wl_fail("hole is not zero");
  }
  if (future) {
    if (pwrite(fd, "x", 1, 0) >= 0 || errno != EPERM) return wl_fail("a write passed the seal");
    wl_say("OK memfd with seals %#x", seals);
    return 0;
  }
  /* Same inode as the mapping: a write through the fd shows in it. */
  unsigned char x = (unsigned char)(map[100] ^ 0x5a);
  if (pwrite(fd, &x, 1, 100) != 1) return wl_fail("pwrite: %s", strerror(errno));
  if (map[100] != x) return wl_fail("a write through the fd is not in the mapping");
  map[200] = 0x77;
  unsigned char y = 0;
  if (pread(ro, &y, 1, 200) != 1 || y != 0x77) return wl_fail("a write to the mapping is not in the file");
  wl_say("OK memfd with seals %#x", seals);
  return 0;
}
