/* The protocol every workload follows, for tests/task/checkpoint_test.cc:
 *
 *   1. set up its state;
 *   2. print "READY <pid>" on stdout;
 *   3. wait until SIGUSR1 sets a flag (the test checkpoints, kills and
 *      restores it meanwhile, or not at all);
 *   4. verify its state and print "OK ..." (exit 0) or "FAIL <what>" (exit 1).
 *
 * Stdout is a regular file owned by the test; a restore reopens it by path
 * at its offset. Every line therefore goes out with one write(2), so no
 * stdio buffer can hold bytes across a checkpoint or write them twice.
 */
#ifndef CRLIB_TESTS_WORKLOADS_WORKLOAD_H_
#define CRLIB_TESTS_WORKLOADS_WORKLOAD_H_

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set by the SIGUSR1 handler: "the test is done with you, check yourself". */
static volatile sig_atomic_t wl_go;

static inline void wl_on_usr1(int sig) {
  (void)sig;
  wl_go = 1;
}

/* Installs the SIGUSR1 handler. Must run before "READY" is printed: the
 * test may signal as soon as it reads that line. No SA_RESTART, so a
 * blocking call returns EINTR and the loop around it looks at the flag. */
static inline void wl_install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = wl_on_usr1;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
}

static inline int wl_write_all(int fd, const void* buf, size_t size) {
  const char* p = (const char*)buf;
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

/* One line to stdout with a single write(2). */
static inline void wl_vsay(const char* prefix, const char* fmt, va_list ap) {
  char line[512];
  int n = snprintf(line, sizeof(line), "%s", prefix);
  n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  if (n > (int)sizeof(line) - 2) n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  (void)wl_write_all(1, line, (size_t)n);
}

static inline void wl_say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void wl_say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  wl_vsay("", fmt, ap);
  va_end(ap);
}

static inline void wl_ready(void) { wl_say("READY %d", (int)getpid()); }

/* Prints "FAIL <what>" and returns 1, the exit status of a failed check. */
static inline int wl_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int wl_fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  wl_vsay("FAIL ", fmt, ap);
  va_end(ap);
  return 1;
}

/* Waits for the flag, napping 100 ms at a time; EINTR just loops. */
static inline void wl_wait_nap(void) {
  while (!wl_go) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* splitmix64: the pseudo-random patterns every workload fills memory with. */
static inline uint64_t wl_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* The byte at `offset` of the pattern named `seed`. */
static inline unsigned char wl_pattern_byte(uint64_t seed, uint64_t offset) {
  return (unsigned char)(wl_mix(seed * 0x100000001b3ull + offset / 8) >> (8 * (offset % 8)));
}

static inline void wl_fill(void* buf, size_t size, uint64_t seed, uint64_t start) {
  unsigned char* p = (unsigned char*)buf;
  for (size_t i = 0; i < size; ++i) p[i] = wl_pattern_byte(seed, start + i);
}

/* The first offset where `buf` differs from the pattern, or -1. */
static inline long wl_mismatch(const void* buf, size_t size, uint64_t seed, uint64_t start) {
  const unsigned char* p = (const unsigned char*)buf;
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != wl_pattern_byte(seed, start + i)) return (long)i;
  }
  return -1;
}

/* write(2) / pread(2) of a whole buffer; 0 on success. */

static inline int wl_pread_all(int fd, void* buf, size_t size, off_t offset) {
  char* p = (char*)buf;
  while (size > 0) {
    ssize_t n = pread(fd, p, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
    offset += n;
  }
  return 0;
}

#endif /* CRLIB_TESTS_WORKLOADS_WORKLOAD_H_ */
