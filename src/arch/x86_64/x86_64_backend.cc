#include "arch/x86_64/x86_64_backend.h"

#include <asm/prctl.h>
#include <cpuid.h>
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/kernel.h"

namespace crlib {
namespace {

// XSAVE state components, by their bit in XCR0 / IA32_XSS (Intel SDM vol. 1,
// 13.1).
constexpr const char* kComponentNames[] = {
    "x87",       "sse",      "avx",   "bndregs", "bndcsr",       "opmask",
    "zmm_hi256", "hi16_zmm", "pt",    "pkru",    "pasid",        "cet_u",
    "cet_s",     "hdc",      "uintr", "lbr",     "hwp",          "amx_tilecfg",
    "amx_tiledata", "apx",
};

// The legacy FXSAVE area: components 0 and 1 as FORMAT.md splits them.
constexpr size_t kX87Bytes = 160;
constexpr size_t kSseOffset = 160, kSseBytes = 256;
constexpr size_t kLegacyBytes = 512;
constexpr size_t kXstateBvOffset = 512;
constexpr size_t kXcompBvOffset = 520;
constexpr size_t kMxcsrOffset = 24;
constexpr size_t kMaxXstateBytes = 16384;
// CPUID.(EAX=0xD, ECX=i):ECX bit 2: component i supports extended feature
// disable (XFD), which the kernel arms for the features it allocates at
// first use.
constexpr unsigned kCpuidXfdCapable = 1u << 2;

// The results a system call interrupted by a signal or a ptrace stop leaves
// in rax (include/linux/errno.h): it has not completed.
bool IsRestartCode(int64_t rax) {
  return rax == sys::kErestartSys || rax == sys::kErestartNoIntr || rax == sys::kErestartNoHand ||
         rax == sys::kErestartRestartBlock;
}

uint64_t Xgetbv0() {
  uint32_t eax, edx;
  asm volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t{edx} << 32) | eax;
}

struct ComponentLayout {
  uint32_t offset = 0, size = 0;
};

// Standard-format offset and size of component i >= 2 (CPUID 0xD, i).
ComponentLayout Layout(int i) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx)) return {};
  return {ebx, eax};
}

// Copies between the record's named fields and user_regs_struct, which
// lists the same registers in the same order.
struct RegsToRecord {
  const uint64_t* p;
  void operator()(const char*, uint64_t& v) { v = *p++; }
};
struct RecordToRegs {
  uint64_t* p;
  void operator()(const char*, const uint64_t& v) { *p++ = v; }
};
static_assert(sizeof(user_regs_struct) == 27 * 8);

