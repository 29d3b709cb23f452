/* Signal handlers: one for every catchable signal but SIGUSR1 (the
 * protocol's) and SIGKILL/SIGSTOP, with distinct flags and masks, SIGTRAP's
 * among them (restore sets handlers in a batch of remote calls that ends
 * in a breakpoint, whose forced SIGTRAP would reset that handler).
 * Kernel state: the process's sigaction table. After restore every
 * handler, flag and mask is as set, and a raised SIGTRAP runs its handler. */
#include "workload.h"

static volatile sig_atomic_t trapped;
static void on_signal(int sig) {
  if (sig == SIGTRAP) trapped = 1;
}

static int catchable(int sig) {
  return sig != SIGKILL && sig != SIGSTOP && sig != SIGUSR1 && (sig < 32 || sig >= SIGRTMIN);
}

int main(void) {
  wl_install_handler();
  for (int sig = 1; sig < NSIG; ++sig) {
    if (!catchable(sig)) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = (sig % 2) ? SA_RESTART : SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, (sig % 2) ? SIGHUP : SIGUSR2);
    if (sigaction(sig, &sa, NULL) != 0) return wl_fail("sigaction(%d): %s", sig, strerror(errno));
  }
  wl_ready();
  wl_wait_nap();
  for (int sig = 1; sig < NSIG; ++sig) {
    if (!catchable(sig)) continue;
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) != 0) return wl_fail("sigaction(%d): %s", sig, strerror(errno));
    if (sa.sa_handler != on_signal) return wl_fail("signal %d: handler lost", sig);
    const int want = (sig % 2) ? SA_RESTART : SA_NODEFER;
    if ((sa.sa_flags & (SA_RESTART | SA_NODEFER)) != want) {
      return wl_fail("signal %d: flags %#x", sig, (unsigned)sa.sa_flags);
    }
    if (!sigismember(&sa.sa_mask, (sig % 2) ? SIGHUP : SIGUSR2)) return wl_fail("signal %d: mask lost", sig);
  }
  raise(SIGTRAP);
  if (!trapped) return wl_fail("SIGTRAP ran no handler");
  wl_say("OK every handler, flag and mask, SIGTRAP's too");
  return 0;
}
