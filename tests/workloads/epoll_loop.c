/* An event loop's epoll sets, which a restore must give back with every
 * entry's events and data cookie: a level-triggered epoll over a pipe, an
 * eventfd and a periodic timerfd; an edge-triggered one over another pipe
 * and eventfd, with an EPOLLONESHOT entry that already fired (disarmed);
 * an epoll that watches the first (nested); an EPOLLEXCLUSIVE entry; and
 * a UNIX socket pair with a message queued, in the level set. Sockets of
 * every kind crlib carries are in the level set too: a UNIX listener with
 * a connection waiting, a UNIX datagram socket and a UDP socket with a
 * datagram queued (ready), and a TCP listener with nobody waiting (not
 * ready until the check connects to it).
 * The timer's entry asks for EPOLLWAKEUP. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include "workload.h"

#define PIPE_COOKIE 0x1111000000000001ull
#define EVENT_COOKIE 0x2222000000000002ull
#define TIMER_COOKIE 0x3333000000000003ull
#define ET_PIPE_COOKIE 0x4444000000000004ull
#define ET_EVENT_COOKIE 0x5555000000000005ull
#define ONESHOT_COOKIE 0x6666000000000006ull
#define NESTED_COOKIE 0x7777000000000007ull
#define EXCLUSIVE_COOKIE 0x8888000000000008ull
#define SOCKET_COOKIE 0x9999000000000009ull
#define UNIX_LISTENER_COOKIE 0xaaaa00000000000aull
#define UNIX_DGRAM_COOKIE 0xbbbb00000000000bull
#define UDP_COOKIE 0xcccc00000000000cull
#define TCP_LISTENER_COOKIE 0xdddd00000000000dull

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

/* The events of epoll `ep`'s entry for `fd`, from our fdinfo; 0 if none. */
static unsigned entry_events(int ep, int fd) {
  char path[64], buf[4096];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
  int f = open(path, O_RDONLY);
  ssize_t n = f < 0 ? -1 : read(f, buf, sizeof(buf) - 1);
  if (f >= 0) close(f);
  if (n <= 0) return 0;
  buf[n] = '\0';
  for (char* line = strstr(buf, "tfd:"); line; line = strstr(line + 1, "tfd:")) {
    int tfd = -1;
    unsigned events = 0;
    if (sscanf(line, "tfd: %d events: %x", &tfd, &events) == 2 && tfd == fd) return events;
  }
  return 0;
}

/* A socket of `type` bound to 127.0.0.1 (port chosen by the kernel). */
static int loopback(int type, struct sockaddr_in* addr) {
  int s = socket(AF_INET, type, 0), on = 1;
  socklen_t len = sizeof(*addr);
  *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (s < 0 || bind(s, (struct sockaddr*)addr, sizeof(*addr)) || getsockname(s, (struct sockaddr*)addr, &len)) return -1;
  return s;
}

