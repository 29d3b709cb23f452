/* O_PATH descriptors: on a regular file, on a directory, on a symlink
 * itself (O_PATH|O_NOFOLLOW) and on a UNIX socket's file, all in the
 * directory argv[1]. After restore each must be the same inode with the
 * same flags (O_PATH still set), the symlink fd must still be the link
 * (readlinkat(fd, "") gives its target) and the directory fd must still
 * resolve names. "--chdir DIR" moves the cwd there first. */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "workload.h"

enum { kCount = 4 };

int main(int argc, char** argv) {
  wl_install_handler();
  if (argc < 2) return wl_fail("usage: path_fds DIR [--chdir DIR]");
  if (argc > 3 && strcmp(argv[2], "--chdir") == 0 && chdir(argv[3]) != 0) {
    return wl_fail("chdir %s: %s", argv[3], strerror(errno));
  }
  char file[512], link[512], sock[512];
  snprintf(file, sizeof(file), "%s/path-file", argv[1]);
  snprintf(link, sizeof(link), "%s/path-link", argv[1]);
  snprintf(sock, sizeof(sock), "%s/path-sock", argv[1]);
  int w = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (w < 0 || write(w, "data", 4) != 4) return wl_fail("create %s: %s", file, strerror(errno));
  close(w);
  if (symlink("path-file", link) != 0) return wl_fail("symlink: %s", strerror(errno));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(sock) >= sizeof(addr.sun_path)) return wl_fail("socket path too long: %s", sock);
  memcpy(addr.sun_path, sock, strlen(sock) + 1);
  if (s < 0 || bind(s, (struct sockaddr*)&addr, sizeof(addr)) != 0) {
    return wl_fail("bind %s: %s", sock, strerror(errno));
  }
  close(s); /* the socket goes; its file stays */

  const char* names[kCount] = {file, argv[1], link, sock};
  const int flags[kCount] = {O_PATH, O_PATH | O_DIRECTORY, O_PATH | O_NOFOLLOW, O_PATH};
  int fds[kCount];
  struct stat before[kCount];
  int fl_before[kCount];
  for (int i = 0; i < kCount; ++i) {
    fds[i] = open(names[i], flags[i]);
    if (fds[i] < 0 || fstat(fds[i], &before[i]) != 0) return wl_fail("open %s: %s", names[i], strerror(errno));
    fl_before[i] = fcntl(fds[i], F_GETFL);
  }
  if (!S_ISLNK(before[2].st_mode)) return wl_fail("the symlink fd is not on the link");
  if (!S_ISSOCK(before[3].st_mode)) return wl_fail("the socket fd is not on a socket file");

  wl_ready();
  wl_wait_nap();

  for (int i = 0; i < kCount; ++i) {
    struct stat st;
    if (fstat(fds[i], &st) != 0) return wl_fail("fstat of fd %d (%s): %s", fds[i], names[i], strerror(errno));
    if (st.st_ino != before[i].st_ino || st.st_dev != before[i].st_dev) {
      return wl_fail("fd %d (%s) is inode %lu, was %lu", fds[i], names[i], (unsigned long)st.st_ino,
                     (unsigned long)before[i].st_ino);
    }
    int fl = fcntl(fds[i], F_GETFL);
    if (!(fl & O_PATH) || fl != fl_before[i]) {
      return wl_fail("fd %d (%s) has flags 0%o, was 0%o", fds[i], names[i], fl, fl_before[i]);
    }
  }
  char target[64] = {0};
  ssize_t n = readlinkat(fds[2], "", target, sizeof(target) - 1);
  if (n < 0 || strcmp(target, "path-file") != 0) {
    return wl_fail("readlinkat on the symlink fd: %s (%s)", n < 0 ? strerror(errno) : "wrong target", target);
  }
  struct stat via_dir;
  if (fstatat(fds[1], "path-file", &via_dir, 0) != 0 || via_dir.st_ino != before[0].st_ino) {
    return wl_fail("the directory fd does not resolve path-file");
  }
  char buf[8];
  if (read(fds[0], buf, sizeof(buf)) >= 0 || errno != EBADF) return wl_fail("an O_PATH fd can read");
  wl_say("OK %d O_PATH descriptors", kCount);
  return 0;
}
