/* A device node made in argv[1] (1:3, what /dev/null is), opened and
 * removed. The dump must refuse it and leave the process running; the
 * device still works afterwards. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "workload.h"

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: removed_device DIR");
  char path[512];
  snprintf(path, sizeof(path), "%s/gone-null", argv[1]);
  if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) != 0) return wl_fail("mknod %s: %s", path, strerror(errno));
  int fd = open(path, O_WRONLY);
  if (fd < 0) return wl_fail("open %s: %s", path, strerror(errno));
  unlink(path);

  wl_ready();
  wl_wait_nap();

  if (write(fd, "x", 1) != 1) return wl_fail("write to the device: %s", strerror(errno));
  wl_say("OK removed device node still works");
  return 0;
}
