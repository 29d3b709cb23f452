/* A TCP server on 127.0.0.1:PORT (argv[1]) whose client is the test,
 * outside the dumped process. It accepts one connection, greets it,
 * answers "ping" with "pong", then waits for SIGUSR1 without reading: what
 * the client sends meanwhile stays queued in the connection. After SIGUSR1
 * (after a restore with --tcp-established) it reads until it has "queued"
 * and "during" (sent while the process was gone, retransmitted by the
 * client's kernel until the restored connection takes it), echoes them,
 * waits for "bye" and says OK: the connection lived through it all. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "workload.h"

/* Reads until `buf` holds `want` (a substring), or fails. */
static int read_until(int fd, char* buf, size_t size, size_t* len, const char* want) {
  while (strstr(buf, want) == NULL) {
    if (*len + 1 >= size) return -1;
    ssize_t n = read(fd, buf + *len, size - 1 - *len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    *len += (size_t)n;
    buf[*len] = 0;
  }
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: tcp_echo_server PORT");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr = {htonl(INADDR_LOOPBACK)}};
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int on = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (bind(listener, (struct sockaddr*)&addr, sizeof(addr)) || listen(listener, 4)) {
    return wl_fail("listen on port %s: %s", argv[1], strerror(errno));
  }
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  wl_ready();
  int conn = accept(listener, NULL, NULL);
  if (conn < 0) return wl_fail("accept: %s", strerror(errno));
  if (wl_write_all(conn, "hello\n", 6)) return wl_fail("write hello");
  char buf[4096] = {0};
  size_t len = 0;
  if (read_until(conn, buf, sizeof(buf), &len, "ping\n")) return wl_fail("no ping");
  if (wl_write_all(conn, "pong\n", 5)) return wl_fail("write pong");
  while (!wl_go) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);

  len = 0;
  buf[0] = 0;
  if (read_until(conn, buf, sizeof(buf), &len, "queued\nduring\n")) {
    return wl_fail("the connection gave \"%s\" and then %s", buf, strerror(errno));
  }
  if (wl_write_all(conn, "echo:queued+during\n", 19)) return wl_fail("write echo: %s", strerror(errno));
  /* "bye" may have come with the rest. */
  if (read_until(conn, buf, sizeof(buf), &len, "bye\n")) return wl_fail("no bye: %s", strerror(errno));
  wl_say("OK the TCP connection lived on");
  return 0;
}
