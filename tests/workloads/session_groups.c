/* Sessions and process groups in a tree. The root leads a session (the
 * test starts workloads with setsid) and its own group; child A leads group
 * A, with A's child A1 in it; child B leads group B; and group L has lost
 * its leader: child L made it, child M joined it, then L exited and the
 * root reaped it, so M lives on in a group whose PGID is no process's PID.
 * After SIGUSR1 every process checks its PGID, SID and parent, and the
 * root checks the others' from outside (getpgid/getsid of their PIDs) and
 * that L is gone while its group is not. */
#include "tree.h"

enum { kChildren = 3 }; /* A, B, M; L is gone */

/* 0 if `pid` (0: the caller) has group `pgid` and session `sid`. */
static int check_ids(const char* role, pid_t pid, pid_t pgid, pid_t sid) {
  pid_t g = getpgid(pid), s = getsid(pid);
  if (g != pgid || s != sid) {
    return wl_fail("%s %d: group %d session %d, expected group %d session %d", role, (int)pid,
                   (int)g, (int)s, (int)pgid, (int)sid);
  }
  return 0;
}

/* A descendant that waits, then checks its own ids and parent. */
static int member(const char* role, pid_t parent, pid_t pgid, pid_t sid, pid_t child) {
  tr_report_ready();
  tr_wait_go(parent);
  if (child > 0) tr_forward_go(&child, 1);
  int rc = check_ids(role, 0, pgid, sid);
  if (getppid() != parent) rc = wl_fail("%s: parent %d, expected %d", role, (int)getppid(), (int)parent);
  if (child > 0) rc |= tr_reap_ok(child, "A1");
  return rc;
}

static int child_a(pid_t root) {
  const pid_t a = getpid();
  if (setpgid(0, 0) != 0) return wl_fail("A: setpgid: %s", strerror(errno));
  pid_t a1 = fork();
  if (a1 < 0) return wl_fail("A: fork: %s", strerror(errno));
  if (a1 == 0) _exit(member("A1", a, a, root, 0));
  return member("A", root, a, root, a1);
}

int main(void) {
  wl_install_handler();
  const pid_t root = getpid();
  if (getsid(0) != root) return wl_fail("not a session leader: start me with setsid");
  if (tr_open_ready() != 0) return wl_fail("pipe: %s", strerror(errno));
  pid_t a = fork();
  if (a == 0) _exit(child_a(root));
  pid_t b = fork();
  if (b == 0) {
    if (setpgid(0, 0) != 0) _exit(wl_fail("B: setpgid: %s", strerror(errno)));
    _exit(member("B", root, getpid(), root, 0));
  }
  if (a < 0 || b < 0 || setpgid(a, a) != 0 || setpgid(b, b) != 0) {
    return wl_fail("fork or setpgid of A, B: %s", strerror(errno));
  }
  /* L leads its group until the root closes `order`; M joins L's group. */
  int order[2];
  if (pipe(order) != 0) return wl_fail("pipe: %s", strerror(errno));
  pid_t l = fork();
  if (l == 0) {
    close(order[1]);
    close(tr_ready_fds[0]);
    close(tr_ready_fds[1]);
    char c;
    while (read(order[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  if (l < 0 || setpgid(l, l) != 0) return wl_fail("fork or setpgid of L: %s", strerror(errno));
  pid_t m = fork();
  if (m == 0) {
    close(order[0]);
    close(order[1]);
    _exit(member("M", root, l, root, 0));
  }
  if (m < 0 || setpgid(m, l) != 0) return wl_fail("fork of M or M into group L: %s", strerror(errno));
  close(order[0]);
  close(order[1]);
  if (tr_reap_ok(l, "L") != 0) return 1;
  if (tr_await_ready(4) != 0) return 1;

  wl_ready();
  wl_wait_nap();

  pid_t children[kChildren] = {a, b, m};
  tr_forward_go(children, kChildren);
  int rc = check_ids("root", 0, root, root) | check_ids("A", a, a, root) |
           check_ids("B", b, b, root) | check_ids("M", m, l, root);
  if (getpgid(l) >= 0 || errno != ESRCH) rc |= wl_fail("L %d exists again (getpgid %d)", (int)l, (int)getpgid(l));
  if (kill(-l, 0) != 0) rc |= wl_fail("group %d of M is gone: %s", (int)l, strerror(errno));
  rc |= tr_reap_ok(a, "A") | tr_reap_ok(b, "B") | tr_reap_ok(m, "M");
  if (rc != 0) return 1;
  wl_say("OK session %d with groups %d, %d and %d (leader gone)", (int)root, (int)a, (int)b, (int)l);
  return 0;
}
