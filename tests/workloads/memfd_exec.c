/* A memfd holding a copy of /bin/echo, executed with fexecve after
 * restore: the program it becomes prints the OK line. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#include "workload.h"

int main(void) {
  wl_install_handler();
  int in = open("/bin/echo", O_RDONLY);
  if (in < 0) return wl_fail("open /bin/echo: %s", strerror(errno));
  struct stat st;
  if (fstat(in, &st) != 0) return wl_fail("fstat");
  int fd = memfd_create("crlib-echo", MFD_CLOEXEC);
  if (fd < 0) return wl_fail("memfd_create: %s", strerror(errno));
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = sendfile(fd, in, NULL, (size_t)(st.st_size - done));
    if (n <= 0) return wl_fail("sendfile: %s", strerror(errno));
    done += n;
  }
  close(in);

  wl_ready();
  wl_wait_nap();

  char* argv[] = {"echo", "OK", "memfd", "executed", NULL};
  char* envp[] = {NULL};
  fexecve(fd, argv, envp);
  return wl_fail("fexecve: %s", strerror(errno));
}
