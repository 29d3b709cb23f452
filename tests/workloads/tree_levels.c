/* A three-level tree: the root, two children, each with one grandchild.
 * Kernel state: parent/child relations across three levels (getppid), the
 * private anonymous memory of each process (1 MiB with a pattern of its
 * own, written after the fork), and 1 MiB the root wrote before forking
 * that nobody has touched since, so it is still shared copy-on-write by
 * all five processes. After SIGUSR1 every process checks its own pattern,
 * the shared one and its parent; the root collects the verdicts. */
#include <stdlib.h>

#include "tree.h"

enum { kMiB = 1 << 20, kChildren = 2, kSharedSeed = 0x5eed };

static unsigned char* shared; /* written by the root before any fork */

/* A fresh 1 MiB (malloc maps it: above the mmap threshold) holding pattern `seed`. */
static unsigned char* own_memory(uint64_t seed) {
  unsigned char* p = malloc(kMiB);
  if (p) wl_fill(p, kMiB, seed, 0);
  return p;
}

/* One process's checks; `parent` 0 for the root, whose parent is the restorer. */
static int check(const char* role, const unsigned char* own, uint64_t seed, pid_t parent) {
  long bad = wl_mismatch(own, kMiB, seed, 0);
  if (bad >= 0) return wl_fail("%s %d: its own memory differs at %ld", role, (int)getpid(), bad);
  bad = wl_mismatch(shared, kMiB, kSharedSeed, 0);
  if (bad >= 0) return wl_fail("%s %d: memory shared since fork differs at %ld", role, (int)getpid(), bad);
  if (parent != 0 && getppid() != parent) {
    return wl_fail("%s %d: parent is %d, expected %d", role, (int)getpid(), (int)getppid(), (int)parent);
  }
  return 0;
}

static int grandchild(int i, pid_t parent) {
  unsigned char* own = own_memory(0x300 + i);
  if (!own) return wl_fail("grandchild: malloc");
  tr_report_ready();
  tr_wait_go(parent);
  return check("grandchild", own, 0x300 + i, parent);
}

static int child(int i, pid_t parent) {
  unsigned char* own = own_memory(0x200 + i);
  if (!own) return wl_fail("child: malloc");
  const pid_t me = getpid();
  pid_t g = fork();
  if (g < 0) return wl_fail("child: fork: %s", strerror(errno));
  if (g == 0) _exit(grandchild(i, me));
  tr_report_ready();
  tr_wait_go(parent);
  tr_forward_go(&g, 1);
  int rc = check("child", own, 0x200 + i, parent);
  return tr_reap_ok(g, "grandchild") | rc;
}

int main(void) {
  wl_install_handler();
  shared = own_memory(kSharedSeed);
  if (!shared) return wl_fail("malloc");
  if (tr_open_ready() != 0) return wl_fail("pipe: %s", strerror(errno));
  const pid_t me = getpid();
  pid_t children[kChildren];
  for (int i = 0; i < kChildren; ++i) {
    children[i] = fork();
    if (children[i] < 0) return wl_fail("fork: %s", strerror(errno));
    if (children[i] == 0) _exit(child(i, me));
  }
  unsigned char* own = own_memory(0x100);
  if (!own) return wl_fail("malloc");
  if (tr_await_ready(2 * kChildren) != 0) return 1;

  wl_ready();
  wl_wait_nap();

  tr_forward_go(children, kChildren);
  int rc = check("root", own, 0x100, 0);
  for (int i = 0; i < kChildren; ++i) rc |= tr_reap_ok(children[i], "child");
  free(own);
  free(shared);
  if (rc != 0) return 1;
  wl_say("OK tree of %d processes on 3 levels", 1 + 2 * kChildren);
  return 0;
}
