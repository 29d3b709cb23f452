/* What the process-tree workloads share, on top of workload.h.
 *
 * The root prints READY once every descendant is set up: each process
 * writes one byte into a "ready" pipe made before the first fork and closes
 * both its ends; the root reads until end of file, so no pipe is left
 * open when the test dumps the tree.
 *
 * SIGUSR1 reaches the root only. It passes it down to its children, they to
 * theirs, and each parent collects its children's verdicts by exit status
 * (0 = OK). A descendant that finds a problem prints "FAIL <role>: ..." on
 * the shared stdout and exits 1; only the root prints OK.
 *
 * A process whose parent is no longer the one it was forked by (the tree
 * was killed, not dumped) exits on its own, so no orphan outlives a test.
 * Nothing here looks at /proc/<pid>: under `restore --pid-ns` the PIDs the
 * tree sees are not the ones /proc shows. */
#ifndef CRLIB_TESTS_WORKLOADS_TREE_H_
#define CRLIB_TESTS_WORKLOADS_TREE_H_

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "workload.h"

static int tr_ready_fds[2] = {-1, -1};

/* Before the first fork. */
static inline int tr_open_ready(void) { return pipe(tr_ready_fds); }

/* In a descendant, once its state is set up (and its own children forked). */
static inline void tr_report_ready(void) {
  char c = 'r';
  (void)wl_write_all(tr_ready_fds[1], &c, 1);
  close(tr_ready_fds[1]);
  close(tr_ready_fds[0]);
}

/* In the root, after its last fork: waits until every descendant has
 * reported; 0 if `expected` of them did. */
static inline int tr_await_ready(int expected) {
  close(tr_ready_fds[1]);
  int got = 0;
  for (;;) {
    char buf[256];
    ssize_t n = read(tr_ready_fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (int)n;
  }
  close(tr_ready_fds[0]);
  if (got != expected) return wl_fail("%d of %d descendants reported ready", got, expected);
  return 0;
}

/* A descendant waits for SIGUSR1 like the root, but exits (status 3) once
 * it is orphaned: its parent is no longer `parent`. */
static inline void tr_wait_go(pid_t parent) {
  while (!wl_go) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (getppid() != parent) _exit(3);
  }
}

/* Forks a child that runs `body(its parent's PID)` and exits with what it
 * returns. The child's PID, or -1 with errno set. */
static inline pid_t tr_fork(int (*body)(pid_t parent)) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) _exit(body(parent));
  return pid;
}

/* A page of MAP_SHARED anonymous memory, zeroed; NULL with errno set. */
static inline void* tr_shared_page(void) {
  void* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static inline void tr_forward_go(const pid_t* pids, int n) {
  for (int i = 0; i < n; ++i) kill(pids[i], SIGUSR1);
}

/* Reaps `pid` (a child); 0 if it exited with status 0, else a FAIL line
 * naming `role` and 1. */
static inline int tr_reap_ok(pid_t pid, const char* role) {
  int status;
  pid_t r;
  while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  if (r != pid) return wl_fail("waitpid %s %d: %s", role, (int)pid, strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFEXITED(status)) return wl_fail("%s %d exited %d", role, (int)pid, WEXITSTATUS(status));
  return wl_fail("%s %d ended by signal %d", role, (int)pid, WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

#endif /* CRLIB_TESTS_WORKLOADS_TREE_H_ */
