// Address spaces through `crlib dump` and `crlib restore`: a process with a
// 64 GiB MAP_NORESERVE reservation, a 1 TiB PROT_NONE one and VMAs carrying
// madvise flags and mlock (tests/workloads/sparse_reservation.c) comes back
// with its data, its VmFlags, and what DONTFORK and WIPEONFORK do to a
// child. How long the dump keeps it frozen is measured in
// benchmarks/checkpoint_benchmark.cc, never asserted here.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/task/harness.h"

namespace crlib {
namespace {

using namespace ::crlib::test;  // NOLINT: the harness is this file's vocabulary

using MemoryTest = WorkloadTest;

// The image holds the written pages, not the reservations: far below the
// 64 GiB + 1 TiB of address space (a size bound, not a timing).
void ExpectSmallImage(const std::string& image) {
  struct stat st;
  ASSERT_EQ(stat(image.c_str(), &st), 0) << image;
  EXPECT_LT(st.st_size, 64 << 20) << image << " holds more than the written pages";
}

TEST_F(MemoryTest, SparseReservationRoundTrip) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sparse_reservation"));
  const std::string image = Path("sparse.img");
  ASSERT_NO_FATAL_FAILURE(Dump(&w, image));
  ASSERT_NO_FATAL_FAILURE(ExpectSmallImage(image));
  ASSERT_NO_FATAL_FAILURE(RestoreAndCheck(&w, image));
}

TEST_F(MemoryTest, SparseReservationLeaveRunningThenRestore) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(Start(&w, "sparse_reservation"));
  ASSERT_NO_FATAL_FAILURE(LeaveRunningThenRestore(&w));
}

}  // namespace
}  // namespace crlib
