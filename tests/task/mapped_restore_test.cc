// Mapped restore through `crlib dump --mappable` and `crlib restore`: the
// pages of a large heap come back mapped from the image file (and the
// process checks them), an image file that could change under the process
// has its pages copied instead and says why, a dump of a restored process
// stores that memory as anonymous (the first image can then go), and ten
// copies of one image in their own PID namespaces share its pages.
// Restore times are measured in benchmarks/checkpoint_benchmark.cc, never
// asserted here.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/task/harness.h"
#include "tests/task/image_edit.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

constexpr int kHeapMiB = 256;
constexpr uint64_t kHeapPages = uint64_t{kHeapMiB} << 8;

class MappedRestoreTest : public WorkloadTest {
 protected:
  // Starts heap_checksum with a `mib` MiB block (held after its check with
  // `hold`) and dumps it --mappable to `image`, killing it.
  void StartAndDump(Workload* w, const std::string& image, int mib, bool hold = false,
                    const StartOptions& start = {}) {
    std::vector<std::string> argv = {WorkloadsDir() + "/heap_checksum", std::to_string(mib)};
    if (hold) argv.push_back("hold");
    ASSERT_NO_FATAL_FAILURE(Start(w, "heap_checksum", argv, start));
    ASSERT_NO_FATAL_FAILURE(DumpMappable(w, image));
  }

  // `crlib dump --mappable` of `w` (killed and reaped): the image file is
  // read-only, so that restores may map it.
  void DumpMappable(Workload* w, const std::string& image) {
    CliResult r = Crlib({"dump", "--mappable", "--pid", std::to_string(w->pid), "--image", image});
    w->dumped = Slurp(w->out);
    ASSERT_EQ(r.exit_code, 0) << Describe(*w, r);
    struct stat st;
    ASSERT_EQ(stat(image.c_str(), &st), 0) << image;
    EXPECT_EQ(st.st_mode & 07777, 0400u) << "a mappable image is read-only";
    int status = 0;
    ASSERT_TRUE(WaitExit(w->pid, &status, kReapTimeout)) << Describe(*w, r);
  }

  // `crlib restore --detach --stats` of `w`'s image (with `extra`
  // arguments): the restored process runs, our child now (we are its
  // subreaper). Returns crlib's stderr.
  std::string RestoreDetached(Workload* w, const std::string& image,
                              const std::vector<std::string>& extra = {}) {
    EXPECT_EQ(truncate(w->out.c_str(), static_cast<off_t>(w->dumped.size())), 0);
    std::vector<std::string> args = {"restore", "--detach", "--stats", "--image", image};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = Crlib(args);
    EXPECT_EQ(r.exit_code, 0) << Describe(*w, r);
    if (r.exit_code == 0) restored_.emplace_back(w->pid, w->exe);
    return r.err;
  }

  // SIGUSR1 to restored `w` (our child): it checks its memory and exits 0
  // with OK.
  void SignalRestoredAndExpectOk(Workload* w) {
    ASSERT_EQ(kill(w->pid, SIGUSR1), 0) << strerror(errno);
    int status = 0;
    ASSERT_TRUE(WaitExit(w->pid, &status, kExitTimeout)) << "no exit" << Output(*w);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << StatusText(status) << Output(*w);
    const std::string out = Slurp(w->out);
    ASSERT_THAT(out, StartsWith(w->dumped)) << Output(*w);
    EXPECT_THAT(out.substr(w->dumped.size()), StartsWith("OK")) << Output(*w);
  }

  // Pages crlib says it mapped: "... N pages loaded (M mapped)".
  static uint64_t PagesMapped(const std::string& err) {
    size_t at = err.find(" mapped)");
    if (at == std::string::npos) return 0;
    size_t open = err.rfind('(', at);
    return open == std::string::npos ? 0 : std::stoull(err.substr(open + 1, at - open - 1));
  }

  // The mappings of `pid` whose file is `image` (maps names it).
  static int MappingsOf(pid_t pid, const std::string& image) {
    std::istringstream maps(Slurp("/proc/" + std::to_string(pid) + "/maps"));
    int n = 0;
    for (std::string line; std::getline(maps, line);) n += line.find(image) != std::string::npos;
    return n;
  }
};

