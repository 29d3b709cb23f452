/* A main thread and three more, each with state of its own that a
 * checkpoint must keep per thread:
 *
 *   spinner   distinct patterns in 13 general registers, xmm0-15 and MXCSR,
 *             loaded by one asm block that then spins without any system
 *             call until told to stop, then stores them all;
 *   waiter    blocked in futex(FUTEX_WAIT) with no timeout, a SIGHUP queued
 *             to it alone (tgkill) and blocked;
 *   altstack  an alternate signal stack, napping in clock_nanosleep(2); after the
 *             restore a SIGUSR2 handler (SA_ONSTACK) must run on that stack.
 *
 * Every thread, the main one included, has its own blocked signal mask and
 * name, sets a __thread variable, and records gettid(), its clear_child_tid
 * (PR_GET_TID_ADDRESS), its robust futex list and whether glibc's rseq area
 * is registered; after SIGUSR1 each checks all of it is unchanged. Only the
 * main thread leaves SIGUSR1 unblocked, so the signal reaches it. The main
 * thread then joins the others with a deadline: a join returns only when the
 * kernel clears and wakes the thread's clear_child_tid.
 *
 * Before READY the workload prints "TIDS <spinner> <waiter> <altstack>". */
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#include "workload.h"

enum { kSpinner = 1, kWaiter = 2, kAltstack = 3, kThreads = 4 };
enum { kAltstackBytes = 64 * 1024 };
enum { kMxcsr = 0x1f80 | 0x6000 };  /* round toward zero */

struct Thread {
  const char* name;
  int blocked[4];  /* signals it blocks (0 ends the list) */
  pthread_t handle;
  pid_t tid;
  uint64_t tls;  /* what it stored in tls_value */
  uint64_t tid_address;
  uint64_t robust_head, robust_length;
  unsigned rseq_length;  /* length glibc registered rseq with; 0: unknown */
  volatile int armed;    /* in its waiting state */
  volatile int finished; /* reached the end of its checks */
  char fail[200];
};

static struct Thread threads[kThreads] = {
    {.name = "wl-main", .blocked = {SIGWINCH, SIGHUP}},
    {.name = "wl-spinner", .blocked = {SIGUSR1, SIGPIPE}},
    {.name = "wl-waiter", .blocked = {SIGUSR1, SIGHUP, SIGURG}},
    {.name = "wl-altstack", .blocked = {SIGUSR1}},
};

static __thread uint64_t tls_value;
static volatile int stop;          /* set by main after SIGUSR1 */
static volatile uint32_t futex_word;  /* the waiter waits while it is 0 */

/* ---- Per-thread attributes: recorded before READY, checked after. */

static pid_t Gettid(void) { return (pid_t)syscall(SYS_gettid); }

static void* ThreadPointer(void) {
  void* tp;
  __asm__("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

/* rseq(2) on glibc's area for this thread: EBUSY means it is registered
 * with exactly these arguments (the probe changes nothing then). */
static int RseqBusy(unsigned length) {
  void* area = (char*)ThreadPointer() + __rseq_offset;
  return syscall(SYS_rseq, area, length, 0, RSEQ_SIG) == -1 && errno == EBUSY;
}

static void BlockSignals(const struct Thread* t) {
  sigset_t set;
  sigemptyset(&set);
  for (int i = 0; t->blocked[i]; ++i) sigaddset(&set, t->blocked[i]);
  pthread_sigmask(SIG_SETMASK, &set, NULL);
}

static void Record(struct Thread* t, uint64_t index) {
  t->tid = Gettid();
  tls_value = wl_mix(0x715000 + index);
  t->tls = tls_value;
  prctl(PR_SET_NAME, t->name);
  BlockSignals(t);
  prctl(PR_GET_TID_ADDRESS, &t->tid_address);
  syscall(SYS_get_robust_list, 0, &t->robust_head, &t->robust_length);
  t->rseq_length = 0;
  if (__rseq_size > 0) {
    const unsigned lengths[] = {__rseq_size, 32};
    for (int i = 0; i < 2 && !t->rseq_length; ++i) {
      if (RseqBusy(lengths[i])) t->rseq_length = lengths[i];
    }
  }
}

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      snprintf(t->fail, sizeof(t->fail), __VA_ARGS__);                \
      return;                                                         \
    }                                                                 \
  } while (0)

