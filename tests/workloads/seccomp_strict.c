/* Seccomp strict mode in one thread: it enters SECCOMP_MODE_STRICT and
 * blocks in read() on a pipe. After SIGUSR1 the main thread checks that
 * the kernel still shows it in strict mode (Seccomp: 1) and that it still
 * works within the mode: it is sent a byte, answers with write() and ends
 * with exit(), the calls strict mode allows.
 *
 *   seccomp_strict [mixed]
 *
 * "mixed" also puts the main thread in filter mode (a filter that allows
 * everything), which a dump refuses: restore installs filters with TSYNC,
 * which a strict thread cannot take. */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "workload.h"

static int go[2], done[2];
static volatile pid_t strict_tid;

static void* strict_thread(void* arg) {
  (void)arg;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) {
    strict_tid = -1;
    return NULL;
  }
  strict_tid = tid;  /* a plain store: no system call */
  char c;
  while (syscall(SYS_read, go[0], &c, 1) != 1) {
  }
  syscall(SYS_write, done[1], "k", 1);
  syscall(SYS_exit, 0);
  return NULL;
}

static int seccomp_mode(pid_t tid) {
  char path[64], buf[8192];
  snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char* at = strstr(buf, "\nSeccomp:");
  return at ? atoi(at + 9) : -1;
}

int main(int argc, char** argv) {
  const int mixed = argc > 1 && strcmp(argv[1], "mixed") == 0;
  wl_install_handler();
  if (pipe(go) != 0 || pipe(done) != 0) return wl_fail("pipe: %s", strerror(errno));
  pthread_t th;
  if (pthread_create(&th, NULL, strict_thread, NULL) != 0) return wl_fail("pthread_create");
  while (strict_tid == 0) usleep(1000);
  if (strict_tid < 0) return wl_fail("setup strict mode: prctl failed");
  if (mixed) {
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {1, &allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
      return wl_fail("setup filter: %s", strerror(errno));
    }
  }
  wl_ready();
  wl_wait_nap();

  int mode = seccomp_mode(strict_tid);
  if (mode != SECCOMP_MODE_STRICT) return wl_fail("seccomp strict: thread %d has mode %d, expected 1", strict_tid, mode);
  const int main_mode = seccomp_mode((pid_t)syscall(SYS_gettid));
  if (main_mode != (mixed ? SECCOMP_MODE_FILTER : 0)) return wl_fail("seccomp: the main thread has mode %d", main_mode);
  if (write(go[1], "g", 1) != 1) return wl_fail("write to the strict thread: %s", strerror(errno));
  struct pollfd p = {done[0], POLLIN, 0};
  int r;
  while ((r = poll(&p, 1, 5000)) < 0 && errno == EINTR) {
  }
  char c;
  if (r != 1 || read(done[0], &c, 1) != 1 || c != 'k') return wl_fail("seccomp strict: the strict thread did not answer");
  wl_say("OK seccomp strict");
  return 0;
}
