// The contract every CPU family implements, declared once (linux-cr's
// cr_write_cpu / cr_read_cpu_fpu). Each family lives in its own folder and
// is listed in the table in arch_backend.cc, so a static link can never
// drop one silently.
#ifndef CRLIB_ARCH_ARCH_BACKEND_H_
#define CRLIB_ARCH_ARCH_BACKEND_H_

#include <cstdint>
#include <string>

#include "core/image_format.h"

namespace crlib {

class ArchBackend {
 public:
  virtual ~ArchBackend() = default;

  virtual CpuFamily family() const = 0;
  // Name of xstate component `index` ("avx", "pkru"), or nullptr if unknown.
  virtual const char* ComponentName(int index) const = 0;

  // "x87 sse avx" for a component mask; unknown bits as "bitN".
  std::string DescribeComponents(uint64_t mask) const;
};

// The backend for `family`, or nullptr when this build has none.
const ArchBackend* FindArchBackend(CpuFamily family);
// The backend of the CPU this code runs on.
const ArchBackend& HostArchBackend();

}  // namespace crlib

#endif  // CRLIB_ARCH_ARCH_BACKEND_H_
