// `crlib restore --check` (crlib_restore with CRLIB_RESTORE_CHECK_ONLY):
// everything a restore does before its point of no return, and nothing
// after. Each refusal is one line naming the problem, and leaves no
// process; an image that passes restores. A dump runs the same checks on
// its own image and does not kill the process when they fail.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/hardware.h"
#include "tests/task/harness.h"
#include "tests/task/image_edit.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

class RestoreCheckTest : public WorkloadTest {
 protected:
  // `crlib restore --check` of `image` refused, naming `what`, with
  // nothing created.
  void ExpectRefused(const Workload& w, const std::string& image, const std::string& what) {
    CliResult r = Crlib({"restore", "--image", image, "--check"});
    ExpectOneLineError(r);
    EXPECT_THAT(r.err, HasSubstr(what)) << Describe(w, r);
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  }

  // The check passes, says so on stdout with the PID, and creates nothing.
  void ExpectRestorable(const Workload& w, const std::vector<std::string>& args,
                        int stdin_fd = -1) {
    CliResult r = Finish(StartCli(args, stdin_fd), kCliTimeout);
    EXPECT_EQ(r.exit_code, 0) << Describe(w, r);
    EXPECT_THAT(r.out, HasSubstr("restorable here: pid " + std::to_string(w.pid) + ","))
        << Describe(w, r);
    EXPECT_TRUE(r.err.empty()) << r.err;
    EXPECT_FALSE(Probe(w.pid).exists) << "--check created pid " << w.pid;
    EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  }
};

TEST_F(RestoreCheckTest, GoodImagePassesAndThenRestores) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
  const std::string image = Path("threads.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(ExpectRestorable(w, {"restore", "--image", image, "--check"}));
  EXPECT_THAT(Finish(StartCli({"restore", "--image", image, "--check"}), kCliTimeout).out,
              ContainsRegex("4 threads, [0-9]+ mappings, [0-9]+ fds, [1-9][0-9]* pages"));
  // From a stream too: the page data is read and verified to the end.
  const int in = open(image.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(in, 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(ExpectRestorable(w, {"restore", "--image", "-", "--check"}, in));
  close(in);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// One flipped byte in the page data, which a restore reads only after its
// point of no return: --check reads it all.
TEST_F(RestoreCheckTest, CorruptPageDataIsFound) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum", {WorkloadsDir() + "/heap_checksum", "8"}));
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  std::string bytes = Slurp(image);
  ASSERT_GT(bytes.size(), 1u << 20);
  bytes[bytes.size() - 100000] ^= 0x40;  // well inside the pages, which come last
  const std::string corrupt = Path("corrupt.img");
  std::ofstream(corrupt, std::ios::binary) << bytes;
  ASSERT_EQ(chmod(corrupt.c_str(), 0600), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectRefused(w, corrupt, "checksum"));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// A file the process had open is gone: named, before anything exists.
TEST_F(RestoreCheckTest, MissingFileIsNamed) {
  Workload w;
  const std::string file = Path("offsets.dat");
  std::ofstream(file, std::ios::binary) << std::string(8192, 'x');
  ASSERT_NO_FATAL_FAILURE(Start(&w, "file_offset", {WorkloadsDir() + "/file_offset", file}));
  const std::string image = Path("offsets.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(ExpectRestorable(w, {"restore", "--image", image, "--check"}));
  const std::string moved = Path("moved.dat");
  ASSERT_EQ(rename(file.c_str(), moved.c_str()), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(ExpectRefused(w, image, file));
  ASSERT_EQ(rename(moved.c_str(), file.c_str()), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// The process still runs (dumped with --leave-running): its PID is taken.
TEST_F(RestoreCheckTest, TakenPidIsNamed) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "nanosleep"));
  const std::string image = Path("nanosleep.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image, /*leave_running=*/true));
  CliResult r = Crlib({"restore", "--image", image, "--check"});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("pid " + std::to_string(w.pid) + " is in use")) << Describe(w, r);
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
  ASSERT_TRUE(WaitFor([&] { return !Probe(w.pid).exists; }, kReapTimeout));
  ASSERT_NO_FATAL_FAILURE(ExpectRestorable(w, {"restore", "--image", image, "--check"}));
}

// An image from a CPU with an xstate component this one lacks (forged in
// the header, checksum repaired).
TEST_F(RestoreCheckTest, CpuFeatureMismatchIsNamed) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingAvx512());
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "avx512_regs"));
  const std::string image = Path("avx.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  std::string bytes = Slurp(image);
  ASSERT_TRUE(ForgeXsaveFeature(&bytes, XsaveBitThisCpuLacks()));
  const std::string forged = Path("forged.img");
  std::ofstream(forged, std::ios::binary) << bytes;
  ASSERT_EQ(chmod(forged.c_str(), 0600), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectRefused(w, forged, "xsave features"));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

}  // namespace
}  // namespace crlib
