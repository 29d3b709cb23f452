#include "arch/x86_64/x86_64_backend.h"

#include <iterator>

namespace crlib {
namespace {

// XSAVE state components, by their bit in XCR0 / IA32_XSS (Intel SDM vol. 1,
// 13.1).
constexpr const char* kComponentNames[] = {
    "x87",      "sse",       "avx",    "bndregs", "bndcsr",      "opmask",
    "zmm_hi256", "hi16_zmm", "pt",     "pkru",    "pasid",       "cet_u",
    "cet_s",    "hdc",       "uintr",  "lbr",     "hwp",         "amx_tilecfg",
    "amx_tiledata", "apx",
};

class X86_64 final : public ArchBackend {
 public:
  CpuFamily family() const override { return CpuFamily::kX86_64; }
  const char* ComponentName(int index) const override {
    if (index < 0 || index >= static_cast<int>(std::size(kComponentNames))) return nullptr;
    return kComponentNames[index];
  }
};

}  // namespace

const ArchBackend& X86_64Backend() {
  static const X86_64 backend;
  return backend;
}

}  // namespace crlib
