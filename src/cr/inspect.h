// `crlib inspect`: an image as a tree a person can read, or as JSON.
#ifndef CRLIB_CR_INSPECT_H_
#define CRLIB_CR_INSPECT_H_

#include <string>

#include "absl/status/status.h"
#include "core/byte_stream.h"

namespace crlib {

struct InspectOptions {
  bool json = false;
};

// Reads the whole image from `source`, validating every record and bulk
// checksum, and appends the rendering to `out`. On error `out` holds
// nothing from this call.
absl::Status InspectImage(ByteSource* source, const InspectOptions& options, std::string* out);

}  // namespace crlib

#endif  // CRLIB_CR_INSPECT_H_
