// The socket options crlib carries (read at dump where they differ from a
// new socket's, set again at restore), and how messages name sockets.
#ifndef CRLIB_FILES_SOCKET_OPTIONS_H_
#define CRLIB_FILES_SOCKET_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/records.h"

namespace crlib {

// The options of `sock` (of `family`, `type`, `protocol`) whose values
// differ from those of a socket made now with the same three.
absl::StatusOr<std::vector<SocketOption>> ChangedSocketOptions(int sock, uint32_t family,
                                                               uint32_t type, uint32_t protocol);

// Sets `options` on `sock`, in image order; `what` names the socket in
// errors. A buffer size is set as the kernel takes it (it doubles what
// it is given), beyond the system limits only with CAP_NET_ADMIN, as
// for the process itself.
absl::Status SetSocketOptions(int sock, absl::Span<const SocketOption> options,
                              const std::string& what);

// "TCP6", "UNIX datagram", "ICMP echo", for messages.
std::string SocketKindText(uint32_t family, uint32_t type, uint32_t protocol);

// "127.0.0.1:80", "[::1]:80", "/run/x.sock", "@abstract", for messages.
std::string SocketAddressText(const Bytes& sockaddr);

// "SO_RCVBUF", for messages.
std::string SocketOptionName(uint32_t level, uint32_t name);

}  // namespace crlib

#endif  // CRLIB_FILES_SOCKET_OPTIONS_H_