static void Verify(struct Thread* t) {
  pid_t tid = Gettid();
  CHECK(tid == t->tid, "gettid() is %d, was %d", (int)tid, (int)t->tid);
  CHECK(tls_value == t->tls, "__thread value is %016llx, was %016llx",
        (unsigned long long)tls_value, (unsigned long long)t->tls);
  char name[16] = {0};
  prctl(PR_GET_NAME, name);
  CHECK(strcmp(name, t->name) == 0, "name is '%s'", name);
  sigset_t cur, want;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  sigemptyset(&want);
  for (int i = 0; t->blocked[i]; ++i) sigaddset(&want, t->blocked[i]);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    CHECK(sigismember(&cur, sig) == sigismember(&want, sig), "signal %d is %sblocked", sig,
          sigismember(&cur, sig) ? "" : "not ");
  }
  uint64_t tid_address = 0, head = 0, length = 0;
  prctl(PR_GET_TID_ADDRESS, &tid_address);
  CHECK(tid_address == t->tid_address, "clear_child_tid is %llx, was %llx",
        (unsigned long long)tid_address, (unsigned long long)t->tid_address);
  syscall(SYS_get_robust_list, 0, &head, &length);
  CHECK(head == t->robust_head && length == t->robust_length,
        "robust list is %llx (%llu bytes), was %llx (%llu)", (unsigned long long)head,
        (unsigned long long)length, (unsigned long long)t->robust_head,
        (unsigned long long)t->robust_length);
  CHECK(!t->rseq_length || RseqBusy(t->rseq_length), "rseq is not registered any more");
}

/* ---- spinner */

struct Spin {
  uint64_t gpr[13], gpr_out[13];
  _Alignas(16) unsigned char xmm[16][16];
  _Alignas(16) unsigned char xmm_out[16][16];
  uint32_t mxcsr, mxcsr_out, mxcsr_default;
};
static struct Spin spin;

#define GPRS(M)                                                                              \
  M("rax", 0) M("rbx", 1) M("rcx", 2) M("rdx", 3) M("rsi", 4) M("r8", 5) M("r9", 6)        \
      M("r10", 7) M("r11", 8) M("r12", 9) M("r13", 10) M("r14", 11) M("r15", 12)
#define LOAD_G(r, n) "mov %c[o_gpr]+" #n "*8(%%rdi), %%" r "\n\t"
#define STORE_G(r, n) "mov %%" r ", %c[o_gpr_out]+" #n "*8(%%rdi)\n\t"
#define XMMS(M)                                                                            \
  M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define LOAD_X(n) "movdqu %c[o_xmm]+" #n "*16(%%rdi), %%xmm" #n "\n\t"
#define STORE_X(n) "movdqu %%xmm" #n ", %c[o_xmm_out]+" #n "*16(%%rdi)\n\t"

