// Sockets through `crlib dump` and `crlib restore`: UNIX sockets of every
// type with their queues, names, listeners and connections waiting on
// them; TCP listeners; UDP sockets with queued datagrams. Each workload
// checks itself after restore; what is refused leaves the process running.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using SocketTest = FilesWorkloadTest;

TEST_F(SocketTest, UnixSocketsRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "unix_sockets"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

// The image restores twice: the second restore finds the first one's
// socket files, which nobody is bound to any more, and takes their names.
TEST_F(SocketTest, UnixSocketsRestoreTwice) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "unix_sockets"));
  const std::string image = Path("twice.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

// The dump leaves the process running; its queues are peeked, not read.
TEST_F(SocketTest, UnixSocketsLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "unix_sockets"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

// Someone else listens under the image's name by the time of the restore:
// it fails before anything exists, naming the socket in the way.
TEST_F(SocketTest, RestoreWhenAnotherSocketHoldsTheNameFails) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(StartIn(&w, "unix_sockets"));
  const std::string image = Path("held.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string path = files_ + "/listen.sock";
  ASSERT_EQ(unlink(path.c_str()), 0) << strerror(errno);
  int other = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(bind(other, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
  ASSERT_EQ(listen(other, 1), 0);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("a live socket is bound to " + path)) << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "restore left pid " << w.pid << " behind";
  close(other);
  unlink(path.c_str());
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(SocketTest, InetSocketsRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "inet_sockets"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(SocketTest, InetSocketsLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "inet_sockets"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(SocketTest, DescriptorsInFlightRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "scm_rights"));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "file descriptors are in flight in its queue"));
}

// A UNIX stream whose peer is ours: external, recorded by its key; the
// restore fails without --inherit-fd for it, and with one the restored
// process writes through the socket it is given (here our own end's peer
// again).
TEST_F(SocketTest, ExternalUnixStreamGivenBackWithInheritFd) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(pair[1], &st), 0);
  const std::string key = "socket:[" + std::to_string(st.st_ino) + "]";
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "external_socket_holder", {}, {.extra_fds = {pair[1]}}));
  const std::string image = Path("external.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("--inherit-fd '" + key + "=FD'")) << Describe(w, r);
  // crlib's stdin is our end's peer: fd 0 of the restorer is the key's.
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image, {"--inherit-fd", key + "=0"}, pair[1]));
  char line[64] = {0};
  ASSERT_GT(read(pair[0], line, sizeof(line) - 1), 0) << strerror(errno);
  EXPECT_EQ(std::string(line), "after from " + std::to_string(w.pid) + "\n");
  close(pair[0]);
  close(pair[1]);
}

TEST_F(SocketTest, NetlinkSocketRefused) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "socket_holder"));
  ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, "netlink sockets are not carried"));
}

}  // namespace
}  // namespace crlib
