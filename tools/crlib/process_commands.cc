#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "core/context.h"
#include "core/status.h"
#include "task/checkpoint.h"
#include "task/restore.h"
#include "tools/crlib/commands.h"

namespace crlib::cli {
namespace {

// Options of the form "--name VALUE" or "--name=VALUE", and flags.
class ArgParser {
 public:
  explicit ArgParser(const Args& args) : args_(args) {}
  absl::Status Parse(const std::vector<std::string>& with_value, const std::vector<std::string>& flags) {
    for (size_t i = 0; i < args_.size(); ++i) {
      std::string a = args_[i], value;
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
      }
      if (std::find(flags.begin(), flags.end(), a) != flags.end() && eq == std::string::npos) {
        values_[a] = "1";
      } else if (std::find(with_value.begin(), with_value.end(), a) != with_value.end()) {
        if (eq == std::string::npos) {
          if (i + 1 >= args_.size()) return absl::InvalidArgumentError(a + " needs a value");
          value = args_[++i];
        }
        values_[a] = value;
      } else {
        return absl::InvalidArgumentError("unknown argument " + args_[i]);
      }
    }
    return absl::OkStatus();
  }
  std::string Get(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? "" : it->second;
  }
  bool Has(const std::string& name) const { return values_.contains(name); }

 private:
  const Args& args_;
  std::map<std::string, std::string> values_;
};

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

absl::StatusOr<int> DumpCommand(const Args& args) {
  ArgParser p(args);
  CRLIB_RETURN_IF_ERROR(p.Parse({"--pid", "--image", "--compress"}, {"--leave-running", "--mappable", "--stats"}));
  int pid = 0;
  if (!absl::SimpleAtoi(p.Get("--pid"), &pid) || pid <= 0) {
    return absl::InvalidArgumentError(
        "usage: crlib dump --pid PID --image PATH [--leave-running] [--compress LEVEL] [--mappable]");
  }
  if (p.Get("--image").empty()) return absl::InvalidArgumentError("dump: --image PATH is required");
  Options options;
  if (p.Has("--compress") && !absl::SimpleAtoi(p.Get("--compress"), &options.compression_level)) {
    return absl::InvalidArgumentError("--compress takes a zstd level (1-19)");
  }
  options.mappable = p.Has("--mappable");
  Context ctx(options);
  CRLIB_RETURN_IF_ERROR(CheckpointProcess(&ctx, pid, p.Get("--image"),
                                          {.leave_running = p.Has("--leave-running")}));
  if (p.Has("--stats")) {
    const Stats& s = ctx.stats();
    fprintf(stderr, "crlib: dump: %d bytes, %d pages stored (%d zero skipped), frozen %.2f ms, total %.2f ms\n",
            static_cast<int>(s.bytes), static_cast<int>(s.pages_stored), static_cast<int>(s.pages_zero),
            Ms(s.frozen_ns), Ms(s.total_ns));
  }
  return 0;
}

absl::StatusOr<int> RestoreCommand(const Args& args) {
  ArgParser p(args);
  CRLIB_RETURN_IF_ERROR(p.Parse({"--image"}, {"--detach", "--stats", "--trust-image"}));
  if (p.Get("--image").empty()) {
    return absl::InvalidArgumentError(
        "usage: crlib restore --image PATH [--detach] [--trust-image]");
  }
  Context ctx;
  CRLIB_ASSIGN_OR_RETURN(pid_t pid, RestoreProcess(&ctx, p.Get("--image"),
                                                   {.trust_image = p.Has("--trust-image")}));
  if (p.Has("--stats")) {
    fprintf(stderr, "crlib: restore: pid %d running after %.2f ms, %d pages loaded\n", pid,
            Ms(ctx.stats().total_ns), static_cast<int>(ctx.stats().pages_stored));
  }
  if (p.Has("--detach")) {
    printf("%d\n", pid);
    fflush(stdout);
    return 0;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Errno("waitpid(%d)", pid);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace crlib::cli
