/* Memory for a lazy restore to serve: one private anonymous block of
 * argv[1] MiB (default 64), every 8-byte word w holding wl_mix(w ^ seed),
 * but for a run of zero pages. On SIGUSR1 it checks every word; what it
 * does first, while the pages are still coming in, depends on argv[2]:
 *
 *   check    nothing else;
 *   fork     forks at once; the child checks the whole block too (its pages
 *            not yet in when it forked must come to it as well);
 *   reshape  on the block's last MiBs, which a background copy in address
 *            order reaches last: drops 4 MiB (MADV_DONTNEED: zeros after,
 *            never the image's bytes), moves 4 MiB elsewhere (mremap: the
 *            pages follow), unmaps 4 MiB, and writes 1 MiB through a pipe
 *            with write(2)/read(2) (faults taken inside system calls).
 *
 * Prints OK or FAIL; OK says how many pages were resident at the start
 * (mincore), to show how lazy it was. */
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "workload.h"

enum { kMiB = 1 << 20, kPage = 4096 };
static const uint64_t kSeed = 0x1a2b3c4d5e6full;

static uint64_t Word(size_t i) { return wl_mix(i ^ kSeed); }

/* The first word of `count` from word `first` on at `p` that is not the
 * pattern (or not zero, with `zero`), or -1. */
static long Mismatch(const uint64_t* p, size_t first, size_t count, int zero) {
  for (size_t i = 0; i < count; ++i) {
    if (p[i] != (zero ? 0 : Word(first + i))) return (long)i;
  }
  return -1;
}

/* Checks words [first, first + count) of the block, now at `p`. */
static int Check(const char* what, const uint64_t* p, size_t first, size_t count, int zero) {
  long at = Mismatch(p, first, count, zero);
  if (at < 0) return 0;
  return wl_fail("%s: word %zu (byte offset %zu of the block) is %016llx, not %016llx", what,
                 first + (size_t)at, (first + (size_t)at) * 8, (unsigned long long)p[at],
                 (unsigned long long)(zero ? 0 : Word(first + (size_t)at)));
}

int main(int argc, char** argv) {
  wl_install_handler();
  const size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  const char* mode = argc > 2 ? argv[2] : "check";
  if (mib < 32) return wl_fail("at least 32 MiB");
  const size_t bytes = mib * kMiB, words = bytes / 8;
  uint64_t* block = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) return wl_fail("mmap of %zu MiB", mib);
  for (size_t i = 0; i < words; ++i) block[i] = Word(i);
  const size_t zero_first = 3 * kMiB / 8, zero_words = 5 * kPage / 8;
  memset(block + zero_first, 0, zero_words * 8);

  wl_ready();
  wl_wait_nap();

  unsigned char* vec = malloc(bytes / kPage);
  size_t resident = 0;
  if (vec && mincore(block, bytes, vec) == 0) {
    for (size_t i = 0; i < bytes / kPage; ++i) resident += vec[i] & 1;
  }
  free(vec);

  /* Regions from the end: [drop][move][unmap][pipe], 4+4+4+1 MiB. */
  const size_t end = words;
  const size_t drop = end - 13 * kMiB / 8, move = end - 9 * kMiB / 8, unmap = end - 5 * kMiB / 8,
               piped = end - 1 * kMiB / 8;
  size_t checked_end = end;
  pid_t child = -1;
  uint64_t* moved = NULL;
  if (strcmp(mode, "fork") == 0) {
    child = fork();
    if (child < 0) return wl_fail("fork: %s", strerror(errno));
    if (child == 0) {
      if (Check("child", block, 0, zero_first, 0) || Check("child zeros", block + zero_first,
                                                          zero_first, zero_words, 1) ||
          Check("child", block + zero_first + zero_words, zero_first + zero_words,
                words - zero_first - zero_words, 0)) {
        _exit(1);
      }
      _exit(0);
    }
  } else if (strcmp(mode, "reshape") == 0) {
    if (madvise(block + drop, 4 * kMiB, MADV_DONTNEED) != 0) {
      return wl_fail("madvise(DONTNEED): %s", strerror(errno));
    }
    void* to = mmap(NULL, 4 * kMiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (to == MAP_FAILED) return wl_fail("mmap of a place to move to: %s", strerror(errno));
    moved = mremap(block + move, 4 * kMiB, 4 * kMiB, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (moved == MAP_FAILED) return wl_fail("mremap: %s", strerror(errno));
    if (munmap(block + unmap, 4 * kMiB) != 0) return wl_fail("munmap: %s", strerror(errno));
    /* The kernel reads the lazy pages for write(2) and writes into them for
     * read(2): faults that a user-mode-only userfaultfd would fail. */
    int p[2];
    if (pipe(p) != 0) return wl_fail("pipe: %s", strerror(errno));
    static char copy[64 * 1024];
    for (size_t off = 0; off < kMiB; off += sizeof(copy)) {
      char* at = (char*)(block + piped) + off;
      if (write(p[1], at, sizeof(copy)) != (ssize_t)sizeof(copy)) return wl_fail("write: %s", strerror(errno));
      if (read(p[0], copy, sizeof(copy)) != (ssize_t)sizeof(copy)) return wl_fail("read: %s", strerror(errno));
      if (memcmp(copy, at, sizeof(copy)) != 0) return wl_fail("pipe copy differs at %zu", off);
    }
    close(p[0]);
    close(p[1]);
    if (Check("dropped", block + drop, drop, 4 * kMiB / 8, 1)) return 1;
    if (Check("moved", moved, move, 4 * kMiB / 8, 0)) return 1;
    if (Check("piped", block + piped, piped, kMiB / 8, 0)) return 1;
    checked_end = drop;
  } else if (strcmp(mode, "check") != 0) {
    return wl_fail("unknown mode %s", mode);
  }

  if (Check("block", block, 0, zero_first, 0) ||
      Check("zeros", block + zero_first, zero_first, zero_words, 1) ||
      Check("block", block + zero_first + zero_words, zero_first + zero_words,
            checked_end - zero_first - zero_words, 0)) {
    return 1;
  }
  if (child > 0) {
    int status = 0;
    if (waitpid(child, &status, 0) != child) return wl_fail("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return wl_fail("the child forked during the lazy phase found wrong memory (status 0x%x)",
                     status);
    }
  }
  wl_say("OK %s, %zu MiB; lazy: %zu of %zu pages resident at the start", mode, mib, resident,
         bytes / kPage);
  return 0;
}
