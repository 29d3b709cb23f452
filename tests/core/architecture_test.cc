// docs/ARCHITECTURE.md says which src/ folder may include which; this
// test reads that table and checks every #include "folder/..." in src/.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace crlib {
namespace {

std::string SourceRoot() {
  const char* root = getenv("CRLIB_SOURCE_ROOT");
  return root && *root ? root : ".";
}

std::string Slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// folder -> the folders it may include, from the table's rows.
std::map<std::string, std::set<std::string>> AllowedIncludes() {
  std::map<std::string, std::set<std::string>> allowed;
  std::istringstream doc(Slurp(SourceRoot() + "/docs/ARCHITECTURE.md"));
  for (std::string line; std::getline(doc, line);) {
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    // "| folder | owns | may include |" splits into 5 cells.
    if (cells.size() != 5) continue;
    std::string folder(absl::StripAsciiWhitespace(cells[1]));
    if (folder.empty() || folder == "folder" || folder.find('-') == 0) continue;
    std::set<std::string>& may = allowed[folder];
    for (absl::string_view f : absl::StrSplit(cells[3], ',', absl::SkipWhitespace())) {
      may.insert(std::string(absl::StripAsciiWhitespace(f)));
    }
  }
  return allowed;
}

TEST(ArchitectureTest, EveryFolderIsInTheTable) {
  const auto allowed = AllowedIncludes();
  ASSERT_FALSE(allowed.empty()) << "no table in docs/ARCHITECTURE.md";
  for (const auto& e : std::filesystem::directory_iterator(SourceRoot() + "/src")) {
    if (!e.is_directory()) continue;
    EXPECT_TRUE(allowed.contains(e.path().filename().string()))
        << "src/" << e.path().filename().string() << " is not described in docs/ARCHITECTURE.md";
  }
}

TEST(ArchitectureTest, NoFolderIncludesOneAboveItOrAPeer) {
  const auto allowed = AllowedIncludes();
  const std::regex include(R"re(#include "([a-z0-9_]+)/)re");
  const std::filesystem::path src = SourceRoot() + "/src";
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(src)) {
    const std::string ext = e.path().extension().string();
    if (ext != ".h" && ext != ".cc") continue;
    ++files;
    const std::string folder = std::filesystem::relative(e.path(), src).begin()->string();
    const std::string text = Slurp(e.path());
    for (std::sregex_iterator it(text.begin(), text.end(), include), end; it != end; ++it) {
      const std::string target = (*it)[1];
      if (target == "absl" || target == folder || !allowed.contains(target)) continue;
      EXPECT_TRUE(allowed.contains(folder) && allowed.at(folder).contains(target))
          << std::filesystem::relative(e.path(), SourceRoot()).string() << " includes " << target
          << "/, which docs/ARCHITECTURE.md does not allow for " << folder << "/";
    }
  }
  EXPECT_GT(files, 50u);
}

}  // namespace
}  // namespace crlib
