/* 4 MiB of anonymous memory filled before a fork and shared copy-on-write
 * with a child, which then drops one page (MADV_DONTNEED: zero for it)
 * and writes another; the parent writes a third. Each checks its own view
 * after a restore. A mapped restore must not map memory a child keeps from
 * its parent: the child's dropped page would show the parent's bytes. */
#include <sys/mman.h>

#include "tree.h"

enum { kPages = 1024, kDropped = 5, kChildOwn = 7, kParentOwn = 9 };
static unsigned char* p;

static unsigned char Byte(size_t page, size_t i) { return (unsigned char)(page * 31 + i % 251 + 1); }

/* The first page that differs from what `who` should see, or -1. */
static long Mismatch(int child) {
  for (size_t page = 0; page < kPages; ++page) {
    for (size_t i = 0; i < 4096; i += 97) {
      unsigned char want = Byte(page, i);
      if (child && page == kDropped) want = 0;
      if (child && page == kChildOwn) want = 'c';
      if (!child && page == kParentOwn) want = 'p';
      if (p[page * 4096 + i] != want) return (long)page;
    }
  }
  return -1;
}

static int child_body(pid_t parent) {
  if (madvise(p + kDropped * 4096, 4096, MADV_DONTNEED) != 0) return 2;
  memset(p + kChildOwn * 4096, 'c', 4096);
  tr_report_ready();
  tr_wait_go(parent);
  long bad = Mismatch(1);
  if (bad >= 0) {
    wl_say("FAIL child page %ld", bad);
    return 1;
  }
  return 0;
}

int main(void) {
  wl_install_handler();
  p = mmap(NULL, kPages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return wl_fail("mmap: %s", strerror(errno));
  for (size_t page = 0; page < kPages; ++page) {
    for (size_t i = 0; i < 4096; ++i) p[page * 4096 + i] = Byte(page, i);
  }
  if (tr_open_ready() != 0) return wl_fail("pipe: %s", strerror(errno));
  pid_t c = tr_fork(child_body);
  if (c < 0) return wl_fail("fork: %s", strerror(errno));
  memset(p + kParentOwn * 4096, 'p', 4096);
  if (tr_await_ready(1) != 0) return 1;
  wl_ready();
  wl_wait_nap();
  tr_forward_go(&c, 1);
  if (tr_reap_ok(c, "child") != 0) return 1;
  long bad = Mismatch(0);
  if (bad >= 0) return wl_fail("parent page %ld", bad);
  wl_say("OK forked heap");
  return 0;
}
