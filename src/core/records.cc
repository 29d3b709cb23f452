#include "core/records.h"

#include "core/image_format.h"

namespace crlib {

const char* RecordTypeName(uint32_t type) {
  const char* name = nullptr;
  ForEachRecordType([&](auto r) {
    if (static_cast<uint32_t>(decltype(r)::kType) == type) name = decltype(r)::kName;
  });
  return name;
}

const char* CpuFamilyName(CpuFamily family) {
  switch (family) {
    case CpuFamily::kX86_64:
      return "x86_64";
    case CpuFamily::kUnknown:
      break;
  }
  return "unknown";
}

}  // namespace crlib
