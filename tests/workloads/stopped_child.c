/* A child stopped by SIGSTOP. Kernel state: a process in the stopped
 * state, its stop already reported to its parent (waitpid WUNTRACED).
 * The child counts in a MAP_SHARED page while it runs. After SIGUSR1 the
 * root checks the child is still stopped (the counter stands still for
 * 200 ms), sends SIGCONT, sees the counter move, tells it to stop and
 * expects it to exit 0. */
#include "tree.h"

struct shared {
  uint64_t counter;
  int quit;
};

static volatile struct shared* page;

static int run_child(pid_t parent) {
  while (!__atomic_load_n(&page->quit, __ATOMIC_SEQ_CST)) {
    __atomic_add_fetch(&page->counter, 1, __ATOMIC_SEQ_CST);
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
    if (getppid() != parent) _exit(3);
  }
  return 0;
}

static uint64_t counter_after(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000L * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return __atomic_load_n(&page->counter, __ATOMIC_SEQ_CST);
}

int main(void) {
  wl_install_handler();
  page = tr_shared_page();
  if (!page) return wl_fail("mmap: %s", strerror(errno));
  pid_t child = tr_fork(run_child);
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  while (counter_after(1) < 10) {
  }
  int status;
  if (kill(child, SIGSTOP) != 0) return wl_fail("kill SIGSTOP: %s", strerror(errno));
  if (waitpid(child, &status, WUNTRACED) != child || !WIFSTOPPED(status)) {
    return wl_fail("waitpid WUNTRACED: %s, status %#x", strerror(errno), status);
  }
  uint64_t stopped_at = counter_after(0);
  if (counter_after(200) != stopped_at) return wl_fail("the counter moved after SIGSTOP");

  wl_ready();
  wl_wait_nap();

  uint64_t now = counter_after(0);
  if (now != stopped_at) return wl_fail("the counter moved from %llu to %llu while stopped",
                                        (unsigned long long)stopped_at, (unsigned long long)now);
  if (counter_after(200) != now) return wl_fail("the child runs: it is not stopped any more");
  if (kill(child, SIGCONT) != 0) return wl_fail("kill SIGCONT: %s", strerror(errno));
  int waited = 0;
  while (counter_after(10) == now) {
    if ((waited += 10) > 5000) return wl_fail("the child did not run in 5 s after SIGCONT");
  }
  __atomic_store_n(&page->quit, 1, __ATOMIC_SEQ_CST);
  if (tr_reap_ok(child, "child") != 0) return 1;
  wl_say("OK child stayed stopped at %llu, ran on after SIGCONT", (unsigned long long)stopped_at);
  return 0;
}
