/* Attributes crlib carried before the attribute records, checked after
 * restore by the process itself, each failing check naming the attribute:
 * personality (UNAME26 | ADDR_NO_RANDOMIZE: uname then reports a 2.6
 * release), umask 027, rlimits (NOFILE 200/300, CORE 4096/8192), interval
 * timers (ITIMER_REAL every 50 ms, still firing; ITIMER_VIRTUAL armed for
 * 1000 s of CPU time). SIGALRM stays blocked until the check: the kernel
 * rearms a fired ITIMER_REAL only when its SIGALRM is dequeued, so at the
 * dump the timer shows no time left while it is still periodic and signal handlers (SIGUSR2 caught with SA_SIGINFO,
 * SA_RESTART, SA_ONSTACK and SIGHUP in its mask; SIGPIPE ignored; SIGCHLD
 * default with SA_NOCLDWAIT). */
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>

#include "workload.h"

#define PERSONA (PER_LINUX | UNAME26 | ADDR_NO_RANDOMIZE)

static volatile sig_atomic_t alarms;

static void on_alarm(int sig) {
  (void)sig;
  ++alarms;
}

static void on_usr2(int sig, siginfo_t* info, void* ctx) {
  (void)sig;
  (void)info;
  (void)ctx;
}

int main(void) {
  wl_install_handler();
  if (personality(PERSONA) < 0) return wl_fail("setup personality: %s", strerror(errno));
  umask(027);
  struct rlimit nofile = {200, 300}, core = {4096, 8192};
  if (setrlimit(RLIMIT_NOFILE, &nofile) != 0 || setrlimit(RLIMIT_CORE, &core) != 0) {
    return wl_fail("setup rlimits: %s", strerror(errno));
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_usr2;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigaction(SIGUSR2, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = SA_NOCLDWAIT;
  sigaction(SIGCHLD, &sa, NULL);
  struct itimerval real = {{0, 50000}, {0, 50000}}, virt = {{0, 0}, {1000, 0}};
  if (setitimer(ITIMER_REAL, &real, NULL) != 0 || setitimer(ITIMER_VIRTUAL, &virt, NULL) != 0) {
    return wl_fail("setup itimers: %s", strerror(errno));
  }
  sigset_t alrm;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  sigprocmask(SIG_BLOCK, &alrm, NULL);
  struct timespec fire = {0, 120 * 1000 * 1000};
  while (nanosleep(&fire, &fire) != 0 && errno == EINTR) {
  }
  wl_ready();
  wl_wait_nap();

  int persona = personality(0xffffffff);
  if (persona != PERSONA) return wl_fail("personality 0x%x, expected 0x%x", persona, PERSONA);
  struct utsname u;
  if (uname(&u) != 0 || strncmp(u.release, "2.6.", 4) != 0) return wl_fail("personality: uname release %s, expected 2.6.x (UNAME26)", u.release);
  mode_t mask = umask(0);
  if (mask != 027) return wl_fail("umask %03o, expected 027", (unsigned)mask);
  struct rlimit lim;
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur != 200 || lim.rlim_max != 300) return wl_fail("RLIMIT_NOFILE %lu/%lu, expected 200/300", (unsigned long)lim.rlim_cur, (unsigned long)lim.rlim_max);
  getrlimit(RLIMIT_CORE, &lim);
  if (lim.rlim_cur != 4096 || lim.rlim_max != 8192) return wl_fail("RLIMIT_CORE %lu/%lu, expected 4096/8192", (unsigned long)lim.rlim_cur, (unsigned long)lim.rlim_max);
  alarms = 0;
  sigprocmask(SIG_UNBLOCK, &alrm, NULL);
  struct timespec wait = {0, 300 * 1000 * 1000};
  while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
  }
  /* The pending one, then one every 50 ms. */
  if (alarms < 3) return wl_fail("ITIMER_REAL: %d SIGALRM in 300 ms, expected one every 50 ms", (int)alarms);
  struct itimerval it;
  getitimer(ITIMER_REAL, &it);
  if (it.it_interval.tv_sec != 0 || it.it_interval.tv_usec != 50000) return wl_fail("ITIMER_REAL interval %ld us", (long)it.it_interval.tv_usec);
  getitimer(ITIMER_VIRTUAL, &it);
  if (it.it_value.tv_sec < 990 || it.it_value.tv_sec > 1000) return wl_fail("ITIMER_VIRTUAL %ld s left, expected 990-1000", (long)it.it_value.tv_sec);
  struct sigaction now;
  sigaction(SIGUSR2, NULL, &now);
  if (now.sa_sigaction != on_usr2) return wl_fail("SIGUSR2 handler changed");
  if ((now.sa_flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK)) != (SA_SIGINFO | SA_RESTART | SA_ONSTACK)) return wl_fail("SIGUSR2 flags 0x%x", now.sa_flags);
  if (!sigismember(&now.sa_mask, SIGHUP)) return wl_fail("SIGUSR2 handler mask lacks SIGHUP");
  sigaction(SIGPIPE, NULL, &now);
  if (now.sa_handler != SIG_IGN) return wl_fail("SIGPIPE not ignored");
  sigaction(SIGCHLD, NULL, &now);
  if (now.sa_handler != SIG_DFL || !(now.sa_flags & SA_NOCLDWAIT)) return wl_fail("SIGCHLD: flags 0x%x or handler changed, expected SIG_DFL with SA_NOCLDWAIT", now.sa_flags);
  wl_say("OK basic attributes");
  return 0;
}
