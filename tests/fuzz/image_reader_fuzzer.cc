// libFuzzer target for the image reader: `make fuzz`.
//
// Every header, payload and bulk region of an image carries a CRC-32C, so
// plain byte mutations would almost never get past the checksums. The
// custom mutator below therefore repairs the checksums (and the end
// record's totals) of most mutants after libFuzzer's own mutation, so the
// fuzzer explores the decoders, inspect and page reading behind them. A
// few mutants are left as they are, to keep the checksum checks covered.
// Inputs it saves (corpus, crash artifacts) are the repaired bytes, so they
// reproduce as they are in tests/fuzz/corpus_test.cc.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/image_fuzz_checksums.h"
#include "tests/fuzz/image_reader_fuzz_entry.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if (seed % 8 != 0) crlib::testing::RepairImageChecksums(data, size);
  return size;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)crlib::testing::FuzzImageReader(data, size);
  return 0;
}
