#include "cr/inspect.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/core/sample_image.h"

namespace crlib {
namespace {

using ::testing::HasSubstr;

std::string Inspect(const std::vector<uint8_t>& image, bool json) {
  MemorySource source(image);
  std::string out;
  absl::Status st = InspectImage(&source, {.json = json}, &out);
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

TEST(InspectTest, TextShowsTheTree) {
  std::string out = Inspect(testing::BuildSampleImage(kImageCompressed), false);
  EXPECT_THAT(out, HasSubstr("cpu x86_64, page size 4096, kernel 6.18.44-test"));
  EXPECT_THAT(out, HasSubstr("xsave features 0x2e7 (x87 sse avx opmask zmm_hi256 hi16_zmm pkru)"));
  EXPECT_THAT(out, HasSubstr("flags: compressed"));
  // process -> thread -> registers, indented one level per generation.
  EXPECT_THAT(out, HasSubstr("\nprocess pid=4242"));
  EXPECT_THAT(out, HasSubstr("\n  thread tid=4242"));
  EXPECT_THAT(out, HasSubstr("\n    x86_64_registers "));
  EXPECT_THAT(out, HasSubstr("rip=0x401000"));
  // memory map -> VMA -> page runs, with sizes.
  EXPECT_THAT(out, HasSubstr("\n  memory_map "));
  EXPECT_THAT(out, HasSubstr("\n    vma start=0x7f0000000000 end=0x7f0000008000"));
  EXPECT_THAT(out, HasSubstr("pages stored: 7 (28.0 KiB)"));
  EXPECT_THAT(out, HasSubstr("page run 0x7f0000000000-0x7f0000003000 (3 pages, 12.0 KiB)"));
  // file table -> fds and files.
  EXPECT_THAT(out, HasSubstr("\n  file_table fd_count=3"));
  EXPECT_THAT(out, HasSubstr("\n    fd fd=3"));
  EXPECT_THAT(out, HasSubstr("path=\"/tmp/gone (deleted)\""));
}

TEST(InspectTest, JsonIsOneDocumentWithTheSameTree) {
  std::string out = Inspect(testing::BuildSampleImage(0), true);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front(), '{');
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "one document on one line";
  EXPECT_THAT(out, HasSubstr("\"cpu_family\":\"x86_64\""));
  EXPECT_THAT(out, HasSubstr("\"type\":\"process\""));
  EXPECT_THAT(out, HasSubstr("\"pid\":4242"));
  EXPECT_THAT(out, HasSubstr("\"runs\":[{\"address\":139637976727552,\"pages\":3}"));
  // Braces and brackets balance outside strings.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    ASSERT_GE(depth, 0);
  }
  EXPECT_EQ(depth, 0);
}

}  // namespace
}  // namespace crlib