static void* Spinner(void* arg) {
  struct Thread* t = arg;
  Record(t, kSpinner);
  for (int i = 0; i < 13; ++i) spin.gpr[i] = wl_mix(0x59000 + (uint64_t)i);
  for (int r = 0; r < 16; ++r) wl_fill(spin.xmm[r], 16, 0x59100 + (uint64_t)r, 0);
  spin.mxcsr = kMxcsr;
  spin.mxcsr_default = 0x1f80;
  /* rdi holds &spin throughout; no system call between load and store.
   * Every other operand is a global, addressed without a register. */
  __asm__ volatile(
      "ldmxcsr %c[o_mxcsr](%%rdi)\n\t"
      XMMS(LOAD_X)
      GPRS(LOAD_G)
      "movl $1, %[armed]\n\t"
      "1:\n\t"
      "pause\n\t"
      "cmpl $0, %[stop]\n\t"
      "je 1b\n\t"
      GPRS(STORE_G)
      XMMS(STORE_X)
      "stmxcsr %c[o_mxcsr_out](%%rdi)\n\t"
      "ldmxcsr %c[o_mxcsr_default](%%rdi)\n\t"
      :
      : "D"(&spin), [armed] "m"(threads[kSpinner].armed), [stop] "m"(stop),
        [o_gpr] "i"(offsetof(struct Spin, gpr)), [o_gpr_out] "i"(offsetof(struct Spin, gpr_out)),
        [o_xmm] "i"(offsetof(struct Spin, xmm)), [o_xmm_out] "i"(offsetof(struct Spin, xmm_out)),
        [o_mxcsr] "i"(offsetof(struct Spin, mxcsr)),
        [o_mxcsr_out] "i"(offsetof(struct Spin, mxcsr_out)),
        [o_mxcsr_default] "i"(offsetof(struct Spin, mxcsr_default))
      : "rax", "rbx", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
        "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  static const char* const kGprNames[] = {"rax", "rbx", "rcx", "rdx", "rsi", "r8",  "r9",
                                          "r10", "r11", "r12", "r13", "r14", "r15"};
  for (int i = 0; i < 13; ++i) {
    if (spin.gpr_out[i] != spin.gpr[i]) {
      snprintf(t->fail, sizeof(t->fail), "%s is %016llx, expected %016llx", kGprNames[i],
               (unsigned long long)spin.gpr_out[i], (unsigned long long)spin.gpr[i]);
      return NULL;
    }
  }
  for (int r = 0; r < 16; ++r) {
    if (memcmp(spin.xmm_out[r], spin.xmm[r], 16) != 0) {
      snprintf(t->fail, sizeof(t->fail), "xmm%d differs", r);
      return NULL;
    }
  }
  if ((spin.mxcsr_out & ~0x3fu) != (uint32_t)kMxcsr) {
    snprintf(t->fail, sizeof(t->fail), "mxcsr is %04x, expected %04x", spin.mxcsr_out,
             (unsigned)kMxcsr);
    return NULL;
  }
  Verify(t);
  t->finished = 1;
  return NULL;
}

/* ---- waiter */

static void* Waiter(void* arg) {
  struct Thread* t = arg;
  Record(t, kWaiter);
  syscall(SYS_tgkill, getpid(), t->tid, SIGHUP);  /* stays queued: blocked */
  t->armed = 1;
  while (futex_word == 0) {
    long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    if (r == -1 && errno != EAGAIN && errno != EINTR) {
      snprintf(t->fail, sizeof(t->fail), "futex wait: %s", strerror(errno));
      return NULL;
    }
  }
  Verify(t);
  if (t->fail[0]) return NULL;
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  siginfo_t info;
  struct timespec now = {0, 0};
  int sig = sigtimedwait(&hup, &info, &now);
  /* si_code is SI_TKILL or SI_USER depending on the kernel version. */
  if (sig != SIGHUP || (info.si_code != SI_TKILL && info.si_code != SI_USER) ||
      info.si_pid != getpid()) {
    snprintf(t->fail, sizeof(t->fail),
             "its queued SIGHUP is gone (sigtimedwait %d, code %d, sender %d)", sig,
             sig == SIGHUP ? info.si_code : 0, sig == SIGHUP ? (int)info.si_pid : 0);
  }
  t->finished = 1;
  return NULL;
}

/* ---- altstack */

static char* altstack;
static volatile uintptr_t handler_sp;

static void OnUsr2(int sig) {
  (void)sig;
  volatile char here;
  handler_sp = (uintptr_t)&here;
}

static void AltstackBody(struct Thread* t);

/* The stack goes before the thread ends: ASan's thread exit unmaps
 * whatever alternate stack is current, and this one is malloc()ed. */
