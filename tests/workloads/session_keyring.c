/* The session keyring after a restore: the restorer's holds keys that are
 * not the process's to have, so a restored process must not be in it. The
 * test joins a session keyring named argv[1] before it restores; after
 * the restore this process's session keyring must be another one (a new,
 * empty one). Keyrings themselves are not carried (docs/CHECKPOINT.md). */
#include <sys/syscall.h>

#include "workload.h"

enum { kKeyctlDescribe = 6 };
static const long kSessionKeyring = -3; /* KEY_SPEC_SESSION_KEYRING */

static int describe(char* out, size_t size) {
  long n = syscall(SYS_keyctl, kKeyctlDescribe, kSessionKeyring, out, size - 1);
  if (n < 0) return -1;
  out[(size_t)n < size ? (size_t)n : size - 1] = '\0';
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc != 2) return wl_fail("usage: session_keyring RESTORER_KEYRING_NAME");
  char before[256];
  if (describe(before, sizeof(before)) != 0) return wl_fail("keyctl(DESCRIBE): %s", strerror(errno));
  wl_ready();
  wl_wait_nap();
  char after[256];
  if (describe(after, sizeof(after)) != 0) return wl_fail("keyctl(DESCRIBE): %s", strerror(errno));
  const char* name = strrchr(after, ';');
  if (name && strcmp(name + 1, argv[1]) == 0) {
    return wl_fail("the restored process is in the restorer's session keyring (%s)", after);
  }
  wl_say("OK session keyring %s", after);
  return 0;
}
