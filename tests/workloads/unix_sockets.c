/* UNIX sockets of every kind, with data queued in them, in DIR (argv[1]):
 *   - a stream socketpair with bytes queued both ways, one side shut down
 *     for writing;
 *   - a datagram socketpair with three queued datagrams, one empty;
 *   - a seqpacket socketpair with two queued records;
 *   - a listener on DIR/listen.sock (mode 0640) with one accepted
 *     connection, bytes queued both ways on it, and one connection not
 *     accepted yet;
 *   - a datagram socket bound to an abstract name, with a datagram from a
 *     socket bound to DIR/sender.sock and one from an unnamed socket since
 *     closed queued, SO_PASSCRED on;
 *   - a datagram socket bound to DIR/gone.sock, whose name was removed;
 *   - a stream socket whose peer wrote and closed;
 *   - a changed receive buffer.
 * After the restore every queue must give exactly its bytes with its
 * message boundaries and senders, the shut-down sides must be so, the
 * waiting connection must be accepted, and everything must still work. */
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "workload.h"

static struct sockaddr_un path_addr(const char* dir, const char* name, socklen_t* len) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%.80s/%s", dir, name);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1);
  return a;
}

static int nonblock(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Reads exactly `size` bytes (a stream), filled with `seed`; then expects
 * `then` from the next read: 0 for end of stream, -1 for EAGAIN. */
static int expect_stream(int fd, size_t size, unsigned seed, int then, const char* what) {
  static unsigned char buf[1 << 16];
  size_t total = 0;
  while (total < size) {
    ssize_t n = read(fd, buf + total, size - total);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return wl_fail("%s: read %zu of %zu bytes, then %zd (%s)", what, total, size, n, strerror(errno));
    total += (size_t)n;
  }
  long bad = wl_mismatch(buf, size, seed, 0);
  if (bad >= 0) return wl_fail("%s: byte %ld differs", what, bad);
  ssize_t n = read(fd, buf, 1);
  if (then == 0 && n != 0) return wl_fail("%s: no end of stream after the data (%zd, %s)", what, n, strerror(errno));
  if (then == -1 && !(n < 0 && errno == EAGAIN)) return wl_fail("%s: more after the data (%zd)", what, n);
  return 0;
}

/* One datagram of exactly `text` (NULL: an empty one) from `sender` ("":
 * unnamed, NULL: not checked). */
static int expect_message(int fd, const char* text, const char* sender, const char* what) {
  char buf[512];
  struct sockaddr_un from;
  socklen_t from_len = sizeof(from);
  memset(&from, 0, sizeof(from));
  ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr*)&from, &from_len);
  size_t want = text ? strlen(text) : 0;
  if (n < 0) return wl_fail("%s: no message (%s)", what, strerror(errno));
  if ((size_t)n != want || (want && memcmp(buf, text, want) != 0)) {
    return wl_fail("%s: got %zd bytes, expected \"%s\"", what, n, text ? text : "");
  }
  if (sender != NULL) {
    const char* got = from_len > offsetof(struct sockaddr_un, sun_path) ? from.sun_path : "";
    if (strcmp(got, sender) != 0) return wl_fail("%s: sender \"%s\", expected \"%s\"", what, got, sender);
  }
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: unix_sockets DIR");
  const char* dir = argv[1];
  enum { kAtoB = 5000, kBtoA = 3000, kAccIn = 777, kOrphan = 4096 };
  static unsigned char data[1 << 16];

  int st[2], dg[2], sq[2], orphan[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
      socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) || socketpair(AF_UNIX, SOCK_STREAM, 0, orphan)) {
    return wl_fail("socketpair: %s", strerror(errno));
  }
  wl_fill(data, kAtoB, 1, 0);
  if (wl_write_all(st[0], data, kAtoB)) return wl_fail("write a->b");
  wl_fill(data, kBtoA, 2, 0);
  if (wl_write_all(st[1], data, kBtoA)) return wl_fail("write b->a");
  if (shutdown(st[0], SHUT_WR)) return wl_fail("shutdown: %s", strerror(errno));
  int rcvbuf = 65536;
  if (setsockopt(st[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf))) return wl_fail("SO_RCVBUF");
  socklen_t optlen = sizeof(rcvbuf);
  getsockopt(st[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, &optlen);

  if (send(dg[0], "ten bytes!", 10, 0) != 10 || send(dg[0], "", 0, 0) != 0 ||
      send(dg[0], "the third datagram", 18, 0) != 18) {
    return wl_fail("send datagrams: %s", strerror(errno));
  }
  if (send(sq[1], "first", 5, 0) != 5 || send(sq[1], "second-longer", 13, 0) != 13) {
    return wl_fail("send records: %s", strerror(errno));
  }
  wl_fill(data, kOrphan, 3, 0);
  if (wl_write_all(orphan[0], data, kOrphan)) return wl_fail("write orphan");
  close(orphan[0]);

  socklen_t len;
  struct sockaddr_un listen_addr = path_addr(dir, "listen.sock", &len);
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(listener, (struct sockaddr*)&listen_addr, len) || listen(listener, 4)) {
    return wl_fail("listen on %s: %s", listen_addr.sun_path, strerror(errno));
  }
  if (chmod(listen_addr.sun_path, 0640)) return wl_fail("chmod: %s", strerror(errno));
  int client = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(client, (struct sockaddr*)&listen_addr, len)) return wl_fail("connect: %s", strerror(errno));
  int server = accept(listener, NULL, NULL);
  if (server < 0) return wl_fail("accept: %s", strerror(errno));
  wl_fill(data, kAccIn, 4, 0);
  if (wl_write_all(client, data, kAccIn)) return wl_fail("write client");
  if (wl_write_all(server, "welcome", 7)) return wl_fail("write server");
  int waiting = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(waiting, (struct sockaddr*)&listen_addr, len)) return wl_fail("connect 2: %s", strerror(errno));

  struct sockaddr_un abstract = {.sun_family = AF_UNIX};
  int abstract_len = snprintf(abstract.sun_path + 1, sizeof(abstract.sun_path) - 1, "crlib-test-%d", (int)getpid());
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + abstract_len);
  int dserver = socket(AF_UNIX, SOCK_DGRAM, 0);
  int on = 1;
  if (bind(dserver, (struct sockaddr*)&abstract, alen) ||
      setsockopt(dserver, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on))) {
    return wl_fail("abstract bind: %s", strerror(errno));
  }
  struct sockaddr_un sender_addr = path_addr(dir, "sender.sock", &len);
  int sender = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (bind(sender, (struct sockaddr*)&sender_addr, len)) return wl_fail("bind sender: %s", strerror(errno));
  if (sendto(sender, "from-sender", 11, 0, (struct sockaddr*)&abstract, alen) != 11) return wl_fail("sendto");
  int anon = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (sendto(anon, "from-anon", 9, 0, (struct sockaddr*)&abstract, alen) != 9) return wl_fail("sendto anon");
  close(anon);

  struct sockaddr_un gone_addr = path_addr(dir, "gone.sock", &len);
  int gone = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (bind(gone, (struct sockaddr*)&gone_addr, len) || unlink(gone_addr.sun_path)) {
    return wl_fail("bind and unlink gone.sock: %s", strerror(errno));
  }

  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, &old);
  wl_ready();
  while (!wl_go) sigsuspend(&old);
  sigprocmask(SIG_SETMASK, &old, NULL);

  for (int fd = 3; fd < 32; ++fd) nonblock(fd);
  /* The stream pair: a shut down for writing, so b sees the end. */
  if (expect_stream(st[1], kAtoB, 1, 0, "stream a->b")) return 1;
  if (expect_stream(st[0], kBtoA, 2, -1, "stream b->a")) return 1;
  if (send(st[0], "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) return wl_fail("a can write after its shutdown");
  if (wl_write_all(st[1], "ping", 4) || read(st[0], data, 4) != 4 || memcmp(data, "ping", 4)) {
    return wl_fail("the stream pair no longer carries b->a");
  }
  int now = 0;
  optlen = sizeof(now);
  getsockopt(st[0], SOL_SOCKET, SO_RCVBUF, &now, &optlen);
  if (now != rcvbuf) return wl_fail("SO_RCVBUF is %d, was %d", now, rcvbuf);

  if (expect_message(dg[1], "ten bytes!", NULL, "datagram 1") || expect_message(dg[1], NULL, NULL, "datagram 2") ||
      expect_message(dg[1], "the third datagram", NULL, "datagram 3")) {
    return 1;
  }
  if (recv(dg[1], data, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN) return wl_fail("a fourth datagram");
  if (expect_message(sq[0], "first", NULL, "record 1") || expect_message(sq[0], "second-longer", NULL, "record 2")) return 1;
  if (expect_stream(orphan[1], kOrphan, 3, 0, "orphaned stream")) return 1;

  /* The accepted connection, then the one that waited. */
  if (expect_stream(server, kAccIn, 4, -1, "accepted, client->server")) return 1;
  char welcome[8] = {0};
  if (read(client, welcome, 7) != 7 || strcmp(welcome, "welcome") != 0) return wl_fail("accepted, server->client");
  struct sockaddr_un name;
  socklen_t name_len = sizeof(name);
  if (getsockname(server, (struct sockaddr*)&name, &name_len) || strcmp(name.sun_path, listen_addr.sun_path) != 0) {
    return wl_fail("the accepted socket's name is \"%s\"", name.sun_path);
  }
  int second = accept(listener, NULL, NULL);
  if (second < 0) return wl_fail("the waiting connection is gone: %s", strerror(errno));
  if (wl_write_all(second, "hi", 2) || read(waiting, data, 2) != 2 || memcmp(data, "hi", 2)) {
    return wl_fail("the waiting connection does not carry data");
  }
  struct stat sst;
  if (stat(listen_addr.sun_path, &sst) || !S_ISSOCK(sst.st_mode) || (sst.st_mode & 07777) != 0640) {
    return wl_fail("%s is not a socket of mode 0640 (%o)", listen_addr.sun_path, sst.st_mode);
  }
  int late = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(late, (struct sockaddr*)&listen_addr, sizeof(listen_addr))) return wl_fail("connect after restore: %s", strerror(errno));

  if (expect_message(dserver, "from-sender", sender_addr.sun_path, "abstract 1") ||
      expect_message(dserver, "from-anon", "", "abstract 2")) {
    return 1;
  }
  optlen = sizeof(on);
  on = 0;
  if (getsockopt(dserver, SOL_SOCKET, SO_PASSCRED, &on, &optlen) || !on) return wl_fail("SO_PASSCRED is off");
  name_len = sizeof(name);
  if (getsockname(gone, (struct sockaddr*)&name, &name_len) || strcmp(name.sun_path, gone_addr.sun_path) != 0) {
    return wl_fail("the removed socket's name is \"%s\"", name.sun_path);
  }
  if (access(gone_addr.sun_path, F_OK) == 0) return wl_fail("%s exists again", gone_addr.sun_path);
  wl_say("OK unix sockets");
  return 0;
}
