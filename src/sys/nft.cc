#include "sys/nft.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "sys/unique_fd.h"

extern char** environ;

namespace crlib::sys {

absl::Status RunNft(const std::string& script) {
  std::string nft;
  for (const char* path : {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"}) {
    if (access(path, X_OK) == 0) {
      nft = path;
      break;
    }
  }
  if (nft.empty()) {
    return absl::FailedPreconditionError(
        "nft (Debian package nftables) is not installed; it holds TCP connections still between "
        "a dump and its restore");
  }
  // The script on stdin, nft's complaints in a pipe of their own.
  int in[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Errno("pipe2");
  UniqueFd in_read(in[0]), in_write(in[1]);
  if (pipe2(err, O_CLOEXEC) != 0) return Errno("pipe2");
  UniqueFd err_read(err[0]), err_write(err[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.fd, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, err_write.fd, 2);
  // The caller may block signals; nft starts with none blocked.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  char* argv[] = {nft.data(), const_cast<char*>("-f"), const_cast<char*>("-"), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, nft.c_str(), &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return ErrnoError(rc, absl::StrCat("posix_spawn ", nft));
  in_read = UniqueFd();
  err_write = UniqueFd();
  // The script is small: it fits in the pipe, so writing cannot block on
  // nft before we read its errors.
  const bool written = write(in_write.fd, script.data(), script.size()) ==
                       static_cast<ssize_t>(script.size());
  in_write = UniqueFd();
  std::string complaint;
  char buf[4096];
  for (ssize_t n; (n = read(err_read.fd, buf, sizeof(buf))) > 0;) complaint.append(buf, static_cast<size_t>(n));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!written) return absl::InternalError("writing the ruleset to nft");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrFormat(
        "nft failed (%s): %s", WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status)) : "killed",
        absl::StripAsciiWhitespace(complaint)));
  }
  return absl::OkStatus();
}

}  // namespace crlib::sys
