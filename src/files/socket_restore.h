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

// Makes the sockets `refs` of `image` (the sockets of the files one Open
// makes; see SocketGroupAnchor), with our credentials as they are. With
// `original_alive` (a dump checking its own image, whose process holds
// the names and listeners) the sockets are only made and their names
// checked: nothing is bound, connected or sent. The result holds one
// descriptor per socket, close-on-exec, owned by the caller.
absl::StatusOr<std::map<ObjectRef, int>> MakeSockets(const ProcessImage& image,
                                                     const std::set<ObjectRef>& refs,
                                                     bool original_alive);

// The socket that stands for `socket` when files are shared out among
// sets of credentials (OpenedFiles::OpenTree): sockets that must be made
// together (the ends of a pair, a listener and the connections waiting on
// it, a datagram socket and the one it is connected to) have one anchor.
ObjectRef SocketGroupAnchor(const ProcessImage& image, ObjectRef socket);

}  // namespace crlib

#endif  // CRLIB_FILES_SOCKET_RESTORE_H_
