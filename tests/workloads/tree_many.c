/* A root with N-1 children (N = argv[1], default 100): many processes,
 * each with its parent and a small private state of its own (a word on the
 * stack and a malloc'd buffer, written after the fork). After SIGUSR1 the
 * root passes the signal on and collects all N-1 exit statuses. */
#include <stdlib.h>

#include "tree.h"

enum { kBufferBytes = 4096 };

static int child(int i, pid_t parent) {
  volatile uint64_t word = wl_mix(0xc0de + (uint64_t)i);
  unsigned char* buf = malloc(kBufferBytes);
  if (!buf) return wl_fail("child %d: malloc", i);
  wl_fill(buf, kBufferBytes, 0x1000 + (uint64_t)i, 0);
  tr_report_ready();
  tr_wait_go(parent);
  if (word != wl_mix(0xc0de + (uint64_t)i)) return wl_fail("child %d: its stack word changed", i);
  long bad = wl_mismatch(buf, kBufferBytes, 0x1000 + (uint64_t)i, 0);
  if (bad >= 0) return wl_fail("child %d: its buffer differs at %ld", i, bad);
  if (getppid() != parent) return wl_fail("child %d: parent is %d, expected %d", i, (int)getppid(), (int)parent);
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  const int n = argc > 1 ? atoi(argv[1]) : 100;
  if (n < 1 || n > 10000) return wl_fail("usage: tree_many [PROCESSES]");
  pid_t* children = calloc((size_t)n, sizeof(pid_t));
  if (!children || tr_open_ready() != 0) return wl_fail("set-up: %s", strerror(errno));
  const pid_t me = getpid();
  for (int i = 0; i < n - 1; ++i) {
    children[i] = fork();
    if (children[i] < 0) return wl_fail("fork %d: %s", i, strerror(errno));
    if (children[i] == 0) _exit(child(i, me));
  }
  if (tr_await_ready(n - 1) != 0) return 1;

  wl_ready();
  wl_wait_nap();

  tr_forward_go(children, n - 1);
  int failed = 0;
  for (int i = 0; i < n - 1; ++i) failed += tr_reap_ok(children[i], "child");
  free(children);
  if (failed) return wl_fail("%d of %d children failed", failed, n - 1);
  wl_say("OK %d processes", n);
  return 0;
}
