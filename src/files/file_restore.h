// Restore of files, in the restoring process before the restored one is
// created: every file the image's descriptors and mappings need is opened
// here, at descriptor numbers above any the image uses, so the new process
// inherits them and only has to move them into place.
#ifndef CRLIB_FILES_FILE_RESTORE_H_
#define CRLIB_FILES_FILE_RESTORE_H_

#include <map>
#include <set>
#include <vector>

#include "absl/status/statusor.h"
#include "task/process_image.h"

namespace crlib {

struct OpenFilesOptions {
  // A pty pair whose index is taken gets another: a dump checking its own
  // image while the process still holds the index.
  bool any_pty_index = false;
};

class OpenedFiles {
 public:
  // Opens everything `image` needs, with the image's credentials (on a
  // short-lived thread that takes them); any missing, changed or forbidden
  // file is an error here, before the point of no return, naming the file
  // and the uid. The cwd is checked the same way.
  static absl::StatusOr<OpenedFiles> Open(const ProcessImage& image,
                                          const OpenFilesOptions& options = {});

  OpenedFiles(OpenedFiles&& other) noexcept : fds_(std::move(other.fds_)), extra_(std::move(other.extra_)) {
    other.fds_.clear();
    other.extra_.clear();
  }
  OpenedFiles& operator=(OpenedFiles&&) = delete;
  ~OpenedFiles();

  // Our descriptor for file record `ref` (the child inherits the number).
  int fd(ObjectRef ref) const;
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

  int base_ = 0;
  uint32_t fsuid_ = 0;  // whose rights OpenAll uses, for its errors
  OpenFilesOptions options_;
  std::map<ObjectRef, int> fds_;
  std::vector<int> extra_;  // kept open for the child (pipe ends not yet used)
  std::map<ObjectRef, std::pair<int, int>> pipes_;  // pipe ref -> (read, write)
  std::set<ObjectRef> memfd_description_used_;  // memfds whose own description an fd took
  std::map<ObjectRef, int> pty_masters_;  // tty ref -> its master, while opening
};

}  // namespace crlib

#endif  // CRLIB_FILES_FILE_RESTORE_H_
