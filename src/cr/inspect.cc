#include "cr/inspect.h"

#include <algorithm>
#include <map>
#include <optional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "arch/arch_backend.h"
#include "core/image_reader.h"
#include "core/status.h"
#include "cr/image_chain.h"

namespace crlib {
namespace {

std::string HumanSize(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  do {
    v /= 1024;
    ++u;
  } while (v >= 1024 && u < 3);
  return absl::StrFormat("%.1f %s", v, units[u]);
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// Quantities read best in decimal; other large numbers are addresses or
// masks and read best in hex.
bool IsQuantity(std::string_view name) {
  if (name == "clear_child_tid") return false;  // an address, despite "tid"
  for (std::string_view w : {"count", "size", "bytes", "length", "pages", "inode", "usec",
                             "offset", "cur", "max", "pid", "tid", "dev", "capacity"}) {
    if (name.find(w) != std::string_view::npos) return true;
  }
  return false;
}

// Renders a record's fields, in order, as text and as JSON members.
class RenderVisitor {
 public:
  template <FieldInteger T>
  void operator()(const char* name, const T& v) {
    bool hex = !IsQuantity(name) && static_cast<uint64_t>(v) >= 0x10000 && v > 0;
    Add(name, hex ? absl::StrFormat("0x%x", v) : absl::StrCat(v), absl::StrCat(v));
  }
  void operator()(const char* name, const std::string& v) {
    Add(name, JsonString(v), JsonString(v));
  }
  void operator()(const char* name, const Bytes& v) {
    std::string hex;
    for (uint8_t b : v) absl::StrAppendFormat(&hex, "%02x", b);
    Add(name, absl::StrCat("<", v.size(), " bytes>"), JsonString(hex));
  }
  template <FieldInteger T>
  void operator()(const char* name, const std::vector<T>& v) {
    Add(name, absl::StrCat("[", v.size(), " values]"), absl::StrCat("[", absl::StrJoin(v, ","), "]"));
  }
  template <FieldStruct T>
  void operator()(const char* name, const std::vector<T>& v) {
    std::vector<std::string> items;
    for (const T& e : v) {
      RenderVisitor inner;
      T::Fields(e, inner);
      items.push_back(inner.Json());
    }
    Add(name, absl::StrCat("[", v.size(), " entries]"), absl::StrCat("[", absl::StrJoin(items, ","), "]"));
  }

  std::string Text() const { return absl::StrJoin(text_, " "); }
  std::string Json() const { return absl::StrCat("{", absl::StrJoin(json_, ","), "}"); }

 private:
  void Add(const char* name, std::string text, std::string json) {
    text_.push_back(absl::StrCat(name, "=", text));
    json_.push_back(absl::StrCat(JsonString(name), ":", json));
  }
  std::vector<std::string> text_;
  std::vector<std::string> json_;
};

struct Node {
  RecordHeader header;
  uint64_t index = 0;
  uint64_t bytes = 0;    // this record's share of the image
  uint64_t subtree = 0;  // with its descendants
  std::string text, json;
  std::vector<size_t> children;
  std::vector<PageRun> runs;  // for kPages
  std::optional<ChainRecord> chain;  // for kChain
  uint64_t vma_start = 0, vma_end = 0;  // for kVma
  ObjectRef fd_file = 0;     // for kFd: its file
  std::string external_key;  // for a kFile of kind kExternal: its key
  // Its parent was defined by a skippable record of a type this crlib does
  // not know; the reader passed over that record, so this one is a root.
  bool parent_skipped = false;
};

// Decodes `record` as whichever known type it is and renders it.
absl::Status Render(const ImageReader& reader, const Record& record, Node* node) {
  absl::Status status;
  bool found = false;
  ForEachRecordType([&](auto tag) {
    using R = decltype(tag);
    if (found || record.type() != R::kType) return;
    found = true;
    absl::StatusOr<R> value = reader.Decode<R>(record);
    if (!value.ok()) {
      status = value.status();
      return;
    }
    RenderVisitor v;
    R::Fields(*value, v);
    node->text = absl::StrCat(R::kName, " ", v.Text());
    node->json = v.Json();
    if constexpr (std::is_same_v<R, PagesRecord>) node->runs = value->runs;
    if constexpr (std::is_same_v<R, ChainRecord>) node->chain = *value;
    if constexpr (std::is_same_v<R, VmaRecord>) {
      node->vma_start = value->start;
      node->vma_end = value->end;
    }
    if constexpr (std::is_same_v<R, FdRecord>) node->fd_file = value->file;
    if constexpr (std::is_same_v<R, FileRecord>) {
      const bool external = static_cast<FileKind>(value->kind) == FileKind::kExternal;
      if (external) node->external_key = value->path;
    }
  });
  return status;
}

struct Tree {
  ImageInfo info;
  EndRecord end;
  uint64_t image_bytes = 0;
  std::vector<Node> nodes;
  std::vector<size_t> roots;
};

absl::StatusOr<Tree> ReadTree(ByteSource* source) {
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<ImageReader> reader, ImageReader::Open(source));
  Tree tree;
  tree.info = reader->info();
  absl::flat_hash_map<ObjectRef, size_t> owner;  // ref -> node defining it
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* record, reader->Next());
    if (record == nullptr) break;
    Node node;
    node.header = record->header;
    node.index = record->index;
    node.bytes = sizeof(RecordHeader) + AlignUp(record->header.length, 8) +
                 (record->header.bulk_length
                      ? record->header.bulk_pad + AlignUp(record->header.bulk_length, 8)
                      : 0);
    CRLIB_RETURN_IF_ERROR(Render(*reader, *record, &node));
    // An fd leading outside says so with its key, which restore asks for.
    if (auto file = owner.find(node.fd_file); node.fd_file && file != owner.end()) {
      const std::string& key = tree.nodes[file->second].external_key;
      if (!key.empty()) {
        absl::StrAppend(&node.text, " external ", key, " (restore --inherit-fd '", key, "=FD')");
      }
    }
    size_t id = tree.nodes.size();
    if (node.header.self) owner[node.header.self] = id;
    // The reader checked that an earlier record defines the parent, but
    // that record may be one of an unknown, skippable type, which Next()
    // never returned: such a record is shown at the top level.
    auto parent = node.header.parent ? owner.find(node.header.parent) : owner.end();
    if (parent != owner.end()) {
      tree.nodes[parent->second].children.push_back(id);
    } else {
      node.parent_skipped = node.header.parent != 0;
      tree.roots.push_back(id);
    }
    tree.nodes.push_back(std::move(node));
  }
  tree.end = reader->end();
  tree.image_bytes = reader->offset();
  // Children always come after their parent, so one backward pass sums.
  for (size_t i = tree.nodes.size(); i-- > 0;) {
    Node& n = tree.nodes[i];
    n.subtree = n.bytes;
    for (size_t c : n.children) n.subtree += tree.nodes[c].subtree;
  }
  return tree;
}

