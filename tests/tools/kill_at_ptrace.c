/* An LD_PRELOAD shim for the interruption tests: counts the ptrace(2)
 * requests of the program it is loaded into and, with
 * CRLIB_TEST_KILL_AT_PTRACE=N, kills the program with SIGKILL just before
 * its Nth request, as an operator's `kill -9` could at any moment. With
 * CRLIB_TEST_PTRACE_COUNT=PATH it writes the number of requests made to
 * PATH when the program exits. Only the glibc wrapper is interposed, which
 * is how crlib makes every request. */
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <unistd.h>

static long requests;

static void WriteCount(void) {
  const char *path = getenv("CRLIB_TEST_PTRACE_COUNT");
  FILE *f = path ? fopen(path, "w") : NULL;
  if (f) {
    fprintf(f, "%ld\n", requests);
    fclose(f);
  }
}

__attribute__((constructor)) static void Init(void) { atexit(WriteCount); }

long ptrace(enum __ptrace_request request, ...) {
  static long (*real)(enum __ptrace_request, ...);
  va_list ap;
  va_start(ap, request);
  pid_t pid = va_arg(ap, pid_t);
  void *addr = va_arg(ap, void *);
  void *data = va_arg(ap, void *);
  va_end(ap);
  if (!real) {
    /* POSIX dlsym returns functions as object pointers; copy the bits. */
    void *sym = dlsym(RTLD_NEXT, "ptrace");
    memcpy(&real, &sym, sizeof(real));
  }
  const char *at = getenv("CRLIB_TEST_KILL_AT_PTRACE");
  if (++requests == (at ? atol(at) : 0)) kill(getpid(), SIGKILL);
  return real(request, pid, addr, data);
}
