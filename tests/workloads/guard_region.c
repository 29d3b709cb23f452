/* Eight pages of private anonymous memory filled with a pattern, pages 3
 * and 4 turned into a guard region (MADV_GUARD_INSTALL, Linux 6.13). After
 * SIGUSR1: the other pages still hold the pattern, touching either guard
 * page raises SIGSEGV (caught, siglongjmp back), and MADV_GUARD_REMOVE
 * turns them into zero pages again. With argv[1] "locked" the mapping is
 * then mlocked (which fails on the guard pages but leaves the VMA locked),
 * a state crlib refuses to dump. */
#include <setjmp.h>
#include <sys/mman.h>

#include "workload.h"

enum { kPages = 8, kGuardFirst = 3, kGuardPages = 2, kSeed = 0x9a4d };
#define MADV_GUARD_INSTALL_ 102
#define MADV_GUARD_REMOVE_ 103

static sigjmp_buf segv_jump;

static void on_segv(int sig) {
  (void)sig;
  siglongjmp(segv_jump, 1);
}

/* 1 if reading the byte at `p` raises SIGSEGV. */
static int faults(volatile const char* p) {
  if (sigsetjmp(segv_jump, 1) == 0) {
    (void)*p;
    return 0;
  }
  return 1;
}

int main(int argc, char** argv) {
  wl_install_handler();
  const int locked = argc > 1 && strcmp(argv[1], "locked") == 0;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char* mem = mmap(NULL, kPages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return wl_fail("mmap: %s", strerror(errno));
  wl_fill(mem, kPages * page, kSeed, 0);
  if (madvise(mem + kGuardFirst * page, kGuardPages * page, MADV_GUARD_INSTALL_) != 0) {
    return wl_fail("madvise(MADV_GUARD_INSTALL): %s", strerror(errno));
  }
  if (locked && mlock(mem, kPages * page) == 0) return wl_fail("mlock over a guard region worked");
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_segv;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);
  if (!faults(mem + kGuardFirst * page)) return wl_fail("the guard page does not fault before the dump");

  wl_ready();
  wl_wait_nap();

  for (int i = 0; i < kPages; ++i) {
    const int guard = i >= kGuardFirst && i < kGuardFirst + kGuardPages;
    if (guard) {
      if (!faults(mem + i * page) || !faults(mem + i * page + page - 1)) {
        return wl_fail("page %d is no longer a guard page", i);
      }
      continue;
    }
    long bad = wl_mismatch(mem + i * page, page, kSeed, i * page);
    if (bad >= 0) return wl_fail("page %d differs at byte %ld", i, bad);
  }
  if (madvise(mem + kGuardFirst * page, kGuardPages * page, MADV_GUARD_REMOVE_) != 0) {
    return wl_fail("madvise(MADV_GUARD_REMOVE): %s", strerror(errno));
  }
  if (faults(mem + kGuardFirst * page)) return wl_fail("the guard page still faults after removal");
  for (size_t i = 0; i < kGuardPages * page; ++i) {
    if (mem[kGuardFirst * page + i] != 0) return wl_fail("a removed guard page is not zero");
  }
  wl_say("OK %d guard pages kept", kGuardPages);
  return 0;
}
