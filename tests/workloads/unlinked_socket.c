/* A listening UNIX socket bound to argv[1]/sock, whose path was then
 * removed. After a restore it still listens, still has that name, and the
 * name is still removed. */
#include <sys/socket.h>
#include <sys/un.h>

#include "workload.h"

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: unlinked_socket DIR");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) + 6 >= sizeof(addr.sun_path)) return wl_fail("path too long");
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%.100s/sock", argv[1]);
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0 || bind(s, (struct sockaddr*)&addr, sizeof(addr)) != 0 || listen(s, 1) != 0) {
    return wl_fail("bind %s: %s", addr.sun_path, strerror(errno));
  }
  if (unlink(addr.sun_path) != 0) return wl_fail("unlink: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  int accepting = 0;
  socklen_t len = sizeof(accepting);
  if (getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) {
    return wl_fail("the socket no longer listens");
  }
  struct sockaddr_un name;
  socklen_t name_len = sizeof(name);
  if (getsockname(s, (struct sockaddr*)&name, &name_len) != 0 || strcmp(name.sun_path, addr.sun_path) != 0) {
    return wl_fail("the socket's name is \"%s\", not %s", name.sun_path, addr.sun_path);
  }
  if (access(addr.sun_path, F_OK) == 0) return wl_fail("%s exists again", addr.sun_path);
  wl_say("OK socket still listens");
  return 0;
}
