/* Process and thread attributes that prctl, membarrier and /proc set; each
 * failing check names the attribute. Started as root (loginuid needs
 * CAP_AUDIT_CONTROL). Process-wide: child-subreaper, oom_score_adj 321,
 * THP disabled, membarrier PRIVATE_EXPEDITED and GLOBAL_EXPEDITED
 * registrations, loginuid 4242, dumpable 0. Per thread, the main thread
 * and a second one with different values: parent-death signal (SIGWINCH /
 * SIGURG, both ignored by default: the restorer that becomes the parent
 * exits while the process still runs), timer slack (123456 / 654321 ns),
 * and no_new_privs (set in the main thread only). */
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "workload.h"

#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)

struct thread_attrs {
  int pdeathsig;
  long slack;
  int nnp;
};

static const struct thread_attrs kMain = {SIGWINCH, 123456, 1};
static const struct thread_attrs kOther = {SIGURG, 654321, 0};

static int write_file(const char* path, const char* value) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -1;
  int r = wl_write_all(fd, value, strlen(value));
  close(fd);
  return r;
}

static long read_number(const char* path) {
  char buf[64] = {0};
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -999999;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n > 0 ? strtol(buf, NULL, 10) : -999999;
}

static int set_thread(const struct thread_attrs* a) {
  if (prctl(PR_SET_PDEATHSIG, a->pdeathsig) != 0) return -1;
  if (prctl(PR_SET_TIMERSLACK, a->slack) != 0) return -1;
  if (a->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return 0;
}

/* "" when the calling thread has `a`, else what differs. */
static const char* check_thread(const struct thread_attrs* a, char* why, size_t size) {
  int sig = -1;
  prctl(PR_GET_PDEATHSIG, &sig);
  long slack = prctl(PR_GET_TIMERSLACK);
  int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  why[0] = '\0';
  if (sig != a->pdeathsig) snprintf(why, size, "parent-death signal %d, expected %d", sig, a->pdeathsig);
  else if (slack != a->slack) snprintf(why, size, "timer slack %ld, expected %ld", slack, a->slack);
  else if (nnp != a->nnp) snprintf(why, size, "no_new_privs %d, expected %d", nnp, a->nnp);
  return why;
}

static volatile int phase;  /* 1: thread set up; 2: check now; 3: checked */
static char other_why[256];

static void* other(void* arg) {
  (void)arg;
  if (set_thread(&kOther) != 0) snprintf(other_why, sizeof(other_why), "setup: %s", strerror(errno));
  __atomic_store_n(&phase, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) != 2) usleep(10000);
  if (!other_why[0]) check_thread(&kOther, other_why, sizeof(other_why));
  __atomic_store_n(&phase, 3, __ATOMIC_SEQ_CST);
  return NULL;
}

int main(void) {
  wl_install_handler();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return wl_fail("setup child subreaper: %s", strerror(errno));
  if (write_file("/proc/self/oom_score_adj", "321") != 0) return wl_fail("setup oom_score_adj: %s", strerror(errno));
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) return wl_fail("setup THP disable: %s", strerror(errno));
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0 ||
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0) {
    return wl_fail("setup membarrier: %s", strerror(errno));
  }
  if (write_file("/proc/self/loginuid", "4242") != 0) return wl_fail("setup loginuid: %s", strerror(errno));
  if (prctl(PR_SET_DUMPABLE, 0) != 0) return wl_fail("setup dumpable: %s", strerror(errno));
  pthread_t th;
  if (pthread_create(&th, NULL, other, NULL) != 0) return wl_fail("pthread_create");
  while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) != 1) usleep(1000);
  if (set_thread(&kMain) != 0) return wl_fail("setup main thread: %s", strerror(errno));
  wl_ready();
  wl_wait_nap();

  int subreaper = -1;
  prctl(PR_GET_CHILD_SUBREAPER, &subreaper);
  if (subreaper != 1) return wl_fail("child subreaper %d, expected 1", subreaper);
  long oom = read_number("/proc/self/oom_score_adj");
  if (oom != 321) return wl_fail("oom_score_adj %ld, expected 321", oom);
  int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  if (thp != 1) return wl_fail("THP disable %d, expected 1", thp);
  long registered = syscall(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0);
  long want = MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
  if (registered != want) return wl_fail("membarrier registrations 0x%lx, expected 0x%lx", registered, want);
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    return wl_fail("membarrier PRIVATE_EXPEDITED: %s", strerror(errno));
  }
  long loginuid = read_number("/proc/self/loginuid");
  if (loginuid != 4242) return wl_fail("loginuid %ld, expected 4242", loginuid);
  int dumpable = prctl(PR_GET_DUMPABLE);
  if (dumpable != 0) return wl_fail("dumpable %d, expected 0", dumpable);
  char why[256];
  if (*check_thread(&kMain, why, sizeof(why))) return wl_fail("main thread: %s", why);
  __atomic_store_n(&phase, 2, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&phase, __ATOMIC_SEQ_CST) != 3) usleep(1000);
  if (other_why[0]) return wl_fail("second thread: %s", other_why);
  wl_say("OK attributes");
  return 0;
}
