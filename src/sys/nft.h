// The kernel's packet filter (nftables) through the nft(8) command of the
// nftables package: crlib's only use is to hold TCP connections still
// between a dump and its restore, in tables of its own.
#ifndef CRLIB_SYS_NFT_H_
#define CRLIB_SYS_NFT_H_

#include <string>

#include "absl/status/status.h"

namespace crlib::sys {

// Runs `script` (nft's own syntax) as one transaction: all of it or none.
// FailedPrecondition when nft is not installed; the error holds nft's own
// message otherwise.
absl::Status RunNft(const std::string& script);

}  // namespace crlib::sys

#endif  // CRLIB_SYS_NFT_H_
