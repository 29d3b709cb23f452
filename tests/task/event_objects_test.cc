// Event objects through `crlib dump` and `crlib restore`: eventfd, timerfd,
// signalfd, inotify and epoll come back with their state and check
// themselves (tests/workloads/event_objects.c, epoll_loop.c,
// inotify_watch.c); io_uring, fanotify, a stale epoll entry and a watch
// on a removed file are refused at dump, naming them, with the process
// left running.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

class EventObjectsTest : public WorkloadTest {
 protected:
  void ExpectRefused(const std::string& mode, const std::string& reason) {
    Workload w;
    ASSERT_NO_FATAL_FAILURE(
        Start(&w, "event_refused", {WorkloadsDir() + "/event_refused", mode, Path("")}));
    ASSERT_NO_FATAL_FAILURE(ExpectDumpRefused(&w, reason));
  }
};

TEST_F(EventObjectsTest, EventfdTimerfdSignalfdRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "event_objects"));
  const std::string image = Path("events.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  // Long enough for the periodic timer to miss periods, which must count.
  std::this_thread::sleep_for(milliseconds(1200));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(EventObjectsTest, EventObjectsSurviveLeaveRunning) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "event_objects"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

TEST_F(EventObjectsTest, EpollLoopRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "epoll_loop"));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
}

TEST_F(EventObjectsTest, InotifyWatchesFireWithTheirWdsAndQueuedEventsAreDropped) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "inotify_watch", {WorkloadsDir() + "/inotify_watch", Path("")}));
  ASSERT_NO_FATAL_FAILURE(RoundTrip(&w));
  EXPECT_THAT(Slurp(w.out), HasSubstr("queued=dropped")) << Output(w);
}

// A watched directory replaced after the dump: the restore fails before
// anything exists, naming the path, and leaves no process behind.
TEST_F(EventObjectsTest, ReplacedWatchedDirectoryFailsBeforeRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "inotify_watch", {WorkloadsDir() + "/inotify_watch", Path("")}));
  const std::string image = Path("inotify.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  const std::string dir = Path("watched-c");
  ASSERT_EQ(rename(dir.c_str(), (dir + ".old").c_str()), 0) << strerror(errno);
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
  CliResult r = Crlib({"restore", "--image", image});
  ExpectOneLineError(r);
  EXPECT_THAT(r.err, HasSubstr("watched by inotify watch 3, is not the file the image was taken with"))
      << Describe(w, r);
  EXPECT_FALSE(Probe(w.pid).exists) << "restore left pid " << w.pid << " behind";
  EXPECT_EQ(OurChildren(), std::set<pid_t>()) << PidText(OurChildren());
}

TEST_F(EventObjectsTest, DumpRefusesIoUring) {
  ExpectRefused("io_uring", "io_uring instance (io_uring_setup)");
}

TEST_F(EventObjectsTest, DumpRefusesAMappedIoUringWhoseFdIsClosed) {
  ExpectRefused("io_uring_mapped", "io_uring ring (io_uring_setup), mapped even if its fd is closed");
}

TEST_F(EventObjectsTest, DumpRefusesFanotify) {
  ExpectRefused("fanotify", "fanotify group (fanotify_init)");
}

TEST_F(EventObjectsTest, DumpRefusesAnEpollEntryWhoseFdWasClosed) {
  ExpectRefused("epoll_stale", "its entry for fd 4 (data 0x1) refers to a file that fd 4 no longer holds");
}

TEST_F(EventObjectsTest, DumpRefusesAWatchOnARemovedFile) {
  ExpectRefused("inotify_removed", "inotify watch 1 is on a removed file");
}

}  // namespace
}  // namespace crlib