// Text lines for the page runs that fall inside [start, end).
void AppendVmaPages(const Tree& tree, const std::vector<const PageRun*>& runs, uint64_t start,
                    uint64_t end, const std::string& indent, std::string* out) {
  const uint64_t page = tree.info.page_size;
  auto it = std::lower_bound(runs.begin(), runs.end(), start, [&](const PageRun* r, uint64_t a) {
    return r->address + r->pages * page <= a;
  });
  uint64_t pages = 0;
  std::vector<std::string> lines;
  for (; it != runs.end() && (*it)->address < end; ++it) {
    uint64_t lo = std::max(start, (*it)->address);
    uint64_t hi = std::min(end, (*it)->address + (*it)->pages * page);
    pages += (hi - lo) / page;
    if (lines.size() < 8) {
      lines.push_back(absl::StrFormat("%spage run 0x%x-0x%x (%d pages, %s)\n", indent, lo, hi,
                                      (hi - lo) / page, HumanSize(hi - lo)));
    } else if (lines.size() == 8) {
      lines.push_back(absl::StrFormat("%s...\n", indent));
    }
  }
  absl::StrAppendFormat(out, "%spages stored: %d (%s)\n", indent, pages, HumanSize(pages * page));
  for (const std::string& l : lines) out->append(l);
}

