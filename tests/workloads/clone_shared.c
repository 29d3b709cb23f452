/* A child created with clone(CLONE_FILES | CLONE_FS): it shares its
 * parent's fd table and its cwd, root and umask, not its memory.
 * Kernel state: files_struct and fs_struct shared between two processes.
 * After SIGUSR1 the child opens a descriptor and changes directory and
 * umask; the parent must see all three, then the child exits 0. */
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "tree.h"

struct Shared {
  atomic_int go;   /* parent -> child: check now */
  atomic_int fd;   /* child -> parent: the fd it opened, or -1 */
};

int main(void) {
  wl_install_handler();
  struct Shared* s = tr_shared_page();
  if (s == NULL) return wl_fail("mmap: %s", strerror(errno));
  atomic_store(&s->fd, -2);
  if (chdir("/") != 0) return wl_fail("chdir /: %s", strerror(errno));
  umask(022);
  const pid_t parent = getpid();
  /* fork() with two more things shared: no CLONE_VM, so no stack needed. */
  long child = syscall(SYS_clone, CLONE_FILES | CLONE_FS | SIGCHLD, 0, 0, 0, 0);
  if (child < 0) return wl_fail("clone: %s", strerror(errno));
  if (child == 0) {
    while (!atomic_load(&s->go)) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
      if (getppid() != parent) _exit(3);
    }
    int fd = open("/dev/null", O_RDONLY);
    if (chdir("/tmp") != 0 || fd < 0) _exit(4);
    umask(077);
    atomic_store(&s->fd, fd);
    _exit(0);
  }
  wl_ready();
  wl_wait_nap();

  atomic_store(&s->go, 1);
  int status;
  if (waitpid((pid_t)child, &status, 0) != child) return wl_fail("waitpid: %s", strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return wl_fail("child status %#x", status);
  const int fd = atomic_load(&s->fd);
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
    return wl_fail("fd %d the child opened is not in our table: not shared (CLONE_FILES)", fd);
  }
  char cwd[256];
  if (getcwd(cwd, sizeof(cwd)) == NULL || strcmp(cwd, "/tmp") != 0) {
    return wl_fail("cwd is %s, not the child's /tmp: not shared (CLONE_FS)", cwd);
  }
  const mode_t mask = umask(0);
  if (mask != 077) return wl_fail("umask %o, not the child's 077", (unsigned)mask);
  wl_say("OK fd table, cwd and umask shared with the child");
  return 0;
}
