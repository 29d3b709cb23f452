/* Descriptors on namespace files. By default /proc/self/ns/net and
 * /proc/self/ns/uts (crlib's own namespaces): after restore each must be
 * the same namespace (inode) and still the process's own. With "foreign",
 * a UTS namespace no other process is in, kept alive only by the fd (a
 * child made it and was reaped): the dump must refuse it. */
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "workload.h"

int main(int argc, char** argv) {
  wl_install_handler();
  int foreign = argc > 1 && strcmp(argv[1], "foreign") == 0;
  const char* names[2] = {"/proc/self/ns/net", "/proc/self/ns/uts"};
  int fds[2];
  struct stat before[2];
  for (int i = 0; i < 2; ++i) {
    fds[i] = open(names[i], O_RDONLY);
    if (fds[i] < 0 || fstat(fds[i], &before[i]) != 0) return wl_fail("open %s: %s", names[i], strerror(errno));
  }
  int other = -1;
  if (foreign) {
    int p[2];
    if (pipe(p) != 0) return wl_fail("pipe: %s", strerror(errno));
    pid_t child = fork();
    if (child == 0) {
      char c = unshare(CLONE_NEWUTS) == 0 ? 'y' : 'n';
      (void)!write(p[1], &c, 1);
      pause();
      _exit(0);
    }
    char c = 0;
    if (read(p[0], &c, 1) != 1 || c != 'y') return wl_fail("unshare(CLONE_NEWUTS) in the child");
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/uts", (int)child);
    other = open(path, O_RDONLY);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(p[0]);
    close(p[1]);
    if (other < 0) return wl_fail("open %s: %s", path, strerror(errno));
  }

  wl_ready();
  wl_wait_nap();

  for (int i = 0; i < 2; ++i) {
    struct stat st, now;
    if (fstat(fds[i], &st) != 0 || stat(names[i], &now) != 0) return wl_fail("fstat %s: %s", names[i], strerror(errno));
    if (st.st_ino != before[i].st_ino) return wl_fail("fd %d is namespace %lu, was %lu", fds[i], (unsigned long)st.st_ino, (unsigned long)before[i].st_ino);
    if (now.st_ino != st.st_ino) return wl_fail("fd %d is not the process's own %s", fds[i], names[i]);
  }
  if (foreign) {
    struct stat st;
    if (fstat(other, &st) != 0) return wl_fail("the foreign namespace fd is gone");
  }
  wl_say("OK namespace descriptors");
  return 0;
}
