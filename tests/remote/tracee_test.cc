#include "remote/tracee.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

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

// The arch's first-use code (ArchBackend::FirstUseCode, which restore
// runs for AMX tile data) runs to its breakpoint in a tracee: valid
// encodings, a 64-byte aligned header it accepts. AVX stands in for the
// dynamic features on a CPU without any; the tracee runs on after.
TEST(TraceeTest, RunsFirstUseCode) {
  Counter c = StartCounter();
  {
    auto t = Tracee::Seize(c.pid);
    ASSERT_TRUE(t.ok()) << t.status();
    const ArchBackend& arch = (*t)->arch();
    auto area = (*t)->CheckedSyscall("mmap", SYS_mmap,
                                     {0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                                      MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0});
    ASSERT_TRUE(area.ok()) << area.status();
    const uint64_t code = static_cast<uint64_t>(*area), data = code + 1024;
    const std::vector<uint8_t> bytes =
        arch.FirstUseCode(arch.HostDynamicFeatures() | (arch.HostXsaveFeatures() & 4));
    ASSERT_TRUE((*t)->WriteMemory(code, bytes.data(), bytes.size()).ok());
    const std::vector<uint8_t> zeroes(ArchBackend::kFirstUseDataBytes, 0);
    ASSERT_TRUE((*t)->WriteMemory(data, zeroes.data(), zeroes.size()).ok());
    absl::Status ran = (*t)->RunCode(code, data, "first use");
    EXPECT_TRUE(ran.ok()) << ran;
    ASSERT_TRUE((*t)->SetRegs((*t)->initial_regs()).ok());
    ASSERT_TRUE((*t)->Detach().ok());
  }
  EXPECT_TRUE(Advances(c.count)) << "the tracee did not resume after detach";
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
}

