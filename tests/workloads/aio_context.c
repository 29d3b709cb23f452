/* An aio context (io_setup) with one read of a file of its own done
 * through it. After SIGUSR1 the same context id takes another read
 * (io_submit + io_getevents) and gives the file's bytes. crlib refuses to
 * dump it; the process must come through that untouched. */
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "workload.h"

static int read_through(aio_context_t ctx, int fd, char* buf, size_t size) {
  struct iocb cb;
  memset(&cb, 0, sizeof(cb));
  cb.aio_fildes = (uint32_t)fd;
  cb.aio_lio_opcode = IOCB_CMD_PREAD;
  cb.aio_buf = (uint64_t)(uintptr_t)buf;
  cb.aio_nbytes = size;
  cb.aio_data = 0x5eed;
  struct iocb* list[1] = {&cb};
  if (syscall(SYS_io_submit, ctx, 1, list) != 1) return -1;
  struct io_event ev;
  long n;
  do {
    n = syscall(SYS_io_getevents, ctx, 1, 1, &ev, NULL);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || ev.data != 0x5eed || ev.res != (int64_t)size) return -1;
  return 0;
}

int main(void) {
  wl_install_handler();
  char path[] = "/tmp/crlib-aio-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return wl_fail("mkstemp: %s", strerror(errno));
  unlink(path);
  const char text[] = "aio context contents";
  if (wl_write_all(fd, text, sizeof(text)) != 0) return wl_fail("write: %s", strerror(errno));
  aio_context_t ctx = 0;
  if (syscall(SYS_io_setup, 8, &ctx) != 0) return wl_fail("io_setup: %s", strerror(errno));
  char buf[sizeof(text)];
  if (read_through(ctx, fd, buf, sizeof(buf)) != 0) return wl_fail("aio read before: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  memset(buf, 0, sizeof(buf));
  if (read_through(ctx, fd, buf, sizeof(buf)) != 0) return wl_fail("aio read on the old context: %s", strerror(errno));
  if (memcmp(buf, text, sizeof(text)) != 0) return wl_fail("aio read gave other bytes");
  wl_say("OK aio context 0x%llx works", (unsigned long long)ctx);
  return 0;
}
