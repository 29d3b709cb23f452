/* A big, sparse address space like the ones ASan, JVMs and Go set up: a
 * 64 GiB MAP_NORESERVE reservation with a few pages written far apart, a
 * 1 TiB PROT_NONE reservation, and a run of small VMAs each carrying one
 * madvise() flag (and one mlock()ed). After a restore it checks the data,
 * the VmFlags of every VMA in its own /proc/self/smaps, and, in a forked
 * child, what DONTFORK and WIPEONFORK mean.
 *
 * An advice the kernel refuses here (no THP, no KSM, no CAP_IPC_LOCK) is
 * left out of both the set-up and the check; it prints which it used.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "workload.h"

#define GiB (1ull << 30)
#define PAGE 4096ull
#define SMALL (2ull << 20) /* one VMA per advice: 2 MiB, so THP may apply */

static const uint64_t kSparseSize = 64 * GiB;
static const uint64_t kHugeSize = 1024 * GiB;
/* Offsets written in the 64 GiB reservation, far apart. */
static const uint64_t kSparseOffsets[] = {0, 5 * GiB + 7 * PAGE, 33 * GiB + 123 * PAGE,
                                          64 * GiB - PAGE};
#define NSPARSE (sizeof(kSparseOffsets) / sizeof(kSparseOffsets[0]))

struct Advised {
  const char* code; /* smaps VmFlags code */
  int advice;       /* -1: mlock */
  unsigned char* at;
  int used;
};
static struct Advised advised[] = {
    {"dc", MADV_DONTFORK, 0, 0},  {"wf", MADV_WIPEONFORK, 0, 0},
    {"dd", MADV_DONTDUMP, 0, 0},  {"hg", MADV_HUGEPAGE, 0, 0},
    {"nh", MADV_NOHUGEPAGE, 0, 0}, {"mg", MADV_MERGEABLE, 0, 0},
    {"lo", -1, 0, 0},
};
#define NADVISED (sizeof(advised) / sizeof(advised[0]))

static unsigned char* sparse;
static unsigned char* huge;

/* The smaps header and VmFlags of the VMA that contains `addr`, 0 if none. */
static int find_vma(uintptr_t addr, uintptr_t* start, uintptr_t* end, char* prot,
                    char* flags, size_t flags_size) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char line[512];
  int found = 0;
  while (fgets(line, sizeof(line), f)) {
    unsigned long s, e;
    char p[5];
    if (sscanf(line, "%lx-%lx %4s", &s, &e, p) == 3) {
      if (found) break;
      if (addr >= s && addr < e) {
        found = 1;
        *start = s;
        *end = e;
        memcpy(prot, p, 5);
      }
    } else if (found && strncmp(line, "VmFlags:", 8) == 0) {
      size_t n = strlen(line + 8);
      if (n >= flags_size) n = flags_size - 1;
      memcpy(flags, line + 8, n);
      flags[n] = 0;
    }
  }
  fclose(f);
  return found;
}

static int has_code(const char* flags, const char* code) {
  for (const char* p = flags; (p = strstr(p, code)); ++p) {
    if ((p == flags || p[-1] == ' ') && (p[2] == ' ' || p[2] == '\n' || p[2] == 0)) return 1;
  }
  return 0;
}

/* 0 if the VMA at `addr` has VmFlags `code` (and `want` says it should)
 * or lacks it (and `want` is 0). */
static int check_flag(const char* what, void* addr, const char* code, int want) {
  uintptr_t s, e;
  char prot[5], flags[256] = "";
  if (!find_vma((uintptr_t)addr, &s, &e, prot, flags, sizeof(flags))) {
    return wl_fail("%s: no VMA at %p", what, addr);
  }
  if (has_code(flags, code) != want) {
    return wl_fail("%s at %p: VmFlags %s %s '%s'", what, addr, want ? "lack" : "have", code,
                   flags);
  }
  return 0;
}

static int check_data(void) {
  for (size_t i = 0; i < NSPARSE; ++i) {
    long bad = wl_mismatch(sparse + kSparseOffsets[i], PAGE, 100 + i, 0);
    if (bad >= 0) return wl_fail("sparse page %zu, byte %ld", i, bad);
  }
  /* A page between them was never written: it must read as zeros. */
  for (uint64_t j = 0; j < PAGE; ++j) {
    if (sparse[17 * GiB + j]) return wl_fail("unwritten sparse page holds data");
  }
  for (size_t i = 0; i < NADVISED; ++i) {
    long bad = wl_mismatch(advised[i].at, SMALL, 200 + i, 0);
    if (bad >= 0) return wl_fail("%s region, byte %ld", advised[i].code, bad);
  }
  return 0;
}

