// `crlib dump` and `crlib restore` on real processes: the workloads in
// tests/workloads/ are started, checkpointed, killed, restored with their
// PID, told to check themselves (SIGUSR1) and must answer OK. Plus the
// error paths: a missing PID, a PID in use, an image needing xsave features
// this CPU lacks, and a descriptor kind crlib does not support.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>

#include "core/image_format.h"
#include "core/records.h"
#include "sys/kernel.h"
#include "tests/hardware.h"
#include "tests/task/harness.h"
#include "tests/task/image_edit.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using CheckpointTest = WorkloadTest;

// A child of ours with PID `pid` (clone3 with set_tid; we are root) that
// pauses until killed, or -1.
pid_t HoldPid(pid_t pid) {
  long r = sys::CloneWithPid(pid);
  if (r == 0) {
    for (;;) syscall(SYS_pause);  // raw calls only: glibc did not fork us
  }
  return static_cast<pid_t>(r);
}

// In the image bytes, sets the last field of thread `tid`'s record
// (robust_list_length, docs/FORMAT.md) and repairs the checksums. False if
// the image has no such thread.
bool SetRobustListLength(std::string* image, pid_t tid, uint64_t length) {
  bool found = false;
  EditRecords(image, [&](const RecordHeader& h, uint8_t* payload) {
    uint32_t record_tid = 0;  // the first field
    if (h.type == static_cast<uint32_t>(RecordType::kThread) && h.length >= 16) {
      memcpy(&record_tid, payload, sizeof(record_tid));
    }
    if (record_tid == static_cast<uint32_t>(tid)) {
      memcpy(payload + h.length - sizeof(length), &length, sizeof(length));
      found = true;
    }
  });
  return found;
}


// ---- Round trips: dump (kill), restore, the process checks itself.

TEST_F(CheckpointTest, HeapChecksum) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// Every handler with its flags and mask, SIGTRAP's included.
TEST_F(CheckpointTest, SignalHandlers) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "signal_handlers"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(CheckpointTest, Avx512Registers) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingAvx512());
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "avx512_regs"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// Policy, priority, nice, RESET_ON_FORK, affinity and I/O priority of
// each of four threads.
TEST_F(CheckpointTest, Scheduling) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "scheduling"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(CheckpointTest, Nanosleep) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "nanosleep"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(CheckpointTest, PipeBuffer) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "pipe_buffer"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(CheckpointTest, PrivateFileMapping) {
  Workload w;
  const std::string file = Path("mapped.dat");
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "private_file_mapping", {WorkloadsDir() + "/private_file_mapping", file}));
  const std::string on_disk = Slurp(file);
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
  EXPECT_TRUE(Slurp(file) == on_disk) << file << " changed";
}

TEST_F(CheckpointTest, DeletedFile) {
  Workload w;
  const std::string file = Path("deleted.dat");
  ASSERT_NO_FATAL_FAILURE(Start(&w, "deleted_file", {WorkloadsDir() + "/deleted_file", file}));
  ASSERT_FALSE(Exists(file));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
  EXPECT_FALSE(Exists(file)) << "restore recreated the deleted file's name";
}