// A 256 MiB heap comes back mapped from the image: nearly every page is
// mapped, in few mappings, not copied; the process finds its checksum.
TEST_F(MappedRestoreTest, LargeHeapIsMappedAndChecksItself) {
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, kHeapMiB));
  const std::string err = RestoreDetached(&w, image);
  EXPECT_THAT(err, Not(HasSubstr("copied"))) << err;
  EXPECT_GE(PagesMapped(err), kHeapPages - 16) << err;
  const int mappings = MappingsOf(w.pid, image);
  EXPECT_GT(mappings, 0) << Slurp("/proc/" + std::to_string(w.pid) + "/maps");
  EXPECT_LE(mappings, 2 * kHeapMiB) << "one mapping per page batch at most";
  // The image fd the restore mapped from is not left open in the process.
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(w.pid) + "/fd")) {
    EXPECT_NE(ReadLink(e.path()), image) << "fd " << e.path().filename() << " is the image";
  }
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// The image file's removal does not reach the restored process: the
// mapping holds the inode.
TEST_F(MappedRestoreTest, ImageRemovedWhileRestoredProcessRuns) {
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, 64));
  const std::string err = RestoreDetached(&w, image);
  EXPECT_GT(PagesMapped(err), 0u) << err;
  ASSERT_EQ(unlink(image.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// An image file someone may write is not mapped: its pages are copied and
// crlib says why, in one line; the process checks itself as ever.
TEST_F(MappedRestoreTest, WritableImageIsCopiedWithAReason) {
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, 32));
  ASSERT_EQ(chmod(image.c_str(), 0600), 0);
  const std::string err = RestoreDetached(&w, image);
  EXPECT_THAT(err, HasSubstr("crlib: restore: pages copied, not mapped: the image file is "
                             "writable (mode 0600)"));
  EXPECT_EQ(PagesMapped(err), 0u) << err;
  EXPECT_EQ(MappingsOf(w.pid, image), 0);
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// Nor is one that a process has open for writing (root may, whatever the
// mode says).
TEST_F(MappedRestoreTest, ImageOpenForWritingIsCopied) {
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, 32));
  const int writer = open(image.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(writer, 0) << strerror(errno) << " (the test runs as root)";
  const std::string err = RestoreDetached(&w, image);
  close(writer);
  EXPECT_THAT(err, HasSubstr("pages copied, not mapped: the image file is open for writing"));
  EXPECT_EQ(PagesMapped(err), 0u) << err;
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// --copy-pages copies, without a word.
TEST_F(MappedRestoreTest, CopyPagesOption) {
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, 32));
  const std::string err = RestoreDetached(&w, image, {"--copy-pages"});
  EXPECT_THAT(err, Not(HasSubstr("copied"))) << err;
  EXPECT_EQ(PagesMapped(err), 0u) << err;
  EXPECT_EQ(MappingsOf(w.pid, image), 0);
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// A page stored in more than one pages record is the last record's (a
// live dump writes a page again when the process wrote it after its first
// copy). The image is edited so that only that order gives the process
// its memory back: before the first large pages record R of the heap goes
// a copy of R full of garbage, R's own first page is made garbage too, and
// after R a one-page record brings that page's true bytes. The two large
// records are mapped, the small one copied: the copy must land after the
// maps, and the second map over the first.
TEST_F(MappedRestoreTest, LaterPagesRecordsWin) {
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, 32));
  std::string bytes = Slurp(image);
  FileHeader fh;
  ASSERT_GE(bytes.size(), sizeof(fh));
  memcpy(&fh, bytes.data(), sizeof(fh));
  const uint64_t page = fh.page_size;
  std::string edited;
  for (uint64_t pos = fh.header_length; pos + sizeof(RecordHeader) <= bytes.size();) {
    RecordHeader h;
    memcpy(&h, bytes.data() + pos, sizeof(h));
    uint64_t size = sizeof(h) + AlignUp(h.length, 8);
    if (h.bulk_length) size += h.bulk_pad + AlignUp(h.bulk_length, 8);
    ASSERT_LE(pos + size, bytes.size());
    PagesRecord pages;
    if (edited.empty() && h.type == static_cast<uint32_t>(RecordType::kPages) &&
        DecodeFields(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()) + pos +
                                             sizeof(h),
                                         h.length),
                     &pages)
            .ok() &&
        pages.page_count >= 64 && pages.runs.front().pages >= 64) {
      ASSERT_EQ(pos % page, 0u) << "records of a mappable image start page-aligned";
      const uint64_t bulk = pos + sizeof(h) + AlignUp(h.length, 8) + h.bulk_pad;
      const std::string first_page = bytes.substr(bulk, page);
      std::string garbage_copy = bytes.substr(pos, size);
      memset(garbage_copy.data() + (bulk - pos), 0x5a, h.bulk_length);
      memset(bytes.data() + bulk, 0xa5, page);
      // The one-page record: header, payload, zeros up to the page, page.
      const Bytes payload = EncodeFields(PagesRecord{.page_count = 1,
                                                     .runs = {{pages.runs.front().address, 1}}});
      RecordHeader one{};
      one.type = h.type;
      one.parent = h.parent;
      one.length = static_cast<uint32_t>(payload.size());
      one.bulk_length = page;
      one.bulk_pad = static_cast<uint32_t>(page - sizeof(one) - AlignUp(payload.size(), 8));
      std::string small(reinterpret_cast<const char*>(&one), sizeof(one));
      small.append(payload.begin(), payload.end());
      small.resize(page, '\0');
      small += first_page;
      edited = bytes.substr(0, pos) + garbage_copy + bytes.substr(pos, size) + small;
      edited += bytes.substr(pos + size);
      break;
    }
    pos += size;
  }
  ASSERT_FALSE(edited.empty()) << "no pages record of 64 pages or more";
  testing::RepairImageChecksums(reinterpret_cast<uint8_t*>(edited.data()), edited.size());
  ASSERT_EQ(unlink(image.c_str()), 0);
  {
    std::ofstream out(image, std::ios::binary);
    out << edited;
  }
  ASSERT_EQ(chmod(image.c_str(), 0400), 0);
  const std::string err = RestoreDetached(&w, image);
  EXPECT_GT(PagesMapped(err), 0u) << err;
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// Memory a child keeps from its parent since a fork is copied, not mapped,
// in both: the child's page it dropped (MADV_DONTNEED) stays zero, where a
// mapping of the image would show it the parent's bytes again.
TEST_F(MappedRestoreTest, MemoryForkedToAChildIsNotMapped) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "forked_heap"));
  const std::vector<pid_t> children = sys::ListChildren(w.pid).value_or(std::vector<pid_t>{});
  ASSERT_EQ(children.size(), 1u) << Output(w);
  const std::string image = Path("forked.img");
  ASSERT_NO_FATAL_FAILURE(DumpMappable(&w, image));
  // The child, killed with it, comes to us: reaped, its PID is free.
  ASSERT_TRUE(WaitFor(
      [&] {
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        return !Probe(children[0]).exists;
      },
      kReapTimeout));
  CliResult inspect = Crlib({"inspect", image});
  ASSERT_THAT(inspect.out, HasSubstr("page_drops")) << "the child dropped no page of its parent's";
  RestoreDetached(&w, image);
  ASSERT_NO_FATAL_FAILURE(SignalRestoredAndExpectOk(&w));
}