class X86_64 final : public ArchBackend {
 public:
  X86_64() : xcr0_(Xgetbv0()) {
    unsigned eax, ebx, ecx, edx;
    xsave_size_ = __get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx) ? ebx : kLegacyBytes + 64;
    for (int i = 2; i < 64; ++i) {
      if (xcr0_ & (uint64_t{1} << i)) layout_[i] = Layout(i);
    }
    // A kernel without the call (before 5.16) has no dynamic features:
    // every feature XCR0 enables is every process's.
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_SUPP, &permittable_) != 0) permittable_ = xcr0_;
    for (int i = 2; i < 64; ++i) {
      unsigned eax, ebx, ecx, edx;
      if ((permittable_ & (uint64_t{1} << i)) && __get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx) &&
          (ecx & kCpuidXfdCapable)) {
        dynamic_ |= uint64_t{1} << i;
      }
    }
  }

  CpuFamily family() const override { return CpuFamily::kX86_64; }
  const char* ComponentName(int index) const override {
    if (index < 0 || index >= static_cast<int>(std::size(kComponentNames))) return nullptr;
    return kComponentNames[index];
  }
  uint64_t HostXsaveFeatures() const override { return xcr0_; }
  uint32_t HostXsaveSize() const override { return xsave_size_; }

  absl::Status CheckImage(const ImageInfo& info) const override {
    if (info.cpu_family != CpuFamily::kX86_64) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "image is for CPU family %s, this machine is x86_64", CpuFamilyName(info.cpu_family)));
    }
    uint64_t missing = info.xsave_features & ~xcr0_;
    if (missing) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "image needs xsave features 0x%x (%s) that this CPU does not enable (XCR0 0x%x)",
          missing, DescribeComponents(missing), xcr0_));
    }
    return absl::OkStatus();
  }

  uint64_t HostPermittableFeatures() const override { return permittable_; }
  uint64_t HostDynamicFeatures() const override { return dynamic_; }

  CallSpec GetPermittedFeaturesCall(uint64_t out) const override {
    return {SYS_arch_prctl, {ARCH_GET_XCOMP_PERM, out}};
  }

  CallSpec RequestFeatureCall(int index) const override {
    return {SYS_arch_prctl, {ARCH_REQ_XCOMP_PERM, static_cast<uint64_t>(index)}};
  }

  std::vector<uint8_t> FirstUseCode(uint64_t features) const override {
    // mov eax, lo; mov edx, hi; xrstor64 [rbx]; int3. The zeroed area at
    // rbx is a standard-format header with XSTATE_BV 0: the components
    // asked for in edx:eax are loaded with their init state.
    std::vector<uint8_t> code = {0xb8};
    for (int i = 0; i < 4; ++i) code.push_back(static_cast<uint8_t>(features >> (8 * i)));
    code.push_back(0xba);
    for (int i = 4; i < 8; ++i) code.push_back(static_cast<uint8_t>(features >> (8 * i)));
    code.insert(code.end(), {0x48, 0x0f, 0xae, 0x2b, 0xcc});
    return code;
  }

  absl::Span<const uint8_t> SyscallInstruction() const override {
    static constexpr uint8_t kSyscall[] = {0x0f, 0x05};
    return kSyscall;
  }

  void SetSyscall(ArchRegs* regs, uint64_t ip, long nr,
                  const std::array<uint64_t, 6>& a) const override {
    auto* r = reinterpret_cast<user_regs_struct*>(regs->words.data());
    r->rip = ip;
    r->rax = static_cast<uint64_t>(nr);
    r->orig_rax = static_cast<uint64_t>(-1);  // no syscall restart on resume
    r->rdi = a[0];
    r->rsi = a[1];
    r->rdx = a[2];
    r->r10 = a[3];
    r->r8 = a[4];
    r->r9 = a[5];
  }

  absl::Span<const uint8_t> BatchSyscallCode() const override {
    // rbx walks the table; the kernel keeps rbx across syscall.
    //   0: mov rax,[rbx]; cmp rax,-1; je done
    //      mov rdi,[rbx+8]; mov rsi,[rbx+16]; mov rdx,[rbx+24]
    //      mov r10,[rbx+32]; mov r8,[rbx+40]; mov r9,[rbx+48]
    //      syscall; mov [rbx+56],rax
    //      cmp rax,-4095; jae done       (an error: stop here)
    //      add rbx,64; jmp 0
    //   done: int3
    static constexpr uint8_t kCode[] = {
        0x48, 0x8b, 0x03, 0x48, 0x83, 0xf8, 0xff, 0x74, 0x2c, 0x48, 0x8b, 0x7b, 0x08, 0x48,
        0x8b, 0x73, 0x10, 0x48, 0x8b, 0x53, 0x18, 0x4c, 0x8b, 0x53, 0x20, 0x4c, 0x8b, 0x43,
        0x28, 0x4c, 0x8b, 0x4b, 0x30, 0x0f, 0x05, 0x48, 0x89, 0x43, 0x38, 0x48, 0x3d, 0x01,
        0xf0, 0xff, 0xff, 0x73, 0x06, 0x48, 0x83, 0xc3, 0x40, 0xeb, 0xcb, 0xcc};
    return kCode;
  }

  void SetBatchCall(ArchRegs* regs, uint64_t code, uint64_t table) const override {
    auto* r = reinterpret_cast<user_regs_struct*>(regs->words.data());
    r->rip = code;
    r->rbx = table;
    r->orig_rax = static_cast<uint64_t>(-1);  // no syscall restart on resume
  }

  int64_t SyscallResult(const ArchRegs& regs) const override {
    return static_cast<int64_t>(Regs(regs).rax);
  }

  std::vector<uint8_t> RecoveringSyscallSite(const ArchRegs& regs, uint64_t sigmask,
                                             uint64_t stack_top,
                                             bool close_result) const override {
    user_regs_struct r = Regs(regs);
    // Where the thread goes back to: a call the stop interrupted restarts,
    // as the kernel does when no signal handler runs (arch/x86/kernel/
    // signal.c): rip back onto the syscall instruction, the call's number
    // (or restart_syscall's) in rax.
    const int64_t rax = static_cast<int64_t>(r.rax);
    if (static_cast<int64_t>(r.orig_rax) >= 0 && IsRestartCode(rax)) {
      r.rax = rax == sys::kErestartRestartBlock ? SYS_restart_syscall : r.orig_rax;
      r.rip -= 2;
    }
    // Code, then data at kData: mask, rflags, the 16 registers in
    // encoding order (rax rcx rdx rbx rsp rbp rsi rdi r8..r15), rip.
    constexpr size_t kData = kSiteData;  // the code below is 164 bytes, 174 closing the result
    constexpr size_t kMask = kData, kFlags = kData + 8, kRegs = kData + 16, kRip = kData + 144;
    std::vector<uint8_t> code;
    auto emit = [&](std::initializer_list<uint8_t> bytes) { code.insert(code.end(), bytes); };
    // A RIP-relative disp32 to data offset `to`, for an instruction whose
    // remaining bytes after the displacement number `tail`.
    auto rel = [&](uint64_t to, size_t tail) {
      const auto d = static_cast<int32_t>(static_cast<int64_t>(to) -
                                          static_cast<int64_t>(code.size() + 4 + tail));
      for (int i = 0; i < 4; ++i) code.push_back(static_cast<uint8_t>(d >> (8 * i)));
    };
    emit({0x0f, 0x05});                          // syscall: the remote call
    if (close_result) {
      emit({0x48, 0x89, 0xc7});                  // mov rdi, rax
      emit({0xb8, 0x03, 0x00, 0x00, 0x00});      // mov eax, SYS_close
      emit({0x0f, 0x05});                        // syscall
    }
    emit({0xb8, 0x0e, 0x00, 0x00, 0x00});        // mov eax, SYS_rt_sigprocmask
    emit({0xbf, 0x02, 0x00, 0x00, 0x00});        // mov edi, SIG_SETMASK
    emit({0x48, 0x8d, 0x35}), rel(kMask, 0);     // lea rsi, [rip+mask]
    emit({0x31, 0xd2});                          // xor edx, edx
    emit({0x41, 0xba, 0x08, 0x00, 0x00, 0x00});  // mov r10d, 8
    emit({0x0f, 0x05});                          // syscall
    // RecoveringSiteEnd knows this point: no system call after it.
    if (code.size() != CallsDone(close_result)) std::abort();
    // rflags through a stack of our own: the thread's red zone below its
    // rsp may hold live data.
    emit({0x48, 0xbc});  // movabs rsp, stack_top
    for (int i = 0; i < 8; ++i) code.push_back(static_cast<uint8_t>(stack_top >> (8 * i)));
    emit({0xff, 0x35}), rel(kFlags, 0);  // push qword [rip+flags]
    emit({0x9d});                        // popfq
    const uint64_t values[16] = {r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                                 r.r8,  r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15};
    for (int reg : {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 4}) {  // rsp last
      // mov reg, [rip+disp32]: REX.W (+R for r8-r15), 8B, modrm 00 reg 101.
      emit({static_cast<uint8_t>(0x48 | (reg >= 8 ? 0x04 : 0)), 0x8b,
            static_cast<uint8_t>(((reg & 7) << 3) | 5)});
      rel(kRegs + 8 * reg, 0);
    }
    emit({0xff, 0x25}), rel(kRip, 0);  // jmp [rip+rip]
    if (code.size() > kData) std::abort();  // the layout above is fixed: a bug, never input
    code.resize(kRecoveringSiteBytes, 0xcc);
    auto put = [&](size_t at, uint64_t v) { memcpy(code.data() + at, &v, sizeof(v)); };
    put(kMask, sigmask);
    put(kFlags, r.eflags);
    for (int reg = 0; reg < 16; ++reg) put(kRegs + 8 * reg, values[reg]);
    put(kRip, r.rip);
    return code;
  }

  // Where a site's system calls are done: its call, the close, the mask.
  static constexpr size_t CallsDone(bool closing) { return 2 + (closing ? 10 : 0) + 27; }
  static constexpr size_t kSiteData = 176;  // RecoveringSyscallSite's kData

  std::optional<ArchRegs> RecoveringSiteEnd(absl::Span<const uint8_t> site, uint64_t at,
                                            const ArchRegs& regs) const override {
    const bool closing = site.size() > 4 && site[2] == 0x48 && site[3] == 0x89 && site[4] == 0xc7;
    // Through a copy: writing `out.words` through a user_regs_struct
    // pointer would break aliasing rules (the compiler returned the
    // unchanged registers).
    user_regs_struct r = Regs(regs);
    if (r.rip < at + CallsDone(closing) || site.size() < kSiteData + 152) return std::nullopt;
    auto get = [&](size_t offset) {
      uint64_t v;
      memcpy(&v, site.data() + offset, sizeof(v));
      return v;
    };
    // What the loads and the jump at its end do, whichever of them ran.
    unsigned long long* regs16[16] = {&r.rax, &r.rcx, &r.rdx, &r.rbx, &r.rsp, &r.rbp,
                                      &r.rsi, &r.rdi, &r.r8,  &r.r9,  &r.r10, &r.r11,
                                      &r.r12, &r.r13, &r.r14, &r.r15};
    for (int reg = 0; reg < 16; ++reg) *regs16[reg] = get(kSiteData + 16 + 8 * reg);
    r.eflags = get(kSiteData + 8);
    r.rip = get(kSiteData + 144);
    r.orig_rax = static_cast<unsigned long long>(-1);  // no call of ours to restart
    return WithRegs(regs, r);
  }

  bool IsRecoveringSite(absl::Span<const uint8_t> bytes) const override {
    // The code up to the stack address is the same in every site of
    // either form.
    constexpr size_t kFixedPrefix = 31, kClosingPrefix = 41;
    static const std::vector<uint8_t> prefix = [this] {
      std::vector<uint8_t> site = RecoveringSyscallSite(ArchRegs{}, 0, 0, false);
      site.resize(kFixedPrefix);
      return site;
    }();
    static const std::vector<uint8_t> closing = [this] {
      std::vector<uint8_t> site = RecoveringSyscallSite(ArchRegs{}, 0, 0, true);
      site.resize(kClosingPrefix);
      return site;
    }();
    auto starts = [&](const std::vector<uint8_t>& p) {
      return bytes.size() >= p.size() && std::equal(p.begin(), p.end(), bytes.begin());
    };
    return starts(prefix) || starts(closing);
  }

  uint64_t StackPointer(const ArchRegs& regs) const override { return Regs(regs).rsp; }
  uint64_t InstructionPointer(const ArchRegs& regs) const override { return Regs(regs).rip; }

  int64_t InterruptedSyscall(const ArchRegs& regs) const override {
    return static_cast<int64_t>(Regs(regs).orig_rax);
  }

  ArchRegs CallAgain(const ArchRegs& regs) const override {
    user_regs_struct r = Regs(regs);
    r.rip -= 2;  // the syscall instruction's length
    r.rax = r.orig_rax;
    r.orig_rax = static_cast<unsigned long long>(-1);
    return WithRegs(regs, r);
  }

  ArchRegs Interrupted(const ArchRegs& regs) const override {
    user_regs_struct r = Regs(regs);
    r.rax = static_cast<unsigned long long>(sys::kErestartNoHand);
    return WithRegs(regs, r);
  }

  absl::Status SetSyscallResult(ArchRegs* regs, int64_t value) const override {
    auto* r = reinterpret_cast<user_regs_struct*>(regs->words.data());
    const int64_t nr = static_cast<int64_t>(r->orig_rax);
    const int64_t rax = static_cast<int64_t>(r->rax);
    if (nr < 0) return absl::FailedPreconditionError("not inside a system call");
    if (!IsRestartCode(rax)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "not inside a system call: its call %d has already returned %d", nr, rax));
    }
    // At a stop inside a call rip is already past the syscall instruction
    // (a restart would move it back); orig_rax -1 means "no call to
    // restart", whatever the value looks like (even -ERESTARTSYS).
    r->rax = static_cast<uint64_t>(value);
    r->orig_rax = static_cast<uint64_t>(-1);
    return absl::OkStatus();
  }

  absl::Status CaptureCpu(pid_t tid, const ArchRegs& regs, ImageWriter* writer,
                          ObjectRef thread) const override {
    X86RegistersRecord rec;
    RegsToRecord copy{regs.words.data()};
    X86RegistersRecord::Fields(rec, copy);
    CRLIB_RETURN_IF_ERROR(writer->Write(rec, 0, thread));

    std::vector<uint8_t> buf(kMaxXstateBytes);
    iovec iov{buf.data(), buf.size()};
    if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) != 0) {
      return Errno("ptrace(GETREGSET, NT_X86_XSTATE) on tid %d", tid);
    }
    if (iov.iov_len < kLegacyBytes + 64) {
      return absl::InternalError(absl::StrFormat("tid %d: xstate of %d bytes is too short", tid,
                                                 iov.iov_len));
    }
    uint64_t xstate_bv;
    memcpy(&xstate_bv, &buf[kXstateBvOffset], 8);
    CRLIB_RETURN_IF_ERROR(
        writer->Write(XstateRecord{.features = xcr0_, .xstate_bv = xstate_bv}, 0, thread));
    auto write_component = [&](uint32_t index, size_t offset, size_t size) {
      XstateComponentRecord c;
      c.component = index;
      c.data.assign(buf.begin() + offset, buf.begin() + offset + size);
      return writer->Write(c, 0, thread);
    };
    // The legacy area is always meaningful (the kernel fills init values).
    CRLIB_RETURN_IF_ERROR(write_component(0, 0, kX87Bytes));
    CRLIB_RETURN_IF_ERROR(write_component(1, kSseOffset, kSseBytes));
    for (int i = 2; i < 64; ++i) {
      if (!(xstate_bv & xcr0_ & (uint64_t{1} << i))) continue;  // init state: omitted
      const ComponentLayout& l = layout_[i];
      if (l.size == 0 || l.offset + l.size > iov.iov_len) continue;  // supervisor or absent
      CRLIB_RETURN_IF_ERROR(write_component(i, l.offset, l.size));
    }
    return absl::OkStatus();
  }

  absl::Status CheckCpu(absl::Span<const Record> records) const override {
    return Assemble(records, nullptr, nullptr);
  }

  absl::StatusOr<ArchRegs> RestoreCpu(pid_t tid, absl::Span<const Record> records) const override {
    ArchRegs regs;
    std::vector<uint8_t> xstate;
    CRLIB_RETURN_IF_ERROR(Assemble(records, &regs, &xstate));
    iovec iov{xstate.data(), xstate.size()};
    if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) != 0) {
      return Errno("ptrace(SETREGSET, NT_X86_XSTATE) on tid %d", tid);
    }
    auto* r = reinterpret_cast<user_regs_struct*>(regs.words.data());
    // Resume a system call the way the kernel would after a signal with no
    // handler: restart it, or report EINTR where its restart block (kernel
    // state, e.g. a nanosleep deadline) cannot be rebuilt.
    const int64_t rax = static_cast<int64_t>(r->rax);
    if (static_cast<int64_t>(r->orig_rax) >= 0 && IsRestartCode(rax)) {
      if (rax == sys::kErestartRestartBlock) {
        r->rax = static_cast<uint64_t>(-EINTR);
      } else {
        r->rax = r->orig_rax;
        r->rip -= 2;
      }
    }
    r->orig_rax = static_cast<uint64_t>(-1);
    return regs;
  }

 private:
  static const user_regs_struct& Regs(const ArchRegs& regs) {
    return *reinterpret_cast<const user_regs_struct*>(regs.words.data());
  }
  // `regs` with `r` in place: through a copy, as RecoveringSiteEnd says.
  static ArchRegs WithRegs(const ArchRegs& regs, const user_regs_struct& r) {
    ArchRegs out = regs;
    memcpy(out.words.data(), &r, sizeof(r));
    return out;
  }

  // Decodes a thread's CPU records into registers and a standard-format
  // XSAVE buffer for this CPU. With null outputs, only validates.
  absl::Status Assemble(absl::Span<const Record> records, ArchRegs* regs,
                        std::vector<uint8_t>* xstate) const {
    std::vector<uint8_t> buf(xsave_size_, 0);
    // Initial x87/SSE state: FCW 0x37f, MXCSR 0x1f80.
    buf[0] = 0x7f;
    buf[1] = 0x03;
    uint32_t mxcsr = 0x1f80;
    memcpy(&buf[kMxcsrOffset], &mxcsr, 4);
    uint64_t bv = 0;
    bool have_regs = false;
    for (const Record& r : records) {
      switch (r.type()) {
        case RecordType::kX86Registers: {
          X86RegistersRecord rec;
          CRLIB_RETURN_IF_ERROR(DecodeFields(r.payload, &rec));
          if (regs) {
            RecordToRegs copy{regs->words.data()};
            X86RegistersRecord::Fields(static_cast<const X86RegistersRecord&>(rec), copy);
            regs->size = sizeof(user_regs_struct);
          }
          have_regs = true;
          break;
        }
        case RecordType::kXstate:
          break;
        case RecordType::kXstateComponent: {
          XstateComponentRecord c;
          CRLIB_RETURN_IF_ERROR(DecodeFields(r.payload, &c));
          size_t offset, size;
          if (c.component == 0) {
            offset = 0, size = kX87Bytes;
          } else if (c.component == 1) {
            offset = kSseOffset, size = kSseBytes;
          } else if (c.component < 64 && (xcr0_ & (uint64_t{1} << c.component))) {
            offset = layout_[c.component].offset, size = layout_[c.component].size;
          } else {
            return absl::FailedPreconditionError(absl::StrFormat(
                "xstate component %d is not enabled on this CPU", c.component));
          }
          if (c.data.size() != size || offset + size > buf.size()) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "xstate component %d (%s) is %d bytes in the image, %d on this CPU", c.component,
                ComponentName(c.component) ? ComponentName(c.component) : "?", c.data.size(),
                size));
          }
          memcpy(&buf[offset], c.data.data(), size);
          bv |= uint64_t{1} << c.component;
          break;
        }
        default:
          break;
      }
    }
    if (!have_regs) return absl::DataLossError("thread has no x86_64_registers record");
    // The legacy area is always loaded; the header says which of the rest.
    bv |= 3;
    memcpy(&buf[kXstateBvOffset], &bv, 8);
    memset(&buf[kXcompBvOffset], 0, 8);
    // FXSAVE's software-reserved bytes (464-511) are ignored by the kernel.
    if (xstate) *xstate = std::move(buf);
    return absl::OkStatus();
  }

  uint64_t xcr0_;
  uint64_t permittable_ = 0;  // ARCH_GET_XCOMP_SUPP
  uint64_t dynamic_ = 0;      // XFD-capable among them
  uint32_t xsave_size_;
  ComponentLayout layout_[64];
};

}  // namespace

const ArchBackend& X86_64Backend() {
  static const X86_64 backend;
  return backend;
}

}  // namespace crlib
