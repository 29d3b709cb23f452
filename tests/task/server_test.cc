// Servers: real ones from Debian packages, checkpointed with their data
// and restored (the restored server answers a fresh client with the
// data), and established TCP connections to a client outside the dumped
// process (--tcp-established).
// The package is a test dependency the Makefile installs; missing, the
// test fails (it does not skip).

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <thread>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

// A free TCP port on the loopback now (the kernel's pick).
int FreePort() {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  socklen_t len = sizeof(a);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(s);
    return -1;
  }
  close(s);
  return ntohs(a.sin_port);
}

// A connection to 127.0.0.1:`port`, or -1.
int Connect(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{.sin_family = AF_INET, .sin_port = htons(static_cast<uint16_t>(port)),
                .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(s);
    return -1;
  }
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return s;
}

// The redis protocol, as much as the test needs: commands as arrays of
// bulk strings, replies read whole.
class RedisClient {
 public:
  explicit RedisClient(int fd) : fd_(fd) {}
  ~RedisClient() {
    if (fd_ >= 0) close(fd_);
  }
  bool Send(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const std::string& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = write(fd_, out.data() + done, out.size() - done);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // One reply: "+OK", ":42", "-ERR ...", or a bulk string's contents
  // ("(nil)" for none).
  std::string Reply() {
    std::string line = Line();
    if (line.empty()) return "(no reply)";
    if (line[0] != '$') return line;
    const long size = std::stol(line.substr(1));
    if (size < 0) return "(nil)";
    std::string data = Take(static_cast<size_t>(size) + 2);
    return data.substr(0, static_cast<size_t>(size));
  }
  std::string Call(const std::vector<std::string>& args) { return Send(args) ? Reply() : "(send failed)"; }

 private:
  bool Fill() {
    char buf[65536];
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
  std::string Line() {
    size_t end;
    while ((end = in_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return "";
    }
    std::string line = in_.substr(0, end);
    in_.erase(0, end + 2);
    return line;
  }
  std::string Take(size_t n) {
    while (in_.size() < n) {
      if (!Fill()) break;
    }
    std::string out = in_.substr(0, n);
    in_.erase(0, std::min(n, in_.size()));
    return out;
  }
  int fd_;
  std::string in_;
};

std::string ValueOf(int i) { return "value-" + std::to_string(i * 7919) + std::string(i % 50, 'x'); }

class ServerTest : public WorkloadTest {
 protected:
  // The tcp_echo_server workload on a free port, with the test's client
  // connected and greeted ("hello", "ping"/"pong"); -1 on failure.
  int StartEchoServer(Workload* w) {
    const int port = FreePort();
    EXPECT_GT(port, 0);
    Start(w, "tcp_echo_server", {WorkloadsDir() + "/tcp_echo_server", std::to_string(port)});
    int fd = -1;
    EXPECT_TRUE(WaitFor([&] { return (fd = Connect(port)) >= 0; }, seconds(10)));
    if (fd < 0) return -1;
    EXPECT_EQ(ReadLine(fd), "hello");
    EXPECT_EQ(write(fd, "ping\n", 5), 5);
    EXPECT_EQ(ReadLine(fd), "pong");
    return fd;
  }

  // One line from `fd` (without its newline), "" at the end or on error.
  static std::string ReadLine(int fd) {
    std::string line;
    char c;
    while (read(fd, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }

  // The nftables tables crlib made (crlib_...), one per line.
  static std::string CrlibTables() {
    FILE* p = popen("nft list tables 2>&1", "r");
    if (p == nullptr) return "popen failed";
    std::string out;
    char buf[256];
    while (fgets(buf, sizeof(buf), p) != nullptr) {
      if (strstr(buf, "crlib_") != nullptr) out += buf;
    }
    pclose(p);
    return out;
  }
};

// An established connection whose peer (the test) is outside the dumped
// process, with bytes queued in it, lives through dump and restore: the
// peer's data sent while the server was gone arrives, and the server
// answers on the same connection.
TEST_F(ServerTest, TcpConnectionLivesThroughDumpAndRestore) {
  Workload w;
  const int fd = StartEchoServer(&w);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "queued\n", 7), 7);  // queued in the server, unread
  std::this_thread::sleep_for(milliseconds(50));
  const std::string image = Path("tcp.img");
  CliResult dump = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", image, "--tcp-established"});
  w.dumped = Slurp(w.out);
  ASSERT_EQ(dump.exit_code, 0) << Describe(w, dump);
  int status = 0;
  ASSERT_TRUE(WaitExit(w.pid, &status, kReapTimeout)) << "the server still runs after the dump";
  EXPECT_THAT(CrlibTables(), HasSubstr("crlib_")) << "no packet filter holds the connection";
  // A check of the image takes nothing over: the connection and its
  // filter stay as they are for the restore.
  CliResult check = Crlib({"restore", "--check", "--image", image});
  EXPECT_EQ(check.exit_code, 0) << Describe(w, check);
  EXPECT_THAT(CrlibTables(), HasSubstr("crlib_")) << "the check removed the packet filter";
  // Sent while the server is gone: the filter drops it, our kernel sends
  // it again until the restored connection takes it.
  ASSERT_EQ(write(fd, "during\n", 7), 7);
  std::string echoed;
  std::thread client([&] {
    timeval timeout{.tv_sec = 60, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    echoed = ReadLine(fd);
    (void)!write(fd, "bye\n", 4);
  });
  RestoreAndCheck(&w, image);
  client.join();
  EXPECT_EQ(echoed, "echo:queued+during") << "the connection did not carry on";
  EXPECT_EQ(CrlibTables(), "") << "the packet filter outlived the restore";
  close(fd);
}

// Without --tcp-established the connection is refused by name, and the
// server and its connection carry on untouched.
TEST_F(ServerTest, TcpConnectionRefusedWithoutTheOption) {
  Workload w;
  const int fd = StartEchoServer(&w);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "queued\nduring\nbye\n", 18), 18);
  ExpectDumpRefused(&w, "an established TCP connection, carried only with --tcp-established");
  EXPECT_EQ(ReadLine(fd), "echo:queued+during");
  EXPECT_EQ(CrlibTables(), "");
  close(fd);
}

// A dump that leaves the server running lets its connection go on at once
// (repair mode off, filter deleted).
TEST_F(ServerTest, TcpConnectionLeaveRunning) {
  Workload w;
  const int fd = StartEchoServer(&w);
  ASSERT_GE(fd, 0);
  const std::string image = Path("tcp.img");
  CliResult dump = Crlib({"dump", "--pid", std::to_string(w.pid), "--image", image,
                          "--tcp-established", "--leave-running"});
  ASSERT_EQ(dump.exit_code, 0) << Describe(w, dump);
  EXPECT_EQ(CrlibTables(), "") << "the packet filter outlived the dump";
  ASSERT_EQ(write(fd, "queued\nduring\nbye\n", 18), 18);
  ASSERT_NO_FATAL_FAILURE(SignalAndExpectOk(&w));
  EXPECT_EQ(ReadLine(fd), "echo:queued+during");
  close(fd);
}

// redis-server (Debian's): 2000 keys and a 4 MiB value set over TCP, then
// dumped (killed) and restored; a new client finds every key, and the
// server takes writes and shuts down cleanly.
TEST_F(ServerTest, RedisKeepsItsDataAcrossARestore) {
  const std::string redis = "/usr/bin/redis-server";
  struct stat st;
  ASSERT_EQ(stat(redis.c_str(), &st), 0)
      << redis << " is missing: `make test` installs the redis-server package";
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string dir = Path("redis");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  const pid_t server =
      Spawn({redis, "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", dir, "--daemonize", "no"},
            Path("redis.out"), Path("redis.err"), /*new_session=*/true);
  ASSERT_GT(server, 0);
  int fd = -1;
  ASSERT_TRUE(WaitFor([&] { return (fd = Connect(port)) >= 0; }, seconds(20)))
      << "redis did not listen on " << port << "\n" << Slurp(Path("redis.out"));
  const std::string big(4 << 20, 'B');
  {
    RedisClient c(fd);
    // Pipelined: every SET first, then every reply.
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE(c.Send({"SET", "key:" + std::to_string(i), ValueOf(i)}));
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(c.Reply(), "+OK") << "SET key:" << i;
    ASSERT_EQ(c.Call({"SET", "big", big}), "+OK");
    ASSERT_EQ(c.Call({"DBSIZE"}), ":2001");
  }
  // Our connection is closed: only a checking client is connected when
  // the dump comes (connections are the next test's business).
  ASSERT_TRUE(WaitFor(
      [&] {
        RedisClient c(Connect(port));
        return c.Call({"INFO", "clients"}).find("connected_clients:1\r") != std::string::npos;
      },
      seconds(10)));
  const std::string image = Path("redis.img");
  CliResult dump = Crlib({"dump", "--pid", std::to_string(server), "--image", image});
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  int status = 0;
  ASSERT_TRUE(WaitExit(server, &status, kReapTimeout)) << "redis still runs after the dump";
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_LT(Connect(port), 0) << "something else answers on port " << port;

  Running restore = StartCli({"restore", "--image", image});
  restored_.emplace_back(server, redis);
  ASSERT_TRUE(WaitFor([&] { return (fd = Connect(port)) >= 0; }, seconds(30)))
      << "the restored redis does not listen on " << port << "\n"
      << Finish(restore, seconds(0)).err;
  {
    RedisClient c(fd);
    EXPECT_EQ(c.Call({"DBSIZE"}), ":2001");
    for (int i = 0; i < 2000; i += 97) EXPECT_EQ(c.Call({"GET", "key:" + std::to_string(i)}), ValueOf(i));
    EXPECT_EQ(c.Call({"GET", "key:1999"}), ValueOf(1999));
    EXPECT_TRUE(c.Call({"GET", "big"}) == big) << "the 4 MiB value differs";
    EXPECT_EQ(c.Call({"SET", "after", "restore"}), "+OK");
    EXPECT_EQ(c.Call({"GET", "after"}), "restore");
    c.Send({"SHUTDOWN", "NOSAVE"});
  }
  CliResult r = Finish(restore, seconds(30));
  EXPECT_EQ(r.exit_code, 0) << "the restored redis did not exit 0\n" << r.err;
}

}  // namespace
}  // namespace crlib
