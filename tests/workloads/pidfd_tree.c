/* pidfds between the processes of a tree, and of a dead one.
 * Kernel state: pidfds (pidfd_open), which refer to a process, not to its
 * PID number.
 *
 * The root forks B, which exits at once: the root opens a pidfd of it
 * (PIDFD_NONBLOCK) and reaps it, so that pidfd refers to a dead process;
 * it records how that pidfd answers (waitid, poll, pidfd_send_signal).
 * Then it forks A and opens a pidfd of it; A opens a pidfd of the root,
 * its parent. After SIGUSR1 the root sends SIGUSR2 to A through its pidfd
 * and then SIGUSR1; A expects the SIGUSR2, signals the root through its
 * pidfd of it (signal 0: the root still is the process it refers to) and
 * exits 0. The root collects A's exit through waitid(P_PIDFD) and expects
 * the dead pidfd to answer as before the dump, with its flags.
 *
 * The root also holds a thread pidfd (PIDFD_THREAD) of A's main thread,
 * and a pidfd of C, a child that exited with status 5 and
 * is not reaped (a zombie): it reaps C through it (waitid(P_PIDFD)).
 *
 * With the argument "outside" the root also holds a pidfd of its own
 * parent (the test), which is outside the tree; with "thread", a thread
 * pidfd of a second thread of its own: the dump must refuse either. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "tree.h"

static int pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }

static int pidfd_send_signal(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static volatile pid_t sleeper_tid;

static void* sleeper(void* arg) {
  (void)arg;
  sleeper_tid = (pid_t)syscall(SYS_gettid);
  for (;;) pause();
  return NULL;
}

static volatile sig_atomic_t got_usr2;

static void on_usr2(int sig) {
  (void)sig;
  got_usr2 = 1;
}

/* How a pidfd answers: waitid's errno, poll's events, pidfd_send_signal's
 * errno, its O_NONBLOCK. */
struct Answers {
  int wait_errno, revents, signal_errno, nonblock;
};

static struct Answers Ask(int pidfd) {
  struct Answers a;
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  a.wait_errno = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) == 0 ? 0 : errno;
  struct pollfd p = {pidfd, POLLIN, 0};
  a.revents = poll(&p, 1, 0) == 1 ? p.revents : 0;
  a.signal_errno = pidfd_send_signal(pidfd, 0) == 0 ? 0 : errno;
  a.nonblock = (fcntl(pidfd, F_GETFL) & O_NONBLOCK) != 0;
  return a;
}

