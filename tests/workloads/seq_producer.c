/* The writing half of `sh -c "trap '' USR1; seq_producer | seq_consumer"`
 * (tests/task/tree_test.cc): an endless sequence of 8-byte counters 1, 2,
 * 3, ... into stdout, a pipe, as fast as the pipe takes them. Kernel
 * state: a pipe between two processes of a tree, full and mid-stream, and
 * a writer blocked in write(2) on it. On SIGUSR1 (sent to the whole process
 * group) it completes the chunk it was writing and exits 0, which closes
 * the pipe. It prints nothing: stdout is the stream; errors go to stderr. */
#include "workload.h"

enum { kChunkValues = 512 };

int main(void) {
  /* sh ignores SIGUSR1 and exec kept that; a handler replaces it. */
  wl_install_handler();
  uint64_t next = 1;
  uint64_t chunk[kChunkValues];
  for (;;) {
    for (int i = 0; i < kChunkValues; ++i) chunk[i] = next++;
    /* Not wl_write_all: a partial write is completed, EINTR included, so
     * the stream never ends inside a value. */
    const char* p = (const char*)chunk;
    size_t left = sizeof(chunk);
    while (left > 0) {
      ssize_t n = write(1, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        char line[128];
        int len = snprintf(line, sizeof(line), "seq_producer: write: %s\n", strerror(errno));
        (void)wl_write_all(2, line, (size_t)len);
        return 1;
      }
      p += n;
      left -= (size_t)n;
    }
    if (wl_go) return 0;
  }
}
