// Runs the fuzz target's entry over the committed seed corpus in the normal
// test suite, so the harness cannot rot between fuzzing runs. Seeds named
// valid-* must read cleanly; the rest must fail cleanly.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/core/sample_image.h"
#include "tests/fuzz/image_reader_fuzz_entry.h"

namespace crlib::testing {
namespace {

std::filesystem::path CorpusDir() {
  const char* root = getenv("CRLIB_SOURCE_ROOT");
  return std::filesystem::path(root ? root : ".") / "tests/fuzz/corpus";
}

TEST(FuzzCorpusTest, SeedsBehave) {
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), {});
    absl::Status st = FuzzImageReader(data.data(), data.size());
    if (entry.path().filename().string().rfind("valid-", 0) == 0) {
      EXPECT_TRUE(st.ok()) << entry.path() << ": " << st;
    } else {
      EXPECT_FALSE(st.ok()) << entry.path();
    }
    ++seeds;
  }
  EXPECT_GE(seeds, 3);
}

TEST(FuzzCorpusTest, SeedsAreCurrent) {
  // The valid seeds are the sample images; if the format changes, rewrite
  // them with CRLIB_WRITE_CORPUS=1 and commit.
  const std::pair<const char*, uint32_t> kSeeds[] = {
      {"valid-raw", 0}, {"valid-compressed", kImageCompressed}, {"valid-mappable", kImageMappable}};
  for (const auto& [name, flags] : kSeeds) {
    std::vector<uint8_t> image = BuildSampleImage(flags);
    std::filesystem::path path = CorpusDir() / name;
    if (getenv("CRLIB_WRITE_CORPUS")) {
      std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(image.data()),
                                                  image.size());
    }
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> committed((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(committed, image) << path << " is stale: rerun with CRLIB_WRITE_CORPUS=1";
  }
}

}  // namespace
}  // namespace crlib::testing
