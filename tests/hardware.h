// What this machine lacks of the CPU and kernel features some tests need
// (protection keys, per-task speculation control, AVX-512, AMX, /dev/kvm),
// each read from the feature's source of truth (CPUID, XCR0, the kernel's
// own report), never from the failure of the operation under test: a test
// that skipped whenever its operation failed could never fail.
//
// A test calls CRLIB_SKIP_WITHOUT_HARDWARE(Missing...()) before it starts
// its workload. The skip's reason starts with "hardware: ", the one reason
// tools/test_summary.py lets a skip through with; it names the test as not
// exercised on this machine. Any other skip still fails the run.
#ifndef CRLIB_TESTS_HARDWARE_H_
#define CRLIB_TESTS_HARDWARE_H_

#include <cpuid.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace crlib::test {

// This CPU's XCR0: the xsave features the kernel enables.
inline uint64_t Xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

// Memory protection keys (pkey_alloc, pkey_mprotect, PKRU): CPUID leaf 7
// ECX bit 3 (PKU, the CPU has them) and bit 4 (OSPKE, the kernel turned
// them on). "" if both are set.
inline std::string MissingProtectionKeys() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return "no CPUID leaf 7 (so no PKU)";
  if (!(ecx & (1u << 3))) return "no memory protection keys (CPUID.7.0:ECX.PKU[bit 3] is 0)";
  if (!(ecx & (1u << 4))) {
    return "memory protection keys not enabled by the kernel (CPUID.7.0:ECX.OSPKE[bit 4] is 0)";
  }
  return "";
}

// Per-task control of speculation feature `which` (PR_SPEC_STORE_BYPASS,
// PR_SPEC_INDIRECT_BRANCH): PR_GET_SPECULATION_CTRL reports PR_SPEC_PRCTL
// when PR_SET_SPECULATION_CTRL may change it for a task; the kernel's
// mitigation mode (not a permission) decides that. "" if it does.
inline std::string MissingSpeculationControl(unsigned long which) {
  const char* name = which == PR_SPEC_STORE_BYPASS      ? "store bypass"
                     : which == PR_SPEC_INDIRECT_BRANCH ? "indirect branch"
                                                        : "speculation feature";
  const int v = prctl(PR_GET_SPECULATION_CTRL, which, 0, 0, 0);
  if (v >= 0 && (v & PR_SPEC_PRCTL)) return "";
  char text[160];
  snprintf(text, sizeof(text),
           "no per-task %s speculation control (PR_GET_SPECULATION_CTRL %lu: %d, no "
           "PR_SPEC_PRCTL)",
           name, which, v);
  return text;
}

// AVX-512 F and BW (the avx512_regs workload's zmm and k registers):
// CPUID leaf 7 EBX bits 16 and 30, and XCR0 bits 1, 2, 5, 6 and 7 (SSE,
// AVX, opmask, ZMM_Hi256, Hi16_ZMM: the kernel saves those registers).
// "" if all are set.
inline std::string MissingAvx512() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return "no CPUID leaf 7 (so no AVX-512)";
  if (!(ebx & (1u << 16)) || !(ebx & (1u << 30))) {
    return "no AVX-512 F and BW (CPUID.7.0:EBX bits 16 and 30)";
  }
  constexpr uint64_t kAvx512State = 0b11100110;
  if ((Xcr0() & kAvx512State) != kAvx512State) {
    char text[96];
    snprintf(text, sizeof(text), "AVX-512 state not enabled by the kernel (XCR0 0x%llx)",
             static_cast<unsigned long long>(Xcr0()));
    return text;
  }
  return "";
}

// AMX tiles (the amx_tiles workload): CPUID leaf 7 EDX bit 24 (AMX-TILE)
// and XCR0 bits 17 and 18 (XTILECFG, XTILEDATA: the kernel manages the
// tile state). "" if all are set.
inline std::string MissingAmx() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return "no CPUID leaf 7 (so no AMX)";
  if (!(edx & (1u << 24))) return "no AMX tiles (CPUID.7.0:EDX.AMX-TILE[bit 24] is 0)";
  constexpr uint64_t kTileState = uint64_t{3} << 17;
  if ((Xcr0() & kTileState) != kTileState) {
    char text[96];
    snprintf(text, sizeof(text), "AMX tile state not enabled by the kernel (XCR0 0x%llx)",
             static_cast<unsigned long long>(Xcr0()));
    return text;
  }
  return "";
}

// /dev/kvm, a character device. "" if it is one.
inline std::string MissingKvm() {
  struct stat st;
  if (stat("/dev/kvm", &st) != 0) return "no /dev/kvm";
  if (!S_ISCHR(st.st_mode)) return "/dev/kvm is not a character device";
  return "";
}

}  // namespace crlib::test

// Skips the calling test, as "hardware: " plus what is missing, if
// `missing` (one of the Missing...() above) names something.
#define CRLIB_SKIP_WITHOUT_HARDWARE(missing)                                 \
  do {                                                                       \
    if (const std::string crlib_missing_ = (missing); !crlib_missing_.empty()) \
      GTEST_SKIP() << "hardware: " << crlib_missing_;                         \
  } while (0)

#endif  // CRLIB_TESTS_HARDWARE_H_
