/* IP sockets: a TCP listener on 127.0.0.1 and a TCP6 one on ::1 (IPv6
 * only), an unbound and a bound TCP socket, a UDP socket with three
 * queued datagrams (from a socket of ours, from a process that has exited
 * since, and an empty one), a UDP6 one with a queued datagram, and a UDP
 * socket connected to ours. After the restore the listeners accept on
 * their ports, the datagrams come in order with their senders, and the
 * connected socket still talks to its peer only. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "workload.h"

static int bound(int family, int type, socklen_t* len, struct sockaddr_storage* addr) {
  int s = socket(family, type, 0);
  memset(addr, 0, sizeof(*addr));
  if (family == AF_INET) {
    struct sockaddr_in* in = (struct sockaddr_in*)addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof(*in);
  } else {
    struct sockaddr_in6* in6 = (struct sockaddr_in6*)addr;
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    *len = sizeof(*in6);
    int on = 1;
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
  }
  /* As servers do: the connections accepted before a restore leave
   * TIME-WAIT behind on the listener's port. */
  int reuse = 1;
  if (type == SOCK_STREAM) setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
  if (s < 0 || bind(s, (struct sockaddr*)addr, *len) != 0 || getsockname(s, (struct sockaddr*)addr, len) != 0) return -1;
  return s;
}

static int port_of(const struct sockaddr_storage* a) {
  return ntohs(a->ss_family == AF_INET ? ((const struct sockaddr_in*)a)->sin_port
                                       : ((const struct sockaddr_in6*)a)->sin6_port);
}

static int expect_datagram(int fd, const char* text, int from_port, const char* what) {
  char buf[256];
  struct sockaddr_storage from;
  socklen_t len = sizeof(from);
  ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr*)&from, &len);
  if (n < 0) return wl_fail("%s: no datagram (%s)", what, strerror(errno));
  if ((size_t)n != strlen(text) || memcmp(buf, text, (size_t)n) != 0) return wl_fail("%s: got %zd bytes", what, n);
  if (port_of(&from) != from_port) return wl_fail("%s: from port %d, expected %d", what, port_of(&from), from_port);
  return 0;
}

static int accepts(int listener, const struct sockaddr_storage* addr, socklen_t len, const char* what) {
  int c = socket(addr->ss_family, SOCK_STREAM, 0);
  if (connect(c, (const struct sockaddr*)addr, len) != 0) return wl_fail("%s: connect to port %d: %s", what, port_of(addr), strerror(errno));
  int a = accept(listener, NULL, NULL);
  if (a < 0) return wl_fail("%s: accept: %s", what, strerror(errno));
  if (write(c, "hi", 2) != 2 || read(a, (char[2]){0}, 2) != 2) return wl_fail("%s: no data", what);
  close(a);
  close(c);
  return 0;
}