// A read across pages the tracee may read and pages it may not (PROT_NONE,
// which only /proc/PID/mem reads) returns all of them, and a read of an
// unmapped page fails.
TEST(TraceeTest, ReadsAcrossProtNonePages) {
  constexpr size_t kPages = 8;
  auto* data = static_cast<uint8_t*>(mmap(nullptr, (kPages + 1) * 4096, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(data, MAP_FAILED);
  for (size_t i = 0; i < kPages * 4096; ++i) data[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  munmap(data + kPages * 4096, 4096);  // a hole after the pages
  pid_t pid = fork();
  if (pid == 0) {
    // Pages 2-3 and 6-7 no longer readable by the process itself.
    mprotect(data + 2 * 4096, 2 * 4096, PROT_NONE);
    mprotect(data + 6 * 4096, 2 * 4096, PROT_NONE);
    raise(SIGSTOP);
    _exit(0);
  }
  int status;
  ASSERT_EQ(waitpid(pid, &status, WUNTRACED), pid);
  {
    auto t = Tracee::Seize(pid);
    ASSERT_TRUE(t.ok()) << t.status();
    std::vector<uint8_t> back(kPages * 4096);
    absl::Status st = (*t)->ReadMemory(reinterpret_cast<uint64_t>(data), back.data(), back.size());
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(memcmp(back.data(), data, back.size()), 0);
    st = (*t)->ReadMemory(reinterpret_cast<uint64_t>(data) + 4096, back.data(), kPages * 4096);
    EXPECT_FALSE(st.ok()) << "a read into the unmapped page succeeded";
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  munmap(data, kPages * 4096);
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

// ---- A thread released at its recovering call site, as a dying tracer
// releases it, returns to its own registers and signal mask.

// A child that keeps known values in callee-saved registers across a loop
// and checks them each turn (a corrupted register sets `*bad`), counting
// turns, sleeping in nanosleep (so a stop may find it inside a call) or
// spinning.
struct Checker {
  pid_t pid;
  std::atomic<uint64_t>* count;
  std::atomic<uint64_t>* bad;
};

Checker StartChecker(bool sleeps) {
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* count = new (shared) std::atomic<uint64_t>(0);
  auto* bad = new (static_cast<char*>(shared) + 64) std::atomic<uint64_t>(0);
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) {
      uint64_t r12 = 0x1212121212121212, r13 = 0x1313131313131313, rbx = 0xb0b0b0b0b0b0b0b0;
      // The values live in those registers through the loop's busy part.
      asm volatile(
          "mov %0, %%r12\n mov %1, %%r13\n mov %2, %%rbx\n"
          "mov $20000, %%ecx\n"
          "1: pause\n dec %%ecx\n jnz 1b\n"
          "mov %%r12, %0\n mov %%r13, %1\n mov %%rbx, %2\n"
          : "+r"(r12), "+r"(r13), "+r"(rbx)
          :
          : "rcx", "r12", "r13", "rbx", "memory", "cc");
      if (r12 != 0x1212121212121212 || r13 != 0x1313131313131313 || rbx != 0xb0b0b0b0b0b0b0b0) {
        bad->store(1);
      }
      count->fetch_add(1);
      if (sleeps) {
        timespec ts{0, 2000000};
        nanosleep(&ts, nullptr);
      }
    }
  }
  return {pid, count, bad};
}

uint64_t SigBlk(pid_t pid) {
  std::string status = sys::ReadFile("/proc/" + std::to_string(pid) + "/status").value_or("");
  size_t at = status.find("SigBlk:");
  return at == std::string::npos ? ~uint64_t{0} : strtoull(status.c_str() + at + 7, nullptr, 16);
}

// The checker runs its loop again with its own registers and mask; then
// it is killed and reaped.
void ExpectBackInItsLoopThenKill(const Checker& c, uint64_t mask) {
  EXPECT_TRUE(Advances(c.count)) << "the thread did not return to its loop";
  EXPECT_EQ(c.bad->load(), 0u) << "a register was not put back";
  EXPECT_EQ(SigBlk(c.pid), mask) << "the signal mask was not put back";
  int status;
  EXPECT_EQ(waitpid(c.pid, &status, WNOHANG), 0) << "the child died: " << status;
  kill(c.pid, SIGKILL);
  waitpid(c.pid, nullptr, 0);
}

// Where the tracer "dies": before the call runs, at its entry, at its exit.
enum class ReleaseAt { kBorrowed, kEntry, kExit };

void ReleaseAtRecoveringSite(bool sleeps, ReleaseAt at, bool in_vdso = false) {
  Checker c = StartChecker(sleeps);
  usleep(30000);
  const uint64_t mask = SigBlk(c.pid);
  {
    auto t = Tracee::Seize(c.pid);
    ASSERT_TRUE(t.ok()) << t.status();
    Tracee& tracee = **t;
    ASSERT_TRUE(tracee.SetSigmask(~uint64_t{0}).ok());
    auto area = tracee.CheckedSyscall("mmap", SYS_mmap,
                                      {0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
                                       MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0});
    ASSERT_TRUE(area.ok()) << area.status();
    ASSERT_TRUE(tracee.RestoreInitialState().ok());
    uint64_t site = static_cast<uint64_t>(*area) + 4096;
    uint64_t stack_top = static_cast<uint64_t>(*area) + 16;
    if (in_vdso) {
      auto slack = tracee.FindVdsoSlack(ArchBackend::kRecoveringSiteBytes);
      ASSERT_TRUE(slack.ok() && *slack != 0);
      site = *slack;
      stack_top = (tracee.arch().StackPointer(tracee.initial_regs()) - 256) & ~uint64_t{15};
    }
    std::vector<uint8_t> code = tracee.arch().RecoveringSyscallSite(
        tracee.initial_regs(), tracee.initial_sigmask(), stack_top);
    ASSERT_TRUE(tracee.WriteMemory(site, code.data(), code.size()).ok());
    ASSERT_TRUE(tracee.BorrowAt(site).ok());
    if (at != ReleaseAt::kBorrowed) {
      // The call the thread was given, stopped at its entry, or its exit.
      for (int stop = 0; stop < (at == ReleaseAt::kEntry ? 1 : 2); ++stop) {
        ASSERT_EQ(ptrace(PTRACE_SYSCALL, c.pid, 0, 0), 0);
        int status;
        ASSERT_EQ(waitpid(c.pid, &status, __WALL), c.pid);
        ASSERT_EQ(WSTOPSIG(status), SIGTRAP | 0x80) << "not a syscall stop: " << status;
      }
    }
    // Released as a dead tracer releases it: nothing restored by us.
    ASSERT_EQ(ptrace(PTRACE_DETACH, c.pid, 0, 0), 0) << strerror(errno);
  }
  ExpectBackInItsLoopThenKill(c, mask);
}

TEST(RecoveringSiteTest, ReleasedBeforeTheCall) {
  ReleaseAtRecoveringSite(false, ReleaseAt::kBorrowed);
  ReleaseAtRecoveringSite(true, ReleaseAt::kBorrowed);
}

TEST(RecoveringSiteTest, ReleasedAtTheCallsEntry) {
  ReleaseAtRecoveringSite(false, ReleaseAt::kEntry);
  ReleaseAtRecoveringSite(true, ReleaseAt::kEntry);
}

TEST(RecoveringSiteTest, ReleasedAtTheCallsExit) {
  for (int i = 0; i < 5; ++i) {
    ReleaseAtRecoveringSite(false, ReleaseAt::kExit);
    ReleaseAtRecoveringSite(true, ReleaseAt::kExit);
  }
}

// The same in the unused tail of the vDSO, where the dump runs the two
// calls that map and unmap its scratch area, with the site's stack below
// the thread's red zone.
TEST(RecoveringSiteTest, InTheVdsoTail) {
  for (ReleaseAt at : {ReleaseAt::kBorrowed, ReleaseAt::kEntry, ReleaseAt::kExit}) {
    ReleaseAtRecoveringSite(false, at, /*in_vdso=*/true);
    ReleaseAtRecoveringSite(true, at, /*in_vdso=*/true);
  }
}

// A dump killed while the thread is borrowed at the vDSO's site, and the
// next dump seizing the thread before it ran the site alone (a SIGSTOP
// holds it here, as a busy machine's scheduler did): the new tracee must
// see the thread's own state, not the site's, so that the next dump may
// write and clear the tail. Seen before the fix: the next dump cleared the
// tail under the thread's rip, and it died of SIGSEGV.
void SeizedAgainInsideTheSite(bool sleeps, ReleaseAt at) {
  Checker c = StartChecker(sleeps);
  usleep(30000);
  const uint64_t mask = SigBlk(c.pid);
  uint64_t slack = 0;
  {
    auto t = Tracee::Seize(c.pid);
    ASSERT_TRUE(t.ok()) << t.status();
    Tracee& tracee = **t;
    auto found = tracee.FindVdsoSlack(ArchBackend::kRecoveringSiteBytes);
    ASSERT_TRUE(found.ok() && *found != 0);
    slack = *found;
    const uint64_t stack_top = (tracee.arch().StackPointer(tracee.initial_regs()) - 256) & ~uint64_t{15};
    std::vector<uint8_t> code = tracee.arch().RecoveringSyscallSite(
        tracee.initial_regs(), tracee.initial_sigmask(), stack_top, /*close_result=*/true);
    ASSERT_TRUE(tracee.WriteMemory(slack, code.data(), code.size()).ok());
    ASSERT_TRUE(tracee.BorrowAt(slack).ok());
    for (int stop = 0; at != ReleaseAt::kBorrowed && stop < (at == ReleaseAt::kEntry ? 1 : 2); ++stop) {
      ASSERT_EQ(ptrace(PTRACE_SYSCALL, c.pid, 0, 0), 0);
      int status;
      ASSERT_EQ(waitpid(c.pid, &status, __WALL), c.pid);
      ASSERT_EQ(WSTOPSIG(status), SIGTRAP | 0x80) << "not a syscall stop: " << status;
    }
    ASSERT_EQ(kill(c.pid, SIGSTOP), 0);
    ASSERT_EQ(ptrace(PTRACE_DETACH, c.pid, 0, 0), 0) << strerror(errno);
  }
  {
    auto t = Tracee::Seize(c.pid);
    ASSERT_TRUE(t.ok()) << t.status();
    Tracee& tracee = **t;
    const uint64_t ip = tracee.arch().InstructionPointer(tracee.initial_regs());
    EXPECT_FALSE(ip >= slack && ip < slack + ArchBackend::kRecoveringSiteBytes)
        << "seized with its rip in the site: 0x" << std::hex << ip;
    EXPECT_EQ(tracee.initial_sigmask(), mask) << "seized with the site's signal mask";
    // What the next dump does at its end.
    const std::vector<uint8_t> zeros(ArchBackend::kRecoveringSiteBytes, 0);
    ASSERT_TRUE(tracee.WriteMemory(slack, zeros.data(), zeros.size()).ok());
    ASSERT_TRUE(tracee.RestoreInitialState().ok());
    ASSERT_TRUE(tracee.Detach().ok());
  }
  ASSERT_EQ(kill(c.pid, SIGCONT), 0);
  ExpectBackInItsLoopThenKill(c, mask);
}

TEST(RecoveringSiteTest, SeizedAgainBeforeItRanTheSite) {
  for (ReleaseAt at : {ReleaseAt::kBorrowed, ReleaseAt::kEntry, ReleaseAt::kExit}) {
    SeizedAgainInsideTheSite(false, at);
    SeizedAgainInsideTheSite(true, at);
  }
}

}  // namespace
}  // namespace crlib
