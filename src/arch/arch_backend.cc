#include "arch/arch_backend.h"

#include "absl/strings/str_cat.h"
#include "arch/x86_64/x86_64_backend.h"

namespace crlib {

std::string ArchBackend::DescribeComponents(uint64_t mask) const {
  std::string out;
  for (int i = 0; i < 64; ++i) {
    if (!(mask & (uint64_t{1} << i))) continue;
    const char* name = ComponentName(i);
    absl::StrAppend(&out, out.empty() ? "" : " ", name ? name : absl::StrCat("bit", i));
  }
  return out;
}

const ArchBackend* FindArchBackend(CpuFamily family) {
  // One entry per CPU family this build supports.
  static const ArchBackend* const kBackends[] = {&X86_64Backend()};
  for (const ArchBackend* backend : kBackends) {
    if (backend->family() == family) return backend;
  }
  return nullptr;
}

const ArchBackend& HostArchBackend() {
#if defined(__x86_64__)
  return X86_64Backend();
#else
#error "crlib has no ArchBackend for this CPU family yet"
#endif
}

}  // namespace crlib
