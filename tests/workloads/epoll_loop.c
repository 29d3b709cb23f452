/* An event loop's epoll sets, which a restore must give back with every
 * entry's events and data cookie: a level-triggered epoll over a pipe, an
 * eventfd and a periodic timerfd; an edge-triggered one over another pipe
 * and eventfd, with an EPOLLONESHOT entry that already fired (disarmed);
 * and an epoll that watches the first (nested). */
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include "workload.h"

#define PIPE_COOKIE 0x1111000000000001ull
#define EVENT_COOKIE 0x2222000000000002ull
#define TIMER_COOKIE 0x3333000000000003ull
#define ET_PIPE_COOKIE 0x4444000000000004ull
#define ET_EVENT_COOKIE 0x5555000000000005ull
#define ONESHOT_COOKIE 0x6666000000000006ull
#define NESTED_COOKIE 0x7777000000000007ull

static int add(int ep, int fd, uint32_t events, uint64_t cookie) {
  struct epoll_event ev = {.events = events, .data = {.u64 = cookie}};
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* The cookies epoll_wait(ep, timeout_ms) reports, as a bit set by index
 * (cookie >> 60), or -1. */
static int wait_cookies(int ep, int timeout_ms) {
  struct epoll_event evs[16];
  int n = epoll_wait(ep, evs, 16, timeout_ms);
  if (n < 0) return -1;
  int set = 0;
  for (int i = 0; i < n; ++i) set |= 1 << (int)(evs[i].data.u64 >> 60);
  return set;
}

#define BIT(cookie) (1 << (int)((cookie) >> 60))

int main(void) {
  wl_install_handler();
  int p[2], q[2];
  if (pipe(p) != 0 || pipe2(q, O_NONBLOCK) != 0) return wl_fail("pipe");
  int efd = eventfd(0, EFD_NONBLOCK), et_efd = eventfd(0, EFD_NONBLOCK), once_efd = eventfd(0, EFD_NONBLOCK);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {{0, 100000000}, {0, 100000000}};
  timerfd_settime(tfd, 0, &its, NULL);
  int level = epoll_create1(EPOLL_CLOEXEC), edge = epoll_create1(0), outer = epoll_create1(0);
  if (add(level, p[0], EPOLLIN, PIPE_COOKIE) || add(level, efd, EPOLLIN, EVENT_COOKIE) ||
      add(level, tfd, EPOLLIN, TIMER_COOKIE) || add(edge, q[0], EPOLLIN | EPOLLET, ET_PIPE_COOKIE) ||
      add(edge, et_efd, EPOLLIN | EPOLLET, ET_EVENT_COOKIE) ||
      add(edge, once_efd, EPOLLIN | EPOLLONESHOT, ONESHOT_COOKIE) ||
      add(outer, level, EPOLLIN, NESTED_COOKIE)) {
    return wl_fail("epoll_ctl: %s", strerror(errno));
  }
  /* Ready before the dump: the pipe and the eventfd of the level set; the
   * one-shot entry fires (and is disarmed) and its edge is consumed. */
  if (write(p[1], "x", 1) != 1) return wl_fail("write");
  uint64_t one = 1;
  if (write(efd, &one, 8) != 8 || write(once_efd, &one, 8) != 8) return wl_fail("eventfd write");
  if (wait_cookies(edge, 1000) != BIT(ONESHOT_COOKIE)) return wl_fail("one-shot did not fire before the dump");
  wl_ready();
  wl_wait_nap();

  /* Level: the three, once the timer has ticked again; reported every time. */
  struct timespec nap = {0, 150 * 1000 * 1000};
  nanosleep(&nap, NULL);
  int want = BIT(PIPE_COOKIE) | BIT(EVENT_COOKIE) | BIT(TIMER_COOKIE);
  int got = wait_cookies(level, 1000);
  if (got != want) return wl_fail("level epoll reported 0x%x, want 0x%x", got, want);
  if ((got = wait_cookies(level, 0)) != want) return wl_fail("level epoll second wait 0x%x, want 0x%x", got, want);
  if ((got = wait_cookies(outer, 1000)) != BIT(NESTED_COOKIE)) return wl_fail("nested epoll reported 0x%x", got);
  /* Edge: a new write is one event, then nothing; the fired one-shot stays
   * disarmed until re-armed. */
  if (write(q[1], "y", 1) != 1 || write(et_efd, &one, 8) != 8) return wl_fail("write");
  want = BIT(ET_PIPE_COOKIE) | BIT(ET_EVENT_COOKIE);
  if ((got = wait_cookies(edge, 1000)) != want) return wl_fail("edge epoll reported 0x%x, want 0x%x", got, want);
  if ((got = wait_cookies(edge, 0)) != 0) return wl_fail("edge epoll reported 0x%x again", got);
  struct epoll_event rearm = {.events = EPOLLIN | EPOLLONESHOT, .data = {.u64 = ONESHOT_COOKIE}};
  if (epoll_ctl(edge, EPOLL_CTL_MOD, once_efd, &rearm) != 0) return wl_fail("EPOLL_CTL_MOD: %s", strerror(errno));
  if ((got = wait_cookies(edge, 1000)) != BIT(ONESHOT_COOKIE)) return wl_fail("re-armed one-shot reported 0x%x", got);
  wl_say("OK epoll level, edge, one-shot and nested");
  return 0;
}
