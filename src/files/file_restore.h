// Restore of files, in the restoring process before the restored one is
// created: every file the image's descriptors and mappings need is opened
// here, at descriptor numbers above any the image uses, so the new process
// inherits them and only has to move them into place.
#ifndef CRLIB_FILES_FILE_RESTORE_H_
#define CRLIB_FILES_FILE_RESTORE_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "files/external_fds.h"
#include "files/pidfd_restore.h"
#include "absl/types/span.h"
#include "core/shared_objects.h"
#include "image/process_image.h"
#include "remote/tracee.h"

namespace crlib {

struct OpenFilesOptions {
  // A pty pair whose index is taken gets another: a dump checking its own
  // image while the process still holds the index.
  bool any_pty_index = false;
  // The process the image was taken from still runs (a dump checking its
  // own image). Its locks and leases go with it, so nothing is taken and
  // no file it holds a lease on is opened (an open would break the
  // lease): /proc/locks tells whether anyone else holds a lock that would
  // conflict.
  bool original_alive = false;
  // The restorer's own fds for the image's external files (FileKind::
  // kExternal), by key: each such file is a dup of it, sharing the
  // restorer's open file description. An external file with no entry is
  // not opened (a dump checking its own image; CheckInheritFds refuses it
  // otherwise).
  std::map<std::string, int> inherit_fds;
  // Only a check: what a restore would change outside (socket names bound,
  // connections made, established TCP connections taken over) is not done;
  // sockets are made and their names checked (files/socket_restore.h).
  bool check_only = false;
};




class OpenedFiles final : public RestoredObjects {
 public:
  // Opens everything `image` needs, with the image's credentials (on a
  // short-lived thread that takes them); any missing, changed or forbidden
  // file is an error here, before the point of no return, naming the file
  // and the uid. The cwd is checked the same way.
  static absl::StatusOr<OpenedFiles> Open(const ProcessImage& image,
                                          const OpenFilesOptions& options = {});
  // Opens everything the processes of a tree need (`images`, in image
  // order; each names the objects of the whole tree). Each file is opened
  // with the credentials of the first process that holds it (an fd, a
  // mapping, its cwd, root or executable): the one that most plausibly
  // opened it, whose rights the restore must not exceed. The files of a
  // pipe, pty pair or carried inode go with whoever first holds any of
  // them (one object, made once); a lock with its file. One Open per
  // distinct set of credentials, in the order their first holders come;
  // a tree with one set is exactly one Open. The result holds them all.
  static absl::StatusOr<OpenedFiles> OpenTree(absl::Span<const ProcessImage* const> images,
                                              const OpenFilesOptions& options = {});

  OpenedFiles(OpenedFiles&& other) noexcept : fds_(std::move(other.fds_)), extra_(std::move(other.extra_)) {
    other.fds_.clear();
    other.extra_.clear();
  }
  OpenedFiles& operator=(OpenedFiles&&) = delete;
  ~OpenedFiles();

  // Locks and leases on open file descriptions (flock, OFD, leases) are
  // taken here, by us, on the descriptions the child inherits; a POSIX
  // lock, which belongs to a process, is only probed (F_GETLK): a lock
  // another process holds now fails Open.

  // Our descriptor for file record `ref` (the child inherits the number).
  int fd(ObjectRef ref) const override;
  // Every descriptor this object holds.
  std::vector<int> all() const;

 private:
  OpenedFiles() = default;
  // Open, in a thread that has the image's credentials.
  static absl::StatusOr<OpenedFiles> OpenAll(const ProcessImage& image,
                                             const OpenFilesOptions& options);
  absl::StatusOr<int> OpenFile(const ProcessImage& image, const FileImage& file);
  absl::Status Place(ObjectRef ref, int fd);
  // The master of pty pair `tty`, opened the first time.
  absl::StatusOr<int> PtyMaster(const ProcessImage& image, ObjectRef tty);
  absl::Status TakeLocks(const ProcessImage& image) const;
  static absl::Status CheckLocksHeldByOthers(const ProcessImage& image);
  // Takes over `other`'s descriptors (of other records than ours).
  void Absorb(OpenedFiles&& other);

  int base_ = 0;
  uint32_t fsuid_ = 0;  // whose rights OpenAll uses, for its errors
  OpenFilesOptions options_;
  std::map<ObjectRef, int> fds_;
  std::vector<int> extra_;  // kept open for the child (pipe ends not yet used)
  std::map<ObjectRef, std::pair<int, int>> pipes_;  // pipe ref -> (read, write)
  std::set<ObjectRef> memfd_description_used_;  // memfds whose own description an fd took
  std::map<ObjectRef, int> pty_masters_;  // tty ref -> its master, while opening
  std::map<ObjectRef, int> sockets_;  // socket ref -> the socket, while opening
};

// In restored process `t`, whose descriptors are in place and hold
// `files`' descriptions: a removed cwd becomes the directory made for it
// (fchdir on our descriptor, so it must run before those are closed).
absl::Status EnterRemovedCwd(Tracee* t, const ProcessImage& image, const OpenedFiles& files);


// In restored process `t`, once only the image's descriptors are left
// (closing any descriptor of a file drops the process's POSIX locks on
// it): takes the POSIX locks, and makes it the owner of its leases, so
// a lease break signals it. `scratch`: memory of `t` for the arguments.
absl::Status RestoreProcessLocks(Tracee* t, const ProcessImage& image, uint64_t scratch);

}  // namespace crlib

#endif  // CRLIB_FILES_FILE_RESTORE_H_