// Text indentation: two spaces per generation, up to kMaxIndentLevels.
// Records nested deeper (only a forged image nests that deep) keep that
// indentation and name their depth, so the text stays linear in the image.
constexpr size_t kMaxIndentLevels = 32;

std::string Indent(size_t depth) {
  if (depth <= kMaxIndentLevels) return std::string(2 * depth, ' ');
  return absl::StrCat(std::string(2 * kMaxIndentLevels, ' '), "[depth ", depth, "] ");
}

// The tree under `root`, one line per record. Iterative: an image may nest
// records as deep as it has records, too deep for recursion on the stack.
void AppendText(const Tree& tree,
                const std::map<ObjectRef, std::vector<const PageRun*>>& runs_by_mm, size_t root,
                std::string* out) {
  static const std::vector<const PageRun*> kNone;
  std::vector<std::pair<size_t, size_t>> stack = {{root, 0}};  // node, depth
  while (!stack.empty()) {
    const auto [id, depth] = stack.back();
    stack.pop_back();
    const Node& n = tree.nodes[id];
    absl::StrAppend(out, Indent(depth), n.text);
    if (n.header.self) absl::StrAppend(out, " #", n.header.self);
    if (n.parent_skipped) {
      absl::StrAppend(out, " (parent #", n.header.parent, " is a record of a type this crlib skips)");
    }
    if (n.children.empty()) {
      absl::StrAppend(out, "  (", HumanSize(n.bytes), ")\n");
    } else {
      absl::StrAppend(out, "  (", HumanSize(n.subtree), " with ", n.children.size(),
                      " children)\n");
    }
    if (n.header.type == static_cast<uint32_t>(RecordType::kVma)) {
      // The pages of this VMA's memory map: a tree's processes share addresses.
      auto runs = runs_by_mm.find(n.header.parent);
      AppendVmaPages(tree, runs == runs_by_mm.end() ? kNone : runs->second, n.vma_start,
                     n.vma_end, Indent(depth + 1), out);
    }
    for (auto c = n.children.rbegin(); c != n.children.rend(); ++c) stack.push_back({*c, depth + 1});
  }
}

// The JSON object of `root` and its descendants. Iterative, like AppendText;
// each object is written once, straight into `out`.
void AppendJson(const Tree& tree, size_t root, std::string* out) {
  auto open = [&](size_t id) {
    const Node& n = tree.nodes[id];
    const char* name = RecordTypeName(n.header.type);
    absl::StrAppendFormat(
        out,
        "{\"type\":%s,\"type_id\":%d,\"index\":%d,\"self\":%d,\"parent\":%d,\"bytes\":%d,"
        "\"bulk_bytes\":%d,\"subtree_bytes\":%d,\"fields\":%s,\"children\":[",
        JsonString(name ? name : "unknown"), n.header.type, n.index, n.header.self,
        n.header.parent, n.bytes, n.header.bulk_length, n.subtree, n.json);
  };
  std::vector<std::pair<size_t, size_t>> stack = {{root, 0}};  // node, next child
  open(root);
  while (!stack.empty()) {
    auto& [id, next] = stack.back();
    const std::vector<size_t>& children = tree.nodes[id].children;
    if (next == children.size()) {
      out->append("]}");
      stack.pop_back();
      continue;
    }
    if (next > 0) out->push_back(',');
    const size_t child = children[next++];
    open(child);
    stack.push_back({child, 0});  // invalidates id and next
  }
}

