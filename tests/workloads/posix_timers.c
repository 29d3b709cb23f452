/* POSIX timers (timer_create): after restore every timer has its ID, clock,
 * notification, sigev_value and interval, and the armed ones still fire.
 *
 *   - "periodic": CLOCK_MONOTONIC, SIGEV_SIGNAL (SIGRTMIN), every 20 ms,
 *     value 0x5eed0001;
 *   - "thread": CLOCK_REALTIME, SIGEV_THREAD_ID to a second thread
 *     (SIGRTMIN+1), every 20 ms, value 0x5eed0002: it must hit that thread;
 *   - "disarmed": CLOCK_MONOTONIC, created and never armed;
 *   - "none": CLOCK_REALTIME, SIGEV_NONE, armed for 1000 s, which keeps
 *     counting down.
 * A fifth timer, created first and deleted, leaves a hole in the IDs.
 * SIGRTMIN stays blocked in every thread until the check, so the periodic
 * timer has a signal pending at the dump (the kernel rearms it only when
 * that is dequeued); it must come back with its siginfo.
 * After SIGUSR1 each check names the timer and what is wrong.
 *
 *   posix_timers [orphan]
 *
 * "orphan" adds a (disarmed) SIGEV_THREAD_ID timer whose thread has
 * exited, which a dump refuses. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "workload.h"

#define PERIOD_NS (20 * 1000 * 1000)

static timer_t periodic, thread_timer, disarmed, none_timer;
static volatile sig_atomic_t periodic_hits, periodic_bad_value, periodic_bad_id;
static volatile sig_atomic_t thread_hits, thread_bad_value, thread_wrong_thread;
static volatile pid_t target_tid;

static void on_periodic(int sig, siginfo_t* info, void* ctx) {
  (void)sig;
  (void)ctx;
  ++periodic_hits;
  if (info->si_value.sival_ptr != (void*)0x5eed0001) periodic_bad_value = 1;
  if (info->si_timerid != (int)(long)periodic) periodic_bad_id = 1;
}

static void on_thread(int sig, siginfo_t* info, void* ctx) {
  (void)sig;
  (void)ctx;
  ++thread_hits;
  if (info->si_value.sival_ptr != (void*)0x5eed0002) thread_bad_value = 1;
  if ((pid_t)syscall(SYS_gettid) != target_tid) thread_wrong_thread = 1;
}

static void* target(void* arg) {
  (void)arg;
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, SIGRTMIN);
  pthread_sigmask(SIG_BLOCK, &rt, NULL);
  target_tid = (pid_t)syscall(SYS_gettid);
  for (;;) pause();
  return NULL;
}

static int make(clockid_t clock, int notify, int signo, long value, pid_t tid, timer_t* out) {
  struct sigevent sev;
  memset(&sev, 0, sizeof(sev));
  sev.sigev_notify = notify;
  sev.sigev_signo = signo;
  sev.sigev_value.sival_ptr = (void*)value;
  sev._sigev_un._tid = tid;
  return timer_create(clock, &sev, out);
}

static int arm(timer_t t, long value_ns, long interval_ns) {
  struct itimerspec its = {{interval_ns / 1000000000, interval_ns % 1000000000},
                           {value_ns / 1000000000, value_ns % 1000000000}};
  return timer_settime(t, 0, &its, NULL);
}

/* Whether /proc/self/timers lists timer `id` with `notify` ("signal/pid",
 * "signal/tid", "none/pid") and `clock`. */
static int listed(timer_t id, const char* notify, int clock) {
  char buf[8192], want[128];
  int fd = open("/proc/self/timers", O_RDONLY);
  if (fd < 0) return 0;
  /* After a leading newline, so that every entry starts with "\nID: "
   * ("ClockID: 1\n" must not pass for timer 1). */
  buf[0] = '\n';
  ssize_t n = read(fd, buf + 1, sizeof(buf) - 2);
  close(fd);
  if (n <= 0) return 0;
  buf[n + 1] = '\0';
  snprintf(want, sizeof(want), "\nID: %d\n", (int)(long)id);
  char* at = strstr(buf, want);
  if (!at) return 0;
  char* notify_line = strstr(at, "notify: ");
  char* clock_line = strstr(at, "ClockID: ");
  return notify_line && clock_line && strncmp(notify_line + 8, notify, strlen(notify)) == 0 &&
         atoi(clock_line + 9) == clock;
}

static void* short_lived(void* arg) {
  *(volatile pid_t*)arg = (pid_t)syscall(SYS_gettid);
  while (*(volatile pid_t*)arg != 0) usleep(1000);
  return NULL;
}

/* A timer aimed at a thread that then exits. */
static int make_orphan(void) {
  volatile pid_t tid = 0;
  pthread_t th;
  if (pthread_create(&th, NULL, short_lived, (void*)&tid) != 0) return -1;
  while (tid == 0) usleep(1000);
  timer_t orphan;
  int r = make(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 2, 0, tid, &orphan);
  tid = 0;
  pthread_join(th, NULL);
  return r;
}