int main(void) {
  wl_install_handler();
  /* The sockets: a UNIX listener (abstract) with a connection waiting, a
   * UNIX datagram pair with a message queued, UDP with a datagram queued,
   * a TCP listener nobody waits on. */
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  int un_len = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "crlib-epoll-%d", (int)getpid());
  socklen_t ulen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + un_len);
  int ulistener = socket(AF_UNIX, SOCK_STREAM, 0), uwaiting = socket(AF_UNIX, SOCK_STREAM, 0), dg[2];
  if (bind(ulistener, (struct sockaddr*)&un, ulen) || listen(ulistener, 4) ||
      connect(uwaiting, (struct sockaddr*)&un, ulen) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
      send(dg[1], "dgram", 5, 0) != 5) {
    return wl_fail("unix sockets: %s", strerror(errno));
  }
  struct sockaddr_in udp_addr, tcp_addr, from_addr;
  int udp = loopback(SOCK_DGRAM, &udp_addr), from = loopback(SOCK_DGRAM, &from_addr);
  int tcp = loopback(SOCK_STREAM, &tcp_addr);
  if (udp < 0 || from < 0 || tcp < 0 || listen(tcp, 4) ||
      sendto(from, "udp", 3, 0, (struct sockaddr*)&udp_addr, sizeof(udp_addr)) != 3) {
    return wl_fail("ip sockets: %s", strerror(errno));
  }
  int p[2], q[2], sv[2];
  if (pipe(p) != 0 || pipe2(q, O_NONBLOCK) != 0) return wl_fail("pipe");
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return wl_fail("socketpair");
  int efd = eventfd(0, EFD_NONBLOCK), et_efd = eventfd(0, EFD_NONBLOCK), once_efd = eventfd(0, EFD_NONBLOCK);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {{0, 100000000}, {0, 100000000}};
  timerfd_settime(tfd, 0, &its, NULL);
  int level = epoll_create1(EPOLL_CLOEXEC), edge = epoll_create1(0), outer = epoll_create1(0);
  int exclusive = epoll_create1(0);
  if (add(level, p[0], EPOLLIN, PIPE_COOKIE) || add(level, efd, EPOLLIN, EVENT_COOKIE) ||
      add(level, sv[0], EPOLLIN | EPOLLRDHUP, SOCKET_COOKIE) ||
      add(level, tfd, EPOLLIN | EPOLLWAKEUP, TIMER_COOKIE) ||
      add(level, ulistener, EPOLLIN, UNIX_LISTENER_COOKIE) || add(level, dg[0], EPOLLIN, UNIX_DGRAM_COOKIE) ||
      add(level, udp, EPOLLIN, UDP_COOKIE) || add(level, tcp, EPOLLIN, TCP_LISTENER_COOKIE) ||
      add(exclusive, efd, EPOLLIN | EPOLLEXCLUSIVE, EXCLUSIVE_COOKIE) ||
      add(edge, q[0], EPOLLIN | EPOLLET, ET_PIPE_COOKIE) ||
      add(edge, et_efd, EPOLLIN | EPOLLET, ET_EVENT_COOKIE) ||
      add(edge, once_efd, EPOLLIN | EPOLLONESHOT, ONESHOT_COOKIE) ||
      add(outer, level, EPOLLIN, NESTED_COOKIE)) {
    return wl_fail("epoll_ctl: %s", strerror(errno));
  }
  /* Ready before the dump: the pipe and the eventfd of the level set; the
   * one-shot entry fires (and is disarmed) and its edge is consumed. */
  if (write(p[1], "x", 1) != 1 || write(sv[1], "hello", 5) != 5) return wl_fail("write");
  uint64_t one = 1;
  if (write(efd, &one, 8) != 8 || write(once_efd, &one, 8) != 8) return wl_fail("eventfd write");
  if (wait_cookies(edge, 1000) != BIT(ONESHOT_COOKIE)) return wl_fail("one-shot did not fire before the dump");
  /* The entries' events as the kernel shows them (EPOLLWAKEUP only where
   * the kernel keeps it: CONFIG_PM_SLEEP and CAP_BLOCK_SUSPEND). */
  const unsigned disarmed = entry_events(edge, once_efd);
  const unsigned exclusive_events = entry_events(exclusive, efd);
  const unsigned wakeup_events = entry_events(level, tfd);
  const unsigned et_events = entry_events(edge, q[0]);
  if (!(exclusive_events & EPOLLEXCLUSIVE) || !(et_events & EPOLLET)) return wl_fail("epoll flags not shown");
  wl_ready();
  wl_wait_nap();

  /* Level: the three, once the timer has ticked again; reported every time. */
  struct timespec nap = {0, 150 * 1000 * 1000};
  nanosleep(&nap, NULL);
  int want = BIT(PIPE_COOKIE) | BIT(EVENT_COOKIE) | BIT(TIMER_COOKIE) | BIT(SOCKET_COOKIE) |
             BIT(UNIX_LISTENER_COOKIE) | BIT(UNIX_DGRAM_COOKIE) | BIT(UDP_COOKIE);
  int got = wait_cookies(level, 1000);
  if (got != want) return wl_fail("level epoll reported 0x%x, want 0x%x", got, want);
  if ((got = wait_cookies(level, 0)) != want) return wl_fail("level epoll second wait 0x%x, want 0x%x", got, want);
  /* The TCP listener becomes ready when someone connects. */
  int client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(client, (struct sockaddr*)&tcp_addr, sizeof(tcp_addr))) return wl_fail("connect to the TCP listener: %s", strerror(errno));
  if (!((got = wait_cookies(level, 1000)) & BIT(TCP_LISTENER_COOKIE))) return wl_fail("the TCP listener is not ready (0x%x)", got);
  if ((got = wait_cookies(outer, 1000)) != BIT(NESTED_COOKIE)) return wl_fail("nested epoll reported 0x%x", got);
  if ((got = wait_cookies(exclusive, 1000)) != BIT(EXCLUSIVE_COOKIE)) return wl_fail("exclusive epoll reported 0x%x", got);
  if (entry_events(exclusive, efd) != exclusive_events || entry_events(level, tfd) != wakeup_events ||
      entry_events(edge, q[0]) != et_events) {
    return wl_fail("entry events changed: 0x%x 0x%x 0x%x, were 0x%x 0x%x 0x%x", entry_events(exclusive, efd),
                   entry_events(level, tfd), entry_events(edge, q[0]), exclusive_events, wakeup_events, et_events);
  }
  /* Edge: a new write is one event, then nothing; the fired one-shot stays
   * disarmed until re-armed. */
  if (write(q[1], "y", 1) != 1 || write(et_efd, &one, 8) != 8) return wl_fail("write");
  want = BIT(ET_PIPE_COOKIE) | BIT(ET_EVENT_COOKIE);
  if ((got = wait_cookies(edge, 1000)) != want) return wl_fail("edge epoll reported 0x%x, want 0x%x", got, want);
  if ((got = wait_cookies(edge, 0)) != 0) return wl_fail("edge epoll reported 0x%x again", got);
  if (entry_events(edge, once_efd) != disarmed) {
    return wl_fail("the fired one-shot entry is 0x%x, was 0x%x", entry_events(edge, once_efd), disarmed);
  }
  struct epoll_event rearm = {.events = EPOLLIN | EPOLLONESHOT, .data = {.u64 = ONESHOT_COOKIE}};
  if (epoll_ctl(edge, EPOLL_CTL_MOD, once_efd, &rearm) != 0) return wl_fail("EPOLL_CTL_MOD: %s", strerror(errno));
  if ((got = wait_cookies(edge, 1000)) != BIT(ONESHOT_COOKIE)) return wl_fail("re-armed one-shot reported 0x%x", got);
  char msg[8] = {0};
  if (read(sv[0], msg, sizeof(msg)) != 5 || memcmp(msg, "hello", 5) != 0) return wl_fail("socket message lost");
  if (accept(ulistener, NULL, NULL) < 0 || accept(tcp, NULL, NULL) < 0) return wl_fail("accept: %s", strerror(errno));
  if (recv(dg[0], msg, sizeof(msg), 0) != 5 || recv(udp, msg, sizeof(msg), 0) != 3) return wl_fail("datagrams lost");
  wl_say("OK epoll level, edge, one-shot, exclusive, nested, over a pipe, eventfd, timerfd and sockets");
  return 0;
}
