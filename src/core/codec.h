// Field-by-field encoding of record payloads.
//
// Every record type is a plain struct with one static `Fields(self, visitor)`
// function that names its fields in order. That single list drives the
// encoder, the decoder, `crlib inspect` (text and JSON) and the layout table
// checked against docs/FORMAT.md, so the four can never disagree.
//
// Wire rules (docs/FORMAT.md, "Payload encoding"): little-endian; an integer
// sits at an offset that is a multiple of its size; a string, byte string or
// array is a u64 count at an 8-aligned offset followed by its elements and
// zero padding to the next multiple of 8; each array element starts 8-aligned.
// Padding must be zero.
#ifndef CRLIB_CORE_CODEC_H_
#define CRLIB_CORE_CODEC_H_

#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"

namespace crlib {

static_assert(std::endian::native == std::endian::little,
              "the image is little-endian; add byte swapping for this CPU");

using Bytes = std::vector<uint8_t>;

template <typename T>
concept FieldInteger = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// Visitor that does nothing; only used to detect FieldStruct.
struct FieldProbe {
  template <typename T>
  void operator()(const char*, T&) {}
};

// A struct usable as a record or as an array element.
template <typename T>
concept FieldStruct = requires(T& t, FieldProbe& probe) { T::Fields(t, probe); };

class Encoder {
 public:
  explicit Encoder(Bytes* out) : out_(out) {}

  template <FieldInteger T>
  void operator()(const char*, const T& value) {
    Align(sizeof(T));
    Append(&value, sizeof(T));
  }
  void operator()(const char*, const std::string& value) {
    Count(value.size());
    Append(value.data(), value.size());
    Align(8);
  }
  void operator()(const char*, const Bytes& value) {
    Count(value.size());
    Append(value.data(), value.size());
    Align(8);
  }
  template <FieldInteger T>
  void operator()(const char*, const std::vector<T>& values) {
    Count(values.size());
    Append(values.data(), values.size() * sizeof(T));
    Align(8);
  }
  template <FieldStruct T>
  void operator()(const char*, const std::vector<T>& values) {
    Count(values.size());
    for (const T& v : values) {
      T::Fields(v, *this);
      Align(8);
    }
  }

 private:
  void Count(uint64_t n) {
    Align(8);
    Append(&n, sizeof(n));
  }
  void Append(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_->insert(out_->end(), b, b + n);
  }
  void Align(size_t a) { out_->resize((out_->size() + a - 1) / a * a, 0); }

  Bytes* out_;
};

class Decoder {
 public:
  explicit Decoder(absl::Span<const uint8_t> data) : data_(data) {}

  template <FieldInteger T>
  void operator()(const char* name, T& value) {
    if (!Align(sizeof(T), name) || !Need(sizeof(T), name)) return;
    memcpy(&value, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
  }
  void operator()(const char* name, std::string& value) {
    uint64_t n;
    if (!Count(name, 1, &n)) return;
    value.assign(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    Align(8, name);
  }
  void operator()(const char* name, Bytes& value) {
    uint64_t n;
    if (!Count(name, 1, &n)) return;
    value.assign(data_.data() + pos_, data_.data() + pos_ + n);
    pos_ += n;
    Align(8, name);
  }
  template <FieldInteger T>
  void operator()(const char* name, std::vector<T>& values) {
    uint64_t n;
    if (!Count(name, sizeof(T), &n)) return;
    values.resize(n);
    // An empty vector's data() may be null, which memcpy must not get even
    // for 0 bytes.
    if (n > 0) memcpy(values.data(), data_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    Align(8, name);
  }
  template <FieldStruct T>
  void operator()(const char* name, std::vector<T>& values) {
    uint64_t n;
    // Every element takes at least 8 bytes, so n is bounded by the payload.
    if (!Count(name, 8, &n)) return;
    values.clear();
    values.reserve(n);
    for (uint64_t i = 0; i < n && status_.ok(); ++i) {
      T::Fields(values.emplace_back(), *this);
      Align(8, name);
    }
  }

  // OK when every field was present and all padding was zero. Bytes after
  // the last known field are allowed: a newer writer may append fields.
  const absl::Status& status() const { return status_; }
  size_t position() const { return pos_; }

 private:
  bool Fail(const char* name, const char* what) {
    if (status_.ok()) {
      status_ = absl::DataLossError(absl::StrFormat(
          "field '%s' at payload offset %u: %s (payload is %u bytes)", name,
          pos_, what, data_.size()));
    }
    return false;
  }
  bool Need(uint64_t n, const char* name) {
    if (!status_.ok()) return false;
    if (n > data_.size() - pos_) return Fail(name, "runs past the end of the record");
    return true;
  }
  bool Align(size_t a, const char* name) {
    if (!status_.ok()) return false;
    size_t next = (pos_ + a - 1) / a * a;
    if (next > data_.size()) {
      // Trailing padding may be cut only at the very end of the payload.
      if (pos_ == data_.size()) return true;
      return Fail(name, "padding runs past the end of the record");
    }
    for (size_t i = pos_; i < next; ++i) {
      if (data_[i] != 0) return Fail(name, "non-zero padding");
    }
    pos_ = next;
    return true;
  }
  bool Count(const char* name, uint64_t element_size, uint64_t* n) {
    if (!Align(8, name) || !Need(8, name)) return false;
    memcpy(n, data_.data() + pos_, 8);
    pos_ += 8;
    if (*n > (data_.size() - pos_) / element_size) {
      return Fail(name, "element count runs past the end of the record");
    }
    return true;
  }

  absl::Span<const uint8_t> data_;
  size_t pos_ = 0;
  absl::Status status_;
};

template <FieldStruct T>
Bytes EncodeFields(const T& value) {
  Bytes out;
  Encoder enc(&out);
  T::Fields(value, enc);
  return out;
}

template <FieldStruct T>
absl::Status DecodeFields(absl::Span<const uint8_t> data, T* value) {
  Decoder dec(data);
  T::Fields(*value, dec);
  return dec.status();
}

}  // namespace crlib

#endif  // CRLIB_CORE_CODEC_H_
