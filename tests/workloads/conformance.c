/* One kernel feature per run, chosen by argv[1], for
 * tests/task/conformance_test.cc: each sets its state up, says READY,
 * waits for SIGUSR1 and checks that the state is still there. The features
 * are those crlib must either carry or refuse at dump (never restore
 * silently different), so a run that is refused checks the original,
 * untouched process.
 *
 *   pkey         memory protected by a protection key (pkey_mprotect)
 *   pkey_held    a protection key allocated, used by no mapping
 *   mseal        a sealed mapping (mseal)
 *   numa_task    a task memory policy (set_mempolicy MPOL_BIND)
 *   numa_thread  a task memory policy of a second thread only
 *   numa_vma     a VMA memory policy (mbind MPOL_PREFERRED)
 *   tsc          prctl(PR_SET_TSC, PR_TSC_SIGSEGV)
 *   tsc_thread   the same in a second thread only
 *   mdwe         prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
 *   spec_ssb     prctl(PR_SET_SPECULATION_CTRL, store bypass, disable)
 *   spec_ib      prctl(PR_SET_SPECULATION_CTRL, indirect branch, disable)
 *   mce          prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY)
 *   sud          syscall user dispatch on, selector at "allow"
 *   io_flusher   prctl(PR_SET_IO_FLUSHER, 1)
 *   auxv         PR_GET_AUXV gives the same vector after as before
 *   ring         an io_uring's rings mapped, its fd closed
 *   sem_undo     a System V semaphore raised with SEM_UNDO
 *   async        a pipe with O_ASYNC, F_SETOWN to itself, F_SETSIG SIGUSR2
 *   fd KIND      one descriptor of KIND on fd 10 (see open_kind)
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <mqueue.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

#include "workload.h"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif
#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#define PR_GET_IO_FLUSHER 58
#endif
#define SYS_mseal_ 462
#define PR_GET_AUXV_ 0x41555856
#define SYS_memfd_secret_ 447
#define MPOL_PREFERRED_ 1
#define MPOL_BIND_ 2
#define MPOL_F_ADDR_ (1 << 1)

enum { kPages = 4, kSeed = 0x5eed, kFd = 10 };

static size_t page;

#define PR_SET_SYSCALL_USER_DISPATCH_ 59
static volatile char sud_selector; /* 0: allow, 1: block */
static volatile sig_atomic_t sigsys_seen;

static void on_sigsys(int sig) {
  (void)sig;
  sud_selector = 0; /* the handler's own return (rt_sigreturn) must pass */
  sigsys_seen = 1;
}

/* numa_thread: 1 once the policy is set (-1 if not), 2 once checked. */
static volatile int thread_ready, thread_mode = -1;

/* tsc_thread: the same protocol with PR_SET_TSC. */
static void* tsc_and_wait(void* arg) {
  (void)arg;
  if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV) != 0) {
    thread_ready = -1;
    return NULL;
  }
  thread_ready = 1;
  wl_wait_nap();
  int mode = 0;
  if (prctl(PR_GET_TSC, &mode) == 0) thread_mode = mode;
  thread_ready = 2;
  return NULL;
}

static void* bind_and_wait(void* arg) {
  (void)arg;
  unsigned long nodes = 1;
  if (syscall(SYS_set_mempolicy, MPOL_BIND_, &nodes, 64) != 0) {
    thread_ready = -1;
    return NULL;
  }
  thread_ready = 1;
  wl_wait_nap();
  int mode = -1;
  unsigned long got = 0;
  if (syscall(SYS_get_mempolicy, &mode, &got, 64, NULL, 0) == 0) thread_mode = mode;
  thread_ready = 2;
  return NULL;
}

static char* map_pattern(void) {
  char* mem = mmap(NULL, kPages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem != MAP_FAILED) wl_fill(mem, kPages * page, kSeed, 0);
  return mem;
}

static int check_pattern(const char* mem) {
  long bad = wl_mismatch(mem, kPages * page, kSeed, 0);
  if (bad >= 0) return wl_fail("memory differs at byte %ld", bad);
  return 0;
}

