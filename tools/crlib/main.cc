// crlib — the command line over the library.
#include <cstdio>
#include <cstring>
#include <string>

#include "crlib/version.h"

#include "tools/crlib/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: crlib COMMAND [ARGS]\n"
    "\n"
    "  dump --pid PID --image PATH|- [--leave-running] [--compress LEVEL] [--mappable] [--stopped]\n"
    "       [--track] [--parent IMAGE] [--tcp-established] [--deleted-file-limit BYTES]\n"
    "                           checkpoint a process (killed once the image is complete);\n"
    "                           --track: left running, its writes tracked for a later\n"
    "                           --parent dump, which stores only the pages written since;\n"
    "                           --tcp-established: carry established TCP connections,\n"
    "                           held still by a packet filter until the restore\n"
    "  restore --image PATH|- [--detach] [--lazy] [--trust-image] [--pid-ns] [--copy-pages]\n"
    "          [--inherit-fd KEY=FD]...\n"
    "                           restore a process tree; wait for its root, or print its pid\n"
    "                           and return (with --pid-ns: the init's pid and the root's);\n"
    "                           --lazy: it runs at once, its memory comes in on demand and in\n"
    "                           the background, and crlib returns once every page is in\n"
    "  restore --image PATH|- --check [--trust-image] [--inherit-fd KEY=FD]...\n"
    "                           check that the image would restore here; create nothing\n"
    "  inspect IMAGE [--json]   print an image as a tree (or as JSON)\n"
    "  check                    report the kernel interfaces crlib needs\n"
    "  demo                     checkpoint, kill and restore a sample process\n"
    "  version                  print the crlib version\n";

struct Command {
  const char* name;
  absl::StatusOr<int> (*run)(const crlib::cli::Args&);
};

constexpr Command kCommands[] = {
    {"dump", crlib::cli::DumpCommand},
    {"restore", crlib::cli::RestoreCommand},
    {"inspect", crlib::cli::InspectCommand},
    {"check", crlib::cli::CheckCommand},
    {"demo", crlib::cli::DemoCommand},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "-h")) {
    fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    printf("crlib %s\n", CRLIB_VERSION_STRING);
    return 0;
  }
  crlib::cli::Args args(argv + 2, argv + argc);
  for (const Command& c : kCommands) {
    if (strcmp(argv[1], c.name) != 0) continue;
    absl::StatusOr<int> result = c.run(args);
    if (!result.ok()) {
      fprintf(stderr, "crlib: error: %s\n", std::string(result.status().message()).c_str());
      return 1;
    }
    return *result;
  }
  fprintf(stderr, "crlib: error: unknown command '%s'\n%s", argv[1], kUsage);
  return 2;
}
