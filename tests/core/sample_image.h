// A small image holding one or more records of every type, for tests,
// the fuzz seed corpus and benchmarks.
#ifndef CRLIB_TESTS_CORE_SAMPLE_IMAGE_H_
#define CRLIB_TESTS_CORE_SAMPLE_IMAGE_H_

#include <cstdint>
#include <vector>

#include "core/image_format.h"

namespace crlib::testing {

// Writes the sample image with the given image flags (kImageCompressed,
// kImageMappable or 0) into memory.
std::vector<uint8_t> BuildSampleImage(uint32_t flags);

// The header every sample image carries.
ImageInfo SampleInfo(uint32_t flags);

// Address and content of the sample's pages: 8 pages at kSamplePagesAt,
// page i filled with byte (i + 1), except page 3, which is zero.
inline constexpr uint64_t kSamplePagesAt = 0x7f0000000000;
inline constexpr int kSamplePages = 8;

}  // namespace crlib::testing

#endif  // CRLIB_TESTS_CORE_SAMPLE_IMAGE_H_
