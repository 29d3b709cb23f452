#ifndef CRLIB_ARCH_X86_64_X86_64_BACKEND_H_
#define CRLIB_ARCH_X86_64_X86_64_BACKEND_H_

#include "arch/arch_backend.h"

namespace crlib {

const ArchBackend& X86_64Backend();

}  // namespace crlib

#endif  // CRLIB_ARCH_X86_64_X86_64_BACKEND_H_