// A process restored by mapping is dumped again: the memory mapped from
// the first image is stored as anonymous memory, every page of it (most
// never touched since the restore), so the first image may go and the
// second restores alone.
TEST_F(MappedRestoreTest, RedumpStoresMappedMemoryAsAnonymous) {
  Workload w;
  const std::string first = Path("first.img");
  const std::string second = Path("second.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, first, 64));
  const std::string err = RestoreDetached(&w, first);
  ASSERT_GT(PagesMapped(err), 0u) << err;
  ASSERT_GT(MappingsOf(w.pid, first), 0);
  ASSERT_NO_FATAL_FAILURE(DumpMappable(&w, second));
  CliResult inspect = Crlib({"inspect", second});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_THAT(inspect.out, Not(HasSubstr("first.img"))) << "the second image names the first";
  ASSERT_EQ(unlink(first.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, second));
}

// Ten copies of one 256 MiB image, each in its own PID namespace, each
// having read all its memory: together they hold about one copy of it
// (the page cache's), not ten. Proportional set sizes (Pss) split each
// shared page among its users, so their sum is the memory the copies
// really cost.
TEST_F(MappedRestoreTest, TenConcurrentCopiesShareThePageCache) {
  constexpr int kCopies = 10;
  Workload w;
  const std::string image = Path("heap.img");
  ASSERT_NO_FATAL_FAILURE(StartAndDump(&w, image, kHeapMiB, /*hold=*/true, {.append_out = true}));
  std::vector<Running> restores;
  for (int i = 0; i < kCopies; ++i) {
    restores.push_back(StartCli({"restore", "--pid-ns", "--detach", "--image", image}));
  }
  std::vector<pid_t> roots;
  for (const Running& r : restores) {
    CliResult done = Finish(r, kRestoredTimeout);
    ASSERT_EQ(done.exit_code, 0) << Describe(w, done);
    pid_t init = 0, root = 0;
    ASSERT_TRUE(std::istringstream(done.out) >> init >> root) << done.out;
    EXPECT_THAT(done.err, Not(HasSubstr("copied"))) << done.err;
    roots.push_back(root);
    restored_.emplace_back(root, w.exe);
  }
  // Each copy reads and checks all its memory, then holds it.
  for (pid_t root : roots) ASSERT_EQ(kill(root, SIGUSR1), 0) << strerror(errno);
  auto count = [&](const std::string& word) {
    const std::string out = Slurp(w.out).substr(w.dumped.size());
    int n = 0;
    for (size_t at = 0; (at = out.find(word, at)) != std::string::npos; ++at) n += 1;
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return count("CHECKED") == kCopies || count("FAIL") > 0; },
                      kExitTimeout))
      << Output(w);
  ASSERT_EQ(count("FAIL"), 0) << Output(w);
  // Pss of the mappings of the image file only: what sharing is about (a
  // sanitizer build gives each copy tens of MiB of shadow of its own).
  const std::string mapped = std::filesystem::canonical(image).string();
  uint64_t rss_kib = 0, pss_kib = 0;
  for (pid_t root : roots) {
    std::istringstream rollup(Slurp("/proc/" + std::to_string(root) + "/smaps_rollup"));
    uint64_t rss = 0;
    for (std::string line; std::getline(rollup, line);) {
      if (line.starts_with("Rss:")) rss = std::stoull(line.substr(4));
    }
    EXPECT_GE(rss, uint64_t{kHeapMiB} * 1024 * 9 / 10) << "pid " << root << " has not read it all";
    rss_kib += rss;
    std::istringstream smaps(Slurp("/proc/" + std::to_string(root) + "/smaps"));
    bool of_image = false;
    for (std::string line; std::getline(smaps, line);) {
      // A mapping's first line: "start-end perms offset dev inode [path]".
      if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
          line.find('-') < line.find(' ')) {
        of_image = line.size() >= mapped.size() &&
                   line.compare(line.size() - mapped.size(), mapped.size(), mapped) == 0;
      } else if (of_image && line.starts_with("Pss:")) {
        pss_kib += std::stoull(line.substr(4));
      }
    }
  }
  const uint64_t one_copy_kib = uint64_t{kHeapMiB} * 1024;
  EXPECT_GT(pss_kib, one_copy_kib / 2) << "the copies do not map the image";
  EXPECT_LT(pss_kib, 2 * one_copy_kib)
      << "ten copies' mappings of the image cost " << pss_kib / 1024 << " MiB (Pss; Rss of the "
      << "processes " << rss_kib / 1024 << " MiB)";
  // Then each checks itself once more and exits.
  for (pid_t root : roots) ASSERT_EQ(kill(root, SIGUSR1), 0) << strerror(errno);
  ASSERT_TRUE(WaitFor([&] { return count("OK") == kCopies; }, kExitTimeout)) << Output(w);
  RecordProperty("pss_MiB", static_cast<int>(pss_kib / 1024));
  RecordProperty("rss_MiB", static_cast<int>(rss_kib / 1024));
}

}  // namespace
}  // namespace crlib
