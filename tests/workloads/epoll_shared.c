/* An epoll shared by a parent and its child (inherited over fork), which a
 * restore fills once, and an epoll of the child's own over the same
 * eventfd: after restore each process sees the cookies of both sets it
 * holds, and a write by one is seen by the other through the shared one. */
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "tree.h"

#define SHARED_COOKIE 0xabc1ull
#define PIPE_COOKIE 0xabc2ull
#define CHILD_COOKIE 0xabc3ull

static int shared_ep, efd, p[2];

static int add(int ep, int fd, uint64_t cookie) {
  struct epoll_event ev = {.events = EPOLLIN, .data = {.u64 = cookie}};
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* Whether epoll_wait(ep) reports exactly the cookies `a` and `b` (0: none). */
static int reports(int ep, uint64_t a, uint64_t b) {
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, 1000);
  int seen_a = 0, seen_b = b == 0;
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.u64 == a) seen_a = 1;
    else if (evs[i].data.u64 == b) seen_b = 1;
    else return 0;
  }
  return seen_a && seen_b;
}

static int child(pid_t parent) {
  int own = epoll_create1(0);
  if (own < 0 || add(own, efd, CHILD_COOKIE) != 0) return wl_fail("child: epoll: %s", strerror(errno));
  tr_report_ready();
  tr_wait_go(parent);
  if (!reports(own, CHILD_COOKIE, 0)) return wl_fail("child: its own epoll lost its entry");
  if (!reports(shared_ep, SHARED_COOKIE, PIPE_COOKIE)) return wl_fail("child: shared epoll lost entries");
  return 0;
}

int main(void) {
  wl_install_handler();
  if (tr_open_ready() != 0 || pipe(p) != 0) return wl_fail("pipe");
  shared_ep = epoll_create1(0);
  efd = eventfd(0, EFD_NONBLOCK);
  if (add(shared_ep, efd, SHARED_COOKIE) != 0 || add(shared_ep, p[0], PIPE_COOKIE) != 0) {
    return wl_fail("epoll_ctl: %s", strerror(errno));
  }
  uint64_t one = 1;
  if (write(efd, &one, 8) != 8 || write(p[1], "x", 1) != 1) return wl_fail("write");
  pid_t kid = tr_fork(child);
  if (kid < 0) return wl_fail("fork");
  if (tr_await_ready(1) != 0) return 1;
  wl_ready();
  wl_wait_nap();
  if (!reports(shared_ep, SHARED_COOKIE, PIPE_COOKIE)) return wl_fail("parent: shared epoll lost entries");
  kill(kid, SIGUSR1);
  int status = 0;
  if (waitpid(kid, &status, 0) != kid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return wl_fail("child failed (status 0x%x)", status);
  }
  wl_say("OK shared epoll filled once, seen by both");
  return 0;
}
