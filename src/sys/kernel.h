// Kernel interfaces newer than the build machine's headers (Debian 12 ships
// 6.1 headers; we run on 6.18), defined once, with the kernel's values.
#ifndef CRLIB_SYS_KERNEL_H_
#define CRLIB_SYS_KERNEL_H_

#include <linux/types.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>

namespace crlib::sys {

// A device number as the kernel encodes it internally (major << 20 |
// minor), which sock_diag and inotify's fdinfo show, as stat(2) gives it.
inline dev_t UserDev(uint64_t kernel_dev) {
  return makedev(static_cast<unsigned>(kernel_dev >> 20),
                 static_cast<unsigned>(kernel_dev & 0xfffff));
}

// PTRACE_GET_RSEQ_CONFIGURATION (5.13) and its result.
inline constexpr int kPtraceGetRseqConfiguration = 0x420f;
struct PtraceRseqConfiguration {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};
inline constexpr int kRseqFlagUnregister = 1;

// PAGEMAP_SCAN (6.7), include/uapi/linux/fs.h.
inline constexpr uint64_t kPageIsWpAllowed = 1 << 0;
inline constexpr uint64_t kPageIsWritten = 1 << 1;
inline constexpr uint64_t kPageIsFile = 1 << 2;
inline constexpr uint64_t kPageIsPresent = 1 << 3;
inline constexpr uint64_t kPageIsSwapped = 1 << 4;
inline constexpr uint64_t kPageIsPfnZero = 1 << 5;
inline constexpr uint64_t kPageIsHuge = 1 << 6;
inline constexpr uint64_t kPageIsSoftDirty = 1 << 7;
inline constexpr uint64_t kPageIsGuard = 1 << 8;  // 6.14: a guard region (MADV_GUARD_INSTALL)
struct PageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};
struct PmScanArg {
  uint64_t size;  // sizeof(PmScanArg)
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
inline constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
// PmScanArg::flags: write-protect the pages that match (atomically with
// reporting them), and fail (EPERM) on a VMA not registered for async
// write-protect.
inline constexpr uint64_t kPmScanWpMatching = 1 << 0;
inline constexpr uint64_t kPmScanCheckWpAsync = 1 << 1;

// userfaultfd asynchronous write-protect (6.7).
inline constexpr uint64_t kUffdFeatureWpUnpopulated = 1 << 13;
inline constexpr uint64_t kUffdFeatureWpAsync = 1 << 15;

// /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
inline constexpr uint64_t kPagemapPresent = uint64_t{1} << 63;
inline constexpr uint64_t kPagemapSwapped = uint64_t{1} << 62;
inline constexpr uint64_t kPagemapFileOrShared = uint64_t{1} << 61;
// 6.14: a guard region; the swapped bit is set too (the marker is a swap entry).
inline constexpr uint64_t kPagemapGuardRegion = uint64_t{1} << 58;

// Guard regions (6.13): pages whose access raises SIGSEGV, held in the
// page tables, not in the VMA (include/uapi/asm-generic/mman-common.h).
inline constexpr int kMadvGuardInstall = 102;
inline constexpr int kMadvGuardRemove = 103;

// memfd exec control (6.3): memfd_create flags and the seal that keeps
// the mode's exec bits.
inline constexpr unsigned kMfdNoexecSeal = 0x0008;
inline constexpr unsigned kMfdExec = 0x0010;
inline constexpr int kFSealExec = 0x0020;

// clone3 arguments up to set_tid (5.5).
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};

// A fork-like clone3 whose child gets PID `pid` (set_tid; needs
// CAP_SYS_ADMIN over the PID namespace). Returns as fork() does, with
// errno set on failure (EEXIST: the PID is in use). The child is a copy
// glibc did not fork: it may only make raw system calls.
inline long CloneWithPid(pid_t pid) {
  pid_t want = pid;
  CloneArgs args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  return syscall(SYS_clone3, &args, sizeof(args));
}

// pidfd_open(PIDFD_THREAD) (6.9): a pidfd of one thread, not of its
// thread group; O_EXCL in the pidfd's file flags.
inline constexpr int kPidfdThread = 0200;

// Kernel-internal syscall return values a stopped task may show in rax
// (include/linux/errno.h); user space never sees them.
inline constexpr int64_t kErestartSys = -512;
inline constexpr int64_t kErestartNoIntr = -513;
inline constexpr int64_t kErestartNoHand = -514;
inline constexpr int64_t kErestartRestartBlock = -516;

// prctl(PR_TIMER_CREATE_RESTORE_IDS) (6.15): while ON, timer_create()
// reads the ID the new timer must get from its timer_t argument (EBUSY if
// taken). Per process; restore turns it OFF again.
inline constexpr int kPrTimerCreateRestoreIds = 77;
inline constexpr int kPrTimerCreateRestoreIdsOff = 0;
inline constexpr int kPrTimerCreateRestoreIdsOn = 1;
inline constexpr int kPrTimerCreateRestoreIdsGet = 2;

// membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) (6.3): the
// MEMBARRIER_CMD_REGISTER_* bits the calling process has registered.
inline constexpr int kMembarrierCmdGetRegistrations = 1 << 9;

// PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG (6.4) and its result.
inline constexpr int kPtraceGetSyscallUserDispatchConfig = 0x4211;
struct PtraceSudConfig {
  uint64_t mode;  // PR_SYS_DISPATCH_OFF (0) / ON
  uint64_t selector;
  uint64_t offset;
  uint64_t len;
};
// sched_setattr(2)/sched_getattr(2): glibc 2.36 has no wrapper nor struct.
// The kernel's struct sched_attr up to the utilization clamps (56 bytes).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};
static_assert(sizeof(SchedAttr) == 56);
inline constexpr uint32_t kSchedDeadline = 6;
inline constexpr uint64_t kSchedFlagResetOnFork = 0x01;
inline constexpr uint64_t kSchedFlagUtilClampMin = 0x20;
inline constexpr uint64_t kSchedFlagUtilClampMax = 0x40;
// ioprio_get(2)/ioprio_set(2): the class is the top 3 bits of 16.
inline constexpr int kIoprioWhoProcess = 1;
inline constexpr int kIoprioClassShift = 13;
inline constexpr int kIoprioClassRt = 1;

// Filesystem magics (statfs f_type) of files that are not data by path.
inline constexpr uint64_t kMqueueMagic = 0x19800202;     // POSIX message queues
inline constexpr uint64_t kSecretmemMagic = 0x5345434d;  // memfd_secret (5.14)

// prctl options newer than the 6.1 headers.
inline constexpr int kPrGetMdwe = 66;  // 6.3: memory-deny-write-execute

// TFD_IOC_SET_TICKS (3.17, CONFIG_CHECKPOINT_RESTORE): only
// <linux/timerfd.h> has it, which clashes with glibc's <sys/timerfd.h>.
inline constexpr unsigned long kTfdIocSetTicks = _IOW('T', 0, __u64);

}  // namespace crlib::sys

#endif  // CRLIB_SYS_KERNEL_H_
