// The `crlib` subcommands. Each returns the process exit status; errors are
// reported by main() as one line, "crlib: error: <message>".
#ifndef CRLIB_TOOLS_CRLIB_COMMANDS_H_
#define CRLIB_TOOLS_CRLIB_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace crlib::cli {

using Args = std::vector<std::string>;

absl::StatusOr<int> InspectCommand(const Args& args);
absl::StatusOr<int> DumpCommand(const Args& args);
absl::StatusOr<int> RestoreCommand(const Args& args);
absl::StatusOr<int> CheckCommand(const Args& args);
absl::StatusOr<int> DemoCommand(const Args& args);

}  // namespace crlib::cli

#endif  // CRLIB_TOOLS_CRLIB_COMMANDS_H_
