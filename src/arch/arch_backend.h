// The contract every CPU family implements, declared once (linux-cr's
// cr_write_cpu / cr_read_cpu_fpu). Each family lives in its own folder and
// is listed in the table in arch_backend.cc, so a static link can never
// drop one silently.
#ifndef CRLIB_ARCH_ARCH_BACKEND_H_
#define CRLIB_ARCH_ARCH_BACKEND_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/image_format.h"
#include "core/image_reader.h"
#include "core/image_writer.h"

namespace crlib {

// A thread's general registers as the kernel's NT_PRSTATUS regset; large
// enough for every family. Only the backend interprets the words.
struct ArchRegs {
  std::array<uint64_t, 64> words{};
  size_t size = 0;  // bytes the kernel reported
};

// All methods are const and thread-safe; a backend holds no state.
class ArchBackend {
 public:
  virtual ~ArchBackend() = default;

  virtual CpuFamily family() const = 0;
  // Name of xstate component `index` ("avx", "pkru"), or nullptr if unknown.
  virtual const char* ComponentName(int index) const = 0;
  // "x87 sse avx" for a component mask; unknown bits as "bitN".
  std::string DescribeComponents(uint64_t mask) const;

  // Facts about this CPU for the image header.
  virtual uint64_t HostXsaveFeatures() const = 0;
  virtual uint32_t HostXsaveSize() const = 0;
  // OK when an image with this header can run on this CPU; otherwise a
  // FailedPrecondition naming what is missing.
  virtual absl::Status CheckImage(const ImageInfo& info) const = 0;

  // Dynamic xstate features: state the kernel gives a process only after
  // it asked for permission, and allocates for a thread only at its first
  // use (x86-64: AMX tile data, arch_prctl(ARCH_REQ_XCOMP_PERM) and XFD).
  // A thread restored with such state needs both before its xstate can be
  // loaded. Features are bits as in the xsave feature mask.
  //
  // The features the kernel lets a process of this machine have, with or
  // without asking (0: the family has no such permissions).
  virtual uint64_t HostPermittableFeatures() const = 0;
  // Those of them the kernel may allocate at first use only (x86-64: the
  // components CPUID leaf 0xD marks XFD-capable). A superset of the
  // features a process must ask for.
  virtual uint64_t HostDynamicFeatures() const = 0;
  // The remote call, in a thread of the process, that stores the
  // process's permitted features (8 bytes) at `out`; nr -1 where the
  // family has no such call.
  struct CallSpec {
    long nr = -1;
    std::array<uint64_t, 6> args{};
  };
  virtual CallSpec GetPermittedFeaturesCall(uint64_t out) const = 0;
  // The remote call that asks permission for feature `index` for the
  // calling thread's process (all its threads, present and future).
  virtual CallSpec RequestFeatureCall(int index) const = 0;
  // Code that uses `features` once in the thread running it, so that the
  // kernel gives the thread room for their state (x86-64: an XRSTOR of
  // their init state, whose XFD fault the kernel answers by growing the
  // thread's buffer), then stops at a breakpoint. Run like the batch code
  // (SetBatchCall), the table argument pointing at kFirstUseDataBytes of
  // zeroes, 64-byte aligned. Without the permission the thread gets a
  // SIGILL instead.
  static constexpr size_t kFirstUseDataBytes = 576;
  virtual std::vector<uint8_t> FirstUseCode(uint64_t features) const = 0;

  // Remote system calls: the bytes of one system call instruction, and how
  // to load registers for `nr(args)` executed at `ip`.
  virtual absl::Span<const uint8_t> SyscallInstruction() const = 0;
  virtual void SetSyscall(ArchRegs* regs, uint64_t ip, long nr,
                          const std::array<uint64_t, 6>& args) const = 0;
  virtual int64_t SyscallResult(const ArchRegs& regs) const = 0;
  virtual uint64_t StackPointer(const ArchRegs& regs) const = 0;
  virtual uint64_t InstructionPointer(const ArchRegs& regs) const = 0;
  // The system call the thread was stopped in, or -1.
  virtual int64_t InterruptedSyscall(const ArchRegs& regs) const = 0;
  // For a thread stopped inside the system call `regs` names, or at its
  // entry: the registers that make it call it again, as the kernel
  // restarts an interrupted call (the instruction pointer back on the
  // system call instruction, the call's number loaded), with no call in
  // progress that anything would restart a second time.
  virtual ArchRegs CallAgain(const ArchRegs& regs) const = 0;
  // The same registers as a thread stopped inside that call, interrupted
  // before it completed: what the kernel, RestoreCpu and a recovering
  // site restart when it resumes (x86-64: result -ERESTARTNOHAND).
  virtual ArchRegs Interrupted(const ArchRegs& regs) const = 0;

