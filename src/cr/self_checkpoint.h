// Checkpoint of the calling process by itself (crlib_checkpoint_self).
//
// A process cannot ptrace itself, so the work is done by a helper: a fork
// of the caller, which seizes its parent, writes the image with the
// ordinary CheckpointProcess and resumes it. Meanwhile the calling thread
// waits in a read() on a rendezvous pipe. The image records that read as
// having returned kRestoredResult, a value no read of that size can
// return; the running original instead reads the helper's reply (status,
// message, statistics). So the same call returns twice, once per side,
// and each side knows which it is on.
#ifndef CRLIB_CR_SELF_CHECKPOINT_H_
#define CRLIB_CR_SELF_CHECKPOINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/context.h"

namespace crlib {

enum class SelfResult { kCheckpointed, kRestored };

// Writes the image of the calling process (every thread; the calling one
// inside this call) to `image_path`, with ctx's options; statistics go to
// ctx->stats(). kCheckpointed in the caller, kRestored in a process
// restored from the image. On failure the caller runs on as before, never
// stopped or traced, and no image exists under `image_path`. Thread-safe;
// calls from several threads at once are serialized.
// `image_fd`, when not -1, is a descriptor of the caller the image is
// written to (the image path then only names it); it is not part of the
// image.
absl::StatusOr<SelfResult> CheckpointSelf(Context* ctx, const std::string& image_path,
                                          int image_fd = -1);

}  // namespace crlib

#endif  // CRLIB_CR_SELF_CHECKPOINT_H_
