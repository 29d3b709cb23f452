// What an image may be trusted with: the credentials it claims are vouched
// for by the owner of the image file, and by no one when the file is
// writable by group or others. docs/SECURITY.md states the rules.
#ifndef CRLIB_IMAGE_IMAGE_TRUST_H_
#define CRLIB_IMAGE_IMAGE_TRUST_H_

#include <sys/stat.h>

#include "absl/status/status.h"
#include "image/process_image.h"

namespace crlib {

// OK when `image` claims no more than the owner of the image file (whose
// fstat is `image_file`) has, or when the caller trusts the image. An
// image owned by root may claim anything. One owned by uid U may claim
// only uid U (all four uids), gids and supplementary groups U belongs to
// (getgrouplist of U's passwd entry; none without one), and no permitted,
// effective, inheritable or ambient capability. A file writable by group
// or others vouches for nothing. Otherwise PermissionDenied, one line
// naming the claim and the owner. Reads the passwd and group databases.
absl::Status CheckImageTrust(const ProcessImage& image, const struct stat& image_file,
                             bool trusted);

}  // namespace crlib

#endif  // CRLIB_IMAGE_IMAGE_TRUST_H_
