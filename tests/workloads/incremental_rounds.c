/* Incremental dumps (issue 11, `crlib dump --track` / `--parent`): the
 * memory changes in every way tracking must follow between two dumps of a
 * chain. Each SIGUSR2 is a round r (1, 2, ...), which
 *   - rewrites 1% of the buffer's pages (a different set each round),
 *   - zaps two pages with MADV_DONTNEED (they read as zero since),
 *   - unmaps the "old" region and maps it again, filled anew,
 *   - moves the "moving" region with mremap to a new address,
 *   - maps a new region of its own, filled,
 * then prints "ROUND r". After restore, SIGUSR1: every byte of every
 * region must be what the rounds it saw made it (their count is in its
 * memory too), else FAIL names the first wrong place.
 * argv[1]: MiB of buffer (64). */
#include <stdlib.h>
#include <sys/mman.h>

#include "workload.h"

enum { kPage = 4096, kMaxRounds = 8, kSideBytes = 16 * kPage };

static unsigned char* buffer;
static size_t buffer_pages;
static unsigned char* old_region;
static unsigned char* moving;
static unsigned char* fresh[kMaxRounds + 1];
static volatile sig_atomic_t round_asked;
static int rounds;

static void on_usr2(int sig) {
  (void)sig;
  round_asked = 1;
}

/* Whether page p of the buffer was rewritten (or zapped) in round r. A
 * page holds the pattern of the last round that rewrote it (100 + r), at
 * its offset in the buffer; 1 if none did; zero if zapped since. */
static int rewritten(size_t p, int r) { return wl_mix(p * 131 + (uint64_t)r) % 100 == 0; }
static int zapped(size_t p, int r) { return p == (size_t)r * 7 || p == buffer_pages - 1 - (size_t)r; }

static uint64_t expected_seed(size_t p, int upto) {
  uint64_t seed = 1;
  for (int r = 1; r <= upto; ++r) {
    if (zapped(p, r)) seed = 0;
    else if (rewritten(p, r)) seed = 100 + (uint64_t)r;
  }
  return seed;
}

static void* map_filled(size_t bytes, uint64_t seed) {
  void* m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  wl_fill(m, bytes, seed, 0);
  return m;
}

static int do_round(void) {
  const int r = ++rounds;
  for (size_t p = 0; p < buffer_pages; ++p) {
    if (zapped(p, r)) {
      madvise(buffer + p * kPage, kPage, MADV_DONTNEED);
    } else if (rewritten(p, r)) {
      wl_fill(buffer + p * kPage, kPage, 100 + (uint64_t)r, p * kPage);
    }
  }
  munmap(old_region, kSideBytes);
  old_region = map_filled(kSideBytes, 200 + (uint64_t)r);
  /* Away from where it was: a VMA moved must not take the pages an older
   * image holds at its old address, nor miss its own. */
  void* to = mmap(NULL, kSideBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (to == MAP_FAILED) return wl_fail("mmap: %s", strerror(errno));
  moving = mremap(moving, kSideBytes, kSideBytes, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  if (moving == MAP_FAILED) return wl_fail("mremap: %s", strerror(errno));
  fresh[r] = map_filled(kSideBytes, 300 + (uint64_t)r);
  if (old_region == NULL || fresh[r] == NULL) return wl_fail("mmap: %s", strerror(errno));
  wl_say("ROUND %d", r);
  return 0;
}

static int check(void) {
  for (size_t p = 0; p < buffer_pages; ++p) {
    const uint64_t seed = expected_seed(p, rounds);
    const unsigned char* at = buffer + p * kPage;
    if (seed == 0) {
      for (size_t i = 0; i < kPage; ++i) {
        if (at[i] != 0) return wl_fail("zapped page %zu not zero at byte %zu", p, i);
      }
    } else if (wl_mismatch(at, kPage, seed, p * kPage) >= 0) {
      return wl_fail("page %zu is not pattern %llu (rounds %d)", p, (unsigned long long)seed, rounds);
    }
  }
  if (wl_mismatch(old_region, kSideBytes, rounds ? 200 + (uint64_t)rounds : 2, 0) >= 0) {
    return wl_fail("the region mapped again in round %d is wrong", rounds);
  }
  if (wl_mismatch(moving, kSideBytes, 3, 0) >= 0) return wl_fail("the moved region is wrong");
  for (int r = 1; r <= rounds; ++r) {
    if (wl_mismatch(fresh[r], kSideBytes, 300 + (uint64_t)r, 0) >= 0) {
      return wl_fail("the region mapped in round %d is wrong", r);
    }
  }
  wl_say("OK %d rounds, %zu pages", rounds, buffer_pages);
  return 0;
}

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
  buffer_pages = mib * 1024 * 1024 / kPage;
  buffer = map_filled(buffer_pages * kPage, 1);
  old_region = map_filled(kSideBytes, 2);
  moving = map_filled(kSideBytes, 3);
  if (buffer == NULL || old_region == NULL || moving == NULL) return wl_fail("mmap: %s", strerror(errno));
  wl_install_handler();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr2;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
  wl_ready();
  while (!wl_go) {
    if (round_asked) {
      round_asked = 0;
      if (rounds == kMaxRounds) return wl_fail("more than %d rounds", kMaxRounds);
      if (do_round() != 0) return 1;
      continue;
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return check();
}
