/* A parent and its child raising one counter in MAP_SHARED | MAP_ANONYMOUS
 * memory with atomic adds, each also counting its own adds in private
 * memory. Kernel state: anonymous shared memory between two processes of
 * a tree (after restore a write by one must still be seen by the other),
 * next to private memory of each. After SIGUSR1 both stop; the child
 * writes its own count to the shared page (its exit status could not hold
 * it) and exits; the root checks shared == its own + the child's. */
#include "tree.h"

struct shared {
  uint64_t counter;
  uint64_t child_count;
  int child_running;
  int quit;
};

static volatile struct shared* page;

static void nap_1ms(void) {
  struct timespec ts = {0, 1000 * 1000};
  nanosleep(&ts, NULL);
}

static int run_child(pid_t parent) {
  uint64_t own = 0;
  while (!__atomic_load_n(&page->quit, __ATOMIC_SEQ_CST)) {
    __atomic_add_fetch(&page->counter, 1, __ATOMIC_SEQ_CST);
    ++own;
    __atomic_store_n(&page->child_running, 1, __ATOMIC_SEQ_CST);
    nap_1ms();
    if (getppid() != parent) _exit(3);
  }
  __atomic_store_n(&page->child_count, own, __ATOMIC_SEQ_CST);
  return 0;
}

int main(void) {
  wl_install_handler();
  page = tr_shared_page();
  if (!page) return wl_fail("mmap: %s", strerror(errno));
  pid_t child = tr_fork(run_child);
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  uint64_t own = 0;
  int ready = 0;
  while (!wl_go) {
    __atomic_add_fetch(&page->counter, 1, __ATOMIC_SEQ_CST);
    ++own;
    if (!ready && own >= 50 && __atomic_load_n(&page->child_running, __ATOMIC_SEQ_CST)) {
      wl_ready();
      ready = 1;
    }
    nap_1ms();
  }
  __atomic_store_n(&page->quit, 1, __ATOMIC_SEQ_CST);
  if (tr_reap_ok(child, "child") != 0) return 1;
  const uint64_t theirs = __atomic_load_n(&page->child_count, __ATOMIC_SEQ_CST);
  const uint64_t total = __atomic_load_n(&page->counter, __ATOMIC_SEQ_CST);
  if (theirs == 0) return wl_fail("the child's count did not reach the shared page");
  if (total != own + theirs) {
    return wl_fail("shared counter %llu, but the root added %llu and the child %llu",
                   (unsigned long long)total, (unsigned long long)own, (unsigned long long)theirs);
  }
  wl_say("OK shared counter %llu = %llu + %llu", (unsigned long long)total, (unsigned long long)own,
         (unsigned long long)theirs);
  return 0;
}
