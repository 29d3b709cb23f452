// `crlib check`: which kernel interfaces crlib needs and whether this
// machine has them, each probed for real.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/prctl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "mm/memory_capture.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "remote/tracee.h"
#include "tools/crlib/commands.h"

namespace crlib::cli {
namespace {

struct Probe {
  std::string name;
  bool required;
  bool ok;
  std::string detail;
};

// Capability numbers (linux/capability.h; 40 is newer than some headers).
constexpr int kCapSysAdmin = 21;
constexpr int kCapSysResource = 24;
constexpr int kCapCheckpointRestore = 40;

// This process's effective capabilities, a bit per capability.
uint64_t EffectiveCapabilities() {
  auto status = sys::ReadFile("/proc/self/status");
  if (!status.ok()) return 0;
  auto eff = sys::StatusField(*status, "CapEff");
  return eff.ok() ? strtoull(eff->c_str(), nullptr, 16) : 0;
}

// Seizes a throwaway child and runs one remote system call in it.
Probe ProbePtrace() {
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  Probe p{"ptrace seize, remote system calls, /proc/PID/mem", true, false, ""};
  {
    auto t = Tracee::Seize(child);
    if (!t.ok()) {
      p.detail = std::string(t.status().message());
    } else {
      auto pid = (*t)->CheckedSyscall("getpid", SYS_getpid);
      p.ok = pid.ok() && *pid == child;
      p.detail = pid.ok() ? "" : std::string(pid.status().message());
      sys::PtraceRseqConfiguration rseq{};
      if (p.ok && ptrace(static_cast<__ptrace_request>(sys::kPtraceGetRseqConfiguration), child,
                         sizeof(rseq), &rseq) < 0) {
        p.ok = false;
        p.detail = "PTRACE_GET_RSEQ_CONFIGURATION unavailable";
      }
      (void)(*t)->SetRegs((*t)->initial_regs());
    }
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return p;
}

// The xsave features the kernel allocates at first use only (AMX tile
// data) and whether a process can be permitted them: asked for in a
// throwaway child, since a permission is never taken back.
Probe ProbeDynamicFeatures(const ArchBackend& arch) {
  const uint64_t dynamic = arch.HostDynamicFeatures();
  Probe p{absl::StrFormat("dynamic xsave features 0x%x (%s)", dynamic,
                          dynamic ? arch.DescribeComponents(dynamic) : "none"),
          false, dynamic != 0, ""};
  if (dynamic == 0) {
    p.detail = "this CPU has none (restoring an image that used them would be refused)";
    return p;
  }
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    p.ok = false;
    p.detail = strerror(errno);
    return p;
  }
  pid_t child = fork();
  if (child == 0) {
    // Per feature: 0 granted, or the errno of the refusal.
    int results[64] = {};
    for (int i = 0; i < 64; ++i) {
      if (!(dynamic & (uint64_t{1} << i))) continue;
      const ArchBackend::CallSpec req = arch.RequestFeatureCall(i);
      if (syscall(req.nr, req.args[0], req.args[1]) != 0) results[i] = errno;
    }
    _exit(write(pipe_fds[1], results, sizeof(results)) == sizeof(results) ? 0 : 1);
  }
  close(pipe_fds[1]);
  int results[64] = {};
  const bool read_all = child > 0 && read(pipe_fds[0], results, sizeof(results)) == sizeof(results);
  close(pipe_fds[0]);
  if (child > 0) waitpid(child, nullptr, 0);
  if (!read_all) {
    p.ok = false;
    p.detail = "the probe process did not report";
    return p;
  }
  for (int i = 0; i < 64; ++i) {
    if (!(dynamic & (uint64_t{1} << i))) continue;
    const char* name = arch.ComponentName(i);
    absl::StrAppend(&p.detail, p.detail.empty() ? "permission " : ", ", name ? name : "?", ": ",
                    results[i] == 0 ? "granted" : strerror(results[i]));
    if (results[i] != 0) p.ok = false;
  }
  return p;
}

}  // namespace

absl::StatusOr<int> CheckCommand(const Args& args) {
  if (!args.empty()) return absl::InvalidArgumentError("usage: crlib check");
  std::vector<Probe> probes;
  probes.push_back(ProbePtrace());
  const uint64_t caps = EffectiveCapabilities();
  auto has = [caps](int cap) { return ((caps >> cap) & 1) != 0; };
  probes.push_back({"clone3 with set_tid (CAP_SYS_ADMIN)", true, has(kCapSysAdmin), ""});
  probes.push_back({"CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN (PR_SET_MM_MAP with an exe file)", true,
                    has(kCapCheckpointRestore) || has(kCapSysAdmin), ""});
  probes.push_back({"CAP_SYS_RESOURCE (restoring rlimits above the restorer's own)", false,
                    has(kCapSysResource), ""});
  {
    unsigned int size = 0;
    bool ok = prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) == 0;
    probes.push_back({"prctl(PR_SET_MM_MAP) (CONFIG_CHECKPOINT_RESTORE)", true, ok,
                      ok ? "" : strerror(errno)});
  }
  {
    bool ok = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 1, 1) >= 0;
    probes.push_back({"kcmp(2)", true, ok, ok ? "" : strerror(errno)});
  }
  {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    sys::PageRegion regions[4];
    static char probe_page[4096];
    sys::PmScanArg arg{};
    arg.size = sizeof(arg);
    arg.start = reinterpret_cast<uint64_t>(probe_page) & ~uint64_t{4095};
    arg.end = arg.start + 4096;
    arg.vec = reinterpret_cast<uint64_t>(regions);
    arg.vec_len = 4;
    arg.category_anyof_mask = sys::kPageIsPresent;
    arg.return_mask = sys::kPageIsPresent;
    bool ok = fd >= 0 && ioctl(fd, sys::kPagemapScan, &arg) >= 0;
    probes.push_back({"ioctl(PAGEMAP_SCAN)", false, ok, ok ? "" : strerror(errno)});
    if (fd >= 0) close(fd);
  }
  {
    int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
    bool ok = false;
    if (uffd >= 0) {
      uffdio_api api{};
      api.api = UFFD_API;
      api.features = sys::kUffdFeatureWpAsync | sys::kUffdFeatureWpUnpopulated;
      ok = ioctl(uffd, UFFDIO_API, &api) == 0;
      close(uffd);
    }
    probes.push_back({"userfaultfd with async write-protect", false, ok, ok ? "" : strerror(errno)});
  }
  const ArchBackend& arch = HostArchBackend();
  probes.push_back({absl::StrFormat("CPU %s, xsave features 0x%x (%s), %d bytes",
                                    CpuFamilyName(arch.family()), arch.HostXsaveFeatures(),
                                    arch.DescribeComponents(arch.HostXsaveFeatures()),
                                    arch.HostXsaveSize()),
                    true, true, ""});
  probes.push_back(ProbeDynamicFeatures(arch));
  {
    auto maps = sys::ReadMaps(getpid());
    std::string specials;
    if (maps.ok()) {
      for (const auto& m : *maps) {
        if (SpecialMappingKind(m.path)) absl::StrAppend(&specials, " ", m.path);
      }
    }
    probes.push_back({"special mappings:" + specials, true, maps.ok(), ""});
  }
  bool all_required = true;
  for (const Probe& p : probes) {
    printf("  %-8s %s%s%s\n", p.ok ? "ok" : (p.required ? "MISSING" : "absent"), p.name.c_str(),
           p.detail.empty() ? "" : ": ", p.detail.c_str());
    if (p.required && !p.ok) all_required = false;
  }
  printf("%s\n", all_required ? "crlib can checkpoint and restore on this machine"
                              : "crlib cannot work here: see MISSING above");
  return all_required ? 0 : 1;
}

}  // namespace crlib::cli
