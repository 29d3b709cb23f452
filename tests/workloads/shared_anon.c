/* Shared anonymous memory: a MAP_SHARED|MAP_ANONYMOUS area whose counter a
 * thread keeps raising, a second view of the same pages (mremap with old
 * size 0), a read-only shared mapping of /dev/zero. After restore the two
 * views must still be one memory, the thread's counter must move, the
 * protections and contents must be as they were, and a forked child's
 * writes must reach the parent (the memory is shared, not private). */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "workload.h"

enum { kPages = 4, kSeed = 0x5a5a, kZeroSeed = 0x2e70 };

static volatile uint64_t* counter;

static void* count(void* arg) {
  (void)arg;
  for (;;) {
    __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* The perms column of /proc/self/maps for the mapping at `addr`. */
static int maps_line(void* addr, char* perms, char* name, size_t name_size) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[512];
  int found = -1;
  while (fgets(line, sizeof(line), f)) {
    unsigned long start, end;
    char p[8];
    int off = 0;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s%n", &start, &end, p, &off) < 3) continue;
    if (start != (unsigned long)addr) continue;
    strcpy(perms, p);
    const char* n = line + off;
    while (*n == ' ') ++n;
    snprintf(name, name_size, "%s", n);
    name[strcspn(name, "\n")] = 0;
    found = 0;
  }
  fclose(f);
  return found;
}

int main(void) {
  wl_install_handler();
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t size = kPages * page;
  unsigned char* a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED) return wl_fail("mmap shared anonymous: %s", strerror(errno));
  wl_fill(a + page, size - page, kSeed, 0);
  unsigned char* b = mremap(a, 0, size, MREMAP_MAYMOVE);
  if (b == MAP_FAILED) return wl_fail("mremap second view: %s", strerror(errno));
  counter = (volatile uint64_t*)a;
  int zero = open("/dev/zero", O_RDWR);
  if (zero < 0) return wl_fail("open /dev/zero: %s", strerror(errno));
  unsigned char* z = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, zero, 0);
  if (z == MAP_FAILED) return wl_fail("mmap /dev/zero: %s", strerror(errno));
  close(zero);
  wl_fill(z, page, kZeroSeed, 0); /* second page stays a hole */
  if (mprotect(z, 2 * page, PROT_READ) != 0) return wl_fail("mprotect: %s", strerror(errno));
  pthread_t thread;
  if (pthread_create(&thread, NULL, count, NULL) != 0) return wl_fail("pthread_create");
  while (*counter == 0) usleep(1000);

  wl_ready();
  wl_wait_nap();

  uint64_t before = *counter;
  usleep(50 * 1000);
  if (*counter == before) return wl_fail("the thread's counter stands still at %llu", (unsigned long long)before);
  long bad = wl_mismatch(a + page, size - page, kSeed, 0);
  if (bad >= 0) return wl_fail("shared anonymous contents differ at %ld", bad);
  /* The two views are one memory. */
  b[page + 10] ^= 0xff;
  if (a[page + 10] != b[page + 10]) return wl_fail("the second view is not the same memory");
  b[page + 10] ^= 0xff;
  if (*(volatile uint64_t*)b < before) return wl_fail("the counter differs between views");
  bad = wl_mismatch(z, page, kZeroSeed, 0);
  if (bad >= 0) return wl_fail("/dev/zero mapping differs at %ld", bad);
  for (size_t i = 0; i < page; ++i) {
    if (z[page + i] != 0) return wl_fail("/dev/zero hole page is not zero");
  }
  char perms[8], name[256];
  if (maps_line(a, perms, name, sizeof(name)) != 0) return wl_fail("no maps line for %p", (void*)a);
  if (strcmp(perms, "rw-s") != 0 || strcmp(name, "/dev/zero (deleted)") != 0) {
    return wl_fail("shared anonymous is now '%s %s'", perms, name);
  }
  if (maps_line(z, perms, name, sizeof(name)) != 0) return wl_fail("no maps line for %p", (void*)z);
  if (strcmp(perms, "r--s") != 0 || strcmp(name, "/dev/zero (deleted)") != 0) {
    return wl_fail("/dev/zero mapping is now '%s %s'", perms, name);
  }
  /* A child's write reaches us: MAP_SHARED survived. */
  pid_t child = fork();
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  if (child == 0) {
    a[2 * page] = 0x42;
    _exit(0);
  }
  int status;
  if (waitpid(child, &status, 0) != child) return wl_fail("waitpid: %s", strerror(errno));
  if (b[2 * page] != 0x42) return wl_fail("a child's write did not reach the parent");
  wl_say("OK shared anonymous memory, counter %llu", (unsigned long long)*counter);
  return 0;
}
