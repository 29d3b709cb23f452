/* Locks and a lease, on files in argv[1]:
 *   lock-flock: flock(LOCK_EX);
 *   lock-posix: a POSIX write lock on bytes 10-19 (fcntl F_SETLK);
 *   lock-ofd:   an OFD read lock from byte 100 to the end (F_OFD_SETLK);
 *   lock-lease: a read lease (F_SETLEASE), the file open read-only;
 *   lock-wlease: a write lease, the file open once, for writing.
 * After restore each is still held: a new open file description of the
 * file sees the conflict (flock LOCK_NB fails; F_OFD_GETLK reports the
 * POSIX lock with our PID and the OFD lock with -1); F_GETLEASE gives
 * F_RDLCK (F_WRLCK) and F_GETOWN our PID (a lease break would signal us).
 * With a second argument, only that one (flock, posix, ofd, lease or
 * wlease). */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "workload.h"

static int open_in(const char* dir, const char* name, int flags) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, flags | O_CREAT, 0644);
  if (fd >= 0 && (flags & O_ACCMODE) != O_RDONLY) (void)!write(fd, "0123456789abcdefghijklmnopqrstuvwxyz", 36);
  return fd;
}

static int ofd_probe(int fd, short type, off_t start, off_t len, struct flock* out) {
  memset(out, 0, sizeof(*out));
  out->l_type = type;
  out->l_whence = SEEK_SET;
  out->l_start = start;
  out->l_len = len;
  return fcntl(fd, F_OFD_GETLK, out);
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: file_locks DIR [flock|posix|ofd|lease|wlease]");
  const char* dir = argv[1];
  const char* only = argc > 2 ? argv[2] : NULL;
#define WANT(k) (only == NULL || strcmp(only, k) == 0)
  int f = -1, p = -1, o = -1, l = -1, wl = -1;
  if (WANT("flock")) {
    f = open_in(dir, "lock-flock", O_RDWR);
    if (f < 0 || flock(f, LOCK_EX | LOCK_NB) != 0) return wl_fail("flock: %s", strerror(errno));
  }
  if (WANT("posix")) {
    p = open_in(dir, "lock-posix", O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
    if (p < 0 || fcntl(p, F_SETLK, &fl) != 0) return wl_fail("F_SETLK: %s", strerror(errno));
  }
  if (WANT("ofd")) {
    o = open_in(dir, "lock-ofd", O_RDWR);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 0};
    if (o < 0 || fcntl(o, F_OFD_SETLK, &fl) != 0) return wl_fail("F_OFD_SETLK: %s", strerror(errno));
  }
  if (WANT("lease")) {
    int w = open_in(dir, "lock-lease", O_WRONLY);
    close(w);
    char path[512];
    snprintf(path, sizeof(path), "%s/lock-lease", dir);
    l = open(path, O_RDONLY);
    if (l < 0 || fcntl(l, F_SETLEASE, F_RDLCK) != 0) return wl_fail("F_SETLEASE: %s", strerror(errno));
  }
  if (WANT("wlease")) {
    wl = open_in(dir, "lock-wlease", O_RDWR);
    if (wl < 0 || fcntl(wl, F_SETLEASE, F_WRLCK) != 0) return wl_fail("F_SETLEASE(F_WRLCK): %s", strerror(errno));
  }

  wl_ready();
  wl_wait_nap();

  if (f >= 0) {
    int other = open_in(dir, "lock-flock", O_RDONLY);
    if (flock(other, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) return wl_fail("the flock is not held");
    close(other);
  }
  if (p >= 0) {
    int other = open_in(dir, "lock-posix", O_RDWR);
    struct flock got;
    if (ofd_probe(other, F_RDLCK, 0, 0, &got) != 0) return wl_fail("F_OFD_GETLK: %s", strerror(errno));
    if (got.l_type != F_WRLCK || got.l_start != 10 || got.l_len != 10 || got.l_pid != getpid()) {
      return wl_fail("POSIX lock: type %d start %ld len %ld pid %d", got.l_type, (long)got.l_start,
                     (long)got.l_len, (int)got.l_pid);
    }
    if (ofd_probe(other, F_WRLCK, 0, 10, &got) != 0 || got.l_type != F_UNLCK) return wl_fail("bytes 0-9 are locked");
    close(other);
  }
  if (o >= 0) {
    int other = open_in(dir, "lock-ofd", O_RDWR);
    struct flock got;
    if (ofd_probe(other, F_WRLCK, 0, 0, &got) != 0) return wl_fail("F_OFD_GETLK: %s", strerror(errno));
    if (got.l_type != F_RDLCK || got.l_start != 100 || got.l_len != 0 || got.l_pid != -1) {
      return wl_fail("OFD lock: type %d start %ld len %ld pid %d", got.l_type, (long)got.l_start,
                     (long)got.l_len, (int)got.l_pid);
    }
    if (ofd_probe(other, F_RDLCK, 0, 0, &got) != 0 || got.l_type != F_UNLCK) return wl_fail("a read lock conflicts");
    close(other);
  }
  if (l >= 0) {
    int lease = fcntl(l, F_GETLEASE);
    if (lease != F_RDLCK) return wl_fail("F_GETLEASE gives %d, not F_RDLCK", lease);
    int owner = fcntl(l, F_GETOWN);
    if (owner != getpid()) return wl_fail("the lease's owner is %d, not us", owner);
  }
  if (wl >= 0) {
    int lease = fcntl(wl, F_GETLEASE);
    if (lease != F_WRLCK) return wl_fail("F_GETLEASE gives %d, not F_WRLCK", lease);
    if (fcntl(wl, F_GETOWN) != getpid()) return wl_fail("the write lease's owner is not us");
  }
  wl_say("OK locks held");
  return 0;
}
