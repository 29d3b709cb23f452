/* warm_start: a program with a slow start that snapshots itself once warm.
 *
 *   warm_start IMAGE [QUERY...]
 *
 * Started cold, it builds its table (the slow part), then calls
 * crlib_checkpoint_self(IMAGE) and answers the queries. Restored from the
 * image (`crlib restore --image IMAGE`), the same call returns
 * CRLIB_RESTORED and the program answers at once, with the table it built
 * before. The cold run prints how long the table and the snapshot took;
 * time a restored run from outside (README: `crlib restore` start to exit).
 *
 * Build: cc warm_start.c $(pkg-config --cflags --libs crlib) */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "crlib/crlib.h"

enum { kEntries = 2 << 20 }; /* 16 MiB of uint64_t */

static double NowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Something expensive per entry, standing in for parsing, JIT warm-up or
 * loading a model. */
static uint64_t Slow(uint64_t x) {
  for (int i = 0; i < 150; ++i) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
  }
  return x;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s IMAGE [QUERY...]\n", argv[0]);
    return 2;
  }
  const double start = NowMs();
  uint64_t *table = malloc(kEntries * sizeof(uint64_t));
  if (!table) return 1;
  for (uint64_t i = 0; i < kEntries; ++i) table[i] = Slow(i);
  const double warm = NowMs();

  crlib_stats stats = CRLIB_STATS_INIT;
  crlib_checkpoint_options options = CRLIB_CHECKPOINT_OPTIONS_INIT;
  options.stats = &stats;
  crlib_error *error = NULL;
  int r = crlib_checkpoint_self(argv[1], &options, &error);
  if (r < 0) {
    fprintf(stderr, "warm_start: %s (%s)\n", crlib_error_message(error), crlib_status_name(r));
    crlib_error_free(error);
    free(table);
    return 1;
  }
  if (r == CRLIB_CHECKPOINTED) {
    printf("cold start: table built in %.1f ms; image of %.1f MiB written in %.1f ms "
           "(process stopped %.1f ms)\n",
           warm - start, stats.image_bytes / 1048576.0, stats.total_ns / 1e6,
           stats.frozen_ns / 1e6);
  } else {
    printf("restored (pid %d): ready without rebuilding the table\n", (int)getpid());
  }
  uint64_t sum = 0;
  for (uint64_t i = 0; i < kEntries; ++i) sum += table[i];
  printf("table checksum %016" PRIx64 "\n", sum);
  for (int i = 2; i < argc; ++i) {
    uint64_t q = strtoull(argv[i], NULL, 0) % kEntries;
    printf("table[%" PRIu64 "] = %016" PRIx64 "\n", q, table[q]);
  }
  fflush(stdout);
  free(table);  /* a leak checker (ASan in make test-sanitize) sees no leak */
  return 0;
}
