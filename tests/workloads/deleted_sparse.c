/* A deleted file (argv[1]) of 1 GiB with a few KiB of data, its mode,
 * owner and times set, held by an fd and mapped shared (one page of data
 * far in) and private (the first page, written: copied on write). After
 * restore: one inode for the fd and both mappings, size, mode, owner,
 * mtime, contents as they were, the holes still holes, writes through
 * the fd visible in the shared mapping but not the private one. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "workload.h"

#define kSize (1ll << 30)
#define kFar (512ll << 20)
enum { kSeed = 0xd5d5, kUid = 4321, kGid = 4322 };
static const struct timespec kMtime = {1000000000, 123456789};

/* The inode of the mapping at `addr`, from /proc/self/maps. */
static unsigned long maps_inode(void* addr) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[512];
  unsigned long found = 0;
  while (fgets(line, sizeof(line), f)) {
    unsigned long start, end, ino;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &start, &end, &ino) == 3 && start == (unsigned long)addr) found = ino;
  }
  fclose(f);
  return found;
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc != 2) return wl_fail("usage: deleted_sparse FILE");
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return wl_fail("open %s: %s", argv[1], strerror(errno));
  if (ftruncate(fd, kSize) != 0) return wl_fail("ftruncate: %s", strerror(errno));
  static unsigned char data[4096];
  wl_fill(data, sizeof(data), kSeed, 0);
  if (pwrite(fd, data, sizeof(data), 0) != (ssize_t)sizeof(data)) return wl_fail("pwrite 0");
  if (pwrite(fd, data, sizeof(data), kFar) != (ssize_t)sizeof(data)) return wl_fail("pwrite far");
  if (pwrite(fd, data, 100, kSize - 100) != 100) return wl_fail("pwrite end");
  unsigned char* shared = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, kFar);
  if (shared == MAP_FAILED) return wl_fail("mmap shared: %s", strerror(errno));
  unsigned char* private = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (private == MAP_FAILED) return wl_fail("mmap private: %s", strerror(errno));
  private[5] = (unsigned char)(data[5] ^ 0xff); /* copied on write: not in the file */
  if (lseek(fd, 777, SEEK_SET) != 777) return wl_fail("lseek");
  if (fchown(fd, kUid, kGid) != 0) return wl_fail("fchown: %s", strerror(errno));
  if (fchmod(fd, 0641) != 0) return wl_fail("fchmod: %s", strerror(errno));
  const struct timespec times[2] = {{UTIME_OMIT, 0}, kMtime};
  if (futimens(fd, times) != 0) return wl_fail("futimens: %s", strerror(errno));
  if (unlink(argv[1]) != 0) return wl_fail("unlink: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  if (lseek(fd, 0, SEEK_CUR) != 777) return wl_fail("offset moved");
  struct stat st;
  if (fstat(fd, &st) != 0) return wl_fail("fstat: %s", strerror(errno));
  if (st.st_nlink != 0) return wl_fail("the file has a name again");
  if (st.st_size != kSize) return wl_fail("size %lld", (long long)st.st_size);
  if ((st.st_mode & 07777) != 0641) return wl_fail("mode %o", st.st_mode & 07777);
  if (st.st_uid != kUid || st.st_gid != kGid) return wl_fail("owner %d:%d", st.st_uid, st.st_gid);
  if (st.st_mtim.tv_sec != kMtime.tv_sec || st.st_mtim.tv_nsec != kMtime.tv_nsec) {
    return wl_fail("mtime %lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  if (st.st_blocks * 512 > 1 << 20) return wl_fail("%lld bytes allocated: holes were filled", (long long)st.st_blocks * 512);
  off_t hole = lseek(fd, 0, SEEK_HOLE);
  if (hole < 4096 || hole > 1 << 20) return wl_fail("first hole at %lld", (long long)hole);
  off_t next = lseek(fd, 1 << 20, SEEK_DATA);
  if (next < (1 << 20) || next > kFar) return wl_fail("data after the hole at %lld", (long long)next);
  static unsigned char got[4096];
  if (wl_pread_all(fd, got, sizeof(got), 0) != 0 || memcmp(got, data, sizeof(got)) != 0) return wl_fail("data at 0 differs");
  if (wl_pread_all(fd, got, sizeof(got), kFar) != 0 || memcmp(got, data, sizeof(got)) != 0) return wl_fail("data far differs");
  if (wl_pread_all(fd, got, 100, kSize - 100) != 0 || memcmp(got, data, 100) != 0) return wl_fail("data at the end differs");
  if (memcmp(shared, data, sizeof(data)) != 0) return wl_fail("shared mapping differs");
  if (private[5] != (unsigned char)(data[5] ^ 0xff) || memcmp(private + 6, data + 6, 100) != 0) {
    return wl_fail("private mapping lost its copied page");
  }
  if (maps_inode(shared) != st.st_ino || maps_inode(private) != st.st_ino) {
    return wl_fail("mappings map inodes %lu and %lu, the fd %lu", maps_inode(shared), maps_inode(private),
                   (unsigned long)st.st_ino);
  }
  unsigned char x = (unsigned char)(data[9] ^ 0x33);
  if (pwrite(fd, &x, 1, kFar + 9) != 1) return wl_fail("pwrite");
  if (shared[9] != x) return wl_fail("a write through the fd is not in the shared mapping");
  if (pwrite(fd, &x, 1, 9) != 1) return wl_fail("pwrite");
  if (private[9] != data[9]) return wl_fail("a write through the fd shows in the copied private page");
  wl_say("OK deleted sparse file, first hole at %lld", (long long)hole);
  return 0;
}
