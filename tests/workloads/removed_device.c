/* A character device node made in argv[1] (1:3, what /dev/null is, mode
 * 0620), opened and removed. After restore the fd is still a removed node
 * of that device with that mode, and it works. With "nocap", the process
 * drops CAP_MKNOD from its effective set first: restore could not make the
 * node again with its rights, so the dump must refuse it. */
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "workload.h"

static int drop_effective(int cap) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) != 0) return -1;
  d[cap / 32].effective &= ~(1u << (cap % 32));
  return (int)syscall(SYS_capset, &h, d);
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: removed_device DIR [nocap]");
  char path[512];
  snprintf(path, sizeof(path), "%s/gone-null", argv[1]);
  if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) != 0) return wl_fail("mknod %s: %s", path, strerror(errno));
  if (chmod(path, 0620) != 0) return wl_fail("chmod: %s", strerror(errno));
  int fd = open(path, O_WRONLY);
  if (fd < 0) return wl_fail("open %s: %s", path, strerror(errno));
  unlink(path);
  if (argc > 2 && strcmp(argv[2], "nocap") == 0 && drop_effective(CAP_MKNOD) != 0) {
    return wl_fail("capset: %s", strerror(errno));
  }

  wl_ready();
  wl_wait_nap();

  struct stat st;
  if (fstat(fd, &st) != 0) return wl_fail("fstat: %s", strerror(errno));
  if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3) || st.st_nlink != 0) {
    return wl_fail("fd is not a removed node of 1:3 (mode %o, %u:%u, %lu links)", st.st_mode,
                   major(st.st_rdev), minor(st.st_rdev), (unsigned long)st.st_nlink);
  }
  if ((st.st_mode & 07777) != 0620) return wl_fail("node mode %o, was 0620", st.st_mode & 07777);
  if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) return wl_fail("fd is no longer write-only");
  if (write(fd, "x", 1) != 1) return wl_fail("write to the device: %s", strerror(errno));
  wl_say("OK removed device node still works");
  return 0;
}
