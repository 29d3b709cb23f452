// Thread state the kernel keeps out of ptrace's plain view, round-tripped
// through `crlib dump` and `crlib restore` on real processes: AMX tiles
// (a dynamic xstate feature, which needs the process's permission and a
// first use before ptrace may load it) and the real signal mask of a
// thread waiting under a temporary one (sigsuspend, ppoll, pselect6).

#include <asm/prctl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include "core/records.h"
#include "tests/hardware.h"
#include "tests/task/harness.h"
#include "tests/task/image_edit.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using CpuStateTest = WorkloadTest;

// Tiles of two threads come back; a thread that had the permission but
// no tile state uses tiles after the restore.
TEST_F(CpuStateTest, AmxTiles) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingAmx());
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "amx_tiles"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(CpuStateTest, AmxTilesLeaveRunning) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingAmx());
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "amx_tiles"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

// An image whose process was permitted an xsave feature this kernel does
// not offer is refused before anything is created, naming the feature.
TEST_F(CpuStateTest, RestoreRefusesPermittedFeaturesTheKernelLacks) {
  uint64_t offered = 0;
  ASSERT_EQ(syscall(SYS_arch_prctl, ARCH_GET_XCOMP_SUPP, &offered), 0) << strerror(errno);
  int bit = 63;
  while (bit > 2 && (offered & (uint64_t{1} << bit))) --bit;
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "nanosleep"));
  const std::string image = Path("real.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  std::string bytes = Slurp(image);
  uint64_t recorded = 0;
  EXPECT_EQ(EditRecordsOfType<ProcessAttributesRecord>(&bytes,
                                                      [&](ProcessAttributesRecord* a) {
                                                        recorded = a->xfeatures_permitted;
                                                        a->xfeatures_permitted |= uint64_t{1} << bit;
                                                      }),
            1);
  EXPECT_EQ(recorded & ~offered, 0u) << "the dump recorded features the kernel does not offer";
  EXPECT_NE(recorded & 3, 0u) << "the dump recorded no permitted features (x87, SSE are always)";
  const std::string forged = Path("forged.img");
  std::ofstream(forged, std::ios::binary) << bytes;
  CliResult r = Crlib({"restore", "--image", forged});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("does not offer")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("bit" + std::to_string(bit))) << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists after a refused restore";
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// Threads in sigsuspend, ppoll, pselect6 and epoll_pwait under temporary masks come
// back with their real masks, and a signal the temporary mask held back
// runs its handler once.
TEST_F(CpuStateTest, TemporarySignalMasks) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sigsuspend_mask", {WorkloadsDir() + "/sigsuspend_mask", "epoll"}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// A dump that leaves the process running leaves each thread its real
// mask (the remote calls of a dump used to make the temporary one
// permanent), and the image restores too.
TEST_F(CpuStateTest, TemporarySignalMasksLeaveRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sigsuspend_mask", {WorkloadsDir() + "/sigsuspend_mask", "epoll"}));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

}  // namespace
}  // namespace crlib
