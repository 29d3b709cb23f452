/* How the kernel schedules each thread: policy, real-time priority, nice,
 * SCHED_RESET_ON_FORK, CPU affinity and I/O priority, different in each of
 * four threads. After a restore every thread checks its own, by gettid:
 *   main:   SCHED_OTHER, nice 5, only the last CPU we may use;
 *   batch:  SCHED_BATCH, nice 7, only the first CPU, idle I/O class;
 *   fifo:   SCHED_FIFO priority 3 with SCHED_RESET_ON_FORK, real-time
 *           I/O class level 2 (needs root, which the tests are);
 *   idle:   SCHED_IDLE, best-effort I/O level 6.
 * Threads sleep in short naps while they wait, so the FIFO one never
 * hogs a CPU. */

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "workload.h"

struct sched_attr_v1 {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
};

enum { kIdleIo = 3 << 13, kRtIo2 = (1 << 13) | 2, kBeIo6 = (2 << 13) | 6 };

struct want {
  const char* name;
  uint32_t policy, priority;
  int nice;
  uint64_t flags;
  int cpu;       /* the one CPU it may use, or -1 for "unchanged" */
  int ioprio;    /* -1: unchanged */
  char result[160];
};

static int first_cpu = -1, last_cpu = -1;

static int set_mine(struct want* w) {
  struct sched_attr_v1 a = {sizeof(a), w->policy, w->flags, w->nice, w->priority, 0, 0, 0};
  if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) return -1;
  if (w->cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) return -1;
  }
  if (w->ioprio >= 0 && syscall(SYS_ioprio_set, 1, 0, w->ioprio) != 0) return -1;
  return 0;
}

/* Empty result: as wanted. */
static void check_mine(struct want* w) {
  struct sched_attr_v1 a;
  memset(&a, 0, sizeof(a));
  if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0) {
    snprintf(w->result, sizeof(w->result), "%s: sched_getattr: %s", w->name, strerror(errno));
    return;
  }
  if (a.policy != w->policy || a.priority != w->priority || a.nice != w->nice ||
      a.flags != w->flags) {
    snprintf(w->result, sizeof(w->result),
             "%s: policy %u priority %u nice %d flags %llu, want %u %u %d %llu", w->name,
             a.policy, a.priority, a.nice, (unsigned long long)a.flags, w->policy, w->priority,
             w->nice, (unsigned long long)w->flags);
    return;
  }
  if (w->cpu >= 0) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0 || CPU_COUNT(&set) != 1 ||
        !CPU_ISSET(w->cpu, &set)) {
      snprintf(w->result, sizeof(w->result), "%s: affinity is not CPU %d alone (%d CPUs)",
               w->name, w->cpu, CPU_COUNT(&set));
      return;
    }
  }
  long io = syscall(SYS_ioprio_get, 1, 0);
  if (w->ioprio >= 0 && io != w->ioprio) {
    snprintf(w->result, sizeof(w->result), "%s: ioprio 0x%lx, want 0x%x", w->name, io, w->ioprio);
  }
}

static struct want wants[4];
static pthread_barrier_t set_up;

static void* thread_main(void* arg) {
  struct want* w = arg;
  if (set_mine(w) != 0) {
    snprintf(w->result, sizeof(w->result), "%s: set up: %s", w->name, strerror(errno));
  }
  pthread_barrier_wait(&set_up);
  while (!wl_go) usleep(10000);
  check_mine(w);
  return NULL;
}

int main(void) {
  wl_install_handler();
  cpu_set_t ours;
  if (sched_getaffinity(0, sizeof(ours), &ours) != 0) return wl_fail("sched_getaffinity");
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &ours)) continue;
    if (first_cpu < 0) first_cpu = c;
    last_cpu = c;
  }
  wants[0] = (struct want){"main", SCHED_OTHER, 0, 5, 0, last_cpu, -1, ""};
  wants[1] = (struct want){"batch", SCHED_BATCH, 0, 7, 0, first_cpu, kIdleIo, ""};
  wants[2] = (struct want){"fifo", SCHED_FIFO, 3, 0, 1 /* SCHED_FLAG_RESET_ON_FORK */, -1, kRtIo2, ""};
  wants[3] = (struct want){"idle", SCHED_IDLE, 0, 0, 0, -1, kBeIo6, ""};
  pthread_barrier_init(&set_up, NULL, 4);
  pthread_t threads[3];
  for (int i = 0; i < 3; ++i) {
    if (pthread_create(&threads[i], NULL, thread_main, &wants[i + 1]) != 0) {
      return wl_fail("pthread_create");
    }
  }
  if (set_mine(&wants[0]) != 0) return wl_fail("main: set up: %s", strerror(errno));
  pthread_barrier_wait(&set_up);
  for (int i = 1; i < 4; ++i) {
    if (wants[i].result[0]) return wl_fail("%s", wants[i].result);
  }
  wl_ready();
  wl_wait_nap();
  check_mine(&wants[0]);
  for (int i = 0; i < 3; ++i) pthread_join(threads[i], NULL);
  for (int i = 0; i < 4; ++i) {
    if (wants[i].result[0]) return wl_fail("%s", wants[i].result);
  }
  wl_say("OK scheduling of 4 threads as set");
  return 0;
}
