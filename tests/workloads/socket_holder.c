/* Holds a netlink socket, which crlib does not carry, beside a UNIX
 * socketpair, which it does. A dump must refuse it ("netlink sockets are
 * not carried") and leave it running untouched; it still answers SIGUSR1
 * with OK. */
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "workload.h"

int main(void) {
  wl_install_handler();
  int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (nl < 0) return wl_fail("socket(AF_NETLINK): %s", strerror(errno));
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return wl_fail("socketpair: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  struct stat st;
  if (fstat(nl, &st) != 0 || !S_ISSOCK(st.st_mode)) return wl_fail("the netlink socket is gone");
  const char ping[] = "ping";
  char pong[sizeof(ping)] = {0};
  if (write(pair[0], ping, sizeof(ping)) != (ssize_t)sizeof(ping) ||
      read(pair[1], pong, sizeof(pong)) != (ssize_t)sizeof(ping) || memcmp(ping, pong, sizeof(ping)) != 0) {
    return wl_fail("the socketpair does not carry data");
  }
  wl_say("OK sockets still open");
  return 0;
}
