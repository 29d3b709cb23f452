/* A flock on an open file description this process shares with another
 * one that took the lock and still runs (as with flock(1) around a
 * command): a grandchild, not a child, so the dump looks at the lock and
 * not at a process tree. The grandchild would keep the lock after the
 * process is killed, so the dump must refuse it, and leave it running;
 * the lock is still held afterwards. argv[1] is where the file is made. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "workload.h"

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: shared_flock DIR");
  char path[512];
  snprintf(path, sizeof(path), "%s/shared-flock", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  int p[2];
  if (fd < 0 || pipe(p) != 0) return wl_fail("open %s: %s", path, strerror(errno));
  pid_t child = fork();
  if (child == 0) {
    if (fork() == 0) {
      char c = flock(fd, LOCK_EX | LOCK_NB) == 0 ? 'y' : 'n';
      (void)!write(p[1], &c, 1);
      for (;;) pause();
    }
    _exit(0);
  }
  waitpid(child, NULL, 0);
  char c = 0;
  if (read(p[0], &c, 1) != 1 || c != 'y') return wl_fail("the grandchild could not take the flock");
  close(p[0]);
  close(p[1]);

  wl_ready();
  wl_wait_nap();

  int other = open(path, O_RDONLY);
  if (flock(other, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) return wl_fail("the flock is not held");
  wl_say("OK shared flock still held");
  return 0;
}