int main(void) {
  wl_install_handler();
  struct sockaddr_storage l4, l6, u4, u6, mine, mine6, peer, tmp;
  socklen_t l4_len, l6_len, u4_len, u6_len, mine_len, mine6_len, peer_len, tmp_len;
  int listener4 = bound(AF_INET, SOCK_STREAM, &l4_len, &l4);
  int listener6 = bound(AF_INET6, SOCK_STREAM, &l6_len, &l6);
  int on = 1;
  if (listener4 < 0 || listener6 < 0 || setsockopt(listener4, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) ||
      listen(listener4, 16) || listen(listener6, 5)) {
    return wl_fail("listeners: %s", strerror(errno));
  }
  int unbound_tcp = socket(AF_INET, SOCK_STREAM, 0);
  int bound_tcp = bound(AF_INET, SOCK_STREAM, &tmp_len, &tmp);
  const int bound_port = port_of(&tmp);

  int udp = bound(AF_INET, SOCK_DGRAM, &u4_len, &u4);
  int sender = bound(AF_INET, SOCK_DGRAM, &mine_len, &mine);
  int udp6 = bound(AF_INET6, SOCK_DGRAM, &u6_len, &u6);
  int sender6 = bound(AF_INET6, SOCK_DGRAM, &mine6_len, &mine6);
  int connected = bound(AF_INET, SOCK_DGRAM, &peer_len, &peer);
  /* Dual stack: a UDP6 socket on any address (not IPv6-only) gets an IPv4
   * datagram, whose sender it sees v4-mapped. */
  struct sockaddr_in6 dual_addr = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
  socklen_t dual_len = sizeof(dual_addr);
  int dual = socket(AF_INET6, SOCK_DGRAM, 0);
  if (dual < 0 || bind(dual, (struct sockaddr*)&dual_addr, sizeof(dual_addr)) ||
      getsockname(dual, (struct sockaddr*)&dual_addr, &dual_len)) {
    return wl_fail("dual-stack udp6: %s", strerror(errno));
  }
  struct sockaddr_in dual_v4 = {.sin_family = AF_INET, .sin_port = dual_addr.sin6_port,
                                .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (udp < 0 || sender < 0 || udp6 < 0 || sender6 < 0 || connected < 0) return wl_fail("udp: %s", strerror(errno));
  if (sendto(sender, "from ours", 9, 0, (struct sockaddr*)&u4, u4_len) != 9) return wl_fail("sendto: %s", strerror(errno));
  int pipefd[2];
  if (pipe(pipefd)) return wl_fail("pipe");
  pid_t child = fork();
  if (child == 0) {
    struct sockaddr_storage a;
    socklen_t alen;
    int s = bound(AF_INET, SOCK_DGRAM, &alen, &a);
    int port = port_of(&a);
    if (sendto(s, "from the gone", 13, 0, (struct sockaddr*)&u4, u4_len) != 13) _exit(1);
    if (write(pipefd[1], &port, sizeof(port)) != sizeof(port)) _exit(1);
    _exit(0);
  }
  int gone_port = 0;
  int status = 0;
  if (read(pipefd[0], &gone_port, sizeof(gone_port)) != sizeof(gone_port) || waitpid(child, &status, 0) != child) {
    return wl_fail("the sending child failed");
  }
  close(pipefd[0]);
  close(pipefd[1]);
  if (sendto(sender, "", 0, 0, (struct sockaddr*)&u4, u4_len) != 0) return wl_fail("empty sendto");
  if (sendto(sender6, "six", 3, 0, (struct sockaddr*)&u6, u6_len) != 3) return wl_fail("sendto6: %s", strerror(errno));
  if (sendto(sender, "four to six", 11, 0, (struct sockaddr*)&dual_v4, sizeof(dual_v4)) != 11) {
    return wl_fail("sendto the dual-stack socket: %s", strerror(errno));
  }
  if (connect(connected, (struct sockaddr*)&mine, mine_len)) return wl_fail("connect udp: %s", strerror(errno));
  usleep(20000);  /* loopback delivery is asynchronous */

  wl_ready();
  wl_wait_nap();

  if (accepts(listener4, &l4, l4_len, "TCP listener") || accepts(listener6, &l6, l6_len, "TCP6 listener")) return 1;
  int v6only = 0;
  socklen_t optlen = sizeof(v6only);
  if (getsockopt(listener6, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen) || !v6only) return wl_fail("IPV6_V6ONLY lost");
  if (getsockopt(listener4, IPPROTO_TCP, TCP_NODELAY, &on, &optlen) || !on) return wl_fail("TCP_NODELAY lost");
  tmp_len = sizeof(tmp);
  if (getsockname(bound_tcp, (struct sockaddr*)&tmp, &tmp_len) || port_of(&tmp) != bound_port) return wl_fail("the bound TCP socket lost its port");
  tmp_len = sizeof(tmp);
  if (getsockname(unbound_tcp, (struct sockaddr*)&tmp, &tmp_len) || port_of(&tmp) != 0) return wl_fail("the unbound TCP socket has a port");

  if (expect_datagram(udp, "from ours", port_of(&mine), "udp 1") ||
      expect_datagram(udp, "from the gone", gone_port, "udp 2") ||
      expect_datagram(udp, "", port_of(&mine), "udp 3") ||
      expect_datagram(udp6, "six", port_of(&mine6), "udp6") ||
      expect_datagram(dual, "four to six", port_of(&mine), "dual-stack udp6")) {
    return 1;
  }
  if (recv(udp, (char[1]){0}, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN) return wl_fail("a fourth datagram");
  if (send(connected, "pong", 4, 0) != 4) return wl_fail("send on the connected socket: %s", strerror(errno));
  if (expect_datagram(sender, "pong", port_of(&peer), "connected")) return 1;
  wl_say("OK inet sockets");
  return 0;
}
