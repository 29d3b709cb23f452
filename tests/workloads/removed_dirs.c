/* Removed directories: the cwd is a directory that was removed, and fd
 * holds another removed directory (argv[1] is where both are made). After
 * restore both must still be directories with no link, nothing can be
 * created in them, and the cwd must be the removed one, not a path.
 * With "same" as argv[2], the cwd is the directory the fd holds, and must
 * still be after restore (one directory, not two). With "root", the
 * process chroots into a directory and removes it: the dump must refuse
 * that. */
#include <fcntl.h>
#include <sys/stat.h>

#include "workload.h"

static int check_removed(int fd, const char* what) {
  struct stat st;
  if (fstat(fd, &st) != 0) return wl_fail("fstat of the %s: %s", what, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return wl_fail("the %s is not a directory", what);
  if (st.st_nlink != 0) return wl_fail("the %s has %lu links, not 0", what, (unsigned long)st.st_nlink);
  if (openat(fd, "new", O_CREAT | O_WRONLY, 0600) >= 0 || errno != ENOENT) {
    return wl_fail("a file can be created in the removed %s", what);
  }
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: removed_dirs DIR [root]");
  char cwd[512], held[512];
  snprintf(cwd, sizeof(cwd), "%s/gone-cwd", argv[1]);
  snprintf(held, sizeof(held), "%s/gone-fd", argv[1]);
  if (mkdir(cwd, 0750) != 0 || mkdir(held, 0710) != 0) return wl_fail("mkdir: %s", strerror(errno));
  int parent = open(argv[1], O_RDONLY | O_DIRECTORY);
  int fd = open(held, O_RDONLY | O_DIRECTORY);
  if (parent < 0 || fd < 0) return wl_fail("open: %s", strerror(errno));
  const int root = argc > 2 && strcmp(argv[2], "root") == 0;
  const int same = argc > 2 && strcmp(argv[2], "same") == 0;
  if (same) {
    if (chdir(held) != 0) return wl_fail("chdir %s: %s", held, strerror(errno));
  } else if (root) {
    if (chroot(cwd) != 0) return wl_fail("chroot %s: %s", cwd, strerror(errno));
  } else if (chdir(cwd) != 0) {
    return wl_fail("chdir %s: %s", cwd, strerror(errno));
  }
  if (unlinkat(parent, "gone-cwd", AT_REMOVEDIR) != 0 || unlinkat(parent, "gone-fd", AT_REMOVEDIR) != 0) {
    return wl_fail("rmdir: %s", strerror(errno));
  }
  close(parent);
  struct stat fd_before;
  fstat(fd, &fd_before);

  wl_ready();
  wl_wait_nap();

  if (check_removed(fd, "directory fd")) return 1;
  struct stat st;
  if (fstat(fd, &st) != 0 || (st.st_mode & 07777) != (fd_before.st_mode & 07777)) {
    return wl_fail("the directory fd has mode %o, was %o", st.st_mode & 07777, fd_before.st_mode & 07777);
  }
  if (root) {
    wl_say("OK removed root and directory fd");
    return 0;
  }
  int dot = open(".", O_RDONLY | O_DIRECTORY);
  if (dot < 0) return wl_fail("open of the cwd: %s", strerror(errno));
  if (check_removed(dot, "cwd")) return 1;
  struct stat cwd_st;
  if (fstat(dot, &cwd_st) != 0 || (cwd_st.st_ino == st.st_ino) != same) {
    return wl_fail(same ? "the cwd is not the fd's directory" : "the cwd is the fd's directory");
  }
  char buf[512];
  if (getcwd(buf, sizeof(buf)) != NULL || errno != ENOENT) return wl_fail("getcwd works in a removed cwd");
  wl_say("OK removed cwd and directory fd");
  return 0;
}
