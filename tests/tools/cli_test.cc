// The crlib command line, run as a user would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "tests/core/sample_image.h"

namespace crlib {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CliResult {
  int exit_code;
  std::string out, err;
};

CliResult Crlib(const std::string& args) {
  const char* bin = getenv("CRLIB_BIN");
  std::string dir = ::testing::TempDir();
  std::string cmd = std::string(bin ? bin : "crlib") + " " + args + " >" + dir + "/cli.out 2>" +
                    dir + "/cli.err";
  int status = system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir + "/cli.out"),
          slurp(dir + "/cli.err")};
}

std::string WriteImage(const std::string& name, const std::vector<uint8_t>& image) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(image.data()), image.size());
  return path;
}

TEST(CliTest, InspectPrintsTree) {
  std::string path = WriteImage("cli.img", testing::BuildSampleImage(0));
  CliResult r = Crlib("inspect " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("process pid=4242"));
  EXPECT_EQ(r.err, "");
}

TEST(CliTest, InspectJson) {
  std::string path = WriteImage("cli.img", testing::BuildSampleImage(kImageCompressed));
  CliResult r = Crlib("inspect --json " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("{\"header\":"));
}

TEST(CliTest, CorruptImageIsOneLineError) {
  std::vector<uint8_t> image = testing::BuildSampleImage(0);
  image.resize(image.size() - 20);
  std::string path = WriteImage("cut.img", image);
  CliResult r = Crlib("inspect " + path);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, StartsWith("crlib: error: " + path + ": image truncated"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliTest, MissingFileAndBadUsage) {
  CliResult r = Crlib("inspect /nonexistent/image");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("crlib: error: open /nonexistent/image: No such file or directory"));
  r = Crlib("inspect");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, StartsWith("crlib: error: usage:"));
  r = Crlib("frobnicate");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, StartsWith("crlib: error: unknown command 'frobnicate'"));
}

TEST(CliTest, CheckProbesThisMachine) {
  CliResult r = Crlib("check");
  // CI runs as root on our kernel: everything crlib needs must be there.
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ok       ptrace seize, remote system calls"));
  EXPECT_THAT(r.out, HasSubstr("crlib can checkpoint and restore on this machine"));
}

TEST(CliTest, DemoShowsTheProcessContinuing) {
  CliResult r = Crlib("demo");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // The counter goes on after the restore from where it stopped.
  size_t restored = r.out.find("it continues:");
  ASSERT_NE(restored, std::string::npos) << r.out;
  size_t before = r.out.rfind("counter = ", restored);
  size_t after = r.out.find("counter = ", restored);
  ASSERT_NE(before, std::string::npos) << r.out;
  ASSERT_NE(after, std::string::npos) << r.out;
  int last = std::stoi(r.out.substr(before + 10));
  int next = std::stoi(r.out.substr(after + 10));
  EXPECT_EQ(next, last + 1) << r.out;
}

TEST(CliTest, DumpOfMissingPidIsOneLineError) {
  CliResult r = Crlib("dump --pid 999999999 --image " + ::testing::TempDir() + "/none.img");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err, "crlib: error: no process with pid 999999999\n");
  r = Crlib("dump --pid 12 --image");
  EXPECT_THAT(r.err, StartsWith("crlib: error: --image needs a value"));
}

}  // namespace
}  // namespace crlib