/* Opens a descriptor of `kind`; -1 with errno on failure. */
static int open_kind(const char* kind) {
  if (!strcmp(kind, "fanotify")) return fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
  /* Of the parent (the test): outside the dumped processes. */
  if (!strcmp(kind, "pidfd")) return (int)syscall(SYS_pidfd_open, getppid(), 0);
  if (!strcmp(kind, "userfaultfd")) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    struct uffdio_api api = {.api = UFFD_API};
    if (fd >= 0 && ioctl(fd, UFFDIO_API, &api) != 0) return -1;
    return fd;
  }
  if (!strcmp(kind, "io_uring")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    return (int)syscall(SYS_io_uring_setup, 4, &p);
  }
  if (!strcmp(kind, "memfd_secret")) {
    int fd = (int)syscall(SYS_memfd_secret_, 0);
    if (fd >= 0 && ftruncate(fd, (off_t)page) != 0) return -1;
    return fd;
  }
  if (!strcmp(kind, "perf_event")) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_TASK_CLOCK;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
  }
  if (!strcmp(kind, "bpf_map")) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 8;
    a.max_entries = 1;
    return (int)syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a));
  }
  if (!strcmp(kind, "mqueue")) {
    char name[64];
    snprintf(name, sizeof(name), "/crlib-conformance-%d", (int)getpid());
    int fd = mq_open(name, O_RDWR | O_CREAT, 0600, NULL);
    if (fd >= 0) mq_unlink(name);  /* no path left that could be reopened */
    return fd;
  }
  /* Sockets crlib carries are tests/task/socket_test.cc's; netlink ones it refuses. */
  if (!strcmp(kind, "socket")) return socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (!strcmp(kind, "kvm")) return open("/dev/kvm", O_RDWR);
  errno = EINVAL;
  return -1;
}

