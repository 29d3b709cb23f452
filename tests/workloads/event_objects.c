/* Event objects a restore must bring back with their state: an eventfd
 * counter (shared by a dup) and one in semaphore mode, a periodic relative
 * timerfd that keeps its schedule (its expiries stay on the grid of its
 * period from when it was armed, the ones missed while dumped count as
 * ticks), an absolute CLOCK_REALTIME timerfd, a one-shot timerfd whose
 * expiry was not read, and a signalfd with a signal queued for it. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include "workload.h"

#define PERIOD_NS 500000000LL /* the periodic timer's */
#define PHASE_SLACK_NS 60000000LL /* how late a wake-up may be */

static long long now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The value of "key:" in our fdinfo of fd, as text, or "". */
static const char* fdinfo_field(int fd, const char* key) {
  static char buf[4096];
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  int f = open(path, O_RDONLY);
  if (f < 0) return "";
  ssize_t n = read(f, buf, sizeof(buf) - 1);
  close(f);
  buf[n > 0 ? n : 0] = '\0';
  char* at = strstr(buf, key);
  if (!at) return "";
  at += strlen(key);
  while (*at == ':' || *at == ' ' || *at == '\t') at++;
  char* eol = strchr(at, '\n');
  if (eol) *eol = '\0';
  return at;
}

int main(void) {
  wl_install_handler();
  /* eventfd counter 7, shared by a dup; one in semaphore mode at 3. */
  int counter = eventfd(0, EFD_NONBLOCK);
  uint64_t v = 7;
  if (counter < 0 || write(counter, &v, 8) != 8) return wl_fail("eventfd: %s", strerror(errno));
  int counter_dup = dup(counter);
  int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
  /* Periodic relative timer, blocking reads. */
  int periodic = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = {{0, PERIOD_NS}, {0, PERIOD_NS}};
  long long armed = now_ns(CLOCK_MONOTONIC);
  if (periodic < 0 || timerfd_settime(periodic, 0, &its, NULL) != 0) return wl_fail("timerfd periodic");
  /* Absolute realtime timer a minute ahead. */
  int absolute = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
  long long deadline = now_ns(CLOCK_REALTIME) + 60000000000LL;
  struct itimerspec abs_its = {{0, 0}, {deadline / 1000000000LL, deadline % 1000000000LL}};
  if (absolute < 0 ||
      timerfd_settime(absolute, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &abs_its, NULL) != 0) {
    return wl_fail("timerfd absolute: %s", strerror(errno));
  }
  /* One-shot timer that expires before READY, unread. */
  int expired = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
  struct itimerspec once = {{0, 0}, {0, 1000000}};
  if (expired < 0 || timerfd_settime(expired, 0, &once, NULL) != 0) return wl_fail("timerfd once");
  /* signalfd for SIGUSR2 (blocked), one queued. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR2);
  sigaddset(&mask, SIGRTMIN + 2);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) return wl_fail("signalfd: %s", strerror(errno));
  union sigval sv = {.sival_int = 4242};
  sigqueue(getpid(), SIGUSR2, sv);
  struct timespec pause = {0, 20 * 1000 * 1000};
  nanosleep(&pause, NULL);
  wl_ready();
  wl_wait_nap();

  /* eventfds: the counter through either fd, the semaphore one by one. */
  uint64_t got = 0;
  if (read(counter_dup, &got, 8) != 8 || got != 7) return wl_fail("eventfd count %llu, want 7", (unsigned long long)got);
  if (read(counter, &got, 8) >= 0 || errno != EAGAIN) return wl_fail("eventfd not shared with its dup");
  for (int i = 0; i < 3; ++i) {
    if (read(sem, &got, 8) != 8 || got != 1) return wl_fail("semaphore read %d gave %llu", i, (unsigned long long)got);
  }
  if (read(sem, &got, 8) >= 0 || errno != EAGAIN) return wl_fail("semaphore eventfd not at 0 after 3 reads");
  if (!(fcntl(sem, F_GETFL) & O_NONBLOCK)) return wl_fail("semaphore eventfd lost O_NONBLOCK");
  /* The one-shot expiry, unread before the dump, is still there. */
  if (read(expired, &got, 8) != 8 || got != 1) return wl_fail("expired timerfd: %s, %llu ticks", strerror(errno), (unsigned long long)got);
  /* The absolute timer: same deadline, same flags. */
  struct itimerspec cur;
  timerfd_gettime(absolute, &cur);
  long long left = cur.it_value.tv_sec * 1000000000LL + cur.it_value.tv_nsec;
  long long want = deadline - now_ns(CLOCK_REALTIME);
  if (llabs(left - want) > 200000000LL) return wl_fail("absolute timer %lld ns left, want %lld", left, want);
  if (strcmp(fdinfo_field(absolute, "settime flags"), "03") != 0) {
    return wl_fail("absolute timer settime flags %s, want 03", fdinfo_field(absolute, "settime flags"));
  }
  if (strcmp(fdinfo_field(expired, "clockid"), "7") != 0) return wl_fail("one-shot timer clock changed");
  /* The periodic timer: the ticks so far and the next expiry are on the
   * grid of its period from `armed`. */
  uint64_t total = 0;
  if (read(periodic, &got, 8) != 8) return wl_fail("periodic read: %s", strerror(errno));
  total += got;
  if (read(periodic, &got, 8) != 8) return wl_fail("periodic read: %s", strerror(errno));
  total += got;
  long long woke = now_ns(CLOCK_MONOTONIC) - armed;
  long long phase = woke % PERIOD_NS;
  if (phase > PHASE_SLACK_NS) {
    return wl_fail("periodic timer off its schedule: woke %lld ms after a period boundary", phase / 1000000);
  }
  long long periods = woke / PERIOD_NS;
  if ((long long)total < periods - 1 || (long long)total > periods + 1) {
    return wl_fail("periodic timer gave %llu ticks in %lld periods", (unsigned long long)total, periods);
  }
  /* signalfd: the queued signal with its value, then nothing. */
  struct signalfd_siginfo si;
  if (read(sfd, &si, sizeof(si)) != sizeof(si)) return wl_fail("signalfd read: %s", strerror(errno));
  if (si.ssi_signo != SIGUSR2 || si.ssi_int != 4242) return wl_fail("signalfd gave signal %u value %d", si.ssi_signo, si.ssi_int);
  if (strcmp(fdinfo_field(sfd, "sigmask"), "0000000800000800") != 0) {
    return wl_fail("signalfd mask %s", fdinfo_field(sfd, "sigmask"));
  }
  wl_say("OK eventfd, timerfd (%llu ticks in %lld periods), signalfd", (unsigned long long)total, periods);
  return 0;
}