std::string HeaderFlags(uint32_t flags) {
  std::vector<std::string> names;
  if (flags & kImageCompressed) names.push_back("compressed");
  if (flags & kImageMappable) names.push_back("mappable");
  return names.empty() ? "none" : absl::StrJoin(names, " ");
}

}  // namespace

absl::Status InspectImage(ByteSource* source, const InspectOptions& options, std::string* out) {
  CRLIB_ASSIGN_OR_RETURN(Tree tree, ReadTree(source));
  const ImageInfo& info = tree.info;
  const ArchBackend* arch = FindArchBackend(info.cpu_family);
  std::string components = arch ? arch->DescribeComponents(info.xsave_features) : "";
  // An incremental image's chain, each parent opened and its identity
  // checked.
  std::vector<std::string> chain;
  for (const Node& n : tree.nodes) {
    if (!n.chain) continue;
    CRLIB_ASSIGN_OR_RETURN(chain, DescribeImageChain(*n.chain));
  }
  std::string result;
  if (options.json) {
    std::string records;
    for (size_t r : tree.roots) {
      if (!records.empty()) records.push_back(',');
      AppendJson(tree, r, &records);
    }
    result = absl::StrFormat(
        "{\"header\":{\"format_version\":%d,\"cpu_family\":%s,\"page_size\":%d,"
        "\"xsave_features\":%d,\"xsave_components\":%s,\"xsave_size\":%d,\"flags\":%d,"
        "\"flag_names\":%s,\"kernel_release\":%s},"
        "\"totals\":{\"image_bytes\":%d,\"records\":%d,\"payload_bytes\":%d,\"bulk_bytes\":%d},"
        "\"chain\":[%s],\"records\":[%s]}\n",
        info.format_version, JsonString(CpuFamilyName(info.cpu_family)), info.page_size,
        info.xsave_features, JsonString(components), info.xsave_size, info.flags,
        JsonString(HeaderFlags(info.flags)), JsonString(info.kernel_release), tree.image_bytes,
        tree.end.record_count, tree.end.payload_bytes, tree.end.bulk_bytes,
        absl::StrJoin(chain, ",", [](std::string* o, const std::string& l) { o->append(JsonString(l)); }),
        records);
  } else {
    absl::StrAppendFormat(&result, "crlib image, %s\n", HumanSize(tree.image_bytes));
    absl::StrAppendFormat(&result, "  format version %d, cpu %s, page size %d, kernel %s\n",
                          info.format_version, CpuFamilyName(info.cpu_family), info.page_size,
                          info.kernel_release);
    absl::StrAppendFormat(&result, "  xsave features 0x%x (%s), %d bytes\n", info.xsave_features,
                          components, info.xsave_size);
    absl::StrAppendFormat(&result, "  flags: %s\n", HeaderFlags(info.flags));
    absl::StrAppendFormat(&result, "  %d records, %s of payload, %s of bulk data\n",
                          tree.end.record_count, HumanSize(tree.end.payload_bytes),
                          HumanSize(tree.end.bulk_bytes));
    if (!chain.empty()) absl::StrAppend(&result, "  chain:\n");
    for (const std::string& line : chain) absl::StrAppend(&result, "    ", line, "\n");
    std::map<ObjectRef, std::vector<const PageRun*>> runs_by_mm;
    for (const Node& n : tree.nodes) {
      for (const PageRun& r : n.runs) runs_by_mm[n.header.parent].push_back(&r);
    }
    for (auto& [mm, runs] : runs_by_mm) {
      std::sort(runs.begin(), runs.end(),
                [](const PageRun* a, const PageRun* b) { return a->address < b->address; });
    }
    for (size_t r : tree.roots) AppendText(tree, runs_by_mm, r, &result);
  }
  out->append(result);
  return absl::OkStatus();
}

}  // namespace crlib
