#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "core/byte_stream.h"
#include "cr/inspect.h"
#include "core/status.h"
#include "tools/crlib/commands.h"

namespace crlib::cli {

absl::StatusOr<int> InspectCommand(const Args& args) {
  InspectOptions options;
  std::string path;
  for (const std::string& a : args) {
    if (a == "--json") {
      options.json = true;
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      return absl::InvalidArgumentError("inspect: unknown option " + a);
    } else if (path.empty()) {
      path = a;
    } else {
      return absl::InvalidArgumentError("inspect: more than one image given");
    }
  }
  if (path.empty()) return absl::InvalidArgumentError("usage: crlib inspect IMAGE [--json]");
  int fd = path == "-" ? dup(STDIN_FILENO) : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open %s", path);
  FdSource source(fd);
  std::string out;
  absl::Status st = InspectImage(&source, options, &out);
  close(fd);
  if (!st.ok()) return Annotate(st, path);
  fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace crlib::cli
