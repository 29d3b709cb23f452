/* A descriptor in flight: one end of a socketpair has sent a pipe's read
 * end (SCM_RIGHTS) that the other has not received. A dump must refuse it
 * ("file descriptors are in flight"), leaving the process as it was: after
 * SIGUSR1 it receives the descriptor and reads through it what was written
 * into the pipe. */
#include <sys/socket.h>

#include "workload.h"

int main(void) {
  wl_install_handler();
  int pair[2], p[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0 || pipe(p) != 0) return wl_fail("setup: %s", strerror(errno));
  char byte = 'x';
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof(control));
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &p[0], sizeof(int));
  if (sendmsg(pair[0], &m, 0) != 1) return wl_fail("sendmsg: %s", strerror(errno));
  close(p[0]);
  if (write(p[1], "through the pipe", 16) != 16) return wl_fail("write");

  wl_ready();
  wl_wait_nap();

  memset(&control, 0, sizeof(control));
  struct msghdr r = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
  if (recvmsg(pair[1], &r, 0) != 1) return wl_fail("recvmsg: %s", strerror(errno));
  c = CMSG_FIRSTHDR(&r);
  if (c == NULL || c->cmsg_type != SCM_RIGHTS) return wl_fail("no descriptor came");
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  char text[17] = {0};
  if (read(fd, text, 16) != 16 || strcmp(text, "through the pipe") != 0) return wl_fail("the descriptor is not the pipe");
  wl_say("OK the descriptor in flight arrived");
  return 0;
}
