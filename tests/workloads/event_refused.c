/* Event objects a dump refuses, naming them; the process runs on. argv[1]:
 *   io_uring         an io_uring instance (raw io_uring_setup)
 *   io_uring_mapped  its ring mapped, its fd closed
 *   fanotify         a fanotify group
 *   epoll_stale      an epoll entry whose fd was closed (a dup keeps the file)
 *   inotify_removed  an inotify watch on a removed file (kept open)
 * argv[2]: a directory of the test's (inotify_removed). */
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "workload.h"

int main(int argc, char** argv) {
  if (argc < 2) return wl_fail("usage: event_refused MODE [DIR]");
  wl_install_handler();
  const char* mode = argv[1];
  if (strncmp(mode, "io_uring", 8) == 0) {
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    int ring = (int)syscall(SYS_io_uring_setup, 4, &params);
    if (ring < 0) return wl_fail("io_uring_setup: %s", strerror(errno));
    size_t size = params.sq_off.array + params.sq_entries * sizeof(uint32_t);
    void* sq = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) return wl_fail("mmap of the ring: %s", strerror(errno));
    if (strcmp(mode, "io_uring_mapped") == 0) close(ring);
  } else if (strcmp(mode, "fanotify") == 0) {
    if (syscall(SYS_fanotify_init, 0, O_RDONLY) < 0) return wl_fail("fanotify_init: %s", strerror(errno));
  } else if (strcmp(mode, "epoll_stale") == 0) {
    int p[2];
    int ep = epoll_create1(0);
    if (pipe(p) != 0 || ep < 0) return wl_fail("pipe, epoll");
    struct epoll_event ev = {.events = EPOLLIN, .data = {.u64 = 1}};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) return wl_fail("epoll_ctl");
    if (dup(p[0]) < 0) return wl_fail("dup");
    close(p[0]);
  } else if (strcmp(mode, "inotify_removed") == 0 && argc > 2) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/removed-watched", argv[2]);
    int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int in = inotify_init1(0);
    if (f < 0 || in < 0 || inotify_add_watch(in, path, IN_MODIFY) != 1) return wl_fail("watch %s", path);
    unlink(path);
  } else {
    return wl_fail("unknown mode %s", mode);
  }
  wl_ready();
  wl_wait_nap();
  wl_say("OK %s", mode);
  return 0;
}
