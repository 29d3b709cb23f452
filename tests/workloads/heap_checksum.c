/* Heap memory: one block of 32 MiB, or of argv[1] MiB (malloc serves it
 * with its own mmap), and a few dozen small blocks from the brk heap, all
 * filled with a pseudo-random pattern. The checksum taken before READY must
 * hold after a restore, and every small block must still be where its
 * pointer says. With argv[2] "hold", a good checksum is reported as
 * "CHECKED <pid>" and the process holds its memory until a second SIGUSR1
 * (a test measures the memory of restored copies that have read all of
 * theirs). */
#include <stdlib.h>

#include "workload.h"

enum { kSmallCount = 48 };

static uint64_t Checksum(const uint64_t* words, size_t count, uint64_t sum) {
  for (size_t i = 0; i < count; ++i) sum = wl_mix(sum ^ words[i]) + i;
  return sum;
}

int main(int argc, char** argv) {
  wl_install_handler();

  const size_t big_bytes = (argc > 1 ? (size_t)atol(argv[1]) : 32) << 20;
  uint64_t* big = malloc(big_bytes);
  if (!big) return wl_fail("malloc of %zu bytes", big_bytes);
  const size_t big_words = big_bytes / sizeof(uint64_t);
  for (size_t i = 0; i < big_words; ++i) big[i] = wl_mix(i ^ 0x5eedull);
  /* A few zero pages in the middle: a checkpoint may skip them, but they
   * must come back as zeros. */
  memset((char*)big + (5 << 20), 0, 3 * 4096);

  uint64_t* small[kSmallCount];
  size_t small_words[kSmallCount];
  for (int i = 0; i < kSmallCount; ++i) {
    small_words[i] = 2 + (size_t)(wl_mix((uint64_t)i) % 512);
    small[i] = malloc(small_words[i] * sizeof(uint64_t));
    if (!small[i]) return wl_fail("malloc of small block %d", i);
    for (size_t j = 0; j < small_words[i]; ++j) small[i][j] = wl_mix(((uint64_t)i << 32) | j);
  }
  /* Free every third one, so the heap has holes and free lists to keep. */
  for (int i = 0; i < kSmallCount; i += 3) {
    free(small[i]);
    small[i] = NULL;
  }

  uint64_t sum = Checksum(big, big_words, 0);
  for (int i = 0; i < kSmallCount; ++i) {
    if (small[i]) sum = Checksum(small[i], small_words[i], sum);
  }
  const uint64_t before = sum;

  wl_ready();
  wl_wait_nap();

  sum = Checksum(big, big_words, 0);
  for (int i = 0; i < kSmallCount; ++i) {
    if (small[i]) sum = Checksum(small[i], small_words[i], sum);
  }
  if (sum != before) {
    return wl_fail("checksum %016llx, was %016llx", (unsigned long long)sum,
                   (unsigned long long)before);
  }
  if (argc > 2 && strcmp(argv[2], "hold") == 0) {
    wl_go = 0;
    wl_say("CHECKED %d", (int)getpid());
    wl_wait_nap();
  }
  /* The allocator's own state must have survived too. */
  for (int i = 0; i < kSmallCount; ++i) free(small[i]);
  void* again = malloc(1000);
  if (!again) return wl_fail("malloc after restore");
  free(again);
  free(big);
  wl_say("OK checksum %016llx", (unsigned long long)before);
  return 0;
}
