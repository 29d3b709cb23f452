#include "image/image_trust.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace crlib {
namespace {

constexpr const char* kHint = " (restore with --trust-image, or CRLIB_RESTORE_TRUST_IMAGE, to accept it)";

// The groups `uid` belongs to according to the passwd and group databases,
// or nullopt when it has no passwd entry: then no group can be vouched for.
std::optional<std::vector<gid_t>> GroupsOf(uid_t uid) {
  std::vector<char> buf(16384);
  passwd pw;
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  std::vector<gid_t> groups(64);
  for (;;) {
    int n = static_cast<int>(groups.size());
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) >= 0) {
      groups.resize(n);
      return groups;
    }
    groups.resize(std::max<size_t>(n, groups.size() * 2));  // n: what it needs
  }
}

}  // namespace

absl::Status CheckImageTrust(const ProcessImage& image, const struct stat& image_file,
                             bool trusted) {
  if (trusted) return absl::OkStatus();
  const ProcessRecord& p = image.process;
  const uid_t owner = image_file.st_uid;
  auto refuse = [&](const std::string& why) {
    return absl::PermissionDeniedError(absl::StrCat(why, kHint));
  };
  // Anyone who can write the file could have written any claim in it.
  if (image_file.st_mode & (S_IWGRP | S_IWOTH)) {
    return refuse(absl::StrFormat(
        "image claims uid %d gid %d but is writable by %s (mode %04o, owner uid %d), so nobody "
        "vouches for its credentials",
        p.euid, p.egid, (image_file.st_mode & S_IWOTH) ? "anyone" : "its group",
        image_file.st_mode & 07777, owner));
  }
  if (owner == 0) return absl::OkStatus();
  const std::string owned = absl::StrFormat("but is owned by uid %d", owner);
  for (uint32_t uid : {p.uid, p.euid, p.suid, p.fsuid}) {
    if (uid != owner) {
      return refuse(absl::StrFormat("image claims uid %d (real %d, effective %d, saved %d, fs %d) %s",
                                    uid, p.uid, p.euid, p.suid, p.fsuid, owned));
    }
  }
  const uint64_t caps = p.cap_permitted | p.cap_effective | p.cap_inheritable | p.cap_ambient;
  if (caps != 0) {
    return refuse(absl::StrFormat(
        "image claims capabilities (permitted 0x%x, effective 0x%x, inheritable 0x%x, ambient 0x%x) "
        "%s, which is not root",
        p.cap_permitted, p.cap_effective, p.cap_inheritable, p.cap_ambient, owned));
  }
  std::optional<std::vector<gid_t>> member_of = GroupsOf(owner);
  std::vector<uint32_t> gids = {p.gid, p.egid, p.sgid, p.fsgid};
  gids.insert(gids.end(), p.groups.begin(), p.groups.end());
  for (uint32_t gid : gids) {
    if (!member_of) {
      return refuse(absl::StrFormat(
          "image claims gid %d %s, which has no passwd entry, so no group can be vouched for", gid,
          owned));
    }
    if (std::find(member_of->begin(), member_of->end(), gid) == member_of->end()) {
      return refuse(absl::StrFormat("image claims gid %d %s, who is not in that group (groups %s)",
                                    gid, owned, absl::StrJoin(*member_of, ",")));
    }
  }
  // Attributes only privilege can set: a lower OOM score (CAP_SYS_RESOURCE)
  // and another user's audit login (CAP_AUDIT_CONTROL).
  if (image.attributes && image.attributes->oom_score_adj < 0) {
    return refuse(absl::StrFormat("image claims oom_score_adj %d %s, which is not root",
                                  image.attributes->oom_score_adj, owned));
  }
  if (image.attributes && image.attributes->loginuid != owner &&
      image.attributes->loginuid != 0xffffffff) {
    return refuse(absl::StrFormat("image claims loginuid %u %s", image.attributes->loginuid, owned));
  }
  return absl::OkStatus();
}

}  // namespace crlib