  // A call site that recovers by itself, for remote calls in a process
  // that must survive its tracer dying mid-call (a dump): a system call
  // instruction at offset 0, then code that puts back the thread's blocked
  // signals `sigmask` and registers `regs` and continues where `regs` left
  // off, restarting an interrupted system call as the kernel would. The
  // bytes (code and data, kRecoveringSiteBytes, position-independent) go
  // in executable memory of the thread's process, which the code only
  // reads; it uses 16 bytes of writable stack below `stack_top`. A thread
  // released at this site by a dead tracer finishes the call it was given
  // and returns to its own state; a live tracer never lets it past the
  // call. With `close_result`, a close() of the call's result follows it
  // (a second system call): a descriptor made in the process for crlib to
  // take (pidfd_getfd) never outlives crlib there.
  static constexpr size_t kRecoveringSiteBytes = 336;
  virtual std::vector<uint8_t> RecoveringSyscallSite(const ArchRegs& regs, uint64_t sigmask,
                                                     uint64_t stack_top,
                                                     bool close_result = false) const = 0;
  // Whether `bytes` begin like a RecoveringSyscallSite's: one an earlier,
  // interrupted dump left behind.
  virtual bool IsRecoveringSite(absl::Span<const uint8_t> bytes) const = 0;
  // For a thread with registers `regs` inside recovering site `site` (its
  // bytes, at address `at`), not stopped at a system call's entry: once
  // the site's system calls are all done, the registers its remaining code
  // gives the thread (where it continues, as the site recorded it); before
  // that, nullopt (run it to its next system call's exit and ask again).
  virtual std::optional<ArchRegs> RecoveringSiteEnd(absl::Span<const uint8_t> site, uint64_t at,
                                                    const ArchRegs& regs) const = 0;

  // Remote system calls in bulk (Tracee::SyscallBatch): position-
  // independent code that runs the calls of a table one after the other,
  // stops after the first that fails, and ends with a breakpoint; and how
  // to point a thread's registers at it. A table entry is 8 words: number,
  // six arguments, result; a number of -1 ends the table.
  virtual absl::Span<const uint8_t> BatchSyscallCode() const = 0;
  virtual void SetBatchCall(ArchRegs* regs, uint64_t code, uint64_t table) const = 0;
  // Makes `regs`, of a thread stopped inside a system call, those of a
  // thread that call has just returned `value` to: the result in place,
  // the instruction pointer after the call, and nothing that would make
  // RestoreCpu or the kernel restart it. FailedPrecondition, `regs`
  // untouched, unless the thread is inside a call that has not completed
  // (one the stop interrupted, due to restart): a completed call's result
  // is real and must not be replaced.
  virtual absl::Status SetSyscallResult(ArchRegs* regs, int64_t value) const = 0;

  // Writes the CPU records of a ptrace-stopped thread (registers `regs`,
  // xstate read from the kernel) with `thread` as their parent.
  virtual absl::Status CaptureCpu(pid_t tid, const ArchRegs& regs, ImageWriter* writer,
                                  ObjectRef thread) const = 0;
  // Checks the CPU records of one thread before anything is restored.
  virtual absl::Status CheckCpu(absl::Span<const Record> records) const = 0;
  // Loads the xstate of `records` into ptrace-stopped thread `tid` and
  // returns the registers to set last. A thread stopped inside a system
  // call resumes as a signal would leave it: the call restarts, or fails
  // with EINTR where the kernel's restart state cannot be rebuilt.
  virtual absl::StatusOr<ArchRegs> RestoreCpu(pid_t tid,
                                              absl::Span<const Record> records) const = 0;
};

// The backend for `family`, or nullptr when this build has none.
const ArchBackend* FindArchBackend(CpuFamily family);
// The backend of the CPU this code runs on.
const ArchBackend& HostArchBackend();

}  // namespace crlib

#endif  // CRLIB_ARCH_ARCH_BACKEND_H_
