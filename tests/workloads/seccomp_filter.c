/* Seccomp: with no_new_privs, three stacked filters — getppid fails with
 * EPERM, getpriority with EACCES (installed with SECCOMP_FILTER_FLAG_LOG),
 * sigaltstack kills the process (crlib's dump calls it in every thread:
 * it must not be filtered) — installed before a second thread starts, so
 * both threads share them. After SIGUSR1 both threads must still see
 * them in force, and nothing else filtered.
 *
 *   seccomp_filter [shared|differ|notify|dispatch|nonnp]
 *
 * The other modes make what a dump refuses, and then check that the
 * process runs on as it was: "differ" gives the second thread one more
 * filter of its own, "notify" adds a filter that returns
 * SECCOMP_RET_USER_NOTIF (with no listener), "dispatch" turns on syscall
 * user dispatch (everything allowed) in the main thread, "nonnp" installs
 * the filters as root without no_new_privs and then becomes uid 65534,
 * which drops CAP_SYS_ADMIN. */
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "workload.h"

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif

static int install(int nr, unsigned ret, unsigned flags) {
  struct sock_filter prog[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, ret),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog fprog = {sizeof(prog) / sizeof(prog[0]), prog};
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

static int expected_filters;       /* every thread's */
static __thread int own_filters;   /* the calling thread's alone */

/* The calling thread's Seccomp_filters: count. */
static int filter_count(void) {
  char buf[8192];
  int fd = open("/proc/thread-self/status", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char* at = strstr(buf, "Seccomp_filters:");
  return at ? atoi(at + 16) : -1;
}

/* "" when the filters are in force in the calling thread. */
static const char* check(char* why, size_t size) {
  why[0] = '\0';
  int count = filter_count();
  if (count != expected_filters + own_filters) {
    snprintf(why, size, "%d filters, expected %d", count, expected_filters + own_filters);
    return why;
  }
  errno = 0;
  long r = syscall(SYS_getppid);
  if (r != -1 || errno != EPERM) {
    snprintf(why, size, "getppid returned %ld (%s), expected EPERM from the first filter", r, strerror(errno));
    return why;
  }
  errno = 0;
  r = syscall(SYS_getpriority, PRIO_PROCESS, 0);
  if (r != -1 || errno != EACCES) {
    snprintf(why, size, "getpriority returned %ld (%s), expected EACCES from the second filter", r, strerror(errno));
    return why;
  }
  if (syscall(SYS_getpid) != getpid() || syscall(SYS_getuid) < 0) snprintf(why, size, "getpid/getuid filtered");
  return why;
}

static volatile int phase;
static char other_why[256];
static int differ;

static void* other(void* arg) {
  (void)arg;
  if (differ) own_filters = 1;
  if (differ && install(SYS_getpgrp, SECCOMP_RET_ERRNO | EPERM, 0) != 0) {
    snprintf(other_why, sizeof(other_why), "setup: %s", strerror(errno));
  }
  __atomic_store_n(&phase, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) != 2) usleep(10000);
  if (!other_why[0]) check(other_why, sizeof(other_why));
  __atomic_store_n(&phase, 3, __ATOMIC_SEQ_CST);
  return NULL;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "shared";
  differ = strcmp(mode, "differ") == 0;
  wl_install_handler();
  const int nonnp = strcmp(mode, "nonnp") == 0;
  if (!nonnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return wl_fail("setup no_new_privs: %s", strerror(errno));
  }
  if (install(SYS_getppid, SECCOMP_RET_ERRNO | EPERM, 0) != 0 ||
      install(SYS_getpriority, SECCOMP_RET_ERRNO | EACCES, SECCOMP_FILTER_FLAG_LOG) != 0 ||
      install(SYS_sigaltstack, SECCOMP_RET_KILL_PROCESS, 0) != 0) {
    return wl_fail("setup seccomp: %s", strerror(errno));
  }
  expected_filters = 3;
  if (strcmp(mode, "notify") == 0 && install(SYS_getpgrp, SECCOMP_RET_USER_NOTIF, 0) != 0) {
    return wl_fail("setup USER_NOTIF filter: %s", strerror(errno));
  }
  if (strcmp(mode, "notify") == 0) expected_filters = 4;
  static char selector = 0;  /* SYSCALL_DISPATCH_FILTER_ALLOW */
  if (strcmp(mode, "dispatch") == 0 &&
      prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector) != 0) {
    return wl_fail("setup syscall user dispatch: %s", strerror(errno));
  }
  if (nonnp && setresuid(65534, 65534, 65534) != 0) return wl_fail("setup setresuid: %s", strerror(errno));
  pthread_t th;
  if (pthread_create(&th, NULL, other, NULL) != 0) return wl_fail("pthread_create");
  while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) != 1) usleep(1000);
  if (other_why[0]) return wl_fail("second thread %s", other_why);
  wl_ready();
  wl_wait_nap();

  char why[256];
  if (*check(why, sizeof(why))) return wl_fail("main thread: seccomp: %s", why);
  __atomic_store_n(&phase, 2, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) != 3) usleep(1000);
  if (other_why[0]) return wl_fail("second thread: seccomp: %s", other_why);
  wl_say("OK seccomp %s", mode);
  return 0;
}