TEST_F(CheckpointTest, FileOffsets) {
  Workload w;
  const std::string file = Path("offsets.dat");
  std::string contents(8192, '\0');
  for (size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<char>('A' + (i * 7 + i / 26) % 26);
  std::ofstream(file, std::ios::binary) << contents;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "file_offset", {WorkloadsDir() + "/file_offset", file}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
  EXPECT_EQ(Slurp(file), contents + "appended after restore\n");
}

TEST_F(CheckpointTest, PythonInterpreter) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "python_worker", {"/usr/bin/python3", WorkloadsDir() + "/python_worker.py"}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(CheckpointTest, Threads) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// ---- --leave-running, and restoring one image more than once.

TEST_F(CheckpointTest, LeaveRunningKeepsRegistersLive) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingAvx512());
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "avx512_regs"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(CheckpointTest, LeaveRunningInsideASystemCall) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "nanosleep"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(CheckpointTest, LeaveRunningWithThreads) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(CheckpointTest, SameImageRestoresTwice) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  const std::string image = Path("twice.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string bytes = Slurp(image);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
  EXPECT_TRUE(Slurp(image) == bytes) << "the restore changed the image";
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// ---- Errors: one line, non-zero exit, nothing disturbed.

TEST_F(CheckpointTest, DumpOfMissingPidNamesIt) {
  // A PID that just ended (and was reaped): surely free right now.
  pid_t gone = fork();
  ASSERT_GE(gone, 0);
  if (gone == 0) _exit(0);
  int status;
  ASSERT_TRUE(WaitExit(gone, &status, kReapTimeout));
  ASSERT_EQ(kill(gone, 0), -1);
  ASSERT_EQ(errno, ESRCH);
  const std::string image = Path("missing.img");
  CliResult r = Crlib({"dump", "--pid", std::to_string(gone), "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, ContainsRegex(PidRegex(gone))) << r.err;
  EXPECT_FALSE(Exists(image));
}

TEST_F(CheckpointTest, RestoreRefusesPidInUse) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "heap_checksum"));
  const std::string image = Path("in_use.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image, /*leave_running=*/true));
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, ContainsRegex(PidRegex(w.pid))) << Describe(w, r);
  // Nothing new is left running: our only child is the original, which
  // still works (orphans of the restore would have come to us).
  EXPECT_EQ(OurChildren(), std::set<pid_t>{w.pid}) << PidText(OurChildren());
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

TEST_F(CheckpointTest, RestoreRefusesThreadIdInUse) {
  Workload w;
  std::vector<pid_t> tids;
  const std::string image = Path("threads.img");
  ASSERT_NO_FATAL_FAILURE(DumpThreads(&w, &tids, image));
  // The waiter's TID, taken by another process: the main PID is free.
  const pid_t holder = HoldPid(tids[1]);
  ASSERT_EQ(holder, tids[1]) << strerror(errno);
  spawned_.push_back(holder);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, ContainsRegex(PidRegex(tids[1]))) << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists after a refused restore";
  EXPECT_EQ(OurChildren(), std::set<pid_t>{holder}) << PidText(OurChildren());
  // Freed, the TID lets the same image restore.
  kill(holder, SIGKILL);
  int status;
  ASSERT_TRUE(WaitExit(holder, &status, kReapTimeout));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(CheckpointTest, FailedThreadStepKillsTheWholeProcess) {
  Workload w;
  std::vector<pid_t> tids;
  const std::string image = Path("threads.img");
  ASSERT_NO_FATAL_FAILURE(DumpThreads(&w, &tids, image));
  // A robust list length the kernel refuses, for the last thread: the
  // checks before the point of no return cannot see it, so the process and
  // two threads exist when it fails.
  std::string bytes = Slurp(image);
  ASSERT_TRUE(SetRobustListLength(&bytes, tids[2], 7));
  const std::string forged = Path("forged.img");
  std::ofstream(forged, std::ios::binary) << bytes;
  CliResult r = Crlib({"restore", "--image", forged});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("robust list")) << Describe(w, r);
  EXPECT_THAT(r.err, ContainsRegex(PidRegex(tids[2]))) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr("nothing left running")) << Describe(w, r);
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());
  for (pid_t tid : {w.pid, tids[0], tids[1], tids[2]}) {
    EXPECT_FALSE(Probe(tid).exists) << "tid " << tid << " exists after a failed restore";
  }
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(CheckpointTest, FailedDumpResumesEveryThreadAsItWas) {
  Workload w;
  // An image that does not fit its filesystem fails late: every thread has
  // been stopped, had its signals blocked and run remote calls by then.
  // The tmpfs is mounted in a mount namespace of our own, which the
  // workload started afterwards shares (crlib refuses a process in a
  // namespace other than its own).
  const std::string small = Path("small");
  ASSERT_EQ(mkdir(small.c_str(), 0700), 0) << strerror(errno);
  if (unshare(CLONE_NEWNS) != 0 ||
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mount("tmpfs", small.c_str(), "tmpfs", 0, "size=16k") != 0) {
    FAIL() << "cannot mount a small tmpfs (the test needs CAP_SYS_ADMIN): " << strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount(path.c_str()); }
  } unmount{small};
  ASSERT_NO_FATAL_FAILURE(Start(&w, "threads"));
  CliResult r = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", small + "/threads.img"});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("No space left")) << Describe(w, r);
  EXPECT_THAT(r.err, HasSubstr(small + "/threads.img")) << "the error names the image";
  EXPECT_TRUE(std::filesystem::is_empty(small)) << "a failed dump left a file";
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

TEST_F(CheckpointTest, RestoreRefusesXsaveFeaturesTheCpuLacks) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "nanosleep"));
  const std::string image = Path("real.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));

  const uint64_t xcr0 = Xcr0();
  const int bit = XsaveBitThisCpuLacks();
  std::string bytes = Slurp(image);
  uint64_t features = 0;
  if (bytes.size() >= 32) memcpy(&features, &bytes[24], 8);
  ASSERT_EQ(features & ~xcr0, 0u) << "the image already needs features this CPU lacks";
  ASSERT_TRUE(ForgeXsaveFeature(&bytes, bit)) << image << " is no image";
  memcpy(&features, &bytes[24], 8);
  const std::string forged = Path("forged.img");
  std::ofstream(forged, std::ios::binary) << bytes;

  CliResult r = Crlib({"restore", "--image", forged});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, ContainsRegex("[Xx][Ss][Aa][Vv][Ee]|[Ff][Ee][Aa][Tt][Uu][Rr][Ee]"))
      << "xsave_features " << std::hex << features << ", XCR0 " << xcr0 << ", bit " << std::dec
      << bit << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "pid " << w.pid << " exists after a refused restore";
  EXPECT_TRUE(OurChildren().empty()) << PidText(OurChildren());

  // The image as it was restores: the refusal was about the features.
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(CheckpointTest, DumpRefusesSocketsAndLeavesTheProcessRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "socket_holder"));
  const std::string image = Path("socket.img");
  CliResult r = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("is not supported")) << Describe(w, r);
  EXPECT_FALSE(Exists(image)) << "a refused dump left an image";
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_THAT(e.path().filename().string(), Not(StartsWith("socket.img")))
        << "a refused dump left a file";
  }
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

// A process in namespaces of its own would come back in the restorer's:
// refused, naming the namespace, before anything touches it.
TEST_F(CheckpointTest, DumpRefusesAnotherNamespace) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(
      Start(&w, "nanosleep", {"/usr/bin/unshare", "--uts", WorkloadsDir() + "/nanosleep"}));
  const std::string image = Path("uts.img");
  CliResult r = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("in another uts namespace than crlib")) << Describe(w, r);
  EXPECT_FALSE(Exists(image)) << "a refused dump left an image";
  ASSERT_NO_FATAL_FAILURE(ExpectRunningUntouched(w));
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
}

}  // namespace
}  // namespace crlib