static int check_vmas(void) {
  uintptr_t s, e;
  char prot[5], flags[256] = "";
  if (!find_vma((uintptr_t)sparse, &s, &e, prot, flags, sizeof(flags)) ||
      s != (uintptr_t)sparse || e - s != kSparseSize || strcmp(prot, "rw-p") != 0) {
    return wl_fail("the 64 GiB reservation is not one rw-p VMA");
  }
  if (check_flag("64 GiB reservation", sparse, "nr", 1)) return 1;
  if (!find_vma((uintptr_t)huge, &s, &e, prot, flags, sizeof(flags)) ||
      s != (uintptr_t)huge || e - s != kHugeSize || strcmp(prot, "---p") != 0) {
    return wl_fail("the 1 TiB reservation is not one ---p VMA");
  }
  if (check_flag("1 TiB reservation", huge, "nr", 1)) return 1;
  for (size_t i = 0; i < NADVISED; ++i) {
    if (advised[i].used && check_flag(advised[i].code, advised[i].at, advised[i].code, 1)) return 1;
  }
  return 0;
}

/* In a child: DONTFORK memory is gone, WIPEONFORK memory reads zero. */
static int check_fork(void) {
  pid_t child = fork();
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  if (child == 0) {
    for (size_t i = 0; i < NADVISED; ++i) {
      if (!advised[i].used) continue;
      if (advised[i].advice == MADV_DONTFORK) {
        unsigned char v;
        /* mincore fails with ENOMEM on an unmapped range. */
        if (mincore(advised[i].at, PAGE, &v) == 0 || errno != ENOMEM) _exit(2);
      }
      if (advised[i].advice == MADV_WIPEONFORK && advised[i].at[100] != 0) _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return wl_fail("fork check: child status 0x%x (2: DONTFORK memory kept, 3: WIPEONFORK "
                   "memory not wiped)", status);
  }
  return 0;
}

int main(void) {
  wl_install_handler();
  sparse = mmap(NULL, kSparseSize, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sparse == MAP_FAILED) return wl_fail("setup: mmap 64 GiB: %s", strerror(errno));
  for (size_t i = 0; i < NSPARSE; ++i) wl_fill(sparse + kSparseOffsets[i], PAGE, 100 + i, 0);
  /* Read (not written) pages map the shared zero page: present, not stored. */
  volatile unsigned char sink = 0;
  for (uint64_t j = 0; j < 64; ++j) sink += sparse[20 * GiB + j * PAGE];
  (void)sink;
  huge = mmap(NULL, kHugeSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (huge == MAP_FAILED) return wl_fail("setup: mmap 1 TiB: %s", strerror(errno));

  /* One VMA per advice, with a PROT_NONE page between them so none merge. */
  const uint64_t stride = SMALL + PAGE;
  unsigned char* base = mmap(NULL, NADVISED * stride, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return wl_fail("setup: mmap: %s", strerror(errno));
  char used[64] = "";
  for (size_t i = 0; i < NADVISED; ++i) {
    advised[i].at = base + i * stride;
    if (mprotect(advised[i].at + SMALL, PAGE, PROT_NONE) != 0) {
      return wl_fail("setup: mprotect: %s", strerror(errno));
    }
    /* mlock through syscall(): ASan's mlock interceptor does nothing. */
    int r = advised[i].advice < 0 ? (int)syscall(SYS_mlock, advised[i].at, SMALL)
                                  : madvise(advised[i].at, SMALL, advised[i].advice);
    advised[i].used = r == 0;
    wl_fill(advised[i].at, SMALL, 200 + i, 0);
    if (advised[i].used) {
      strcat(used, " ");
      strcat(used, advised[i].code);
    }
  }
  if (check_data() || check_vmas()) return 1;
  wl_say("FLAGS%s", used);
  wl_ready();
  wl_wait_nap();
  if (check_data() || check_vmas() || check_fork()) return 1;
  wl_say("OK sparse reservation,%s", used);
  return 0;
}
