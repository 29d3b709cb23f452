// Restore of sockets, in the restoring process with the image's
// credentials, before the restored process exists (files/file_restore.h):
// each socket is made, its options set, bound, listening, connected (to
// its peer in the image, to a listener as a connection not yet accepted,
// or to a named socket outside), its queued messages sent to it again
// through its peer, and shut down as it was.
#ifndef CRLIB_FILES_SOCKET_RESTORE_H_
#define CRLIB_FILES_SOCKET_RESTORE_H_

#include <map>
#include <set>

#include "absl/status/statusor.h"
#include "image/process_image.h"

namespace crlib {

struct SocketMaking {
  // The process the image was taken from still runs and holds its names
  // and listeners: a name that is bound is its own.
  bool original_alive = false;
  // Only a check (`restore --check`, a dump's check of its own image):
  // the sockets are made and their names checked (free, or a stale socket
  // file nobody is bound to), but nothing is bound, connected or sent, no
  // stale file removed, and an established TCP connection is not taken
  // over (that would close it for its peer when the check ends).
  bool check_only = false;
};

// Makes the sockets `refs` of `image` (the sockets of the files one Open
// makes; see SocketGroupAnchor), with our credentials as they are. The
// result holds one descriptor per socket, close-on-exec, owned by the
// caller.
absl::StatusOr<std::map<ObjectRef, int>> MakeSockets(const ProcessImage& image,
                                                     const std::set<ObjectRef>& refs,
                                                     const SocketMaking& how);

// The socket that stands for `socket` when files are shared out among
// sets of credentials (OpenedFiles::OpenTree): sockets that must be made
// together (the ends of a pair, a listener and the connections waiting on
// it, a datagram socket and the one it is connected to) have one anchor.
ObjectRef SocketGroupAnchor(const ProcessImage& image, ObjectRef socket);

}  // namespace crlib

#endif  // CRLIB_FILES_SOCKET_RESTORE_H_
