/* What the C binding tests share: CHECK, which counts failures and goes
 * on, and WaitCode. Static: each test is one translation unit. */
#ifndef CRLIB_TESTS_BINDINGS_C_CHECK_H_
#define CRLIB_TESTS_BINDINGS_C_CHECK_H_

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                               \
    }                                                                           \
  } while (0)

/* Waits for `pid`; its exit code, or 128 + signal, or -1 after 60 s. */
static int WaitCode(pid_t pid) {
  for (int i = 0; i < 6000; ++i) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

#endif /* CRLIB_TESTS_BINDINGS_C_CHECK_H_ */