int main(int argc, char** argv) {
  wl_install_handler();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sa.sa_sigaction = on_periodic;
  sigaction(SIGRTMIN, &sa, NULL);
  sa.sa_sigaction = on_thread;
  sigaction(SIGRTMIN + 1, &sa, NULL);
  /* Only the target thread takes SIGRTMIN+1 if it strays: the main thread blocks it. */
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGRTMIN + 1);
  sigaddset(&block, SIGRTMIN);
  pthread_t th;
  if (pthread_create(&th, NULL, target, NULL) != 0) return wl_fail("pthread_create");
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  while (target_tid == 0) usleep(1000);

  timer_t hole;
  if (make(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0, &hole) != 0) return wl_fail("timer_create hole");
  if (make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, 0x5eed0001, 0, &periodic) != 0 ||
      make(CLOCK_REALTIME, SIGEV_THREAD_ID, SIGRTMIN + 1, 0x5eed0002, target_tid, &thread_timer) != 0 ||
      make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, 0x5eed0003, 0, &disarmed) != 0 ||
      make(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0, &none_timer) != 0) {
    return wl_fail("timer_create: %s", strerror(errno));
  }
  timer_delete(hole);
  if (argc > 1 && strcmp(argv[1], "orphan") == 0 && make_orphan() != 0) {
    return wl_fail("setup orphan timer: %s", strerror(errno));
  }
  if (arm(periodic, PERIOD_NS, PERIOD_NS) != 0 || arm(thread_timer, PERIOD_NS, PERIOD_NS) != 0 ||
      arm(none_timer, 1000L * 1000000000L, 0) != 0) {
    return wl_fail("timer_settime: %s", strerror(errno));
  }
  wl_say("TIMERS %d %d %d %d", (int)(long)periodic, (int)(long)thread_timer, (int)(long)disarmed,
         (int)(long)none_timer);
  struct timespec fire = {0, 60 * 1000 * 1000};
  while (nanosleep(&fire, &fire) != 0 && errno == EINTR) {
  }
  wl_ready();
  wl_wait_nap();

  periodic_hits = thread_hits = 0;
  sigset_t rt;
  sigemptyset(&rt);
  sigaddset(&rt, SIGRTMIN);
  pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
  struct timespec wait = {0, 300 * 1000 * 1000};
  while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
  }
  if (periodic_hits == 0) return wl_fail("periodic timer %d: no signal in 300 ms", (int)(long)periodic);
  if (periodic_bad_value) return wl_fail("periodic timer: wrong sigev_value");
  if (periodic_bad_id) return wl_fail("periodic timer: wrong si_timerid (the ID changed)");
  if (thread_hits == 0) return wl_fail("SIGEV_THREAD_ID timer %d: no signal in 300 ms", (int)(long)thread_timer);
  if (thread_bad_value) return wl_fail("SIGEV_THREAD_ID timer: wrong sigev_value");
  if (thread_wrong_thread) return wl_fail("SIGEV_THREAD_ID timer: signal hit another thread than %d", target_tid);
  struct itimerspec its;
  if (timer_gettime(periodic, &its) != 0) return wl_fail("periodic timer: timer_gettime: %s", strerror(errno));
  if (its.it_interval.tv_sec != 0 || its.it_interval.tv_nsec != PERIOD_NS) {
    return wl_fail("periodic timer: interval %ld.%09ld", (long)its.it_interval.tv_sec, its.it_interval.tv_nsec);
  }
  if (timer_gettime(disarmed, &its) != 0) return wl_fail("disarmed timer: timer_gettime: %s", strerror(errno));
  if (its.it_value.tv_sec || its.it_value.tv_nsec) return wl_fail("disarmed timer: armed after restore");
  if (timer_gettime(none_timer, &its) != 0) return wl_fail("SIGEV_NONE timer: timer_gettime: %s", strerror(errno));
  if (its.it_value.tv_sec < 900 || its.it_value.tv_sec > 1000) {
    return wl_fail("SIGEV_NONE timer: %ld s left, expected 900-1000", (long)its.it_value.tv_sec);
  }
  if (!listed(periodic, "signal/pid", CLOCK_MONOTONIC)) return wl_fail("periodic timer: /proc/self/timers entry");
  if (!listed(thread_timer, "signal/tid", CLOCK_REALTIME)) return wl_fail("SIGEV_THREAD_ID timer: /proc/self/timers entry");
  if (!listed(disarmed, "signal/pid", CLOCK_MONOTONIC)) return wl_fail("disarmed timer: /proc/self/timers entry");
  if (!listed(none_timer, "none/pid", CLOCK_REALTIME)) return wl_fail("SIGEV_NONE timer: /proc/self/timers entry");
  if (timer_gettime(hole, &its) == 0) return wl_fail("deleted timer %d exists again", (int)(long)hole);
  wl_say("OK posix timers");
  return 0;
}
