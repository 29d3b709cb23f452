/* AMX tiles, the one dynamic xstate feature so far: the process asks for
 * permission (arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)); two threads
 * load a tile configuration and all eight tiles with patterns of their
 * own; a third has the permission but never touches a tile before the
 * checkpoint. After the signal, the first two store their tiles back and
 * compare (tile registers are per thread, kept across the checkpoint only
 * if the restore loaded them), and the third loads, stores and compares a
 * pattern: the restored process still holds the permission. Nothing uses
 * tiles between the loads and the stores but the wait loop's nanosleep,
 * which keeps them (the kernel saves them like any register). The tests
 * skip on a CPU without AMX (CPUID), so this never runs there. */
#include <asm/prctl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "workload.h"

enum { kXtileData = 18, kRows = 16, kBytesPerRow = 64, kTiles = 8 };

struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((aligned(64)));

struct Tiles {
  _Alignas(64) unsigned char t[kTiles][kRows * kBytesPerRow];
};

static void load_config(void) {
  static struct TileConfig cfg;
  cfg.palette = 1;
  for (int i = 0; i < kTiles; ++i) {
    cfg.colsb[i] = kBytesPerRow;
    cfg.rows[i] = kRows;
  }
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

#define TILE_OP(op, n, buf) \
  __asm__ volatile(op " (%0,%1,1), %%tmm" #n : : "r"((buf)->t[n]), "r"((long)kBytesPerRow) : "memory")
#define TILE_STORE(n, buf) \
  __asm__ volatile("tilestored %%tmm" #n ", (%0,%1,1)" : : "r"((buf)->t[n]), "r"((long)kBytesPerRow) : "memory")

static void load_tiles(const struct Tiles* in) {
  TILE_OP("tileloadd", 0, in); TILE_OP("tileloadd", 1, in);
  TILE_OP("tileloadd", 2, in); TILE_OP("tileloadd", 3, in);
  TILE_OP("tileloadd", 4, in); TILE_OP("tileloadd", 5, in);
  TILE_OP("tileloadd", 6, in); TILE_OP("tileloadd", 7, in);
}

static void store_tiles(struct Tiles* out) {
  TILE_STORE(0, out); TILE_STORE(1, out); TILE_STORE(2, out); TILE_STORE(3, out);
  TILE_STORE(4, out); TILE_STORE(5, out); TILE_STORE(6, out); TILE_STORE(7, out);
}

static void fill(struct Tiles* t, uint64_t seed) { wl_fill(t, sizeof(*t), seed, 0); }

/* 0, or the first mismatching tile + 1. */
static int compare(const struct Tiles* t, uint64_t seed) {
  for (int i = 0; i < kTiles; ++i) {
    if (wl_mismatch(t->t[i], sizeof(t->t[i]), seed, (uint64_t)i * sizeof(t->t[i])) >= 0) return i + 1;
  }
  return 0;
}

static volatile int threads_ready;
static volatile int results[3];  /* per thread: 0 unknown, 1 OK, else 2 + tile */

static void wait_for_go(void) { wl_wait_nap(); }

static void* holder(void* arg) {
  const uint64_t seed = (uint64_t)(uintptr_t)arg;
  struct Tiles in, out;
  fill(&in, seed);
  load_config();
  load_tiles(&in);
  __sync_fetch_and_add(&threads_ready, 1);
  wait_for_go();
  store_tiles(&out);
  const int bad = compare(&out, seed);
  results[seed - 1] = bad ? 2 + bad : 1;
  return NULL;
}

static void* late_user(void* arg) {
  (void)arg;
  __sync_fetch_and_add(&threads_ready, 1);
  wait_for_go();
  struct Tiles in, out;
  fill(&in, 3);
  load_config();
  load_tiles(&in);
  store_tiles(&out);
  const int bad = compare(&out, 3);
  results[2] = bad ? 2 + bad : 1;
  return NULL;
}

int main(void) {
  wl_install_handler();
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, kXtileData) != 0) {
    return wl_fail("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): %s", strerror(errno));
  }
  /* Only the main thread takes SIGUSR1; the others see wl_go change. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL);
  pthread_t threads[2];
  if (pthread_create(&threads[0], NULL, holder, (void*)(uintptr_t)2) != 0 ||
      pthread_create(&threads[1], NULL, late_user, NULL) != 0) {
    return wl_fail("pthread_create");
  }
  pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
  while (threads_ready < 2) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  struct Tiles in, out;
  fill(&in, 1);
  load_config();
  load_tiles(&in);
  wl_ready();
  wait_for_go();
  store_tiles(&out);
  const int bad = compare(&out, 1);
  results[0] = bad ? 2 + bad : 1;
  pthread_join(threads[0], NULL);
  pthread_join(threads[1], NULL);
  static const char* const kWho[] = {"main thread's tiles", "second thread's tiles",
                                     "tiles first used after the restore"};
  for (int i = 0; i < 3; ++i) {
    if (results[i] != 1) return wl_fail("%s: tile %d differs", kWho[i], results[i] - 3);
  }
  wl_say("OK tiles of three threads, permission kept");
  return 0;
}
