/* A 1 TiB MAP_NORESERVE reservation, a few pages of it touched, shared
 * copy-on-write with a child that wrote one page of its own.
 * Kernel state: a sparse private VMA inherited over fork (a sanitizer's
 * shadow or a JVM heap is one): the dump compares parent and child only
 * where they have pages, never the terabyte's page table entries. */
#include "tree.h"
static char* p;
static int child_body(pid_t parent) {
  p[4096] = 'c';
  tr_report_ready(); tr_wait_go(parent);
  if (p[0] != 'r' || p[4096] != 'c' || p[(1ul << 39)] != 'x') return 1;
  return 0;
}
int main(void) {
  wl_install_handler();
  p = mmap(NULL, 1ul << 40, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return wl_fail("mmap");
  p[0] = 'r'; p[4096] = 'r'; p[1ul << 39] = 'x';
  if (tr_open_ready() != 0) return 1;
  pid_t c = tr_fork(child_body);
  if (tr_await_ready(1) != 0) return 1;
  wl_ready(); wl_wait_nap();
  tr_forward_go(&c, 1);
  if (tr_reap_ok(c, "child") != 0) return 1;
  if (p[4096] != 'r') return wl_fail("parent page");
  wl_say("OK 1 TiB reservation shared with a child");
  return 0;
}
