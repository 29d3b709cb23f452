#include "task/tracee.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include <atomic>
#include <set>
#include <string>

#include "sys/proc.h"

namespace crlib {
namespace {

// A child that counts in shared memory, so the test can see it run.
struct Counter {
  pid_t pid;
  std::atomic<uint64_t>* count;
};

Counter StartCounter() {
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* count = new (shared) std::atomic<uint64_t>(0);
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) {
      count->fetch_add(1);
      usleep(1000);
    }
  }
  return {pid, count};
}

bool Advances(std::atomic<uint64_t>* count) {
  uint64_t before = count->load();
  for (int i = 0; i < 200; ++i) {
    usleep(5000);
    if (count->load() > before + 2) return true;
  }
  return false;
}

TEST(TraceeTest, RemoteSyscallsAndMemory) {
  Counter c = StartCounter();
  {
    auto t = Tracee::Seize(c.pid);
    ASSERT_TRUE(t.ok()) << t.status();
    uint64_t frozen = c.count->load();
    auto pid = (*t)->CheckedSyscall("getpid", SYS_getpid);
    ASSERT_TRUE(pid.ok()) << pid.status();
    EXPECT_EQ(*pid, c.pid);
    // Memory the tracee maps itself, written and read through /proc/PID/mem.
    auto addr = (*t)->CheckedSyscall("mmap", SYS_mmap,
                                     {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                      static_cast<uint64_t>(-1), 0});
    ASSERT_TRUE(addr.ok()) << addr.status();
    const char msg[] = "written from outside";
    ASSERT_TRUE((*t)->WriteMemory(*addr, msg, sizeof(msg)).ok());
    char back[sizeof(msg)] = {};
    ASSERT_TRUE((*t)->ReadMemory(*addr, back, sizeof(back)).ok());
    EXPECT_STREQ(back, msg);
    // A failing call reports its errno and names itself.
    auto bad = (*t)->CheckedSyscall("munmap of a bad address", SYS_munmap, {1, 4096});
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
    EXPECT_NE(bad.status().message().find("munmap of a bad address"), std::string::npos);
    EXPECT_EQ(c.count->load(), frozen) << "the tracee ran while seized";
    ASSERT_TRUE((*t)->SetRegs((*t)->initial_regs()).ok());
    ASSERT_TRUE((*t)->Detach().ok());
  }
  EXPECT_TRUE(Advances(c.count)) << "the tracee did not resume after detach";
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
}

// A child whose threads create short-lived threads as fast as they can,
// counting them in shared memory.
Counter StartThreadStorm() {
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* count = new (shared) std::atomic<uint64_t>(0);
  pid_t pid = fork();
  if (pid == 0) {
    auto storm = +[](void* arg) -> void* {
      auto* n = static_cast<std::atomic<uint64_t>*>(arg);
      for (;;) {
        pthread_t t;
        if (pthread_create(&t, nullptr, +[](void*) -> void* { return nullptr; }, nullptr) == 0) {
          pthread_detach(t);
          n->fetch_add(1);
        }
      }
      return nullptr;
    };
    for (int i = 0; i < 3; ++i) {
      pthread_t t;
      pthread_create(&t, nullptr, storm, count);
    }
    for (;;) pause();
  }
  return {pid, count};
}

// The state letter of /proc/PID/task/TID/stat, or 0 when it is gone.
// A thread's state letter from /proc/TID/stat, 0 if it is gone.
char ThreadState(pid_t tid) {
  absl::StatusOr<std::vector<std::string>> f = sys::ReadStatFields(tid);
  return f.ok() && !f->empty() && !(*f)[0].empty() ? (*f)[0][0] : 0;
}

TEST(TraceeTest, SeizeProcessStopsThreadsCreatedMeanwhile) {
  Counter c = StartThreadStorm();
  ASSERT_TRUE(Advances(c.count)) << "the storm did not start";
  for (int round = 0; round < 20; ++round) {
    auto threads = Tracee::SeizeProcess(c.pid);
    ASSERT_TRUE(threads.ok()) << threads.status();
    ASSERT_FALSE(threads->empty());
    EXPECT_EQ(threads->front()->tid(), c.pid);
    std::set<pid_t> seized;
    for (const auto& t : *threads) seized.insert(t->tid());
    EXPECT_GE(seized.size(), 4u);
    auto listed = sys::ListThreads(c.pid);
    ASSERT_TRUE(listed.ok()) << listed.status();
    for (pid_t tid : *listed) {
      char state = ThreadState(tid);
      if (seized.contains(tid)) {
        EXPECT_EQ(state, 't') << "seized thread " << tid << " is not stopped";
      } else {
        EXPECT_TRUE(state == 0 || state == 'Z' || state == 'X')
            << "thread " << tid << " escaped the seize (state " << state << ")";
      }
    }
    uint64_t frozen = c.count->load();
    usleep(20000);
    EXPECT_EQ(c.count->load(), frozen) << "a thread was created while all were seized";
    for (const auto& t : *threads) {
      ASSERT_TRUE(t->RestoreInitialState().ok());
      ASSERT_TRUE(t->Detach().ok());
    }
    threads->clear();
    ASSERT_TRUE(Advances(c.count)) << "the process did not resume after detach";
  }
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
}

TEST(TraceeTest, SeizeOfMissingPidIsNotFound) {
  auto t = Tracee::Seize(999999999);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << t.status();
}

}  // namespace
}  // namespace crlib