static int child_a(pid_t parent) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr2;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
  int of_root = pidfd_open(parent, 0);
  if (of_root < 0) return wl_fail("A: pidfd_open(%d): %s", (int)parent, strerror(errno));
  tr_report_ready();
  tr_wait_go(parent);
  for (int i = 0; i < 50 && !got_usr2; ++i) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (!got_usr2) return wl_fail("A: no SIGUSR2 through the root's pidfd of A");
  if (pidfd_send_signal(of_root, 0) != 0) {
    return wl_fail("A: pidfd_send_signal(0) to the root: %s", strerror(errno));
  }
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  int outside = -1;
  if (argc > 1 && strcmp(argv[1], "outside") == 0) {
    outside = pidfd_open(getppid(), 0);
    if (outside < 0) return wl_fail("pidfd_open of the parent: %s", strerror(errno));
  }
  if (argc > 1 && strcmp(argv[1], "thread") == 0) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, sleeper, NULL) != 0) return wl_fail("pthread_create");
    while (sleeper_tid == 0) usleep(1000);
    const pid_t tid = sleeper_tid;
    outside = pidfd_open(tid, O_EXCL);  /* PIDFD_THREAD */
    if (outside < 0) return wl_fail("pidfd_open(%d, PIDFD_THREAD): %s", (int)tid, strerror(errno));
  }
  (void)outside;  /* held, never used */
  if (tr_open_ready() != 0) return wl_fail("pipe: %s", strerror(errno));
  pid_t b = fork();
  if (b < 0) return wl_fail("fork: %s", strerror(errno));
  if (b == 0) _exit(0);
  int dead = pidfd_open(b, O_NONBLOCK)  /* PIDFD_NONBLOCK */;
  if (dead < 0) return wl_fail("pidfd_open(B %d): %s", (int)b, strerror(errno));
  if (waitpid(b, NULL, 0) != b) return wl_fail("waitpid B: %s", strerror(errno));
  const struct Answers before = Ask(dead);

  pid_t c = fork();
  if (c < 0) return wl_fail("fork: %s", strerror(errno));
  if (c == 0) _exit(5);
  int of_zombie = pidfd_open(c, 0);
  if (of_zombie < 0) return wl_fail("pidfd_open(C %d): %s", (int)c, strerror(errno));
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  /* Returns once C is a zombie, leaving it one. */
  if (waitid(P_PIDFD, (id_t)of_zombie, &si, WEXITED | WNOWAIT) != 0) {
    return wl_fail("waitid(C): %s", strerror(errno));
  }

  pid_t a = tr_fork(child_a);
  if (a < 0) return wl_fail("fork: %s", strerror(errno));
  int of_a = pidfd_open(a, 0);
  if (of_a < 0) return wl_fail("pidfd_open(A %d): %s", (int)a, strerror(errno));
  /* A thread pidfd (PIDFD_THREAD, which is O_EXCL) of A's main thread. */
  int of_a_thread = pidfd_open(a, O_EXCL);
  if (of_a_thread < 0) return wl_fail("pidfd_open(A %d, PIDFD_THREAD): %s", (int)a, strerror(errno));
  if (tr_await_ready(1) != 0) return 1;

  wl_ready();
  wl_wait_nap();

  if (!(fcntl(of_a_thread, F_GETFL) & O_EXCL)) return wl_fail("A's thread pidfd lost PIDFD_THREAD");
  if (pidfd_send_signal(of_a_thread, 0) != 0) {
    return wl_fail("signal 0 through A's thread pidfd: %s", strerror(errno));
  }
  if (pidfd_send_signal(of_a, SIGUSR2) != 0) return wl_fail("SIGUSR2 to A: %s", strerror(errno));
  if (pidfd_send_signal(of_a, SIGUSR1) != 0) return wl_fail("SIGUSR1 to A: %s", strerror(errno));
  memset(&si, 0, sizeof(si));
  if (waitid(P_PIDFD, (id_t)of_zombie, &si, WEXITED | WNOHANG) != 0 || si.si_pid != c ||
      si.si_code != CLD_EXITED || si.si_status != 5) {
    return wl_fail("zombie C (%d): waitid(P_PIDFD) gave pid %d code %d status %d (%s)", (int)c,
                   (int)si.si_pid, si.si_code, si.si_status, strerror(errno));
  }
  memset(&si, 0, sizeof(si));
  while (waitid(P_PIDFD, (id_t)of_a, &si, WEXITED) != 0) {
    if (errno != EINTR) return wl_fail("waitid(P_PIDFD) on A: %s", strerror(errno));
  }
  if (si.si_pid != a || si.si_code != CLD_EXITED || si.si_status != 0) {
    return wl_fail("A (%d): waitid gave pid %d code %d status %d", (int)a, (int)si.si_pid,
                   si.si_code, si.si_status);
  }
  const struct Answers after = Ask(dead);
  if (memcmp(&before, &after, sizeof(before)) != 0) {
    return wl_fail("the dead pidfd answers waitid %d poll %#x signal %d nonblock %d, was %d %#x %d %d",
                   after.wait_errno, after.revents, after.signal_errno, after.nonblock,
                   before.wait_errno, before.revents, before.signal_errno, before.nonblock);
  }
  wl_say("OK A signalled and waited, zombie C reaped through pidfds; dead pidfd: waitid errno %d, poll %#x, "
         "signal errno %d",
         before.wait_errno, before.revents, before.signal_errno);
  return 0;
}
