/* The correctness proof of live dumps (issue 11): two threads keep moving
 * units between random pages of a large buffer while the process is
 * checkpointed, and a third maps, fills and unmaps memory all the while.
 * Every page holds 1023 counters and a weighted sum of them; a move takes
 * both pages' locks, so a page is never seen half-updated by the process
 * itself. A dump that copied one page before a move and the other after,
 * or half a page, breaks the total or a page's sum. After restore the
 * movers finish the move they were in (in registers) and stop; the total
 * must be exact and every page's sum must hold.
 * argv[1]: MiB of buffer (64). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "workload.h"

enum { kSlots = 1023, kStart = 100 };

struct page {
  uint32_t v[kSlots];
  uint32_t sum;  /* sum of v[i] * (i + 1), mod 2^32 */
};

static struct page* pages;
static size_t page_count;
static atomic_flag* locks;
static atomic_int stop;
static atomic_ulong moves;

static void lock(size_t i) {
  while (atomic_flag_test_and_set_explicit(&locks[i], memory_order_acquire)) {
  }
}
static void unlock(size_t i) { atomic_flag_clear_explicit(&locks[i], memory_order_release); }

static void* mover(void* arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg;
  while (!atomic_load(&stop)) {
    r = wl_mix(r);
    size_t a = r % page_count, b = (r >> 20) % page_count;
    if (a == b) continue;
    const unsigned sa = (unsigned)((r >> 40) % kSlots), sb = (unsigned)((r >> 50) % kSlots);
    lock(a < b ? a : b);
    lock(a < b ? b : a);
    if (pages[a].v[sa] > 0) {
      pages[a].v[sa] -= 1;
      pages[a].sum -= sa + 1;
      pages[b].v[sb] += 1;
      pages[b].sum += sb + 1;
    }
    unlock(a < b ? b : a);
    unlock(a < b ? a : b);
    atomic_fetch_add(&moves, 1);
  }
  return NULL;
}

/* Memory that comes and goes while the dump copies: pages copied from it
 * may be gone (or another mapping) by the stop. */
static void* churner(void* arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg;
  while (!atomic_load(&stop)) {
    r = wl_mix(r);
    const size_t size = (1 + r % 8) << 20;
    unsigned char* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) continue;
    memset(p, (int)(r & 0xff) | 1, size);
    if (r & 1) {
      void* q = mremap(p, size, 2 * size, MREMAP_MAYMOVE);
      if (q != MAP_FAILED) {
        p = q;
        memset(p + size, 7, size);
        munmap(p, 2 * size);
        continue;
      }
    }
    munmap(p, size);
  }
  return NULL;
}

static int check(const char* when) {
  uint64_t total = 0;
  for (size_t i = 0; i < page_count; ++i) {
    uint32_t sum = 0;
    for (unsigned s = 0; s < kSlots; ++s) {
      sum += pages[i].v[s] * (s + 1);
      total += pages[i].v[s];
    }
    if (sum != pages[i].sum) {
      return wl_fail("%s: page %zu's sum is %u, its counters add up to %u", when, i, pages[i].sum,
                     sum);
    }
  }
  const uint64_t want = (uint64_t)page_count * kSlots * kStart;
  if (total != want) {
    return wl_fail("%s: %llu units, want %llu", when, (unsigned long long)total,
                   (unsigned long long)want);
  }
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  const size_t bytes = (argc > 1 ? (size_t)atol(argv[1]) : 64) << 20;
  page_count = bytes / sizeof(struct page);
  pages = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  locks = calloc(page_count, sizeof(atomic_flag));
  if (pages == MAP_FAILED || !locks) return wl_fail("allocating %zu bytes", bytes);
  for (size_t i = 0; i < page_count; ++i) {
    pages[i].sum = 0;
    for (unsigned s = 0; s < kSlots; ++s) {
      pages[i].v[s] = kStart;
      pages[i].sum += kStart * (s + 1);
    }
  }
  pthread_t threads[3];
  for (int i = 0; i < 2; ++i) {
    if (pthread_create(&threads[i], NULL, mover, (void*)(uintptr_t)(i + 1))) return wl_fail("pthread_create");
  }
  if (pthread_create(&threads[2], NULL, churner, (void*)(uintptr_t)3)) return wl_fail("pthread_create");
  /* Moves under way before READY: the dump meets a busy process. */
  while (atomic_load(&moves) < 1000) {
  }
  wl_ready();
  wl_wait_nap();
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; ++i) pthread_join(threads[i], NULL);
  if (check("after restore")) return 1;
  wl_say("OK %lu moves, %zu pages", (unsigned long)atomic_load(&moves), page_count);
  return 0;
}
