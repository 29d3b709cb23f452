/* Credentials: started as root, drops itself to a user, its group and a
 * list of supplementary groups with no capability left, and holds a file
 * open. After SIGUSR1 its IDs, groups and capability sets must be those it
 * had, and a file readable only by root's group must stay closed to it.
 *
 *   creds UID GID GROUPS FORBIDDEN HELD
 *
 * GROUPS is a comma-separated list of gids; FORBIDDEN a file of mode 0640
 * owned by root:root (expected: EACCES); HELD a file opened read-only and
 * kept open, which the test may make unreadable to UID before a restore.
 * Prints "CREDS uid=... gid=... groups=... caps=..." before READY. */
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "workload.h"

struct creds {
  uid_t r, e, s;
  gid_t rg, eg, sg;
  int ngroups;
  gid_t groups[64];
  uint64_t eff, prm, inh;
};

static int read_creds(struct creds* c) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (getresuid(&c->r, &c->e, &c->s) != 0 || getresgid(&c->rg, &c->eg, &c->sg) != 0) return -1;
  c->ngroups = getgroups(64, c->groups);
  if (c->ngroups < 0 || syscall(SYS_capget, &h, d) != 0) return -1;
  c->eff = d[0].effective | (uint64_t)d[1].effective << 32;
  c->prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
  c->inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
  return 0;
}

static void describe(const struct creds* c, char* out, size_t size) {
  int n = snprintf(out, size, "uid=%u,%u,%u gid=%u,%u,%u groups=", c->r, c->e, c->s, c->rg, c->eg,
                   c->sg);
  for (int i = 0; i < c->ngroups && n < (int)size; ++i) {
    n += snprintf(out + n, size - (size_t)n, "%s%u", i ? "," : "", c->groups[i]);
  }
  if (n < (int)size) {
    snprintf(out + n, size - (size_t)n, " caps=%llx,%llx,%llx", (unsigned long long)c->eff,
             (unsigned long long)c->prm, (unsigned long long)c->inh);
  }
}

int main(int argc, char** argv) {
  if (argc != 6) return wl_fail("usage: creds UID GID GROUPS FORBIDDEN HELD");
  uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
  gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
  gid_t groups[64];
  size_t ngroups = 0;
  for (char* g = strtok(argv[3], ","); g && ngroups < 64; g = strtok(NULL, ",")) {
    groups[ngroups++] = (gid_t)strtoul(g, NULL, 10);
  }
  int held = open(argv[5], O_RDONLY);
  if (held < 0) return wl_fail("open %s: %s", argv[5], strerror(errno));
  /* Groups first: after the uid changes, setgroups needs rights we lack.
   * Leaving uid 0 clears every capability set (no KEEP_CAPS). */
  if (setgroups(ngroups, groups) != 0 || setresgid(gid, gid, gid) != 0 ||
      setresuid(uid, uid, uid) != 0) {
    return wl_fail("dropping to %u:%u: %s", uid, gid, strerror(errno));
  }
  struct creds before, after;
  char text[1024], now[1024];
  if (read_creds(&before) != 0) return wl_fail("reading credentials: %s", strerror(errno));
  describe(&before, text, sizeof(text));
  wl_install_handler();
  wl_say("CREDS %s", text);
  wl_ready();
  wl_wait_nap();

  if (read_creds(&after) != 0) return wl_fail("reading credentials: %s", strerror(errno));
  describe(&after, now, sizeof(now));
  if (strcmp(text, now) != 0) return wl_fail("credentials were %s, now %s", text, now);
  int fd = open(argv[4], O_RDONLY);
  if (fd >= 0 || errno != EACCES) {
    return wl_fail("open %s as %s: %s, not EACCES", argv[4], now,
                   fd >= 0 ? "opened" : strerror(errno));
  }
  char byte;
  if (pread(held, &byte, 1, 0) < 0) return wl_fail("read of held %s: %s", argv[5], strerror(errno));
  wl_say("OK %s", now);
  return 0;
}
