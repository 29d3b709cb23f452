/* Temporary signal masks: four threads wait in sigsuspend, ppoll, pselect6
 * and (with "epoll") epoll_pwait, each under a temporary mask that differs
 * from its real one. While a thread waits, its blocked signals are the
 * temporary mask; the real one is kept aside by the kernel and comes back
 * when the call returns. After the signal each thread is woken with its
 * own SIGUSR2 (which its real mask blocks and the temporary one lets
 * through); the call returns EINTR after the handler, and the thread
 * checks that its mask is its real one again, not the temporary one
 * (which a checkpoint could make permanent). Each thread's real mask is
 * its own (SIGRTMIN+i), so masks cannot be swapped unnoticed either.
 * A call that returns before its thread was woken (EINTR from a stop) is
 * checked the same way and made again. Each thread also has a signal of
 * its own pending that its temporary mask holds back and its real mask
 * lets through (SIGRTMIN+8+i): its handler must run exactly once, neither
 * lost nor run twice by a checkpoint. */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "workload.h"

enum { kSigsuspend, kPpoll, kPselect, kEpoll, kKinds };
static const char* const kNames[kKinds] = {"sigsuspend", "ppoll", "pselect6", "epoll_pwait"};

static int pipe_fds[2];
static int epfd = -1;
static volatile pid_t tids[kKinds];
static volatile int results[kKinds];  /* 0 running, 1 OK, 2 wrong mask */
static volatile int started;
static volatile int held_runs[kKinds];
static __thread volatile sig_atomic_t woken;

static void on_usr2(int sig) {
  (void)sig;
  woken = 1;
}

static void on_held(int sig) { __sync_fetch_and_add(&held_runs[sig - SIGRTMIN - 8], 1); }

/* The real mask of thread `kind`: SIGUSR1 (main takes it), SIGUSR2 and
 * SIGRTMIN+kind blocked. The temporary one: SIGUSR1 and SIGRTMIN+8+kind
 * blocked, SIGUSR2 let through. */
static void real_mask(int kind, sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGUSR1);
  sigaddset(set, SIGUSR2);
  sigaddset(set, SIGRTMIN + kind);
}

static void temporary_mask(int kind, sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGUSR1);
  sigaddset(set, SIGRTMIN + 8 + kind);
}

static int mask_is_real(int kind) {
  sigset_t now, want;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  real_mask(kind, &want);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    if (sigismember(&now, sig) != sigismember(&want, sig)) return 0;
  }
  return 1;
}

static void* waiter(void* arg) {
  const int kind = (int)(intptr_t)arg;
  sigset_t real, temp;
  real_mask(kind, &real);
  temporary_mask(kind, &temp);
  pthread_sigmask(SIG_SETMASK, &real, NULL);
  tids[kind] = (pid_t)syscall(SYS_gettid);
  __sync_fetch_and_add(&started, 1);
  while (!woken) {
    struct pollfd pfd = {pipe_fds[0], POLLIN, 0};
    fd_set readable;
    struct epoll_event ev;
    int r = 0;
    switch (kind) {
      case kSigsuspend:
        r = sigsuspend(&temp);
        break;
      case kPpoll:
        r = ppoll(&pfd, 1, NULL, &temp);
        break;
      case kPselect:
        FD_ZERO(&readable);
        FD_SET(pipe_fds[0], &readable);
        r = pselect(pipe_fds[0] + 1, &readable, NULL, NULL, NULL, &temp);
        break;
      case kEpoll:
        r = epoll_pwait(epfd, &ev, 1, -1, &temp);
        break;
    }
    if (r >= 0 || errno != EINTR) {
      results[kind] = 3;  /* the pipe is never written */
      return NULL;
    }
    if (!mask_is_real(kind)) {
      results[kind] = 2;
      return NULL;
    }
  }
  results[kind] = 1;
  return NULL;
}

int main(int argc, char** argv) {
  const int kinds = argc > 1 && strcmp(argv[1], "epoll") == 0 ? kKinds : kEpoll;
  wl_install_handler();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr2;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
  sa.sa_handler = on_held;
  for (int i = 0; i < kKinds; ++i) sigaction(SIGRTMIN + 8 + i, &sa, NULL);
  if (pipe(pipe_fds) != 0) return wl_fail("pipe: %s", strerror(errno));
  if (kinds == kKinds) {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, pipe_fds[0], &ev) != 0) {
      return wl_fail("epoll: %s", strerror(errno));
    }
  }
  pthread_t threads[kKinds];
  for (int i = 0; i < kinds; ++i) {
    if (pthread_create(&threads[i], NULL, waiter, (void*)(intptr_t)i) != 0) {
      return wl_fail("pthread_create");
    }
  }
  while (started < kinds) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* Give each thread time to enter its call. */
  struct timespec settle = {0, 50 * 1000 * 1000};
  nanosleep(&settle, NULL);
  for (int i = 0; i < kinds; ++i) syscall(SYS_tgkill, getpid(), tids[i], SIGRTMIN + 8 + i);
  wl_ready();
  wl_wait_nap();
  for (int i = 0; i < kinds; ++i) syscall(SYS_tgkill, getpid(), tids[i], SIGUSR2);
  for (int i = 0; i < kinds; ++i) pthread_join(threads[i], NULL);
  for (int i = 0; i < kinds; ++i) {
    if (results[i] == 2) return wl_fail("%s: the temporary mask stayed after the call", kNames[i]);
    if (results[i] != 1) return wl_fail("%s: the call returned without a signal", kNames[i]);
    if (held_runs[i] != 1) {
      return wl_fail("%s: the held-back signal's handler ran %d times", kNames[i], held_runs[i]);
    }
  }
  wl_say("OK real masks after %d calls with temporary masks", kinds);
  return 0;
}