int main(int argc, char** argv) {
  wl_install_handler();
  page = (size_t)sysconf(_SC_PAGESIZE);
  const char* what = argc > 1 ? argv[1] : "";
  char* mem = NULL;
  char* ring = NULL;
  unsigned* ring_entries = NULL;
  unsigned long auxv[64];
  long auxv_len = 0;
  int key = -1, semid = -1;
  if (!strcmp(what, "pkey")) {
    mem = map_pattern();
    key = pkey_alloc(0, 0);
    if (key < 0) return wl_fail("pkey_alloc: %s", strerror(errno));
    if (pkey_mprotect(mem, kPages * page, PROT_READ | PROT_WRITE, key) != 0) {
      return wl_fail("pkey_mprotect: %s", strerror(errno));
    }
  } else if (!strcmp(what, "pkey_held")) {
    key = pkey_alloc(0, 0);
    if (key < 0) return wl_fail("pkey_alloc: %s", strerror(errno));
  } else if (!strcmp(what, "auxv")) {
    auxv_len = prctl(PR_GET_AUXV_, auxv, sizeof(auxv), 0, 0);
    if (auxv_len <= 0 || auxv_len > (long)sizeof(auxv)) return wl_fail("PR_GET_AUXV: %s", strerror(errno));
  } else if (!strcmp(what, "ring")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (fd < 0) return wl_fail("io_uring_setup: %s", strerror(errno));
    size_t size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (ring == MAP_FAILED) return wl_fail("mmap of the SQ ring: %s", strerror(errno));
    ring_entries = (unsigned*)(ring + p.sq_off.ring_entries);
    close(fd);
  } else if (!strcmp(what, "mseal")) {
    mem = map_pattern();
    if (syscall(SYS_mseal_, mem, kPages * page, 0) != 0) return wl_fail("mseal: %s", strerror(errno));
  } else if (!strcmp(what, "numa_task")) {
    unsigned long nodes = 1;
    if (syscall(SYS_set_mempolicy, MPOL_BIND_, &nodes, 64) != 0) {
      return wl_fail("set_mempolicy: %s", strerror(errno));
    }
  } else if (!strcmp(what, "numa_thread")) {
    pthread_t th;
    if (pthread_create(&th, NULL, bind_and_wait, NULL) != 0) return wl_fail("pthread_create");
    while (!thread_ready) usleep(1000);
    if (thread_ready < 0) return wl_fail("set_mempolicy in the thread: %s", strerror(errno));
  } else if (!strcmp(what, "numa_vma")) {
    mem = map_pattern();
    unsigned long nodes = 1;
    if (syscall(SYS_mbind, mem, kPages * page, MPOL_PREFERRED_, &nodes, 64, 0) != 0) {
      return wl_fail("mbind: %s", strerror(errno));
    }
  } else if (!strcmp(what, "tsc")) {
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV) != 0) return wl_fail("PR_SET_TSC: %s", strerror(errno));
  } else if (!strcmp(what, "tsc_thread")) {
    pthread_t th;
    if (pthread_create(&th, NULL, tsc_and_wait, NULL) != 0) return wl_fail("pthread_create");
    while (!thread_ready) usleep(1000);
    if (thread_ready < 0) return wl_fail("PR_SET_TSC in the thread: %s", strerror(errno));
  } else if (!strcmp(what, "mdwe")) {
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0) {
      return wl_fail("PR_SET_MDWE: %s", strerror(errno));
    }
  } else if (!strcmp(what, "spec_ssb") || !strcmp(what, "spec_ib")) {
    int which = what[5] == 's' ? PR_SPEC_STORE_BYPASS : PR_SPEC_INDIRECT_BRANCH;
    if (prctl(PR_SET_SPECULATION_CTRL, which, PR_SPEC_DISABLE, 0, 0) != 0) {
      /* ENXIO or EPERM, not a specific error, when the kernel offers no
       * per-task control: the test checks PR_SPEC_PRCTL before it starts
       * this, so here the control itself failed. */
      return wl_fail("PR_SET_SPECULATION_CTRL(%s, PR_SPEC_DISABLE): %s", what, strerror(errno));
    }
  } else if (!strcmp(what, "mce")) {
    if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) != 0) {
      return wl_fail("PR_MCE_KILL: %s", strerror(errno));
    }
  } else if (!strcmp(what, "sud")) {
    /* The selector allows every system call; only calls from outside
     * [0, 1) would be checked: all of them. */
    if (prctl(PR_SET_SYSCALL_USER_DISPATCH_, 1, 0, 1, &sud_selector) != 0) {
      return wl_fail("PR_SET_SYSCALL_USER_DISPATCH: %s", strerror(errno));
    }
  } else if (!strcmp(what, "io_flusher")) {
    if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) return wl_fail("PR_SET_IO_FLUSHER: %s", strerror(errno));
  } else if (!strcmp(what, "sem_undo")) {
    semid = semget(IPC_PRIVATE, 1, 0600);
    struct sembuf up = {0, 1, SEM_UNDO};
    if (semid < 0 || semop(semid, &up, 1) != 0) return wl_fail("semget/semop: %s", strerror(errno));
  } else if (!strcmp(what, "async")) {
    int p[2];
    if (pipe(p) != 0 || dup2(p[0], kFd) != kFd || dup2(p[1], kFd + 1) != kFd + 1) {
      return wl_fail("pipe: %s", strerror(errno));
    }
    close(p[0]);
    close(p[1]);
    if (fcntl(kFd, F_SETOWN, getpid()) != 0 || fcntl(kFd, F_SETSIG, SIGUSR2) != 0 ||
        fcntl(kFd, F_SETFL, fcntl(kFd, F_GETFL) | O_ASYNC) != 0) {
      return wl_fail("fcntl: %s", strerror(errno));
    }
  } else if (!strcmp(what, "fd") && argc > 2) {
    int fd = open_kind(argv[2]);
    if (fd < 0) return wl_fail("opening a %s: %s", argv[2], strerror(errno));
    if (dup2(fd, kFd) != kFd) return wl_fail("dup2: %s", strerror(errno));
    if (fd != kFd) close(fd);
  } else {
    return wl_fail("usage: conformance FEATURE [KIND]");
  }

  wl_ready();
  wl_wait_nap();

  if (mem && check_pattern(mem)) return 1;
  if (!strcmp(what, "pkey")) {
    /* The key is still held: a new one is another. */
    int other = pkey_alloc(0, 0);
    if (other == key) return wl_fail("pkey_alloc handed out key %d again", key);
  } else if (!strcmp(what, "pkey_held")) {
    int other = pkey_alloc(0, 0);
    if (other == key) return wl_fail("pkey_alloc handed out key %d again", key);
  } else if (!strcmp(what, "auxv")) {
    unsigned long now[64];
    long n = prctl(PR_GET_AUXV_, now, sizeof(now), 0, 0);
    if (n != auxv_len || memcmp(now, auxv, (size_t)n) != 0) return wl_fail("PR_GET_AUXV differs");
    if (getauxval(AT_PAGESZ) != page) return wl_fail("AT_PAGESZ differs");
  } else if (!strcmp(what, "ring")) {
    if (*ring_entries != 4) return wl_fail("the SQ ring says %u entries", *ring_entries);
  } else if (!strcmp(what, "mseal")) {
    if (munmap(mem, page) == 0 || errno != EPERM) return wl_fail("the mapping is no longer sealed");
  } else if (!strcmp(what, "numa_thread")) {
    while (thread_ready != 2) usleep(1000);
    if (thread_mode != MPOL_BIND_) return wl_fail("the thread's memory policy is %d", thread_mode);
  } else if (!strcmp(what, "numa_task") || !strcmp(what, "numa_vma")) {
    int mode = -1;
    unsigned long nodes = 0;
    long r = !strcmp(what, "numa_task")
                 ? syscall(SYS_get_mempolicy, &mode, &nodes, 64, NULL, 0)
                 : syscall(SYS_get_mempolicy, &mode, &nodes, 64, mem, MPOL_F_ADDR_);
    int want = !strcmp(what, "numa_task") ? MPOL_BIND_ : MPOL_PREFERRED_;
    if (r != 0 || mode != want) return wl_fail("memory policy is %d, not %d", mode, want);
  } else if (!strcmp(what, "tsc")) {
    int mode = 0;
    if (prctl(PR_GET_TSC, &mode) != 0 || mode != PR_TSC_SIGSEGV) return wl_fail("PR_GET_TSC is %d", mode);
  } else if (!strcmp(what, "tsc_thread")) {
    while (thread_ready != 2) usleep(1000);
    if (thread_mode != PR_TSC_SIGSEGV) return wl_fail("the thread's PR_GET_TSC is %d", thread_mode);
  } else if (!strcmp(what, "mdwe")) {
    if (prctl(PR_GET_MDWE, 0, 0, 0, 0) != PR_MDWE_REFUSE_EXEC_GAIN) return wl_fail("MDWE is off");
  } else if (!strcmp(what, "spec_ssb") || !strcmp(what, "spec_ib")) {
    int which = what[5] == 's' ? PR_SPEC_STORE_BYPASS : PR_SPEC_INDIRECT_BRANCH;
    int v = prctl(PR_GET_SPECULATION_CTRL, which, 0, 0, 0);
    if (v < 0 || !(v & PR_SPEC_DISABLE)) return wl_fail("%s speculation control is 0x%x", what, v);
  } else if (!strcmp(what, "mce")) {
    if (prctl(PR_MCE_KILL_GET, 0, 0, 0, 0) != PR_MCE_KILL_EARLY) return wl_fail("PR_MCE_KILL is not early");
  } else if (!strcmp(what, "sud")) {
    /* Blocked now: a system call raises SIGSYS, which the handler counts. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigsys;
    sigaction(SIGSYS, &sa, NULL);
    sud_selector = 1; /* SYSCALL_DISPATCH_FILTER_BLOCK */
    syscall(SYS_getppid);
    sud_selector = 0;
    if (!sigsys_seen) return wl_fail("syscall user dispatch is off");
  } else if (!strcmp(what, "io_flusher")) {
    if (prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) != 1) return wl_fail("not an I/O flusher any more");
  } else if (!strcmp(what, "sem_undo")) {
    if (semctl(semid, 0, GETVAL) != 1) return wl_fail("semaphore value is not 1");
    semctl(semid, 0, IPC_RMID);
  } else if (!strcmp(what, "async")) {
    if (!(fcntl(kFd, F_GETFL) & O_ASYNC)) return wl_fail("O_ASYNC is off");
    if (fcntl(kFd, F_GETOWN) != getpid()) return wl_fail("F_GETOWN is %d", fcntl(kFd, F_GETOWN));
    if (fcntl(kFd, F_GETSIG) != SIGUSR2) return wl_fail("F_GETSIG is %d", fcntl(kFd, F_GETSIG));
  } else if (!strcmp(what, "fd")) {
    if (fcntl(kFd, F_GETFD) < 0) return wl_fail("fd %d is closed", kFd);
    if (!strcmp(argv[2], "kvm") && ioctl(kFd, _IO(0xAE, 0x00)) != 12) {
      return wl_fail("fd %d is no KVM device", kFd);
    }
  }
  wl_say("OK %s %s", what, argc > 2 ? argv[2] : "");
  return 0;
}
