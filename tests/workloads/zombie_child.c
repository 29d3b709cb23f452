/* A zombie: the root's child exits with status 7 and is not reaped.
 * Kernel state: a dead process kept for its parent, with its exit status.
 * After SIGUSR1 the root finds the child still dead and not yet reaped
 * (waitid with WNOWAIT | WNOHANG), reaps it and expects status 7. */
#include "tree.h"

enum { kStatus = 7 };

int main(void) {
  wl_install_handler();
  pid_t child = fork();
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  if (child == 0) _exit(kStatus);
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  /* Returns once the child is a zombie, leaving it one. */
  if (waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT) != 0) return wl_fail("waitid: %s", strerror(errno));

  wl_ready();
  wl_wait_nap();

  memset(&si, 0, sizeof(si));
  if (waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT | WNOHANG) != 0) {
    return wl_fail("waitid on the zombie %d: %s", (int)child, strerror(errno));
  }
  if (si.si_pid != child) return wl_fail("child %d is not a zombie any more (or not yet)", (int)child);
  if (si.si_code != CLD_EXITED || si.si_status != kStatus) {
    return wl_fail("zombie %d: code %d status %d, expected exit %d", (int)child, si.si_code, si.si_status, kStatus);
  }
  int status;
  if (waitpid(child, &status, WNOHANG) != child) return wl_fail("waitpid %d: %s", (int)child, strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != kStatus) return wl_fail("reaped status %#x", status);
  wl_say("OK zombie %d reaped with status %d", (int)child, kStatus);
  return 0;
}
