// docs/FORMAT.md must describe exactly what the code writes: one table per
// record type listing its fields, in order, with their wire types.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "absl/strings/str_format.h"
#include "core/image_format.h"
#include "core/records.h"

namespace crlib {
namespace {

template <typename T>
constexpr const char* IntName() {
  if (std::is_same_v<T, uint8_t>) return "u8";
  if (std::is_same_v<T, uint16_t>) return "u16";
  if (std::is_same_v<T, uint32_t>) return "u32";
  if (std::is_same_v<T, uint64_t>) return "u64";
  if (std::is_same_v<T, int32_t>) return "i32";
  if (std::is_same_v<T, int64_t>) return "i64";
  return "?";
}

// Lists (field, type) rows; array elements as "name[].field".
class TypeVisitor {
 public:
  explicit TypeVisitor(std::string prefix = "") : prefix_(std::move(prefix)) {}
  template <FieldInteger T>
  void operator()(const char* name, T&) { Add(name, IntName<T>()); }
  void operator()(const char* name, std::string&) { Add(name, "string"); }
  void operator()(const char* name, Bytes&) { Add(name, "bytes"); }
  template <FieldInteger T>
  void operator()(const char* name, std::vector<T>&) { Add(name, std::string(IntName<T>()) + "[]"); }
  template <FieldStruct T>
  void operator()(const char* name, std::vector<T>&) {
    Add(name, "array");
    TypeVisitor inner(prefix_ + name + "[].");
    T element;
    T::Fields(element, inner);
    rows_.insert(rows_.end(), inner.rows_.begin(), inner.rows_.end());
  }
  std::vector<std::pair<std::string, std::string>> rows_;

 private:
  void Add(const char* name, std::string type) { rows_.emplace_back(prefix_ + name, type); }
  std::string prefix_;
};

std::string ReadFormatDoc() {
  const char* root = getenv("CRLIB_SOURCE_ROOT");
  std::string path = std::string(root ? root : ".") + "/docs/FORMAT.md";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Rows of the table under the heading "### 0xNNNN name".
std::vector<std::pair<std::string, std::string>> DocRows(const std::string& doc, uint32_t type,
                                                         const char* name) {
  std::vector<std::pair<std::string, std::string>> rows;
  std::string heading = absl::StrFormat("### 0x%04x %s\n", type, name);
  size_t at = doc.find(heading);
  if (at == std::string::npos) return rows;
  std::istringstream lines(doc.substr(at + heading.size()));
  std::string line;
  std::regex row(R"(^\| `([^`]+)` \| ([^ |]+) \|.*)");
  bool in_table = false;
  while (std::getline(lines, line)) {
    if (line.rfind("### ", 0) == 0 || line.rfind("## ", 0) == 0) break;
    std::smatch m;
    if (std::regex_match(line, m, row)) {
      rows.emplace_back(m[1], m[2]);
      in_table = true;
    } else if (in_table && line.empty()) {
      break;
    }
  }
  return rows;
}

TEST(FormatDocTest, EveryRecordTableMatchesTheCode) {
  std::string doc = ReadFormatDoc();
  ForEachRecordType([&](auto tag) {
    using R = decltype(tag);
    TypeVisitor v;
    R r;
    R::Fields(r, v);
    auto documented = DocRows(doc, static_cast<uint32_t>(R::kType), R::kName);
    if (getenv("CRLIB_PRINT_FORMAT_TABLES")) {  // a starting point when editing the doc
      printf("### 0x%04x %s\n\n| field | type | meaning |\n|---|---|---|\n",
             static_cast<uint32_t>(R::kType), R::kName);
      for (const auto& [field, type] : v.rows_) printf("| `%s` | %s | |\n", field.c_str(), type.c_str());
      printf("\n");
    }
    EXPECT_EQ(documented, v.rows_) << "docs/FORMAT.md section \"### "
                                   << absl::StrFormat("0x%04x %s", static_cast<uint32_t>(R::kType), R::kName)
                                   << "\" disagrees with src/core/records.h";
  });
}

TEST(FormatDocTest, RecordTypeTableListsEveryType) {
  std::string doc = ReadFormatDoc();
  ForEachRecordType([&](auto tag) {
    using R = decltype(tag);
    std::string row = absl::StrFormat("| 0x%04x | `%s` |", static_cast<uint32_t>(R::kType), R::kName);
    EXPECT_NE(doc.find(row), std::string::npos) << "missing from the record type table: " << row;
  });
}

TEST(FormatDocTest, FixedSizesMatch) {
  std::string doc = ReadFormatDoc();
  EXPECT_NE(doc.find(absl::StrFormat("file header is %d bytes", sizeof(FileHeader))), std::string::npos);
  EXPECT_NE(doc.find(absl::StrFormat("record header is %d bytes", sizeof(RecordHeader))), std::string::npos);
  EXPECT_NE(doc.find(absl::StrFormat("payload is at most %d bytes", kMaxPayloadLength)), std::string::npos);
}

}  // namespace
}  // namespace crlib
