// Restore of an address space inside a new, ptrace-stopped process: the
// inherited mappings go, the vDSO moves to where the image had it, the
// image's VMAs are mapped and their pages written, and the mm fields set.
#ifndef CRLIB_MM_MEMORY_RESTORE_H_
#define CRLIB_MM_MEMORY_RESTORE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/context.h"
#include "core/image_reader.h"
#include "core/shared_objects.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

using AddressRange = std::pair<uint64_t, uint64_t>;

// The lowest page-aligned range of `size` bytes that overlaps none of
// `occupied`, or an error.
absl::StatusOr<uint64_t> FindFreeRange(uint64_t size, std::vector<AddressRange> occupied);

// Checks, in this process, that the image's vDSO and vvar areas can be
// recreated here: same kinds and sizes as this kernel gives.
absl::Status CheckSpecialMappings(const ProcessImage& image);

// Checks, in this process, that the image's mlocked VMAs can be locked
// again: this process has CAP_IPC_LOCK or RLIMIT_MEMLOCK covers them.
absl::Status CheckLockedMemory(const ProcessImage& image);

// Checks, in this process, that this kernel installs guard regions
// (MADV_GUARD_INSTALL, 6.13) when the image has any, and that none lies in
// an mlocked VMA (where the kernel refuses to install one).
absl::Status CheckGuardRegions(const ProcessImage& image);

// Installs the image's guard regions in the tracee with remote madvise
// calls; after LoadPages, which must never write into one.
absl::Status RestoreGuardRegions(Tracee* t, const ProcessImage& image);

// Replaces the tracee's address space with the image's, keeping only the
// vDSO (moved to the image's address) and the scratch range; sets the mm
// fields and executable. The VMAs are mapped with Tracee::SyscallBatch,
// with MAP_NORESERVE, madvise and mlock as their vm_flags say.
absl::Status RebuildAddressSpace(Tracee* t, const ProcessImage& image, const RestoredObjects& files,
                                 AddressRange scratch);

// The parts of `run` outside `stale` (sorted): a live dump's pages of
// memory the process unmapped before the stop are skipped.
std::vector<PageRun> WithoutStale(const PageRun& run, absl::Span<const PageRun> stale,
                                  uint64_t page);

// Writes the pages of the image into the tracee: the page records of its
// memory map that `reader` has next (LoadTreeImage left it at the first
// page record; the next process's are left for it).
// Reports progress (bytes of the image read) through `ctx` after each
// record, where a restore can be cancelled.
absl::Status LoadPages(Context* ctx, Tracee* t, const ProcessImage& image, ImageReader* reader,
                       uint64_t* pages_loaded);

// PR_SET_MM_MAP: code, data, brk, stack, args, env, auxv and the
// executable file. Part of RebuildAddressSpace.
absl::Status RestoreMmFields(Tracee* t, const ProcessImage& image, const RestoredObjects& files,
                             uint64_t scratch);

}  // namespace crlib

#endif  // CRLIB_MM_MEMORY_RESTORE_H_
