/* A parent holding much memory (argv[1] MiB, default 256) and one child:
 * a restore spends a while loading the parent's pages before it creates
 * the child, long enough for a test to take the child's PID meanwhile.
 * Kernel state: nothing new; the tree shape and the memory size matter. */
#include "tree.h"

static int child_body(pid_t parent) {
  tr_report_ready();
  tr_wait_go(parent);
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  const size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
  const size_t size = mib << 20;
  unsigned char* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return wl_fail("mmap %zu MiB: %s", mib, strerror(errno));
  for (size_t i = 0; i < size; i += 4096) p[i] = (unsigned char)(i >> 12) | 1;
  if (tr_open_ready() != 0) return wl_fail("pipe: %s", strerror(errno));
  pid_t child = tr_fork(child_body);
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  if (tr_await_ready(1) != 0) return 1;
  wl_ready();
  wl_wait_nap();
  tr_forward_go(&child, 1);
  for (size_t i = 0; i < size; i += 4096) {
    if (p[i] != ((unsigned char)(i >> 12) | 1)) return wl_fail("byte at %zu changed", i);
  }
  if (tr_reap_ok(child, "child") != 0) return 1;
  wl_say("OK %zu MiB and a child", mib);
  return 0;
}
