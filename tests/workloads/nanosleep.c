/* A process asleep in nanosleep(2) for an hour at a time. A checkpoint
 * catches it inside the system call; after a restore the sleep either goes
 * on or returns EINTR with the time left in `rem`, and the loop sleeps for
 * the rest. What must never happen: the sleep returns 0 (an hour did not
 * pass), or `rem` is not a time between 0 and an hour. A counter in memory,
 * advanced before READY, and one on the stack must keep their values. */
#include "workload.h"

enum { kSleepSeconds = 3600, kSteps = 1000000 };

static volatile uint64_t counter;

int main(void) {
  wl_install_handler();
  for (uint64_t i = 0; i < kSteps; ++i) counter = wl_mix(counter + i);
  const uint64_t expected = counter;
  volatile uint64_t on_stack = expected ^ 0xfeedfacecafebeefull;

  wl_ready();
  unsigned interrupted = 0, completed = 0;
  struct timespec ts = {kSleepSeconds, 0};
  while (!wl_go) {
    struct timespec rem = {-1, -1};
    if (nanosleep(&ts, &rem) == 0) {
      ++completed;
      ts.tv_sec = kSleepSeconds;
      ts.tv_nsec = 0;
      continue;
    }
    if (errno != EINTR) return wl_fail("nanosleep: %s", strerror(errno));
    ++interrupted;
    if (rem.tv_sec < 0 || rem.tv_sec > kSleepSeconds || rem.tv_nsec < 0 ||
        rem.tv_nsec >= 1000000000) {
      return wl_fail("nanosleep returned EINTR with rem = %lld.%09ld", (long long)rem.tv_sec,
                     rem.tv_nsec);
    }
    ts = rem;  /* sleep for what is left, as a program should */
  }

  if (completed != 0) return wl_fail("a %d s nanosleep returned 0 after %u interruptions",
                                     kSleepSeconds, interrupted);
  if (counter != expected) {
    return wl_fail("counter is %016llx, expected %016llx", (unsigned long long)counter,
                   (unsigned long long)expected);
  }
  if ((on_stack ^ 0xfeedfacecafebeefull) != expected) return wl_fail("stack value changed");
  wl_say("OK counter %016llx, %u interruptions, %lld s left", (unsigned long long)expected,
         interrupted, (long long)ts.tv_sec);
  return 0;
}