static void* Altstack(void* arg) {
  AltstackBody(arg);
  stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
  sigaltstack(&off, NULL);
  return NULL;
}

static void AltstackBody(struct Thread* t) {
  Record(t, kAltstack);
  stack_t ss = {.ss_sp = altstack, .ss_size = kAltstackBytes, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) {
    snprintf(t->fail, sizeof(t->fail), "sigaltstack: %s", strerror(errno));
    t->armed = 1;
    return;
  }
  t->armed = 1;
  while (!stop) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
  }
  Verify(t);
  if (t->fail[0]) return;
  stack_t now;
  sigaltstack(NULL, &now);
  if (now.ss_sp != altstack || now.ss_size != kAltstackBytes || now.ss_flags != 0) {
    snprintf(t->fail, sizeof(t->fail), "sigaltstack is %p+%zu flags %d, was %p+%d", now.ss_sp,
             now.ss_size, now.ss_flags, (void*)altstack, kAltstackBytes);
    return;
  }
  syscall(SYS_tgkill, getpid(), Gettid(), SIGUSR2);
  if (handler_sp < (uintptr_t)altstack || handler_sp >= (uintptr_t)altstack + kAltstackBytes) {
    snprintf(t->fail, sizeof(t->fail), "the SA_ONSTACK handler ran at %p, off the stack %p+%d",
             (void*)handler_sp, (void*)altstack, kAltstackBytes);
  }
  t->finished = 1;
  return;
}

/* ---- main */

/* True once thread `tid` sleeps ('S') in system call `nr`. */
static int Blocked(pid_t tid, long nr) {
  char path[64], text[256] = {0};
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  return n > 0 && strtol(text, NULL, 10) == nr;
}

int main(void) {
  wl_install_handler();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnUsr2;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR2, &sa, NULL);
  altstack = malloc(kAltstackBytes);
  struct Thread* self = &threads[0];
  Record(self, 0);

  void* (*const bodies[kThreads])(void*) = {NULL, Spinner, Waiter, Altstack};
  for (int i = 1; i < kThreads; ++i) {
    if (pthread_create(&threads[i].handle, NULL, bodies[i], &threads[i]) != 0) {
      return wl_fail("pthread_create %s", threads[i].name);
    }
  }
  /* READY only once every thread is in the state the test means to catch. */
  for (int tries = 0;; ++tries) {
    int ready = 1;
    for (int i = 1; i < kThreads; ++i) ready &= threads[i].armed;
    if (ready) ready = Blocked(threads[kWaiter].tid, SYS_futex) &&
                       Blocked(threads[kAltstack].tid, SYS_clock_nanosleep);
    if (ready) break;
    if (tries > 10000) return wl_fail("threads did not settle in 10 s");
    usleep(1000);
  }
  wl_say("TIDS %d %d %d", (int)threads[kSpinner].tid, (int)threads[kWaiter].tid,
         (int)threads[kAltstack].tid);
  wl_ready();
  wl_wait_nap();

  Verify(self);
  sigset_t pending;
  sigpending(&pending);
  if (!self->fail[0] && sigismember(&pending, SIGHUP)) {
    snprintf(self->fail, sizeof(self->fail), "the waiter's SIGHUP is pending here too");
  }
  stop = 1;
  futex_word = 1;
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  for (int i = 1; i < kThreads; ++i) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    int err = pthread_timedjoin_np(threads[i].handle, NULL, &deadline);
    if (err != 0) {
      return wl_fail("%s: join: %s (is its clear_child_tid lost?)", threads[i].name,
                     strerror(err));
    }
  }
  for (int i = 0; i < kThreads; ++i) {
    if (threads[i].fail[0]) return wl_fail("%s: %s", threads[i].name, threads[i].fail);
    if (i > 0 && !threads[i].finished) {
      return wl_fail("%s ended without running its checks", threads[i].name);
    }
  }
  wl_say("OK %d threads: registers, futex wait, sigaltstack, masks, TLS, TIDs, names", kThreads);
  return 0;
}
