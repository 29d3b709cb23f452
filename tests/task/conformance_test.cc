// Kinds of state nobody else's tests own, through `crlib dump` and `crlib
// restore` with the conformance workload (tests/workloads/conformance.c):
// each is either carried (the restored process checks itself OK) or
// refused at dump with one line naming it, the process left running
// untouched (it then still checks itself OK). Never restored different.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/hardware.h"
#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

class ConformanceTest : public WorkloadTest {
 protected:
  void StartConformance(Workload* w, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {WorkloadsDir() + "/conformance"};
    argv.insert(argv.end(), args.begin(), args.end());
    ASSERT_NO_FATAL_FAILURE(Start(w, "conformance", argv));
  }

  // The conformance workload with `args`, whose dump must be refused
  // naming `reason` (ExpectDumpRefused).
  void ExpectRefused(const std::vector<std::string>& args, const std::string& reason) {
    Workload w;
    ASSERT_NO_FATAL_FAILURE(StartConformance(&w, args));
    ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, reason));
  }
};

TEST_F(ConformanceTest, DumpRefusesProtectionKeyAndLeavesTheProcessRunning) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingProtectionKeys());
  ExpectRefused({"pkey"}, "is protected by memory protection key 1 (pkey_mprotect)");
}

// A key held by no mapping shows only in PKRU (the rights pkey_alloc gave it).
TEST_F(ConformanceTest, DumpRefusesHeldProtectionKeyAndLeavesTheProcessRunning) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingProtectionKeys());
  ExpectRefused({"pkey_held"}, "has protection key rights of its own (PKRU 0x55555550, not 0x55555554");
}

// An io_uring's rings outlive its closed fd: nothing could reopen them.
TEST_F(ConformanceTest, DumpRefusesIoUringRingMappingAndLeavesTheProcessRunning) {
  ExpectRefused({"ring"}, "anon_inode:[io_uring] is not supported: it is an io_uring ring");
}

// PR_GET_AUXV (the kernel's saved copy) equals what it said before.
TEST_F(ConformanceTest, AuxvRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartConformance(&w, {"auxv"}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(ConformanceTest, DumpRefusesSealedMappingAndLeavesTheProcessRunning) {
  ExpectRefused({"mseal"}, "it is sealed (mseal)");
}

TEST_F(ConformanceTest, DumpRefusesTaskMemoryPolicyAndLeavesTheProcessRunning) {
  ExpectRefused({"numa_task"}, "has a NUMA memory policy (bind:0 at 0x");
}

// Only the second thread's own numa_maps shows its task policy.
TEST_F(ConformanceTest, DumpRefusesOtherThreadsMemoryPolicyAndLeavesTheProcessRunning) {
  ExpectRefused({"numa_thread"}, "has a NUMA memory policy (bind:0 at 0x");
}

TEST_F(ConformanceTest, DumpRefusesMappingMemoryPolicyAndLeavesTheProcessRunning) {
  ExpectRefused({"numa_vma"}, "has a NUMA memory policy (prefer:0 at 0x");
}

TEST_F(ConformanceTest, DumpRefusesTscSigsegvAndLeavesTheProcessRunning) {
  ExpectRefused({"tsc"}, "cannot read the time stamp counter (PR_SET_TSC, PR_TSC_SIGSEGV)");
}

TEST_F(ConformanceTest, DumpRefusesTscSigsegvInOtherThreadAndLeavesTheProcessRunning) {
  ExpectRefused({"tsc_thread"}, "cannot read the time stamp counter (PR_SET_TSC, PR_TSC_SIGSEGV)");
}

TEST_F(ConformanceTest, DumpRefusesMdweAndLeavesTheProcessRunning) {
  ExpectRefused({"mdwe"}, "denies itself writable executable memory (PR_SET_MDWE, flags 0x1)");
}

TEST_F(ConformanceTest, DumpRefusesStoreBypassControlAndLeavesTheProcessRunning) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingSpeculationControl(PR_SPEC_STORE_BYPASS));
  ExpectRefused({"spec_ssb"}, "(Speculation_Store_Bypass: thread mitigated, PR_SET_SPECULATION_CTRL)");
}

TEST_F(ConformanceTest, DumpRefusesIndirectBranchControlAndLeavesTheProcessRunning) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingSpeculationControl(PR_SPEC_INDIRECT_BRANCH));
  ExpectRefused({"spec_ib"},
                "(SpeculationIndirectBranch: conditional disabled, PR_SET_SPECULATION_CTRL)");
}

TEST_F(ConformanceTest, DumpRefusesMceKillPolicyAndLeavesTheProcessRunning) {
  ExpectRefused({"mce"}, "has a memory-failure kill policy of its own (PR_MCE_KILL, early)");
}

TEST_F(ConformanceTest, DumpRefusesSyscallUserDispatchAndLeavesTheProcessRunning) {
  // Refused by the seccomp capture (src/task/attributes.cc).
  ExpectRefused({"sud"}, "uses syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH)");
}

TEST_F(ConformanceTest, DumpRefusesSignalDrivenIoAndLeavesTheProcessRunning) {
  ExpectRefused({"async"}, "has O_ASYNC set (signal-driven I/O), and its owner and signal");
}

// /dev/kvm without a VM is a character device like /dev/null: reopened.
TEST_F(ConformanceTest, KvmDeviceRoundTrip) {
  CRLIB_SKIP_WITHOUT_HARDWARE(MissingKvm());
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartConformance(&w, {"fd", "kvm"}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// Descriptors of kinds crlib does not carry, each on fd 10: the reason
// the dump must name.
struct FdKind {
  const char* kind;
  const char* reason;
};

class RefusedFdTest : public ConformanceTest, public ::testing::WithParamInterface<FdKind> {};

TEST_P(RefusedFdTest, DumpRefusesAndLeavesTheProcessRunning) {
  ExpectRefused({"fd", GetParam().kind}, GetParam().reason);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, RefusedFdTest,
    ::testing::Values(
        // eventfd, signalfd, timerfd, epoll and inotify are restored:
        // tests/task/event_objects_test.cc.
        FdKind{"fanotify", "fd 10 (anon_inode:[fanotify]) is not supported: it is a fanotify group"},
        FdKind{"pidfd", "fd 10 (anon_inode:[pidfd]) is not supported: a pidfd of pid "},
        FdKind{"userfaultfd", "fd 10 (anon_inode:[userfaultfd]) is not supported"},
        FdKind{"io_uring", "fd 10 (anon_inode:[io_uring]) is not supported: it is an io_uring instance"},
        FdKind{"perf_event", "fd 10 (anon_inode:[perf_event]) is not supported"},
        FdKind{"bpf_map", "fd 10 (anon_inode:bpf-map) is not supported"},
        FdKind{"socket", "netlink sockets are not carried"},
        // Regular files by mode, told apart by their filesystem: neither
        // reopened by path nor saved as a deleted file.
        FdKind{"mqueue", "is not supported: it is a POSIX message queue (mq_open)"},
        FdKind{"memfd_secret",
               "fd 10 (/secretmem (deleted)) is not supported: it is memfd_secret memory"}),
    [](const ::testing::TestParamInfo<FdKind>& info) { return std::string(info.param.kind); });

}  // namespace
}  // namespace crlib
